"""Routers over HTTP on SQLite and PostgreSQL: Neutron's router, ext-gw-mode, dvr, l3-ha,
extraroute and extraroute-atomic, interfaces by subnet or port, the gateway on an external
network, policy, and every refusal leaving the database as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.helpers import ADMIN, UNKNOWN_ID, body, network, outbox_changes, port, subnet
from api.routing import (
    MEMBER,
    OTHER,
    READER,
    add_interface,
    external_network,
    floatingip,
    ports_of,
    refused,
    remove_interface,
    routed_tenant,
    router,
    set_gateway,
    statements_to_list,
    tenant_network,
)
from neutrino.api.app import create_app
from neutrino.config import Settings
from neutrino.db.engine import Database


@pytest.fixture
def ext(client: TestClient) -> dict[str, Any]:
    return external_network(client)[0]


def router_path(r: dict[str, Any], action: str = "") -> str:
    return f"/v2.0/routers/{r['id']}" + (f"/{action}" if action else "")


# --- create, show, list --------------------------------------------------------------------------

def test_a_new_router_has_neutrons_defaults(client: TestClient) -> None:
    r = router(client, description="edge")
    assert r["status"] == "ACTIVE" and r["admin_state_up"] is True
    assert r["external_gateway_info"] is None
    assert r["routes"] == [] and r["tags"] == []
    assert r["distributed"] is False and r["ha"] is False
    assert r["description"] == "edge" and r["revision_number"] == 1
    assert body(client.get(router_path(r)))["router"] == r


def test_members_do_not_see_the_admin_only_attributes(client: TestClient) -> None:
    r = router(client, headers=MEMBER)
    assert "distributed" not in r and "ha" not in r
    shown = body(client.get(router_path(r), headers=MEMBER))["router"]
    assert "distributed" not in shown and shown["project_id"] == "p1"
    assert body(client.get(router_path(r)))["router"]["distributed"] is False


def test_distributed_and_ha_are_admin_only(client: TestClient, db: Database) -> None:
    for attr in ("distributed", "ha"):
        refused(client, db, "POST", "/v2.0/routers", {"router": {attr: False}}, 403,
                headers=MEMBER)
    r = router(client, headers=MEMBER)
    refused(client, db, "PUT", router_path(r), {"router": {"ha": True}}, 403, headers=MEMBER)
    made = router(client, distributed=True, ha=True, project_id="p1")
    assert (made["distributed"], made["ha"]) == (True, True)


def test_distributed_and_ha_defaults_come_from_the_configuration(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(state_dir=tmp_path, database=database_url, auth="noauth",
                        compiler_enabled=False, router_distributed=True, l3_ha=True)
    db = Database(database_url)
    try:
        with TestClient(create_app(settings, db), headers=ADMIN) as configured:
            made = router(configured)
            assert (made["distributed"], made["ha"]) == (True, True)
            _net, sub = tenant_network(configured, headers=ADMIN)
            info = add_interface(configured, made["id"], subnet_id=sub["id"])
            shown = body(configured.get(f"/v2.0/ports/{info['port_id']}"))["port"]
            assert shown["device_owner"] == "network:router_interface_distributed"
    finally:
        db.dispose()


def test_routers_are_listed_filtered_sorted_and_paginated(client: TestClient, ext: dict[str, Any]) -> None:
    made = [router(client, name=f"r{i}", external_gateway_info={"network_id": ext["id"]})
            for i in range(3)]
    router(client, headers=MEMBER, name="mine")
    listed = body(client.get("/v2.0/routers?sort_key=name&sort_dir=desc"))["routers"]
    assert [r["name"] for r in listed] == ["r2", "r1", "r0", "mine"]
    assert all(r["external_gateway_info"]["network_id"] == ext["id"]
               for r in listed if r["name"] != "mine")
    page = body(client.get("/v2.0/routers?limit=2&sort_key=name"))
    assert [r["name"] for r in page["routers"]] == ["mine", "r0"]
    assert page["routers_links"][0]["rel"] == "next"
    assert [r["id"] for r in body(client.get("/v2.0/routers?name=r1"))["routers"]] == [made[1]["id"]]
    fields = body(client.get("/v2.0/routers?fields=id&fields=status&name=r0"))["routers"]
    assert fields == [{"id": made[0]["id"], "status": "ACTIVE"}]
    # a member sees its own routers only
    assert [r["name"] for r in body(client.get("/v2.0/routers", headers=MEMBER))["routers"]] == ["mine"]


def test_listing_routers_costs_the_same_number_of_queries_for_2_or_20(
    client: TestClient, db: Database, ext: dict[str, Any]
) -> None:
    for i in range(2):
        router(client, name=f"a{i}", external_gateway_info={"network_id": ext["id"]})
    small = statements_to_list(client, db, "/v2.0/routers")
    for i in range(18):
        router(client, name=f"b{i}", external_gateway_info={"network_id": ext["id"]})
    assert statements_to_list(client, db, "/v2.0/routers") == small


# --- the external gateway ------------------------------------------------------------------------

def test_a_gateway_takes_a_hidden_port_with_an_address_on_the_external_subnet(
    client: TestClient, ext: dict[str, Any]
) -> None:
    r = router(client, headers=MEMBER, external_gateway_info={"network_id": ext["id"]})
    info = r["external_gateway_info"]
    assert info["network_id"] == ext["id"] and info["enable_snat"] is True
    [fixed] = info["external_fixed_ips"]
    assert fixed["ip_address"].startswith("172.24.4.")
    [gw] = ports_of(client, device_id=r["id"])
    assert gw["device_owner"] == "network:router_gateway" and gw["project_id"] == ""
    assert gw["fixed_ips"] == [fixed] and gw["network_id"] == ext["id"]
    assert ports_of(client, device_owner="network:router_gateway")[0]["id"] == gw["id"]
    # the member does not see the gateway port: it belongs to no project
    assert body(client.get(f"/v2.0/ports?device_id={r['id']}", headers=MEMBER))["ports"] == []


def test_the_admin_chooses_snat_and_the_gateway_address(client: TestClient, ext: dict[str, Any]) -> None:
    sub = body(client.get(f"/v2.0/subnets?network_id={ext['id']}"))["subnets"][0]
    r = router(client, external_gateway_info={
        "network_id": ext["id"], "enable_snat": False,
        "external_fixed_ips": [{"subnet_id": sub["id"], "ip_address": "172.24.4.100"}]})
    assert r["external_gateway_info"] == {
        "network_id": ext["id"], "enable_snat": False,
        "external_fixed_ips": [{"subnet_id": sub["id"], "ip_address": "172.24.4.100"}]}
    no_gateway = subnet(client, ext["id"], "192.0.2.0/24", gateway_ip=None, enable_dhcp=False)
    by_subnet = router(client, name="r2", external_gateway_info={
        "network_id": ext["id"], "external_fixed_ips": [{"subnet_id": no_gateway["id"]}]})
    assert by_subnet["external_gateway_info"]["external_fixed_ips"] == [
        {"subnet_id": no_gateway["id"], "ip_address": "192.0.2.1"}]
    gw_port = ports_of(client, device_id=r["id"])[0]["id"]
    moved = set_gateway(client, r["id"], {"network_id": ext["id"], "external_fixed_ips": [
        {"ip_address": "172.24.4.101"}]})
    assert moved["external_gateway_info"]["external_fixed_ips"] == [
        {"subnet_id": sub["id"], "ip_address": "172.24.4.101"}]
    assert moved["external_gateway_info"]["enable_snat"] is True  # not given: the default again
    assert ports_of(client, device_id=r["id"])[0]["id"] == gw_port  # the same port, readdressed


def test_members_may_not_choose_snat_or_gateway_addresses(
    client: TestClient, db: Database, ext: dict[str, Any]
) -> None:
    for info in ({"network_id": ext["id"], "enable_snat": False},
                 {"network_id": ext["id"], "external_fixed_ips": [{"ip_address": "172.24.4.9"}]}):
        error = refused(client, db, "POST", "/v2.0/routers",
                        {"router": {"external_gateway_info": info}}, 403, headers=MEMBER)
        assert "external_gateway_info" in error["message"]


def test_clearing_and_moving_the_gateway(client: TestClient, ext: dict[str, Any]) -> None:
    other, _ = external_network(client, "198.51.100.0/24", **{"provider:physical_network": "physnet1"})
    r = router(client, external_gateway_info={"network_id": ext["id"]})
    first = ports_of(client, device_id=r["id"])[0]
    moved = set_gateway(client, r["id"], {"network_id": other["id"]})
    assert moved["external_gateway_info"]["network_id"] == other["id"]
    [second] = ports_of(client, device_id=r["id"])
    assert second["id"] != first["id"] and second["network_id"] == other["id"]
    assert client.get(f"/v2.0/ports/{first['id']}").status_code == 404
    for empty in ({}, None):
        cleared = set_gateway(client, r["id"], empty)
        assert cleared["external_gateway_info"] is None
        assert ports_of(client, device_id=r["id"]) == []


def test_a_vlan_provider_network_made_external_serves_gateways_and_floating_ips(
    client: TestClient, db: Database
) -> None:
    vlan = network(client, name="vlan-ext", **{"provider:network_type": "vlan",
                                               "provider:physical_network": "physnet1",
                                               "provider:segmentation_id": 150})
    subnet(client, vlan["id"], "203.0.113.0/24", enable_dhcp=False)
    refused(client, db, "POST", "/v2.0/routers",
            {"router": {"external_gateway_info": {"network_id": vlan["id"]}}}, 400, "BadRequest")
    body(client.put(f"/v2.0/networks/{vlan['id']}", json={"network": {"router:external": True}}))
    # now visible to members as an external network, usable for gateways and floating IPs
    world = routed_tenant(client, vlan)
    fip = floatingip(client, vlan["id"], headers=MEMBER, port_id=world["port"]["id"])
    assert fip["floating_ip_address"].startswith("203.0.113.")
    assert fip["router_id"] == world["router"]["id"]


def test_bad_gateways_are_refused(client: TestClient, db: Database, ext: dict[str, Any]) -> None:
    internal = network(client, name="internal")
    subnet(client, internal["id"], "10.5.0.0/24")
    error = refused(client, db, "POST", "/v2.0/routers",
                    {"router": {"external_gateway_info": {"network_id": internal["id"]}}}, 400,
                    "BadRequest")
    assert error["message"] == (f"Bad router request: Network {internal['id']} is not an external "
                                "network.")
    refused(client, db, "POST", "/v2.0/routers",
            {"router": {"external_gateway_info": {"network_id": UNKNOWN_ID}}}, 404,
            "NetworkNotFound")
    refused(client, db, "POST", "/v2.0/routers",
            {"router": {"external_gateway_info": {"network_id": ext["id"], "external_fixed_ips": [
                {"ip_address": "172.24.4.1"}]}}}, 400, "BadRequest")  # the subnet's gateway
    refused(client, db, "POST", "/v2.0/routers",
            {"router": {"external_gateway_info": {"enable_snat": True}}}, 400)
    refused(client, db, "POST", "/v2.0/routers",
            {"router": {"external_gateway_info": {"network_id": ext["id"], "color": "red"}}}, 400)
    refused(client, db, "POST", "/v2.0/routers",
            {"router": {"external_gateway_info": "public"}}, 400)
    refused(client, db, "POST", "/v2.0/routers",
            {"router": {"external_gateway_info": {"network_id": ext["id"], "external_fixed_ips": [
                {"ip_address": "10.9.9.9"}]}}}, 400)
    # another member's private network is not visible at all
    private = network(client, headers=OTHER, name="private")
    refused(client, db, "POST", "/v2.0/routers",
            {"router": {"external_gateway_info": {"network_id": private["id"]}}}, 404,
            "NetworkNotFound", headers=MEMBER)


def test_an_external_network_with_gateways_stays_external_and_cannot_be_deleted(
    client: TestClient, db: Database, ext: dict[str, Any]
) -> None:
    router(client, external_gateway_info={"network_id": ext["id"]})
    refused(client, db, "PUT", f"/v2.0/networks/{ext['id']}",
            {"network": {"router:external": False}}, 409, "ExternalNetworkInUse")
    refused(client, db, "DELETE", f"/v2.0/networks/{ext['id']}", None, 409, "NetworkInUse")


# --- interfaces ----------------------------------------------------------------------------------

def test_an_interface_by_subnet_holds_the_subnets_gateway_ip(client: TestClient) -> None:
    net, sub = tenant_network(client)
    r = router(client, headers=MEMBER)
    info = add_interface(client, r["id"], headers=MEMBER, subnet_id=sub["id"])
    assert set(info) == {"id", "tenant_id", "project_id", "port_id", "network_id", "subnet_id",
                         "subnet_ids"}
    assert info["id"] == r["id"] and info["network_id"] == net["id"]
    assert info["subnet_id"] == sub["id"] and info["subnet_ids"] == [sub["id"]]
    assert info["project_id"] == info["tenant_id"] == "p1"
    interface = body(client.get(f"/v2.0/ports/{info['port_id']}", headers=MEMBER))["port"]
    assert interface["device_owner"] == "network:router_interface"
    assert interface["device_id"] == r["id"]
    assert interface["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.0.0.1"}]
    assert interface["security_groups"] == []


def test_interface_owners_follow_distributed_and_ha(client: TestClient) -> None:
    expected = {(True, False): "network:router_interface_distributed",
                (False, True): "network:ha_router_replicated_interface",
                (True, True): "network:router_interface_distributed"}
    for n, ((distributed, ha), owner) in enumerate(expected.items()):
        _net, sub = tenant_network(client, f"10.{n}.0.0/24", headers=ADMIN)
        r = router(client, distributed=distributed, ha=ha)
        info = add_interface(client, r["id"], subnet_id=sub["id"])
        assert body(client.get(f"/v2.0/ports/{info['port_id']}"))["port"]["device_owner"] == owner


def test_an_interface_by_port_takes_the_port_over(client: TestClient, db: Database) -> None:
    net, sub = tenant_network(client)
    p = port(client, net["id"], headers=MEMBER, fixed_ips=[{"ip_address": "10.0.0.10"}])
    r = router(client, headers=MEMBER)
    info = add_interface(client, r["id"], headers=MEMBER, port_id=p["id"])
    assert info["port_id"] == p["id"] and info["subnet_ids"] == [sub["id"]]
    taken = body(client.get(f"/v2.0/ports/{p['id']}", headers=MEMBER))["port"]
    assert (taken["device_owner"], taken["device_id"]) == ("network:router_interface", r["id"])
    other = router(client, headers=MEMBER, name="r2")
    refused(client, db, "PUT", router_path(other, "add_router_interface"), {"port_id": p["id"]},
            409, "PortInUse", headers=MEMBER)
    bare = port(client, net["id"], headers=MEMBER, fixed_ips=[])
    error = refused(client, db, "PUT", router_path(other, "add_router_interface"),
                    {"port_id": bare["id"]}, 400, "BadRequest", headers=MEMBER)
    assert "at least one fixed IP" in error["message"]


def test_an_interface_on_a_subnet_already_attached_is_refused(
    client: TestClient, db: Database
) -> None:
    net, sub = tenant_network(client)
    r = router(client, headers=MEMBER)
    add_interface(client, r["id"], headers=MEMBER, subnet_id=sub["id"])
    error = refused(client, db, "PUT", router_path(r, "add_router_interface"),
                    {"subnet_id": sub["id"]}, 400, "BadRequest", headers=MEMBER)
    assert error["message"] == f"Bad router request: Router already has a port on subnet {sub['id']}."
    p = port(client, net["id"], headers=MEMBER)
    refused(client, db, "PUT", router_path(r, "add_router_interface"), {"port_id": p["id"]}, 400,
            "BadRequest", headers=MEMBER)


def test_overlapping_subnets_on_one_router_are_refused(client: TestClient, db: Database) -> None:
    _net, first = tenant_network(client, "10.0.0.0/24")
    _other, overlapping = tenant_network(client, "10.0.0.0/16")
    r = router(client, headers=MEMBER)
    add_interface(client, r["id"], headers=MEMBER, subnet_id=first["id"])
    error = refused(client, db, "PUT", router_path(r, "add_router_interface"),
                    {"subnet_id": overlapping["id"]}, 400, "BadRequest", headers=MEMBER)
    assert error["message"] == (f"Bad router request: Cidr 10.0.0.0/16 of subnet {overlapping['id']} "
                                f"overlaps with cidr 10.0.0.0/24 of subnet {first['id']}.")
    # another router may have it
    add_interface(client, router(client, headers=MEMBER, name="r2")["id"], headers=MEMBER,
                  subnet_id=overlapping["id"])


def test_bad_interface_requests_are_refused(client: TestClient, db: Database) -> None:
    net, sub = tenant_network(client)
    no_gateway = subnet(client, net["id"], "10.1.0.0/24", headers=MEMBER, gateway_ip=None)
    r = router(client, headers=MEMBER)
    p = port(client, net["id"], headers=MEMBER)
    cases: list[tuple[Any, int, str]] = [
        ({}, 400, "BadRequest"),
        ({"subnet_id": sub["id"], "port_id": p["id"]}, 400, "BadRequest"),
        ({"subnet_id": "not-a-uuid"}, 400, "BadRequest"),
        ([sub["id"]], 400, "BadRequest"),
        ({"subnet_id": UNKNOWN_ID}, 404, "SubnetNotFound"),
        ({"port_id": UNKNOWN_ID}, 404, "PortNotFound"),
        ({"subnet_id": no_gateway["id"]}, 400, "BadRequest"),
    ]
    for payload, status, kind in cases:
        refused(client, db, "PUT", router_path(r, "add_router_interface"), payload, status, kind,
                headers=MEMBER)
    # another project's subnet and port are invisible
    _other_net, other_sub = tenant_network(client, "10.7.0.0/24", headers=OTHER)
    refused(client, db, "PUT", router_path(r, "add_router_interface"),
            {"subnet_id": other_sub["id"]}, 404, "SubnetNotFound", headers=MEMBER)


def test_the_gateway_ip_held_by_another_router_blocks_the_interface(
    client: TestClient, db: Database
) -> None:
    _net, sub = tenant_network(client)
    add_interface(client, router(client, headers=MEMBER)["id"], headers=MEMBER, subnet_id=sub["id"])
    second = router(client, headers=MEMBER, name="r2")
    refused(client, db, "PUT", router_path(second, "add_router_interface"),
            {"subnet_id": sub["id"]}, 409, "IpAddressAlreadyAllocated", headers=MEMBER)


def test_removing_interfaces_by_subnet_or_port(client: TestClient, db: Database) -> None:
    net, sub = tenant_network(client)
    _net2, sub2 = tenant_network(client, "10.1.0.0/24")
    r = router(client, headers=MEMBER)
    first = add_interface(client, r["id"], headers=MEMBER, subnet_id=sub["id"])
    second = add_interface(client, r["id"], headers=MEMBER, subnet_id=sub2["id"])
    refused(client, db, "PUT", router_path(r, "remove_router_interface"),
            {"port_id": second["port_id"], "subnet_id": sub["id"]}, 400, "SubnetMismatchForPort",
            headers=MEMBER)
    removed = remove_interface(client, r["id"], headers=MEMBER, subnet_id=sub["id"])
    assert removed == first
    assert client.get(f"/v2.0/ports/{first['port_id']}").status_code == 404
    assert remove_interface(client, r["id"], headers=MEMBER, port_id=second["port_id"]) == second
    refused(client, db, "PUT", router_path(r, "remove_router_interface"), {"subnet_id": sub["id"]},
            404, "RouterInterfaceNotFoundForSubnet", headers=MEMBER)
    refused(client, db, "PUT", router_path(r, "remove_router_interface"),
            {"port_id": second["port_id"]}, 404, "RouterInterfaceNotFound", headers=MEMBER)
    refused(client, db, "PUT", router_path(r, "remove_router_interface"), {}, 400, "BadRequest",
            headers=MEMBER)
    # the subnet is free again: a port may take its gateway address... and the subnet can go
    assert client.delete(f"/v2.0/subnets/{sub2['id']}", headers=MEMBER).status_code == 204
    assert net["id"]


def test_ipv6_subnets_share_one_interface_per_network(client: TestClient) -> None:
    net, v6a = tenant_network(client, "fd00:1::/64", ipv6_ra_mode="slaac",
                              ipv6_address_mode="slaac")
    v6b = subnet(client, net["id"], "fd00:2::/64", headers=MEMBER, ipv6_ra_mode="slaac",
                 ipv6_address_mode="slaac")
    r = router(client, headers=MEMBER)
    first = add_interface(client, r["id"], headers=MEMBER, subnet_id=v6a["id"])
    second = add_interface(client, r["id"], headers=MEMBER, subnet_id=v6b["id"])
    assert first["port_id"] == second["port_id"]
    shared = body(client.get(f"/v2.0/ports/{first['port_id']}", headers=MEMBER))["port"]
    assert [f["ip_address"] for f in shared["fixed_ips"]] == ["fd00:1::1", "fd00:2::1"]
    remove_interface(client, r["id"], headers=MEMBER, subnet_id=v6a["id"])
    left = body(client.get(f"/v2.0/ports/{first['port_id']}", headers=MEMBER))["port"]
    assert [f["subnet_id"] for f in left["fixed_ips"]] == [v6b["id"]]


# --- what a router's ports protect ---------------------------------------------------------------

def test_deleting_a_router_with_interfaces_is_refused(client: TestClient, db: Database,
                                                      ext: dict[str, Any]) -> None:
    world = routed_tenant(client, ext)
    r = world["router"]
    error = refused(client, db, "DELETE", router_path(r), None, 409, "RouterInUse", headers=MEMBER)
    assert error["message"] == f"Router {r['id']} still has ports"
    remove_interface(client, r["id"], headers=MEMBER, subnet_id=world["subnet"]["id"])
    assert client.delete(router_path(r), headers=MEMBER).status_code == 204
    assert ports_of(client, device_id=r["id"]) == []  # its gateway port went with it
    assert client.get(router_path(r)).status_code == 404


def test_a_routers_ports_subnet_and_network_cannot_be_deleted_directly(
    client: TestClient, db: Database, ext: dict[str, Any]
) -> None:
    world = routed_tenant(client, ext)
    interface = world["interface"]["port_id"]
    error = refused(client, db, "DELETE", f"/v2.0/ports/{interface}", None, 409,
                    "ServicePortInUse", headers=MEMBER)
    assert error["message"] == (f"Port {interface} cannot be deleted directly via the port API: "
                                "has device owner network:router_interface.")
    [gateway] = ports_of(client, device_owner="network:router_gateway")
    refused(client, db, "DELETE", f"/v2.0/ports/{gateway['id']}", None, 409, "ServicePortInUse")
    client.delete(f"/v2.0/ports/{world['port']['id']}", headers=MEMBER)
    refused(client, db, "DELETE", f"/v2.0/subnets/{world['subnet']['id']}", None, 409,
            "SubnetInUse", headers=MEMBER)
    refused(client, db, "DELETE", f"/v2.0/networks/{world['net']['id']}", None, 409,
            "NetworkInUse", headers=MEMBER)


def test_the_gateway_ip_of_a_routed_subnet_cannot_change(client: TestClient, db: Database) -> None:
    _net, sub = tenant_network(client, allocation_pools=[{"start": "10.0.0.10",
                                                          "end": "10.0.0.99"}])
    add_interface(client, router(client, headers=MEMBER)["id"], headers=MEMBER, subnet_id=sub["id"])
    error = refused(client, db, "PUT", f"/v2.0/subnets/{sub['id']}",
                    {"subnet": {"gateway_ip": "10.0.0.254"}}, 409, "GatewayIpInUse", headers=MEMBER)
    assert error["message"].startswith("Current gateway ip 10.0.0.1 already in use by port ")


# --- extra routes --------------------------------------------------------------------------------

def test_routes_need_a_nexthop_on_an_attached_subnet(client: TestClient, db: Database,
                                                     ext: dict[str, Any]) -> None:
    world = routed_tenant(client, ext)
    r = world["router"]
    routes = [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.10"},
              {"destination": "0.0.0.0/0", "nexthop": "172.24.4.254"}]
    updated = body(client.put(router_path(r), json={"router": {"routes": routes}},
                              headers=MEMBER))["router"]
    assert updated["routes"] == routes
    error = refused(client, db, "PUT", router_path(r),
                    {"router": {"routes": [{"destination": "192.168.0.0/16", "nexthop": "10.9.0.1"}]}},
                    400, "InvalidRoutes", headers=MEMBER)
    assert error["message"].endswith("the nexthop is not connected with router")
    error = refused(client, db, "PUT", router_path(r),
                    {"router": {"routes": [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.1"}]}},
                    400, "InvalidRoutes", headers=MEMBER)
    assert error["message"].endswith("the nexthop is used by router")
    refused(client, db, "PUT", router_path(r),
            {"router": {"routes": [{"destination": "192.168.0.0/16"}]}}, 400, headers=MEMBER)
    refused(client, db, "PUT", router_path(r), {"router": {"routes": [routes[0], routes[0]]}}, 400,
            headers=MEMBER)
    refused(client, db, "PUT", router_path(r), {"router": {"routes": [
        {"destination": f"192.168.{i}.0/24", "nexthop": "10.0.0.10"} for i in range(31)]}}, 400,
        "RoutesExhausted", headers=MEMBER)
    refused(client, db, "POST", "/v2.0/routers", {"router": {"routes": routes}}, 400,
            headers=MEMBER)
    cleared = body(client.put(router_path(r), json={"router": {"routes": None}},
                              headers=MEMBER))["router"]
    assert cleared["routes"] == []


def test_an_interface_a_route_uses_cannot_be_removed(client: TestClient, db: Database,
                                                     ext: dict[str, Any]) -> None:
    world = routed_tenant(client, ext)
    r = world["router"]
    client.put(router_path(r), headers=MEMBER, json={"router": {"routes": [
        {"destination": "192.168.0.0/16", "nexthop": "10.0.0.10"}]}})
    error = refused(client, db, "PUT", router_path(r, "remove_router_interface"),
                    {"subnet_id": world["subnet"]["id"]}, 409, "RouterInterfaceInUseByRoute",
                    headers=MEMBER)
    assert error["message"] == (f"Router interface for subnet {world['subnet']['id']} on router "
                                f"{r['id']} cannot be deleted, as it is required by one or more "
                                "routes.")
    refused(client, db, "PUT", router_path(r, "remove_router_interface"),
            {"port_id": world["interface"]["port_id"]}, 409, "RouterInterfaceInUseByRoute",
            headers=MEMBER)


def test_extra_routes_are_added_and_removed_atomically(client: TestClient, db: Database,
                                                        ext: dict[str, Any]) -> None:
    world = routed_tenant(client, ext)
    r = world["router"]
    a = {"destination": "192.168.1.0/24", "nexthop": "10.0.0.10"}
    b = {"destination": "192.168.2.0/24", "nexthop": "10.0.0.11"}
    added = body(client.put(router_path(r, "add_extraroutes"), headers=MEMBER,
                            json={"router": {"routes": [a, b]}}))["router"]
    assert added["routes"] == [a, b] and "distributed" not in added
    again = body(client.put(router_path(r, "add_extraroutes"), headers=MEMBER,
                            json={"router": {"routes": [a]}}))["router"]
    assert again["routes"] == [a, b]
    left = body(client.put(router_path(r, "remove_extraroutes"), headers=MEMBER,
                           json={"router": {"routes": [a]}}))["router"]
    assert left["routes"] == [b]
    refused(client, db, "PUT", router_path(r, "add_extraroutes"),
            {"router": {"routes": [{"destination": "192.168.3.0/24", "nexthop": "10.99.0.1"}]}},
            400, "InvalidRoutes", headers=MEMBER)
    refused(client, db, "PUT", router_path(r, "add_extraroutes"), {"routes": [a]}, 400,
            headers=MEMBER)


# --- distributed and HA changes ------------------------------------------------------------------

def test_distributed_and_ha_change_only_on_a_router_that_is_down(client: TestClient,
                                                                  db: Database) -> None:
    _net, sub = tenant_network(client, headers=ADMIN)
    r = router(client)
    info = add_interface(client, r["id"], subnet_id=sub["id"])
    error = refused(client, db, "PUT", router_path(r), {"router": {"distributed": True}}, 400,
                    "BadRequest")
    assert "admin_state_up to False" in error["message"]
    refused(client, db, "PUT", router_path(r), {"router": {"ha": True}}, 400, "BadRequest")
    changed = body(client.put(router_path(r), json={"router": {
        "admin_state_up": False, "distributed": True}}))["router"]
    assert changed["distributed"] is True and changed["admin_state_up"] is False
    moved = body(client.get(f"/v2.0/ports/{info['port_id']}"))["port"]
    assert moved["device_owner"] == "network:router_interface_distributed"
    body(client.put(router_path(r), json={"router": {"distributed": False, "ha": True}}))
    moved = body(client.get(f"/v2.0/ports/{info['port_id']}"))["port"]
    assert moved["device_owner"] == "network:ha_router_replicated_interface"
    # the interface can still be removed under its new owner
    remove_interface(client, r["id"], subnet_id=sub["id"])


# --- policy --------------------------------------------------------------------------------------

def test_routers_of_other_projects_are_invisible_and_readers_only_read(
    client: TestClient, db: Database
) -> None:
    _net, sub = tenant_network(client)
    mine = router(client, headers=MEMBER)
    for method, path, payload in (
        ("GET", router_path(mine), None),
        ("PUT", router_path(mine), {"router": {"name": "x"}}),
        ("DELETE", router_path(mine), None),
        ("PUT", router_path(mine, "add_router_interface"), {"subnet_id": sub["id"]}),
    ):
        refused(client, db, method, path, payload, 404, "RouterNotFound", headers=OTHER)
    refused(client, db, "POST", "/v2.0/routers", {"router": {"name": "x"}}, 403, headers=READER)
    refused(client, db, "PUT", router_path(mine, "add_router_interface"), {"subnet_id": sub["id"]},
            403, headers=READER)
    refused(client, db, "DELETE", router_path(mine), None, 403, headers=READER)
    assert body(client.get(router_path(mine), headers=READER))["router"]["id"] == mine["id"]
    refused(client, db, "POST", "/v2.0/routers", {"router": {"name": "x", "project_id": "p2"}},
            403, headers=MEMBER)
    refused(client, db, "GET", router_path({"id": UNKNOWN_ID}), None, 404, "RouterNotFound")


def test_tags_and_revision_constraints_work_on_routers(client: TestClient, db: Database) -> None:
    r = router(client, headers=MEMBER)
    assert client.put(f"/v2.0/routers/{r['id']}/tags/edge", headers=MEMBER).status_code == 201
    assert body(client.get("/v2.0/routers?tags=edge", headers=MEMBER))["routers"][0]["id"] == r["id"]
    refused(client, db, "PUT", router_path(r), {"router": {"name": "x"}}, 412,
            headers={**MEMBER, "If-Match": "revision_number=1"})


# --- the outbox ----------------------------------------------------------------------------------

def test_router_changes_are_one_outbox_row_with_their_ports(client: TestClient, db: Database,
                                                            ext: dict[str, Any]) -> None:
    _net, sub = tenant_network(client)

    def last() -> list[tuple[str, str]]:
        return sorted((c["kind"], c["op"]) for c in outbox_changes(db)[-1])

    r = router(client, headers=MEMBER, external_gateway_info={"network_id": ext["id"]})
    assert last() == [("port", "create"), ("router", "create")]
    info = add_interface(client, r["id"], headers=MEMBER, subnet_id=sub["id"])
    assert last() == [("port", "create"), ("router", "update")]
    assert {"kind": "port", "id": info["port_id"], "op": "create"} in outbox_changes(db)[-1]
    remove_interface(client, r["id"], headers=MEMBER, subnet_id=sub["id"])
    assert last() == [("port", "delete"), ("router", "update")]
    set_gateway(client, r["id"], None, headers=MEMBER)
    assert last() == [("port", "delete"), ("router", "update")]
    client.delete(router_path(r), headers=MEMBER)
    assert last() == [("router", "delete")]


def test_floating_ips_keep_the_gateway(client: TestClient, db: Database, ext: dict[str, Any]) -> None:
    world = routed_tenant(client, ext)
    floatingip(client, ext["id"], headers=MEMBER, port_id=world["port"]["id"])
    refused(client, db, "PUT", router_path(world["router"]),
            {"router": {"external_gateway_info": None}}, 409,
            "RouterExternalGatewayInUseByFloatingIp", headers=MEMBER)
