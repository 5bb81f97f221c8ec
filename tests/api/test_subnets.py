"""Specification of subnets: IPv4 and IPv6 layouts (cidr, gateway, allocation pools), DNS
servers, host routes, DHCP, IPv6 RA/address modes, overlap within a network, updates and
deletion."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.helpers import UNKNOWN_ID, body, network, neutron_error, port, subnet


@pytest.fixture
def net(client: TestClient) -> dict[str, Any]:
    return network(client)


def post_subnet(client: TestClient, **attrs: Any) -> Any:
    return client.post("/v2.0/subnets", json={"subnet": attrs})


def update(client: TestClient, subnet_id: str, **attrs: Any) -> Any:
    return client.put(f"/v2.0/subnets/{subnet_id}", json={"subnet": attrs})


# --- IPv4 ---------------------------------------------------------------------------------------


def test_an_ipv4_subnet_gets_neutrons_default_layout(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], "10.1.0.0/24", name="s")
    assert sub["cidr"] == "10.1.0.0/24"
    assert sub["ip_version"] == 4
    assert sub["gateway_ip"] == "10.1.0.1"
    assert sub["allocation_pools"] == [{"start": "10.1.0.2", "end": "10.1.0.254"}]
    assert sub["dns_nameservers"] == []
    assert sub["host_routes"] == []
    assert sub["enable_dhcp"] is True
    assert sub["ipv6_ra_mode"] is None
    assert sub["ipv6_address_mode"] is None
    assert sub["subnetpool_id"] is None
    assert sub["network_id"] == net["id"]
    assert body(client.get(f"/v2.0/networks/{net['id']}"))["network"]["subnets"] == [sub["id"]]


def test_the_ip_version_follows_the_cidr_when_left_out(client: TestClient, net: dict[str, Any]) -> None:
    sub = body(post_subnet(client, network_id=net["id"], cidr="10.2.0.0/24"), 201)["subnet"]
    assert sub["ip_version"] == 4


def test_the_cidr_is_normalised_to_its_network_address(client: TestClient, net: dict[str, Any]) -> None:
    assert subnet(client, net["id"], "10.1.0.77/24")["cidr"] == "10.1.0.0/24"


def test_a_subnet_without_a_gateway_pools_every_host_address(
    client: TestClient, net: dict[str, Any]
) -> None:
    sub = subnet(client, net["id"], "10.1.0.0/28", gateway_ip=None)
    assert sub["gateway_ip"] is None
    assert sub["allocation_pools"] == [{"start": "10.1.0.1", "end": "10.1.0.14"}]


def test_a_gateway_in_the_middle_splits_the_default_pool(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], "10.1.0.0/28", gateway_ip="10.1.0.5")
    assert sub["allocation_pools"] == [{"start": "10.1.0.1", "end": "10.1.0.4"},
                                       {"start": "10.1.0.6", "end": "10.1.0.14"}]


def test_explicit_allocation_pools_are_kept(client: TestClient, net: dict[str, Any]) -> None:
    pools = [{"start": "10.1.0.10", "end": "10.1.0.20"}, {"start": "10.1.0.100", "end": "10.1.0.110"}]
    assert subnet(client, net["id"], "10.1.0.0/24", allocation_pools=pools)["allocation_pools"] == pools


@pytest.mark.parametrize(
    ("attrs", "status", "error_type"),
    [
        ({"allocation_pools": [{"start": "10.1.0.0", "end": "10.1.0.5"}]}, 400,
         "OutOfBoundsAllocationPool"),
        ({"allocation_pools": [{"start": "10.1.0.250", "end": "10.1.0.255"}]}, 400,
         "OutOfBoundsAllocationPool"),
        ({"allocation_pools": [{"start": "10.1.0.10", "end": "10.1.0.20"},
                               {"start": "10.1.0.15", "end": "10.1.0.30"}]}, 409,
         "OverlappingAllocationPools"),
        ({"allocation_pools": [{"start": "10.1.0.1", "end": "10.1.0.20"}]}, 409,
         "GatewayConflictWithAllocationPools"),
        ({"allocation_pools": [{"start": "10.1.0.20", "end": "10.1.0.10"}]}, 400, None),
        ({"allocation_pools": [{"start": "10.1.0.20"}]}, 400, None),
        ({"allocation_pools": [{"start": "fd00::2", "end": "fd00::9"}]}, 400, None),
        ({"allocation_pools": "10.1.0.2-10.1.0.9"}, 400, None),
        ({"gateway_ip": "10.1.0.0"}, 400, None),
        ({"gateway_ip": "10.1.0.255"}, 400, None),
        ({"gateway_ip": "fd00::1"}, 400, None),
        ({"gateway_ip": "not-an-ip"}, 400, None),
        ({"ip_version": 6}, 400, None),
        ({"ip_version": 5}, 400, None),
        ({"ipv6_ra_mode": "slaac"}, 400, None),
        ({"cidr": "10.1.0.0/33"}, 400, None),
        ({"cidr": "not-a-cidr"}, 400, None),
        ({"cidr": "10.1.0.0/31"}, 400, None),  # too small with DHCP on
        ({"enable_dhcp": "sometimes"}, 400, None),
        ({"network_id": "not-a-uuid"}, 400, None),
    ],
)
def test_an_invalid_ipv4_layout_is_refused(
    client: TestClient, net: dict[str, Any], attrs: dict[str, Any], status: int,
    error_type: str | None,
) -> None:
    request = {"network_id": net["id"], "cidr": "10.1.0.0/24", "ip_version": 4, **attrs}
    neutron_error(post_subnet(client, **request), status, error_type)


def test_a_gateway_outside_the_cidr_is_allowed(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], "10.1.0.0/24", gateway_ip="10.9.9.9")
    assert sub["gateway_ip"] == "10.9.9.9"
    assert sub["allocation_pools"] == [{"start": "10.1.0.1", "end": "10.1.0.254"}]


def test_a_subnet_needs_an_existing_network(client: TestClient) -> None:
    neutron_error(post_subnet(client, network_id=UNKNOWN_ID, cidr="10.0.0.0/24"), 404,
                  "NetworkNotFound")


@pytest.mark.parametrize("missing", ["network_id", "cidr"])
def test_a_subnet_needs_a_network_and_a_cidr(
    client: TestClient, net: dict[str, Any], missing: str
) -> None:
    attrs = {"network_id": net["id"], "cidr": "10.0.0.0/24"}
    del attrs[missing]
    neutron_error(post_subnet(client, **attrs), 400)


def test_dhcp_can_be_disabled(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], enable_dhcp=False)
    assert sub["enable_dhcp"] is False
    assert body(update(client, sub["id"], enable_dhcp=True))["subnet"]["enable_dhcp"] is True


def test_dhcp_cannot_be_enabled_on_a_subnet_too_small_for_it(client: TestClient,
                                                             net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], "10.0.0.0/31", enable_dhcp=False)
    neutron_error(update(client, sub["id"], enable_dhcp=True), 400)
    assert body(client.get(f"/v2.0/subnets/{sub['id']}"))["subnet"]["enable_dhcp"] is False


def test_dhcp_cannot_be_disabled_on_an_ipv6_subnet_with_modes(client: TestClient,
                                                              net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], "fd00:9::/64", ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    neutron_error(update(client, sub["id"], enable_dhcp=False), 400)


# --- DNS and host routes -------------------------------------------------------------------------


def test_dns_nameservers_keep_their_order(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], dns_nameservers=["9.9.9.9", "1.1.1.1", "8.8.8.8"])
    assert sub["dns_nameservers"] == ["9.9.9.9", "1.1.1.1", "8.8.8.8"]


@pytest.mark.parametrize(
    "servers",
    [
        ["1.1.1.1", "1.1.1.1"],
        ["not-an-ip"],
        "1.1.1.1",
        ["fd00::53"],  # an IPv6 server on an IPv4 subnet
        [f"10.0.1.{i}" for i in range(6)],  # more than Neutron's limit of 5
    ],
    ids=["duplicate", "garbage", "not-a-list", "wrong-version", "too-many"],
)
def test_invalid_dns_nameservers_are_refused(
    client: TestClient, net: dict[str, Any], servers: Any
) -> None:
    response = post_subnet(client, network_id=net["id"], cidr="10.0.0.0/24",
                           dns_nameservers=servers)
    neutron_error(response, 400)


def test_host_routes_are_kept(client: TestClient, net: dict[str, Any]) -> None:
    routes = [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.5"},
              {"destination": "0.0.0.0/0", "nexthop": "10.0.0.6"}]
    assert subnet(client, net["id"], host_routes=routes)["host_routes"] == routes


@pytest.mark.parametrize(
    "routes",
    [
        [{"destination": "192.168.0.0/16"}],
        [{"destination": "192.168.0.0/16", "nexthop": "nope"}],
        [{"destination": "fd00::/64", "nexthop": "fd00::1"}],
        [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.5"}] * 2,
        [{"destination": f"192.168.{i}.0/24", "nexthop": "10.0.0.5"} for i in range(21)],
    ],
    ids=["no-nexthop", "bad-nexthop", "wrong-version", "duplicate", "too-many"],
)
def test_invalid_host_routes_are_refused(client: TestClient, net: dict[str, Any], routes: Any) -> None:
    response = post_subnet(client, network_id=net["id"], cidr="10.0.0.0/24", host_routes=routes)
    neutron_error(response, 400)


def test_dns_nameservers_and_host_routes_can_be_replaced(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], dns_nameservers=["1.1.1.1"])
    route = {"destination": "192.168.0.0/16", "nexthop": "10.0.0.5"}
    updated = body(update(client, sub["id"], dns_nameservers=["8.8.8.8", "8.8.4.4"],
                          host_routes=[route]))["subnet"]
    assert updated["dns_nameservers"] == ["8.8.8.8", "8.8.4.4"]
    assert updated["host_routes"] == [route]
    cleared = body(update(client, sub["id"], dns_nameservers=[], host_routes=[]))["subnet"]
    assert (cleared["dns_nameservers"], cleared["host_routes"]) == ([], [])


def test_an_update_with_a_wrong_version_nameserver_is_refused(
    client: TestClient, net: dict[str, Any]
) -> None:
    sub = subnet(client, net["id"])
    neutron_error(update(client, sub["id"], dns_nameservers=["fd00::53"]), 400)
    assert body(client.get(f"/v2.0/subnets/{sub['id']}"))["subnet"]["dns_nameservers"] == []


# --- overlap -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cidr", ["10.0.0.0/24", "10.0.0.128/25", "10.0.0.0/16"])
def test_overlapping_cidrs_in_one_network_conflict(
    client: TestClient, net: dict[str, Any], cidr: str
) -> None:
    subnet(client, net["id"], "10.0.0.0/24")
    error = neutron_error(post_subnet(client, network_id=net["id"], cidr=cidr), 409)
    assert "overlaps with another subnet" in error["message"]


def test_the_same_cidr_in_another_network_is_fine(client: TestClient, net: dict[str, Any]) -> None:
    subnet(client, net["id"], "10.0.0.0/24")
    other = network(client)
    assert subnet(client, other["id"], "10.0.0.0/24")["cidr"] == "10.0.0.0/24"


def test_a_network_may_hold_several_disjoint_subnets(client: TestClient, net: dict[str, Any]) -> None:
    a = subnet(client, net["id"], "10.0.0.0/24")
    b = subnet(client, net["id"], "10.0.1.0/24")
    c = subnet(client, net["id"], "fd00::/64")
    subnets = body(client.get(f"/v2.0/networks/{net['id']}"))["network"]["subnets"]
    assert sorted(subnets) == sorted([a["id"], b["id"], c["id"]])


# --- IPv6 ----------------------------------------------------------------------------------------


def test_an_ipv6_subnet_pools_up_to_its_last_address(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], "fd00:1::/64")
    assert sub["ip_version"] == 6
    assert sub["gateway_ip"] == "fd00:1::1"
    assert sub["allocation_pools"] == [{"start": "fd00:1::2", "end": "fd00:1::ffff:ffff:ffff:ffff"}]


@pytest.mark.parametrize("mode", ["slaac", "dhcpv6-stateless", "dhcpv6-stateful"])
def test_ipv6_modes_are_kept(client: TestClient, net: dict[str, Any], mode: str) -> None:
    sub = subnet(client, net["id"], "fd00:2::/64", ipv6_ra_mode=mode, ipv6_address_mode=mode)
    assert (sub["ipv6_ra_mode"], sub["ipv6_address_mode"]) == (mode, mode)


def test_an_address_mode_alone_is_allowed(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], "fd00:2::/64", ipv6_address_mode="slaac")
    assert (sub["ipv6_ra_mode"], sub["ipv6_address_mode"]) == (None, "slaac")


@pytest.mark.parametrize(
    "attrs",
    [
        {"ipv6_ra_mode": "slaac", "ipv6_address_mode": "dhcpv6-stateful"},
        {"ipv6_address_mode": "slaac", "cidr": "fd00:3::/80"},
        {"ipv6_address_mode": "dhcpv6-stateless", "cidr": "fd00:3::/56"},
        {"ipv6_address_mode": "bogus"},
        {"ipv6_ra_mode": "slaac", "enable_dhcp": False},
        {"ip_version": 4},
        {"gateway_ip": "10.0.0.1"},
        {"allocation_pools": [{"start": "fd00:4::2", "end": "fd00:4::9"}]},
    ],
    ids=["modes-differ", "slaac-not-64", "stateless-not-64", "bogus-mode", "modes-without-dhcp",
         "version-mismatch", "v4-gateway", "pool-outside"],
)
def test_an_invalid_ipv6_layout_is_refused(
    client: TestClient, net: dict[str, Any], attrs: dict[str, Any]
) -> None:
    request = {"network_id": net["id"], "cidr": "fd00:3::/64", "ip_version": 6, **attrs}
    neutron_error(post_subnet(client, **request), 400)


def test_ipv6_modes_cannot_be_updated(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], "fd00:2::/64")
    neutron_error(update(client, sub["id"], ipv6_address_mode="slaac"), 400)


# --- updates -----------------------------------------------------------------------------------


def test_the_gateway_can_be_removed(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], "10.0.0.0/28")
    assert body(update(client, sub["id"], gateway_ip=None))["subnet"]["gateway_ip"] is None


def test_allocation_pools_can_be_replaced(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], "10.0.0.0/24")
    pools = [{"start": "10.0.0.50", "end": "10.0.0.60"}]
    assert body(update(client, sub["id"], allocation_pools=pools))["subnet"]["allocation_pools"] == pools


def test_a_new_gateway_inside_the_pools_conflicts(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], "10.0.0.0/24")
    neutron_error(update(client, sub["id"], gateway_ip="10.0.0.20"), 409,
                  "GatewayConflictWithAllocationPools")


def test_a_new_gateway_on_a_ports_address_conflicts(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], "10.0.0.0/24",
                 allocation_pools=[{"start": "10.0.0.10", "end": "10.0.0.20"}])
    port(client, net["id"], fixed_ips=[{"subnet_id": sub["id"], "ip_address": "10.0.0.5"}])
    neutron_error(update(client, sub["id"], gateway_ip="10.0.0.5"), 409)


@pytest.mark.parametrize(
    "attrs",
    [{"cidr": "10.9.0.0/24"}, {"network_id": UNKNOWN_ID}, {"ip_version": 6}, {"id": UNKNOWN_ID},
     {"subnetpool_id": None}],
)
def test_read_only_subnet_attributes_cannot_be_updated(
    client: TestClient, net: dict[str, Any], attrs: dict[str, Any]
) -> None:
    sub = subnet(client, net["id"])
    neutron_error(update(client, sub["id"], **attrs), 400)


# --- deletion ----------------------------------------------------------------------------------


def test_a_subnet_without_ports_can_be_deleted(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"])
    assert client.delete(f"/v2.0/subnets/{sub['id']}").status_code == 204
    neutron_error(client.get(f"/v2.0/subnets/{sub['id']}"), 404, "SubnetNotFound")
    assert body(client.get(f"/v2.0/networks/{net['id']}"))["network"]["subnets"] == []


def test_a_subnet_with_port_addresses_is_in_use(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"])
    port(client, net["id"])
    neutron_error(client.delete(f"/v2.0/subnets/{sub['id']}"), 409, "SubnetInUse")


def test_a_dhcp_port_does_not_keep_a_subnet_alive(client: TestClient, net: dict[str, Any]) -> None:
    # a network:dhcp port of the user's own (an external DHCP server's, say) on a subnet where the
    # server keeps none (its own DHCP port is specified in test_dhcp_ports.py)
    sub = subnet(client, net["id"], enable_dhcp=False)
    dhcp = port(client, net["id"], device_owner="network:dhcp")
    assert [f["subnet_id"] for f in dhcp["fixed_ips"]] == [sub["id"]]
    assert client.delete(f"/v2.0/subnets/{sub['id']}").status_code == 204
    neutron_error(client.get(f"/v2.0/subnets/{sub['id']}"), 404, "SubnetNotFound")


def test_a_dhcp_port_outlives_its_subnets_address(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], enable_dhcp=False)  # as in the test above
    dhcp = port(client, net["id"], device_owner="network:dhcp")
    assert client.delete(f"/v2.0/subnets/{sub['id']}").status_code == 204
    assert body(client.get(f"/v2.0/ports/{dhcp['id']}"))["port"]["fixed_ips"] == []


def test_a_slaac_subnet_can_be_deleted_under_its_ports(client: TestClient, net: dict[str, Any]) -> None:
    v4 = subnet(client, net["id"], "10.0.0.0/24")
    v6 = subnet(client, net["id"], "fd00:5::/64", ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    p = port(client, net["id"])
    assert {f["subnet_id"] for f in p["fixed_ips"]} == {v4["id"], v6["id"]}
    assert client.delete(f"/v2.0/subnets/{v6['id']}").status_code == 204
    fixed = body(client.get(f"/v2.0/ports/{p['id']}"))["port"]["fixed_ips"]
    assert [f["subnet_id"] for f in fixed] == [v4["id"]]
