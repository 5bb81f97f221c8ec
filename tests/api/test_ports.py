"""Specification of ports: addresses from IPAM (pools, requested addresses, SLAAC), MAC
addresses, device and state attributes, binding, port security with security groups and
allowed address pairs, extra DHCP options, updates and deletion."""

from __future__ import annotations

from typing import Any

import netaddr
import pytest
from fastapi.testclient import TestClient

from api.helpers import (
    UNKNOWN_ID,
    body,
    ips,
    network,
    neutron_error,
    port,
    security_group,
    subnet,
)


@pytest.fixture
def net(client: TestClient) -> dict[str, Any]:
    return network(client)


@pytest.fixture
def v4(client: TestClient, net: dict[str, Any]) -> dict[str, Any]:
    return subnet(client, net["id"], "10.0.0.0/24")


@pytest.fixture
def ipam_v4(client: TestClient, net: dict[str, Any]) -> dict[str, Any]:
    """A subnet without DHCP, for the IPAM tests: its whole pool (.2-.254) is left to the
    test's ports (a DHCP port, see test_dhcp_ports.py, would hold .2)."""
    return subnet(client, net["id"], "10.0.0.0/24", enable_dhcp=False)


def post_port(client: TestClient, **attrs: Any) -> Any:
    return client.post("/v2.0/ports", json={"port": attrs})


def update(client: TestClient, port_id: str, **attrs: Any) -> Any:
    return client.put(f"/v2.0/ports/{port_id}", json={"port": attrs})


def default_group_id(client: TestClient) -> str:
    groups = body(client.get("/v2.0/security-groups?name=default"))["security_groups"]
    assert len(groups) == 1
    group_id: str = groups[0]["id"]
    return group_id


# --- defaults ------------------------------------------------------------------------------------


def test_a_new_port_has_neutrons_defaults(client: TestClient, net: dict[str, Any],
                                          v4: dict[str, Any]) -> None:
    p = port(client, net["id"], name="vm")
    assert p["name"] == "vm"
    assert p["network_id"] == net["id"]
    assert p["admin_state_up"] is True
    assert p["status"] == "DOWN"
    assert p["device_id"] == ""
    assert p["device_owner"] == ""
    assert p["binding:host_id"] == ""
    assert p["binding:vnic_type"] == "normal"
    assert p["binding:profile"] == {}
    assert p["binding:vif_type"] == "unbound"
    assert p["binding:vif_details"] == {}
    assert p["port_security_enabled"] is True
    assert p["allowed_address_pairs"] == []
    assert p["extra_dhcp_opts"] == []
    assert p["security_groups"] == [default_group_id(client)]
    # the lowest free address: .1 is the gateway, .2 the network's DHCP port
    assert p["fixed_ips"] == [{"subnet_id": v4["id"], "ip_address": "10.0.0.3"}]


def test_a_port_on_a_network_without_subnets_has_no_addresses(
    client: TestClient, net: dict[str, Any]
) -> None:
    assert port(client, net["id"])["fixed_ips"] == []


def test_a_port_needs_an_existing_network(client: TestClient) -> None:
    neutron_error(post_port(client, network_id=UNKNOWN_ID), 404, "NetworkNotFound")
    neutron_error(post_port(client), 400)


# --- IPAM ----------------------------------------------------------------------------------------


def test_ports_take_successive_addresses_from_the_pool(
    client: TestClient, net: dict[str, Any], ipam_v4: dict[str, Any]
) -> None:
    addresses = [ips(port(client, net["id"]))[0] for _ in range(3)]
    assert addresses == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]


def test_addresses_come_only_from_the_allocation_pools(client: TestClient, net: dict[str, Any]) -> None:
    subnet(client, net["id"], "10.0.0.0/24", enable_dhcp=False,  # every pool address for the ports
           allocation_pools=[{"start": "10.0.0.100", "end": "10.0.0.101"},
                             {"start": "10.0.0.200", "end": "10.0.0.200"}])
    addresses = [ips(port(client, net["id"]))[0] for _ in range(3)]
    assert addresses == ["10.0.0.100", "10.0.0.101", "10.0.0.200"]


def test_a_port_may_ask_for_an_address(client: TestClient, net: dict[str, Any],
                                       v4: dict[str, Any]) -> None:
    p = port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.77"}])
    assert p["fixed_ips"] == [{"subnet_id": v4["id"], "ip_address": "10.0.0.77"}]


def test_a_requested_address_may_lie_outside_the_pools(client: TestClient, net: dict[str, Any]) -> None:
    sub = subnet(client, net["id"], "10.0.0.0/24",
                 allocation_pools=[{"start": "10.0.0.100", "end": "10.0.0.110"}])
    p = port(client, net["id"], fixed_ips=[{"subnet_id": sub["id"], "ip_address": "10.0.0.5"}])
    assert ips(p) == ["10.0.0.5"]


def test_a_port_may_ask_for_a_subnet_only(client: TestClient, net: dict[str, Any]) -> None:
    subnet(client, net["id"], "10.0.0.0/24", enable_dhcp=False)
    second = subnet(client, net["id"], "10.0.1.0/24", enable_dhcp=False)  # .2 is free
    p = port(client, net["id"], fixed_ips=[{"subnet_id": second["id"]}])
    assert p["fixed_ips"] == [{"subnet_id": second["id"], "ip_address": "10.0.1.2"}]


def test_a_port_may_hold_several_addresses_of_one_subnet(
    client: TestClient, net: dict[str, Any], ipam_v4: dict[str, Any]
) -> None:
    p = port(client, net["id"], fixed_ips=[{"subnet_id": ipam_v4["id"]}, {"subnet_id": ipam_v4["id"]},
                                            {"ip_address": "10.0.0.9"}])
    assert ips(p) == ["10.0.0.2", "10.0.0.3", "10.0.0.9"]


def test_an_address_in_use_conflicts(client: TestClient, net: dict[str, Any], v4: dict[str, Any]) -> None:
    port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.77"}])
    response = post_port(client, network_id=net["id"], fixed_ips=[{"ip_address": "10.0.0.77"}])
    neutron_error(response, 409, "IpAddressAlreadyAllocated")


def test_an_automatic_address_skips_requested_ones(
    client: TestClient, net: dict[str, Any], ipam_v4: dict[str, Any]
) -> None:
    port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.2"}])
    assert ips(port(client, net["id"])) == ["10.0.0.3"]


@pytest.mark.parametrize(
    "fixed_ips",
    [
        [{"ip_address": "10.0.5.5"}],  # in no subnet of the network
        [{"ip_address": "10.0.0.0"}],  # the network address
        [{"ip_address": "10.0.0.255"}],  # the broadcast address
        [{"ip_address": "not-an-ip"}],
        [{"subnet_id": "not-a-uuid"}],
        [{"subnet_id": UNKNOWN_ID}],
        [{"ip_address": "10.0.0.9"}, {"ip_address": "10.0.0.9"}],
        [{"ip": "10.0.0.9"}],
        [{}],
        "10.0.0.9",
    ],
    ids=["no-subnet", "network-address", "broadcast", "garbage", "bad-subnet-id",
         "unknown-subnet", "duplicate", "unknown-key", "empty", "not-a-list"],
)
def test_an_invalid_fixed_ip_is_a_bad_request(
    client: TestClient, net: dict[str, Any], v4: dict[str, Any], fixed_ips: Any
) -> None:
    neutron_error(post_port(client, network_id=net["id"], fixed_ips=fixed_ips), 400)


def test_a_subnet_of_another_network_is_a_bad_request(
    client: TestClient, net: dict[str, Any], v4: dict[str, Any]
) -> None:
    other = network(client)
    foreign = subnet(client, other["id"], "10.9.0.0/24")
    response = post_port(client, network_id=net["id"], fixed_ips=[{"subnet_id": foreign["id"]}])
    neutron_error(response, 400)


def test_a_full_subnet_gives_ip_address_generation_failure(
    client: TestClient, net: dict[str, Any]
) -> None:
    subnet(client, net["id"], "10.0.0.0/29", enable_dhcp=False)  # pool .2-.6, all for the ports
    taken = [ips(port(client, net["id"]))[0] for _ in range(5)]
    assert taken == [f"10.0.0.{i}" for i in range(2, 7)]
    neutron_error(post_port(client, network_id=net["id"]), 409, "IpAddressGenerationFailure")


def test_deleting_a_port_frees_its_address(client: TestClient, net: dict[str, Any]) -> None:
    subnet(client, net["id"], "10.0.0.0/29", enable_dhcp=False)  # pool .2-.6, all for the ports
    ports = [port(client, net["id"]) for _ in range(5)]
    assert client.delete(f"/v2.0/ports/{ports[2]['id']}").status_code == 204
    assert ips(port(client, net["id"])) == ips(ports[2])


def test_a_dual_stack_network_gives_one_address_of_each_version(client: TestClient,
                                                                net: dict[str, Any]) -> None:
    a = subnet(client, net["id"], "10.0.0.0/24", enable_dhcp=False)  # .2 left free
    b = subnet(client, net["id"], "fd00:1::/64")
    c = subnet(client, net["id"], "10.0.1.0/24", enable_dhcp=False)
    p = port(client, net["id"])
    v4, v6 = p["fixed_ips"]
    assert v4 in ({"subnet_id": a["id"], "ip_address": "10.0.0.2"},
                  {"subnet_id": c["id"], "ip_address": "10.0.1.2"})
    assert v6 == {"subnet_id": b["id"], "ip_address": "fd00:1::2"}


def test_a_slaac_subnet_gives_the_eui64_address_of_the_mac(client: TestClient,
                                                           net: dict[str, Any]) -> None:
    v6 = subnet(client, net["id"], "2001:db8::/64", ipv6_ra_mode="slaac",
                ipv6_address_mode="slaac")
    p = port(client, net["id"], mac_address="fa:16:3e:12:34:56")
    assert p["fixed_ips"] == [{"subnet_id": v6["id"], "ip_address": "2001:db8::f816:3eff:fe12:3456"}]
    generated = port(client, net["id"])
    expected = str(netaddr.EUI(generated["mac_address"]).ipv6(netaddr.IPAddress("2001:db8::")))
    assert ips(generated) == [expected]


def test_a_slaac_address_cannot_be_chosen(client: TestClient, net: dict[str, Any]) -> None:
    subnet(client, net["id"], "2001:db8::/64", ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    response = post_port(client, network_id=net["id"], fixed_ips=[{"ip_address": "2001:db8::99"}])
    neutron_error(response, 400)


def test_a_new_slaac_subnet_addresses_existing_ports(client: TestClient, net: dict[str, Any],
                                                     v4: dict[str, Any]) -> None:
    p = port(client, net["id"], mac_address="fa:16:3e:00:00:01")
    v6 = subnet(client, net["id"], "2001:db8::/64", ipv6_address_mode="slaac",
                ipv6_ra_mode="slaac")
    fixed = body(client.get(f"/v2.0/ports/{p['id']}"))["port"]["fixed_ips"]
    assert {"subnet_id": v6["id"], "ip_address": "2001:db8::f816:3eff:fe00:1"} in fixed


def test_a_dhcpv6_stateful_subnet_allocates_from_its_pool(client: TestClient,
                                                          net: dict[str, Any]) -> None:
    subnet(client, net["id"], "fd00:7::/64", ipv6_ra_mode="dhcpv6-stateful",
           ipv6_address_mode="dhcpv6-stateful")
    assert ips(port(client, net["id"])) == ["fd00:7::2"]


# --- MAC addresses -------------------------------------------------------------------------------


def test_a_generated_mac_starts_with_the_base_mac(client: TestClient, net: dict[str, Any]) -> None:
    macs = {port(client, net["id"])["mac_address"] for _ in range(5)}
    assert len(macs) == 5
    assert all(mac.startswith("fa:16:3e:") and len(mac) == 17 for mac in macs)


def test_a_given_mac_is_kept_in_lower_case(client: TestClient, net: dict[str, Any]) -> None:
    assert port(client, net["id"], mac_address="FA:16:3E:AA:BB:CC")["mac_address"] == "fa:16:3e:aa:bb:cc"


def test_a_mac_in_use_on_the_network_conflicts(client: TestClient, net: dict[str, Any]) -> None:
    port(client, net["id"], mac_address="fa:16:3e:aa:bb:cc")
    response = post_port(client, network_id=net["id"], mac_address="fa:16:3e:aa:bb:cc")
    neutron_error(response, 409, "MacAddressInUse")


def test_the_same_mac_on_another_network_is_fine(client: TestClient, net: dict[str, Any]) -> None:
    port(client, net["id"], mac_address="fa:16:3e:aa:bb:cc")
    other = network(client)
    assert port(client, other["id"], mac_address="fa:16:3e:aa:bb:cc")["mac_address"] == "fa:16:3e:aa:bb:cc"


@pytest.mark.parametrize("mac", ["not-a-mac", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", 12])
def test_an_invalid_mac_is_a_bad_request(client: TestClient, net: dict[str, Any], mac: Any) -> None:
    neutron_error(post_port(client, network_id=net["id"], mac_address=mac), 400)


def test_a_mac_can_be_changed_but_not_to_one_in_use(client: TestClient, net: dict[str, Any]) -> None:
    a = port(client, net["id"], mac_address="fa:16:3e:00:00:0a")
    b = port(client, net["id"])
    assert body(update(client, b["id"], mac_address="fa:16:3e:00:00:0b"))["port"]["mac_address"] == (
        "fa:16:3e:00:00:0b")
    neutron_error(update(client, b["id"], mac_address=a["mac_address"]), 409, "MacAddressInUse")


# --- device, state, binding ----------------------------------------------------------------------


def test_device_id_and_owner_are_kept_and_updatable(client: TestClient, net: dict[str, Any]) -> None:
    p = port(client, net["id"], device_id="vm-1", device_owner="compute:nova")
    assert (p["device_id"], p["device_owner"]) == ("vm-1", "compute:nova")
    updated = body(update(client, p["id"], device_id="vm-2", device_owner=""))["port"]
    assert (updated["device_id"], updated["device_owner"]) == ("vm-2", "")


def test_a_port_can_be_disabled(client: TestClient, net: dict[str, Any]) -> None:
    p = port(client, net["id"], admin_state_up=False)
    assert p["admin_state_up"] is False
    assert body(update(client, p["id"], admin_state_up=True))["port"]["admin_state_up"] is True


def test_status_is_read_only(client: TestClient, net: dict[str, Any]) -> None:
    neutron_error(post_port(client, network_id=net["id"], status="ACTIVE"), 400)
    p = port(client, net["id"])
    neutron_error(update(client, p["id"], status="ACTIVE"), 400)


def test_binding_a_port_to_a_host_sets_its_vif(client: TestClient, net: dict[str, Any]) -> None:
    p = port(client, net["id"], **{"binding:host_id": "compute-1",
                                   "binding:profile": {"local_link_information": []}})
    assert p["binding:host_id"] == "compute-1"
    assert p["binding:vif_type"] == "ovs"
    assert p["binding:vif_details"]["port_filter"] is True
    assert p["binding:profile"] == {"local_link_information": []}
    unbound = body(update(client, p["id"], **{"binding:host_id": ""}))["port"]
    assert (unbound["binding:vif_type"], unbound["binding:vif_details"]) == ("unbound", {})


def test_a_direct_vnic_binds_as_sriov(client: TestClient, net: dict[str, Any]) -> None:
    p = port(client, net["id"], **{"binding:host_id": "compute-1", "binding:vnic_type": "direct"})
    assert (p["binding:vnic_type"], p["binding:vif_type"]) == ("direct", "hw_veb")


@pytest.mark.parametrize("attrs", [{"binding:vnic_type": "fancy"}, {"binding:profile": "x"},
                                   {"binding:vif_type": "ovs"}, {"binding:vif_details": {}}])
def test_invalid_binding_attributes_are_refused(
    client: TestClient, net: dict[str, Any], attrs: dict[str, Any]
) -> None:
    neutron_error(post_port(client, network_id=net["id"], **attrs), 400)


# --- security groups and port security -----------------------------------------------------------


def test_a_port_gets_the_groups_it_asks_for(client: TestClient, net: dict[str, Any]) -> None:
    web, db = security_group(client, name="web"), security_group(client, name="db")
    p = port(client, net["id"], security_groups=[web["id"], db["id"]])
    assert sorted(p["security_groups"]) == sorted([web["id"], db["id"]])


def test_an_empty_group_list_means_no_groups(client: TestClient, net: dict[str, Any]) -> None:
    assert port(client, net["id"], security_groups=[])["security_groups"] == []


def test_an_unknown_security_group_is_not_found(client: TestClient, net: dict[str, Any]) -> None:
    response = post_port(client, network_id=net["id"], security_groups=[UNKNOWN_ID])
    neutron_error(response, 404, "SecurityGroupNotFound")


def test_a_network_service_port_gets_no_default_group(client: TestClient, net: dict[str, Any]) -> None:
    assert port(client, net["id"], device_owner="network:dhcp")["security_groups"] == []


def test_a_port_inherits_port_security_from_its_network(client: TestClient) -> None:
    net = network(client, port_security_enabled=False)
    p = port(client, net["id"])
    assert p["port_security_enabled"] is False
    assert p["security_groups"] == []


def test_a_port_without_port_security_cannot_ask_for_groups(client: TestClient,
                                                            net: dict[str, Any]) -> None:
    group = security_group(client)
    response = post_port(client, network_id=net["id"], port_security_enabled=False,
                         security_groups=[group["id"]])
    neutron_error(response, 400, "PortSecurityAndIPRequiredForSecurityGroups")


def test_a_port_without_port_security_cannot_have_address_pairs(client: TestClient,
                                                                net: dict[str, Any]) -> None:
    response = post_port(client, network_id=net["id"], port_security_enabled=False,
                         security_groups=[], allowed_address_pairs=[{"ip_address": "10.0.0.9"}])
    neutron_error(response, 409, "AddressPairAndPortSecurityRequired")


def test_port_security_cannot_be_disabled_while_groups_remain(client: TestClient,
                                                              net: dict[str, Any]) -> None:
    p = port(client, net["id"])
    neutron_error(update(client, p["id"], port_security_enabled=False), 409,
                  "PortSecurityPortHasSecurityGroup")


def test_port_security_cannot_be_disabled_while_asking_for_groups(client: TestClient,
                                                                  net: dict[str, Any]) -> None:
    p = port(client, net["id"])
    response = update(client, p["id"], port_security_enabled=False,
                      security_groups=p["security_groups"])
    neutron_error(response, 400, "PortSecurityAndIPRequiredForSecurityGroups")


def test_port_security_cannot_be_disabled_while_address_pairs_remain(
    client: TestClient, net: dict[str, Any]
) -> None:
    p = port(client, net["id"], allowed_address_pairs=[{"ip_address": "10.0.0.9"}])
    response = update(client, p["id"], port_security_enabled=False, security_groups=[])
    neutron_error(response, 409, "AddressPairAndPortSecurityRequired")


def test_port_security_is_disabled_together_with_removing_groups_and_pairs(
    client: TestClient, net: dict[str, Any]
) -> None:
    p = port(client, net["id"], allowed_address_pairs=[{"ip_address": "10.0.0.9"}])
    updated = body(update(client, p["id"], port_security_enabled=False, security_groups=[],
                          allowed_address_pairs=[]))["port"]
    assert updated["port_security_enabled"] is False
    assert updated["security_groups"] == updated["allowed_address_pairs"] == []
    enabled = body(update(client, p["id"], port_security_enabled=True))["port"]
    assert enabled["port_security_enabled"] is True
    assert enabled["security_groups"] == []


def test_security_groups_can_be_replaced(client: TestClient, net: dict[str, Any]) -> None:
    p = port(client, net["id"])
    web = security_group(client)
    assert body(update(client, p["id"], security_groups=[web["id"]]))["port"]["security_groups"] == [
        web["id"]]
    assert body(update(client, p["id"], security_groups=[]))["port"]["security_groups"] == []


# --- allowed address pairs and extra DHCP options -------------------------------------------------


def test_an_address_pair_without_a_mac_takes_the_ports_mac(client: TestClient,
                                                           net: dict[str, Any]) -> None:
    p = port(client, net["id"], mac_address="fa:16:3e:00:00:01",
             allowed_address_pairs=[{"ip_address": "10.0.0.9"},
                                    {"ip_address": "10.1.0.0/24", "mac_address": "fa:16:3e:00:00:99"}])
    assert p["allowed_address_pairs"] == [
        {"ip_address": "10.0.0.9", "mac_address": "fa:16:3e:00:00:01"},
        {"ip_address": "10.1.0.0/24", "mac_address": "fa:16:3e:00:00:99"},
    ]
    updated = body(update(client, p["id"], allowed_address_pairs=[{"ip_address": "fd00::9"}]))["port"]
    assert updated["allowed_address_pairs"] == [{"ip_address": "fd00::9",
                                                 "mac_address": "fa:16:3e:00:00:01"}]


@pytest.mark.parametrize(
    "pairs",
    [[{"mac_address": "fa:16:3e:00:00:01"}], [{"ip_address": "nope"}],
     [{"ip_address": "10.0.0.9"}, {"ip_address": "10.0.0.9"}], {"ip_address": "10.0.0.9"},
     [{"ip_address": f"10.0.0.{i}"} for i in range(11)]],
    ids=["no-ip", "bad-ip", "duplicate", "not-a-list", "too-many"],
)
def test_invalid_address_pairs_are_refused(client: TestClient, net: dict[str, Any], pairs: Any) -> None:
    neutron_error(post_port(client, network_id=net["id"], allowed_address_pairs=pairs), 400)


def test_extra_dhcp_options_are_kept_with_their_ip_version(client: TestClient,
                                                           net: dict[str, Any]) -> None:
    p = port(client, net["id"], extra_dhcp_opts=[
        {"opt_name": "mtu", "opt_value": "1400"},
        {"opt_name": "dns-server", "opt_value": "fd00::53", "ip_version": 6},
    ])
    assert p["extra_dhcp_opts"] == [
        {"opt_name": "mtu", "opt_value": "1400", "ip_version": 4},
        {"opt_name": "dns-server", "opt_value": "fd00::53", "ip_version": 6},
    ]


def test_an_extra_dhcp_option_without_a_value_is_not_stored(client: TestClient,
                                                            net: dict[str, Any]) -> None:
    p = port(client, net["id"], extra_dhcp_opts=[{"opt_name": "mtu", "opt_value": None}])
    assert p["extra_dhcp_opts"] == []


def test_updating_extra_dhcp_options_merges_them_by_name(client: TestClient,
                                                         net: dict[str, Any]) -> None:
    p = port(client, net["id"], extra_dhcp_opts=[{"opt_name": "mtu", "opt_value": "1400"},
                                                  {"opt_name": "domain-name", "opt_value": "a"}])
    updated = body(update(client, p["id"], extra_dhcp_opts=[
        {"opt_name": "mtu", "opt_value": "1300"},  # changed
        {"opt_name": "domain-name", "opt_value": None},  # removed
        {"opt_name": "ntp-server", "opt_value": "10.0.0.1"},  # added
    ]))["port"]
    assert sorted(updated["extra_dhcp_opts"], key=lambda o: o["opt_name"]) == [
        {"opt_name": "mtu", "opt_value": "1300", "ip_version": 4},
        {"opt_name": "ntp-server", "opt_value": "10.0.0.1", "ip_version": 4},
    ]


@pytest.mark.parametrize("opts", [[{"opt_name": "mtu"}], [{"opt_value": "1"}], "mtu=1",
                                  [{"opt_name": "mtu", "opt_value": "1", "ip_version": 5}]])
def test_invalid_extra_dhcp_options_are_refused(client: TestClient, net: dict[str, Any],
                                                opts: Any) -> None:
    neutron_error(post_port(client, network_id=net["id"], extra_dhcp_opts=opts), 400)


# --- updating addresses --------------------------------------------------------------------------


def test_changing_fixed_ips_frees_the_old_address(client: TestClient, net: dict[str, Any],
                                                  ipam_v4: dict[str, Any]) -> None:
    a = port(client, net["id"])
    assert ips(a) == ["10.0.0.2"]
    moved = body(update(client, a["id"], fixed_ips=[{"ip_address": "10.0.0.50"}]))["port"]
    assert ips(moved) == ["10.0.0.50"]
    b = port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.2"}])
    assert ips(b) == ["10.0.0.2"]
    neutron_error(post_port(client, network_id=net["id"], fixed_ips=[{"ip_address": "10.0.0.50"}]),
                  409, "IpAddressAlreadyAllocated")


def test_a_port_keeps_its_address_when_asking_for_it_again(client: TestClient, net: dict[str, Any],
                                                           ipam_v4: dict[str, Any]) -> None:
    a = port(client, net["id"])
    same = body(update(client, a["id"],
                       fixed_ips=a["fixed_ips"] + [{"subnet_id": ipam_v4["id"]}]))["port"]
    assert ips(same) == ["10.0.0.2", "10.0.0.3"]


def test_moving_to_an_address_in_use_conflicts_and_changes_nothing(
    client: TestClient, net: dict[str, Any], v4: dict[str, Any]
) -> None:
    a, b = port(client, net["id"]), port(client, net["id"])
    neutron_error(update(client, a["id"], fixed_ips=b["fixed_ips"]), 409, "IpAddressAlreadyAllocated")
    assert body(client.get(f"/v2.0/ports/{a['id']}"))["port"]["fixed_ips"] == a["fixed_ips"]


def test_removing_all_fixed_ips_frees_them(client: TestClient, net: dict[str, Any],
                                           v4: dict[str, Any]) -> None:
    a = port(client, net["id"])
    assert body(update(client, a["id"], fixed_ips=[]))["port"]["fixed_ips"] == []
    assert ips(port(client, net["id"])) == ips(a)


def test_a_slaac_address_survives_a_change_of_the_ipv4_address(
    client: TestClient, net: dict[str, Any], v4: dict[str, Any]
) -> None:
    v6 = subnet(client, net["id"], "2001:db8::/64", ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    p = port(client, net["id"], mac_address="fa:16:3e:00:00:01")
    updated = body(update(client, p["id"], fixed_ips=[{"ip_address": "10.0.0.50"}]))["port"]
    assert {"subnet_id": v6["id"], "ip_address": "2001:db8::f816:3eff:fe00:1"} in updated["fixed_ips"]
    assert {"subnet_id": v4["id"], "ip_address": "10.0.0.50"} in updated["fixed_ips"]


@pytest.mark.parametrize("attrs", [{"network_id": UNKNOWN_ID}, {"id": UNKNOWN_ID},
                                   {"binding:vif_type": "ovs"}, {"tenant_id": "x"}])
def test_read_only_port_attributes_cannot_be_updated(client: TestClient, net: dict[str, Any],
                                                     attrs: dict[str, Any]) -> None:
    p = port(client, net["id"])
    neutron_error(update(client, p["id"], **attrs), 400)


# --- deletion ------------------------------------------------------------------------------------


def test_a_deleted_port_is_gone(client: TestClient, net: dict[str, Any], v4: dict[str, Any]) -> None:
    p = port(client, net["id"])
    assert client.delete(f"/v2.0/ports/{p['id']}").status_code == 204
    neutron_error(client.get(f"/v2.0/ports/{p['id']}"), 404, "PortNotFound")
    neutron_error(client.delete(f"/v2.0/ports/{p['id']}"), 404, "PortNotFound")
    assert client.delete(f"/v2.0/subnets/{v4['id']}").status_code == 204


def test_a_subnet_advertising_slaac_without_an_address_mode_gives_eui64_addresses(
    client: TestClient, net: dict[str, Any]
) -> None:
    v6 = subnet(client, net["id"], "2001:db8::/64", ipv6_ra_mode="slaac")
    p = port(client, net["id"], mac_address="fa:16:3e:12:34:56")
    assert p["fixed_ips"] == [{"subnet_id": v6["id"], "ip_address": "2001:db8::f816:3eff:fe12:3456"}]


def test_changing_the_mac_moves_the_slaac_address(client: TestClient, net: dict[str, Any],
                                                  v4: dict[str, Any]) -> None:
    v6 = subnet(client, net["id"], "2001:db8::/64", ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    p = port(client, net["id"], mac_address="fa:16:3e:00:00:01")
    updated = body(update(client, p["id"], mac_address="fa:16:3e:00:00:02"))["port"]
    assert sorted(updated["fixed_ips"], key=lambda f: f["ip_address"]) == [
        {"subnet_id": v4["id"], "ip_address": ips(p)[0]},
        {"subnet_id": v6["id"], "ip_address": "2001:db8::f816:3eff:fe00:2"},
    ]


def test_a_router_port_may_take_the_gateway_address_and_gets_no_slaac_address(
    client: TestClient, net: dict[str, Any], v4: dict[str, Any]
) -> None:
    subnet(client, net["id"], "2001:db8::/64", ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    router = port(client, net["id"], device_owner="network:router_interface",
                  fixed_ips=[{"subnet_id": v4["id"], "ip_address": "10.0.0.1"}])
    assert router["fixed_ips"] == [{"subnet_id": v4["id"], "ip_address": "10.0.0.1"}]
    assert router["security_groups"] == []
