"""Floating IPs over HTTP on SQLite and PostgreSQL: created with or without a port, associated and
disassociated, port_details, the router that serves them, and Neutron's refusals (no route to
the external network, a fixed IP with a floating IP already...) leaving the database as it was."""

from __future__ import annotations

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
    statements_to_list,
    tenant_network,
)
from neutrino.db.engine import Database


@pytest.fixture
def ext(client: TestClient) -> dict[str, Any]:
    return external_network(client)[0]


@pytest.fixture
def world(client: TestClient, ext: dict[str, Any]) -> dict[str, Any]:
    return routed_tenant(client, ext)


def fip_path(fip: dict[str, Any]) -> str:
    return f"/v2.0/floatingips/{fip['id']}"


def update(client: TestClient, fip: dict[str, Any], headers: dict[str, str] | None = None,
           **attrs: Any) -> dict[str, Any]:
    result: dict[str, Any] = body(client.put(fip_path(fip), json={"floatingip": attrs},
                                             headers=headers or MEMBER))["floatingip"]
    return result


def test_a_floating_ip_without_a_port_is_down_and_holds_a_hidden_port(
    client: TestClient, ext: dict[str, Any]
) -> None:
    fip = floatingip(client, ext["id"], headers=MEMBER, description="spare")
    assert fip["status"] == "DOWN" and fip["project_id"] == fip["tenant_id"] == "p1"
    assert fip["floating_ip_address"].startswith("172.24.4.")
    assert (fip["port_id"], fip["fixed_ip_address"], fip["router_id"]) == (None, None, None)
    assert fip["port_details"] is None and fip["port_forwardings"] == []
    assert fip["description"] == "spare" and fip["tags"] == [] and "name" not in fip
    [holder] = ports_of(client, device_id=fip["id"])
    assert holder["device_owner"] == "network:floatingip" and holder["project_id"] == ""
    assert holder["status"] == "N/A" and holder["network_id"] == ext["id"]
    assert holder["fixed_ips"][0]["ip_address"] == fip["floating_ip_address"]
    assert body(client.get(f"/v2.0/ports?device_id={fip['id']}", headers=MEMBER))["ports"] == []
    assert body(client.get(fip_path(fip), headers=MEMBER))["floatingip"] == fip


def test_a_floating_ip_created_with_a_port_is_active_with_port_details(
    client: TestClient, ext: dict[str, Any], world: dict[str, Any]
) -> None:
    vm = world["port"]
    fip = floatingip(client, ext["id"], headers=MEMBER, port_id=vm["id"])
    assert fip["status"] == "ACTIVE" and fip["router_id"] == world["router"]["id"]
    assert fip["port_id"] == vm["id"] and fip["fixed_ip_address"] == vm["fixed_ips"][0]["ip_address"]
    assert fip["port_details"] == {
        "name": "vm", "network_id": world["net"]["id"], "mac_address": vm["mac_address"],
        "admin_state_up": True, "status": "DOWN", "device_id": "", "device_owner": ""}


def test_associate_and_disassociate(client: TestClient, ext: dict[str, Any],
                                    world: dict[str, Any]) -> None:
    fip = floatingip(client, ext["id"], headers=MEMBER)
    vm = world["port"]
    associated = update(client, fip, port_id=vm["id"])
    assert associated["status"] == "ACTIVE" and associated["router_id"] == world["router"]["id"]
    assert associated["revision_number"] == fip["revision_number"] + 1
    renamed = update(client, fip, description="kept")  # no port_id: the association stays
    assert renamed["port_id"] == vm["id"] and renamed["description"] == "kept"
    released = update(client, fip, port_id=None)
    assert (released["port_id"], released["fixed_ip_address"], released["router_id"]) == (
        None, None, None)
    assert released["status"] == "DOWN" and released["port_details"] is None


def test_a_specific_fixed_ip_of_a_port_with_several(client: TestClient, db: Database,
                                                    ext: dict[str, Any], world: dict[str, Any]) -> None:
    multi = port(client, world["net"]["id"], headers=MEMBER,
                 fixed_ips=[{"ip_address": "10.0.0.20"}, {"ip_address": "10.0.0.21"}])
    error = refused(client, db, "POST", "/v2.0/floatingips", {"floatingip": {
        "floating_network_id": ext["id"], "port_id": multi["id"]}}, 400, "BadRequest",
        headers=MEMBER)
    assert "multiple fixed IPv4 addresses" in error["message"]
    fip = floatingip(client, ext["id"], headers=MEMBER, port_id=multi["id"],
                     fixed_ip_address="10.0.0.21")
    assert fip["fixed_ip_address"] == "10.0.0.21"
    refused(client, db, "PUT", fip_path(fip), {"floatingip": {"port_id": multi["id"],
                                                              "fixed_ip_address": "10.0.0.99"}},
            400, "BadRequest", headers=MEMBER)
    second = floatingip(client, ext["id"], headers=MEMBER, port_id=multi["id"],
                        fixed_ip_address="10.0.0.20")
    assert second["fixed_ip_address"] == "10.0.0.20"


def test_a_port_with_no_route_to_the_external_network_is_refused(
    client: TestClient, db: Database, ext: dict[str, Any]
) -> None:
    net, sub = tenant_network(client)
    vm = port(client, net["id"], headers=MEMBER)
    create = {"floatingip": {"floating_network_id": ext["id"], "port_id": vm["id"]}}
    error = refused(client, db, "POST", "/v2.0/floatingips", create, 404,
                    "ExternalGatewayForFloatingIPNotFound", headers=MEMBER)
    assert error["message"] == (f"External network {ext['id']} is not reachable from subnet "
                                f"{sub['id']}.  Therefore, cannot associate Port {vm['id']} with "
                                "a Floating IP.")
    # an interface without a gateway does not do, nor a gateway without an interface
    r = router(client, headers=MEMBER)
    add_interface(client, r["id"], headers=MEMBER, subnet_id=sub["id"])
    refused(client, db, "POST", "/v2.0/floatingips", create, 404,
            "ExternalGatewayForFloatingIPNotFound", headers=MEMBER)
    other_ext, _ = external_network(client, "198.51.100.0/24",
                                    **{"provider:physical_network": "physnet1"})
    client.put(f"/v2.0/routers/{r['id']}", headers=MEMBER,
               json={"router": {"external_gateway_info": {"network_id": other_ext["id"]}}})
    refused(client, db, "POST", "/v2.0/floatingips", create, 404,
            "ExternalGatewayForFloatingIPNotFound", headers=MEMBER)
    fip = floatingip(client, ext["id"], headers=MEMBER)
    refused(client, db, "PUT", fip_path(fip), {"floatingip": {"port_id": vm["id"]}}, 404,
            "ExternalGatewayForFloatingIPNotFound", headers=MEMBER)
    # through the router whose gateway is on the floating IP's network it works
    on_other = floatingip(client, other_ext["id"], headers=MEMBER, port_id=vm["id"])
    assert on_other["router_id"] == r["id"]


def test_one_floating_ip_per_fixed_ip_and_external_network(
    client: TestClient, db: Database, ext: dict[str, Any], world: dict[str, Any]
) -> None:
    first = floatingip(client, ext["id"], headers=MEMBER, port_id=world["port"]["id"])
    error = refused(client, db, "POST", "/v2.0/floatingips", {"floatingip": {
        "floating_network_id": ext["id"], "port_id": world["port"]["id"]}}, 409,
        "FloatingIPPortAlreadyAssociated", headers=MEMBER)
    assert first["fixed_ip_address"] in error["message"]
    spare = floatingip(client, ext["id"], headers=MEMBER)
    refused(client, db, "PUT", fip_path(spare), {"floatingip": {"port_id": world["port"]["id"]}},
            409, "FloatingIPPortAlreadyAssociated", headers=MEMBER)
    # re-associating the same port is not a conflict
    assert update(client, first, port_id=world["port"]["id"])["port_id"] == world["port"]["id"]


def test_bad_floating_ip_requests_are_refused(client: TestClient, db: Database,
                                              ext: dict[str, Any], world: dict[str, Any]) -> None:
    internal = network(client, name="internal")
    subnet(client, internal["id"], "10.50.0.0/24")
    only_v6, _ = external_network(client, "fd00:ee::/64", **{"provider:physical_network": "physnet1"})
    dhcp = ports_of(client, network_id=world["net"]["id"], device_owner="network:dhcp")[0]
    cases: list[tuple[str, str, Any, int, str | None, dict[str, str] | None]] = [
        ("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": internal["id"]}}, 400,
         "BadRequest", None),
        ("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": only_v6["id"]}}, 400,
         "BadRequest", None),
        ("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": UNKNOWN_ID}}, 404,
         "NetworkNotFound", None),
        ("POST", "/v2.0/floatingips", {"floatingip": {}}, 400, None, None),
        ("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext["id"],
                                                      "fixed_ip_address": "10.0.0.5"}}, 400,
         "BadRequest", MEMBER),
        ("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext["id"],
                                                      "port_id": UNKNOWN_ID}}, 404, "PortNotFound",
         MEMBER),
        ("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext["id"],
                                                      "port_id": dhcp["id"]}}, 400, "BadRequest",
         None),
        ("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext["id"],
                                                      "floating_ip_address": "172.24.4.50"}}, 403,
         None, MEMBER),
        ("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext["id"],
                                                      "floating_ip_address": "10.1.1.1"}}, 400,
         None, None),
        ("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext["id"],
                                                      "port_id": "nope"}}, 400, None, MEMBER),
    ]
    for method, path, payload, status, kind, headers in cases:
        refused(client, db, method, path, payload, status, kind, headers=headers)
    fip = floatingip(client, ext["id"], headers=MEMBER)
    for attrs in ({"floating_network_id": ext["id"]}, {"floating_ip_address": "172.24.4.9"},
                  {"fixed_ip_address": "10.0.0.5"}, {"router_id": None}):
        refused(client, db, "PUT", fip_path(fip), {"floatingip": attrs}, 400, headers=MEMBER)


def test_the_admin_picks_the_floating_address(client: TestClient, db: Database,
                                              ext: dict[str, Any]) -> None:
    sub = body(client.get(f"/v2.0/subnets?network_id={ext['id']}"))["subnets"][0]
    fip = floatingip(client, ext["id"], floating_ip_address="172.24.4.77", project_id="p1")
    assert fip["floating_ip_address"] == "172.24.4.77" and fip["project_id"] == "p1"
    refused(client, db, "POST", "/v2.0/floatingips", {"floatingip": {
        "floating_network_id": ext["id"], "floating_ip_address": "172.24.4.77"}}, 409,
        "IpAddressAlreadyAllocated")
    by_subnet = floatingip(client, ext["id"], subnet_id=sub["id"])
    assert by_subnet["floating_ip_address"].startswith("172.24.4.")


def test_an_exhausted_external_network_gives_no_floating_ip(client: TestClient, db: Database) -> None:
    small, _ = external_network(client, "203.0.113.0/30", **{"provider:physical_network": "physnet1"})
    floatingip(client, small["id"])  # .2, the pool's only address
    refused(client, db, "POST", "/v2.0/floatingips", {"floatingip": {
        "floating_network_id": small["id"]}}, 409, "IpAddressGenerationFailure")


def test_floating_ips_of_other_projects_are_invisible(client: TestClient, db: Database,
                                                       ext: dict[str, Any], world: dict[str, Any]) -> None:
    fip = floatingip(client, ext["id"], headers=MEMBER)
    for method, payload in (("GET", None), ("PUT", {"floatingip": {"port_id": None}}),
                            ("DELETE", None)):
        refused(client, db, method, fip_path(fip), payload, 404, "FloatingIPNotFound",
                headers=OTHER)
    refused(client, db, "PUT", fip_path(fip), {"floatingip": {"port_id": None}}, 403,
            headers=READER)
    refused(client, db, "POST", "/v2.0/floatingips", {"floatingip": {
        "floating_network_id": ext["id"]}}, 403, headers=READER)
    # another project's port is not visible to the member
    theirs = routed_tenant(client, ext, "10.8.0.0/24", headers=OTHER)
    refused(client, db, "PUT", fip_path(fip), {"floatingip": {"port_id": theirs["port"]["id"]}},
            404, "PortNotFound", headers=MEMBER)
    # an admin may (as in Neutron)
    assert update(client, fip, headers=ADMIN, port_id=theirs["port"]["id"])["router_id"] == (
        theirs["router"]["id"])
    listed = body(client.get("/v2.0/floatingips", headers=OTHER))["floatingips"]
    assert listed == []


def test_floating_ips_are_filtered_by_port_address_and_router(
    client: TestClient, ext: dict[str, Any], world: dict[str, Any]
) -> None:
    bound = floatingip(client, ext["id"], headers=MEMBER, port_id=world["port"]["id"])
    spare = floatingip(client, ext["id"], headers=MEMBER)

    def ids(query: str) -> list[str]:
        return [f["id"] for f in body(client.get(f"/v2.0/floatingips?{query}",
                                                 headers=MEMBER))["floatingips"]]

    assert ids(f"port_id={world['port']['id']}") == [bound["id"]]
    assert ids(f"router_id={world['router']['id']}") == [bound["id"]]
    assert ids(f"floating_ip_address={spare['floating_ip_address']}") == [spare["id"]]
    assert ids("status=DOWN") == [spare["id"]]
    assert sorted(ids(f"floating_network_id={ext['id']}")) == sorted([bound["id"], spare["id"]])
    assert client.get("/v2.0/floatingips?subnet_id=x", headers=MEMBER).status_code == 400
    assert body(client.get(f"/v2.0/floatingips?fields=id&id={spare['id']}",
                           headers=MEMBER))["floatingips"] == [{"id": spare["id"]}]


def test_deleting_a_floating_ip_deletes_its_port(client: TestClient, db: Database,
                                                 ext: dict[str, Any]) -> None:
    fip = floatingip(client, ext["id"], headers=MEMBER)
    [holder] = ports_of(client, device_id=fip["id"])
    refused(client, db, "DELETE", f"/v2.0/ports/{holder['id']}", None, 409, "ServicePortInUse")
    assert client.delete(fip_path(fip), headers=MEMBER).status_code == 204
    assert ports_of(client, device_id=fip["id"]) == []
    assert client.get(fip_path(fip), headers=MEMBER).status_code == 404
    changes = sorted((c["kind"], c["op"]) for c in outbox_changes(db)[-1])
    assert changes == [("floatingip", "delete"), ("port", "delete")]


def test_deleting_or_readdressing_the_fixed_port_disassociates(
    client: TestClient, ext: dict[str, Any], world: dict[str, Any], db: Database
) -> None:
    vm = world["port"]
    fip = floatingip(client, ext["id"], headers=MEMBER, port_id=vm["id"])
    client.put(f"/v2.0/ports/{vm['id']}", headers=MEMBER,
               json={"port": {"fixed_ips": [{"ip_address": "10.0.0.77"}]}})
    moved = body(client.get(fip_path(fip), headers=MEMBER))["floatingip"]
    assert (moved["port_id"], moved["status"]) == (None, "DOWN")
    update(client, fip, port_id=vm["id"])
    assert client.delete(f"/v2.0/ports/{vm['id']}", headers=MEMBER).status_code == 204
    gone = body(client.get(fip_path(fip), headers=MEMBER))["floatingip"]
    assert (gone["port_id"], gone["fixed_ip_address"], gone["router_id"], gone["status"]) == (
        None, None, None, "DOWN")
    assert {"kind": "floatingip", "id": fip["id"], "op": "update"} in outbox_changes(db)[-1]


def test_an_interface_serving_a_floating_ip_cannot_be_removed(
    client: TestClient, db: Database, ext: dict[str, Any], world: dict[str, Any]
) -> None:
    fip = floatingip(client, ext["id"], headers=MEMBER, port_id=world["port"]["id"])
    r, sub = world["router"], world["subnet"]
    error = refused(client, db, "PUT", f"/v2.0/routers/{r['id']}/remove_router_interface",
                    {"subnet_id": sub["id"]}, 409, "RouterInterfaceInUseByFloatingIP",
                    headers=MEMBER)
    assert error["message"] == (f"Router interface for subnet {sub['id']} on router {r['id']} "
                                "cannot be deleted, as it is required by one or more floating IPs.")
    update(client, fip, port_id=None)
    remove_interface(client, r["id"], headers=MEMBER, subnet_id=sub["id"])


def test_floating_ip_changes_are_one_outbox_row(client: TestClient, db: Database,
                                                ext: dict[str, Any], world: dict[str, Any]) -> None:
    fip = floatingip(client, ext["id"], headers=MEMBER, port_id=world["port"]["id"])
    row = outbox_changes(db)[-1]
    assert sorted((c["kind"], c["op"]) for c in row) == [("floatingip", "create"),
                                                         ("port", "create")]
    assert {"kind": "floatingip", "id": fip["id"], "op": "create"} in row
    update(client, fip, port_id=None)
    assert outbox_changes(db)[-1] == [{"kind": "floatingip", "id": fip["id"], "op": "update"}]


def test_listing_floating_ips_costs_the_same_number_of_queries_for_2_or_20(
    client: TestClient, db: Database, ext: dict[str, Any], world: dict[str, Any]
) -> None:
    def add(n: int) -> None:
        for _ in range(n):
            vm = port(client, world["net"]["id"], headers=MEMBER)
            fip = floatingip(client, ext["id"], headers=MEMBER, port_id=vm["id"])
            client.put(f"/v2.0/floatingips/{fip['id']}/tags/t", headers=MEMBER)

    add(2)
    small = statements_to_list(client, db, "/v2.0/floatingips")
    add(18)
    assert statements_to_list(client, db, "/v2.0/floatingips") == small
    assert len(body(client.get("/v2.0/floatingips?tags=t"))["floatingips"]) == 20
