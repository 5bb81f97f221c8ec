"""Specification of the network's DHCP port, kept by the server as Neutron's DHCP agent keeps it:
one port per network with a DHCP-enabled IPv4 subnet (device_owner `network:dhcp`, device_id
`dhcp-<network id>`, owned by the network's project, ACTIVE, unbound, without port security),
holding the lowest free address of each such subnet. It follows the subnets' creation, DHCP
switch and deletion in the same transaction, never blocks deleting a subnet or the network,
and is seen only by the network's project (and admins)."""

from __future__ import annotations

from typing import Any

import netaddr
import pytest
from fastapi.testclient import TestClient

from api.helpers import (
    ADMIN,
    as_project,
    body,
    ips,
    network,
    neutron_error,
    outbox_changes,
    port,
    snapshot,
    subnet,
)
from api.test_transactions import Recorder, change
from neutrino.db.engine import Database

P1 = as_project("p1")
P2 = as_project("p2")
DHCP = "network:dhcp"


def dhcp_ports(client: TestClient, network_id: str,
               headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The network:dhcp ports of a network, as `headers` (admin by default) sees them."""
    ports: list[dict[str, Any]] = body(client.get(
        f"/v2.0/ports?network_id={network_id}&device_owner={DHCP}", headers=headers))["ports"]
    return ports


def the_dhcp_port(client: TestClient, network_id: str) -> dict[str, Any]:
    [dhcp] = dhcp_ports(client, network_id)
    return dhcp


def update_subnet(client: TestClient, subnet_id: str, headers: dict[str, str] | None = None,
                  **attrs: Any) -> dict[str, Any]:
    updated: dict[str, Any] = body(client.put(f"/v2.0/subnets/{subnet_id}",
                                              json={"subnet": attrs}, headers=headers))["subnet"]
    return updated


def fixed(*pairs: tuple[dict[str, Any], str]) -> list[dict[str, str]]:
    return [{"subnet_id": sub["id"], "ip_address": address} for sub, address in pairs]


def holders(client: TestClient, subnet_id: str) -> dict[str, list[str]]:
    """port id -> its addresses on the subnet, for every port holding one (admin's view)."""
    listed = body(client.get(f"/v2.0/ports?fixed_ips=subnet_id={subnet_id}"))["ports"]
    return {p["id"]: [f["ip_address"] for f in p["fixed_ips"] if f["subnet_id"] == subnet_id]
            for p in listed}


# --- creation -------------------------------------------------------------------------------------


def test_the_first_dhcp_subnet_brings_the_networks_dhcp_port(client: TestClient) -> None:
    net = network(client, headers=P1)
    sub = subnet(client, net["id"], "10.0.0.0/24", headers=P1)
    dhcp = the_dhcp_port(client, net["id"])  # as admin: the binding attributes are shown
    assert dhcp["device_owner"] == "network:dhcp"
    assert dhcp["device_id"] == f"dhcp-{net['id']}"
    assert dhcp["project_id"] == dhcp["tenant_id"] == "p1"
    assert dhcp["network_id"] == net["id"]
    assert dhcp["status"] == "ACTIVE"
    assert dhcp["admin_state_up"] is True
    assert dhcp["fixed_ips"] == fixed((sub, "10.0.0.2"))  # .1 is the gateway
    assert dhcp["binding:host_id"] == ""
    assert dhcp["binding:vif_type"] == "unbound"
    assert dhcp["port_security_enabled"] is False
    assert dhcp["security_groups"] == []
    assert dhcp["allowed_address_pairs"] == []
    assert netaddr.EUI(dhcp["mac_address"]).words[:3] == (0xFA, 0x16, 0x3E)  # the base MAC
    # the first port of the project's own then takes the next address
    assert ips(port(client, net["id"], headers=P1)) == ["10.0.0.3"]


def test_a_subnet_created_by_an_admin_gives_the_port_to_the_networks_project(
    client: TestClient
) -> None:
    net = network(client, headers=P1)
    subnet(client, net["id"], "10.0.0.0/24")  # as admin
    assert the_dhcp_port(client, net["id"])["project_id"] == "p1"
    # and it makes no default security group for anyone: the DHCP port has no groups
    groups = body(client.get("/v2.0/security-groups", headers=ADMIN))["security_groups"]
    assert {g["project_id"] for g in groups} <= {"admin-project"}


def test_the_dhcp_port_takes_the_lowest_free_address_of_the_pools(client: TestClient) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/24",
                 allocation_pools=[{"start": "10.0.0.200", "end": "10.0.0.210"},
                                   {"start": "10.0.0.50", "end": "10.0.0.60"}])
    assert the_dhcp_port(client, net["id"])["fixed_ips"] == fixed((sub, "10.0.0.50"))


def test_the_dhcp_port_skips_addresses_already_held(client: TestClient) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/24", enable_dhcp=False)
    port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.2"}])
    port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.4"}])
    update_subnet(client, sub["id"], enable_dhcp=True)
    assert the_dhcp_port(client, net["id"])["fixed_ips"] == fixed((sub, "10.0.0.3"))


def test_a_second_dhcp_subnet_adds_an_address_to_the_same_port(client: TestClient) -> None:
    net = network(client)
    a = subnet(client, net["id"], "10.0.0.0/24")
    first = the_dhcp_port(client, net["id"])
    b = subnet(client, net["id"], "10.0.1.0/24")
    second = the_dhcp_port(client, net["id"])
    assert second["id"] == first["id"]
    assert second["mac_address"] == first["mac_address"]
    assert second["fixed_ips"] == fixed((a, "10.0.0.2"), (b, "10.0.1.2"))
    assert second["revision_number"] > first["revision_number"]


@pytest.mark.parametrize(
    "attrs",
    [
        {"cidr": "10.0.0.0/24", "enable_dhcp": False},
        {"cidr": "fd00:1::/64"},
        {"cidr": "fd00:1::/64", "ipv6_ra_mode": "dhcpv6-stateful",
         "ipv6_address_mode": "dhcpv6-stateful"},
        {"cidr": "fd00:1::/64", "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"},
        {"cidr": "fd00:1::/64", "enable_dhcp": False},
    ],
    ids=["ipv4-without-dhcp", "ipv6", "ipv6-dhcpv6-stateful", "ipv6-slaac", "ipv6-without-dhcp"],
)
def test_other_subnets_bring_no_dhcp_port(client: TestClient, attrs: dict[str, Any]) -> None:
    net = network(client)
    sub = subnet(client, net["id"], **attrs)
    assert body(client.get(f"/v2.0/ports?network_id={net['id']}"))["ports"] == []
    # nor do they get an address on an existing DHCP port... except by SLAAC (see below)
    v4 = subnet(client, net["id"], "10.9.0.0/24")
    dhcp = the_dhcp_port(client, net["id"])
    assert fixed((v4, "10.9.0.2"))[0] in dhcp["fixed_ips"]
    if "slaac" not in attrs.values():
        assert sub["id"] not in {f["subnet_id"] for f in dhcp["fixed_ips"]}


@pytest.mark.parametrize("slaac_first", [False, True], ids=["ipv4-first", "slaac-first"])
def test_the_dhcp_port_has_its_slaac_address_like_every_port(client: TestClient,
                                                            slaac_first: bool) -> None:
    net = network(client)

    def slaac() -> dict[str, Any]:
        return subnet(client, net["id"], "2001:db8::/64", ipv6_ra_mode="slaac",
                      ipv6_address_mode="slaac")

    v6 = slaac() if slaac_first else None
    v4 = subnet(client, net["id"], "10.0.0.0/24")
    v6 = v6 or slaac()
    dhcp = the_dhcp_port(client, net["id"])
    eui64 = str(netaddr.EUI(dhcp["mac_address"]).ipv6(netaddr.IPAddress("2001:db8::")))
    assert sorted(dhcp["fixed_ips"], key=lambda f: f["subnet_id"] != v4["id"]) == fixed(
        (v4, "10.0.0.2"), (v6, eui64))


# --- the DHCP switch ------------------------------------------------------------------------------


def test_disabling_dhcp_takes_the_address_and_with_the_last_one_the_port(
    client: TestClient
) -> None:
    net = network(client)
    a = subnet(client, net["id"], "10.0.0.0/24")
    b = subnet(client, net["id"], "10.0.1.0/24")
    dhcp = the_dhcp_port(client, net["id"])

    assert update_subnet(client, a["id"], enable_dhcp=False)["enable_dhcp"] is False
    kept = the_dhcp_port(client, net["id"])
    assert kept["id"] == dhcp["id"]
    assert kept["fixed_ips"] == fixed((b, "10.0.1.2"))
    assert kept["revision_number"] > dhcp["revision_number"]
    # the address is free again
    assert ips(port(client, net["id"], fixed_ips=[{"subnet_id": a["id"]}])) == ["10.0.0.2"]

    update_subnet(client, b["id"], enable_dhcp=False)
    assert dhcp_ports(client, net["id"]) == []
    neutron_error(client.get(f"/v2.0/ports/{dhcp['id']}"), 404, "PortNotFound")
    assert holders(client, b["id"]) == {}


def test_enabling_dhcp_again_brings_the_port_back(client: TestClient) -> None:
    net = network(client, headers=P1)
    sub = subnet(client, net["id"], "10.0.0.0/24", headers=P1)
    update_subnet(client, sub["id"], headers=P1, enable_dhcp=False)
    assert dhcp_ports(client, net["id"]) == []
    update_subnet(client, sub["id"], headers=P1, enable_dhcp=True)
    dhcp = the_dhcp_port(client, net["id"])
    assert (dhcp["device_id"], dhcp["project_id"], dhcp["status"]) == (
        f"dhcp-{net['id']}", "p1", "ACTIVE")
    assert dhcp["fixed_ips"] == fixed((sub, "10.0.0.2"))


def test_updating_other_subnet_attributes_leaves_the_dhcp_port_alone(client: TestClient) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/24")
    before = the_dhcp_port(client, net["id"])
    update_subnet(client, sub["id"], name="renamed", dns_nameservers=["9.9.9.9"],
                  allocation_pools=[{"start": "10.0.0.100", "end": "10.0.0.200"}])
    update_subnet(client, sub["id"], enable_dhcp=True)  # already on: nothing to do
    assert the_dhcp_port(client, net["id"]) == before


# --- a subnet with no address to spare ------------------------------------------------------------


def full_subnet_by_creation(client: TestClient, net: dict[str, Any]) -> dict[str, Any]:
    """A DHCP subnet created with no allocation pool at all."""
    return subnet(client, net["id"], "10.0.0.0/29", allocation_pools=[])


def full_subnet_by_update(client: TestClient, net: dict[str, Any]) -> dict[str, Any]:
    """A /30 (pool: .2 alone) whose one address a port holds when DHCP is switched on."""
    sub = subnet(client, net["id"], "10.0.0.0/30", enable_dhcp=False)
    assert sub["allocation_pools"] == [{"start": "10.0.0.2", "end": "10.0.0.2"}]
    assert ips(port(client, net["id"], name="vm")) == ["10.0.0.2"]
    return update_subnet(client, sub["id"], enable_dhcp=True)


FULL = [full_subnet_by_creation, full_subnet_by_update]


@pytest.mark.parametrize("make", FULL, ids=["created-without-pool", "enabled-when-full"])
def test_a_dhcp_subnet_without_a_free_address_gets_no_dhcp_address(client: TestClient,
                                                                   make: Any) -> None:
    net = network(client)
    sub = make(client, net)
    assert sub["enable_dhcp"] is True
    assert body(client.get(f"/v2.0/subnets/{sub['id']}"))["subnet"]["enable_dhcp"] is True
    assert all(p["device_owner"] != DHCP for p in body(client.get(
        f"/v2.0/ports?fixed_ips=subnet_id={sub['id']}"))["ports"])
    # the network's other DHCP subnets are still served, by one port
    other = subnet(client, net["id"], "10.1.0.0/24")
    dhcp = the_dhcp_port(client, net["id"])
    assert dhcp["fixed_ips"] == fixed((other, "10.1.0.2"))


@pytest.mark.parametrize("make", FULL, ids=["created-without-pool", "enabled-when-full"])
def test_no_dhcp_port_is_kept_without_an_address(client: TestClient, make: Any) -> None:
    net = network(client)
    make(client, net)
    assert dhcp_ports(client, net["id"]) == []


# --- deletion -------------------------------------------------------------------------------------


def test_deleting_a_subnet_takes_its_address_and_with_the_last_one_the_port(
    client: TestClient
) -> None:
    net = network(client, headers=P1)
    a = subnet(client, net["id"], "10.0.0.0/24", headers=P1)
    b = subnet(client, net["id"], "10.0.1.0/24", headers=P1)
    dhcp = the_dhcp_port(client, net["id"])
    # the DHCP port's address does not keep the subnet in use
    assert client.delete(f"/v2.0/subnets/{a['id']}", headers=P1).status_code == 204
    kept = the_dhcp_port(client, net["id"])
    assert kept["id"] == dhcp["id"]
    assert kept["fixed_ips"] == fixed((b, "10.0.1.2"))
    assert client.delete(f"/v2.0/subnets/{b['id']}", headers=P1).status_code == 204
    assert body(client.get(f"/v2.0/ports?network_id={net['id']}"))["ports"] == []
    assert body(client.get(f"/v2.0/networks/{net['id']}"))["network"]["subnets"] == []


def test_losing_an_address_with_its_subnet_bumps_the_dhcp_ports_revision(
    client: TestClient
) -> None:
    net = network(client)
    a = subnet(client, net["id"], "10.0.0.0/24")
    subnet(client, net["id"], "10.0.1.0/24")
    before = the_dhcp_port(client, net["id"])
    assert client.delete(f"/v2.0/subnets/{a['id']}").status_code == 204
    assert the_dhcp_port(client, net["id"])["revision_number"] > before["revision_number"]


def test_a_user_port_still_keeps_a_dhcp_subnet_in_use(client: TestClient) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/24")
    port(client, net["id"])
    neutron_error(client.delete(f"/v2.0/subnets/{sub['id']}"), 409, "SubnetInUse")
    assert the_dhcp_port(client, net["id"])["fixed_ips"] == fixed((sub, "10.0.0.2"))


def test_deleting_the_network_deletes_its_dhcp_port(client: TestClient) -> None:
    net = network(client, headers=P1)
    subnet(client, net["id"], "10.0.0.0/24", headers=P1)
    subnet(client, net["id"], "10.0.1.0/24", headers=P1)
    dhcp = the_dhcp_port(client, net["id"])
    # the DHCP port does not keep the network in use, and goes with it
    assert client.delete(f"/v2.0/networks/{net['id']}", headers=P1).status_code == 204
    neutron_error(client.get(f"/v2.0/ports/{dhcp['id']}"), 404, "PortNotFound")
    assert body(client.get("/v2.0/ports"))["ports"] == []


def test_a_user_port_still_keeps_the_network_in_use(client: TestClient) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    port(client, net["id"])
    neutron_error(client.delete(f"/v2.0/networks/{net['id']}"), 409, "NetworkInUse")
    assert len(dhcp_ports(client, net["id"])) == 1


# --- who sees it ----------------------------------------------------------------------------------


def test_the_networks_project_sees_its_dhcp_port_and_others_do_not(client: TestClient) -> None:
    mine = network(client, headers=P1)
    subnet(client, mine["id"], "10.0.0.0/24", headers=P1)
    theirs = network(client, headers=P2)
    subnet(client, theirs["id"], "10.0.0.0/24", headers=P2)
    dhcp = the_dhcp_port(client, mine["id"])

    listed = body(client.get(f"/v2.0/ports?device_owner={DHCP}", headers=P1))["ports"]
    assert [p["id"] for p in listed] == [dhcp["id"]]
    shown = body(client.get(f"/v2.0/ports/{dhcp['id']}", headers=P1))["port"]
    assert (shown["device_owner"], shown["fixed_ips"]) == (DHCP, dhcp["fixed_ips"])
    assert "binding:host_id" not in shown  # admin-only attributes stay hidden from members

    assert [p["network_id"] for p in body(client.get(
        f"/v2.0/ports?device_owner={DHCP}", headers=P2))["ports"]] == [theirs["id"]]
    neutron_error(client.get(f"/v2.0/ports/{dhcp['id']}", headers=P2), 404, "PortNotFound")
    admin_view = body(client.get(f"/v2.0/ports?device_owner={DHCP}"))["ports"]
    assert len(admin_view) == 2


def test_on_a_shared_network_other_projects_do_not_see_the_dhcp_port(client: TestClient) -> None:
    shared = network(client, shared=True, name="shared")  # the admin's
    sub = subnet(client, shared["id"], "172.16.0.0/24")
    mine = port(client, shared["id"], headers=P1)
    assert ips(mine) == ["172.16.0.3"]  # .2 is the DHCP port's, though P1 cannot see it
    listed = body(client.get(f"/v2.0/ports?network_id={shared['id']}", headers=P1))["ports"]
    assert [p["id"] for p in listed] == [mine["id"]]
    assert body(client.get(f"/v2.0/ports?device_owner={DHCP}", headers=P1))["ports"] == []
    assert the_dhcp_port(client, shared["id"])["fixed_ips"] == fixed((sub, "172.16.0.2"))


# --- one transaction ------------------------------------------------------------------------------


def test_each_subnet_change_and_its_dhcp_port_are_one_outbox_revision(client: TestClient,
                                                                      db: Database) -> None:
    call = Recorder(client, db)
    created, _ = call("POST", "/v2.0/networks", 201, {"network": {"name": "n"}}, P1)
    net = created["network"]["id"]

    created, row = call("POST", "/v2.0/subnets", 201,
                        {"subnet": {"network_id": net, "cidr": "10.0.0.0/24"}}, P1)
    a = created["subnet"]["id"]
    dhcp = the_dhcp_port(client, net)["id"]
    assert row == [change("subnet", a, "create"), change("port", dhcp, "create")]

    created, row = call("POST", "/v2.0/subnets", 201,
                        {"subnet": {"network_id": net, "cidr": "10.0.1.0/24"}}, P1)
    b = created["subnet"]["id"]
    assert row == [change("subnet", b, "create"), change("port", dhcp, "update")]

    _, row = call("PUT", f"/v2.0/subnets/{a}", 200, {"subnet": {"enable_dhcp": False}}, P1)
    assert row == [change("subnet", a, "update"), change("port", dhcp, "update")]

    _, row = call("PUT", f"/v2.0/subnets/{a}", 200, {"subnet": {"name": "a"}}, P1)
    assert row == [change("subnet", a, "update")]

    _, row = call("DELETE", f"/v2.0/subnets/{b}", 204, None, P1)  # the last DHCP subnet
    assert change("port", dhcp, "delete") in row
    assert {(c["kind"], c["id"]) for c in row} == {("subnet", b), ("port", dhcp)}
    assert row[-1] == change("subnet", b, "delete")

    _, row = call("PUT", f"/v2.0/subnets/{a}", 200, {"subnet": {"enable_dhcp": True}}, P1)
    again = the_dhcp_port(client, net)["id"]
    assert row == [change("subnet", a, "update"), change("port", again, "create")]

    _, row = call("DELETE", f"/v2.0/networks/{net}", 204, None, P1)
    assert sorted(row, key=lambda c: c["kind"]) == [change("network", net, "delete"),
                                                    change("port", again, "delete"),
                                                    change("subnet", a, "delete")]


def test_a_rejected_subnet_request_leaves_no_dhcp_port(client: TestClient, db: Database) -> None:
    net = network(client)
    before, revisions = snapshot(db), len(outbox_changes(db))
    # a bulk create is one transaction: the second subnet overlaps the first
    response = client.post("/v2.0/subnets", json={"subnets": [
        {"network_id": net["id"], "cidr": "10.0.0.0/24"},
        {"network_id": net["id"], "cidr": "10.0.0.0/25"}]})
    neutron_error(response, 409, "SubnetOverlap")
    assert snapshot(db) == before
    assert len(outbox_changes(db)) == revisions
    assert dhcp_ports(client, net["id"]) == []


# --- a network:dhcp port of the user's own --------------------------------------------------------


def test_a_users_own_network_dhcp_port_is_not_taken_for_the_networks(client: TestClient) -> None:
    net = network(client)
    own = port(client, net["id"], device_owner=DHCP, device_id="external-dhcp")
    assert own["fixed_ips"] == []
    sub = subnet(client, net["id"], "10.0.0.0/24")
    by_device = {p["device_id"]: p for p in dhcp_ports(client, net["id"])}
    assert set(by_device) == {"external-dhcp", f"dhcp-{net['id']}"}
    assert by_device["external-dhcp"]["fixed_ips"] == []
    assert by_device[f"dhcp-{net['id']}"]["fixed_ips"] == fixed((sub, "10.0.0.2"))
