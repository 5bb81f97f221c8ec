"""Port forwardings of floating IPs over HTTP on SQLite and PostgreSQL
(/v2.0/floatingips/{id}/port_forwardings): create, list, show, update, delete, the router the
floating IP takes, and Neutron's conflicts and refusals leaving the database as it was."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.helpers import ADMIN, UNKNOWN_ID, body, outbox_changes, port
from api.routing import (
    MEMBER,
    OTHER,
    READER,
    external_network,
    floatingip,
    refused,
    routed_tenant,
    tenant_network,
)
from neutrino.db.engine import Database


@pytest.fixture
def ext(client: TestClient) -> dict[str, Any]:
    return external_network(client)[0]


@pytest.fixture
def world(client: TestClient, ext: dict[str, Any]) -> dict[str, Any]:
    routed = routed_tenant(client, ext)
    routed["fip"] = floatingip(client, ext["id"], headers=MEMBER)
    routed["address"] = routed["port"]["fixed_ips"][0]["ip_address"]
    return routed


def pfs_path(fip: dict[str, Any], pf_id: str = "") -> str:
    return f"/v2.0/floatingips/{fip['id']}/port_forwardings" + (f"/{pf_id}" if pf_id else "")


def forwarding(world: dict[str, Any], **attrs: Any) -> dict[str, Any]:
    values = {"protocol": "tcp", "internal_port_id": world["port"]["id"],
              "internal_ip_address": world["address"], "internal_port": 22, "external_port": 2222}
    values.update(attrs)
    return values


def create_pf(client: TestClient, world: dict[str, Any], headers: dict[str, str] | None = None,
              **attrs: Any) -> dict[str, Any]:
    response = client.post(pfs_path(world["fip"]), json={"port_forwarding": forwarding(world, **attrs)},
                           headers=headers or MEMBER)
    result: dict[str, Any] = body(response, 201)["port_forwarding"]
    return result


def show_fip(client: TestClient, world: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = body(client.get(f"/v2.0/floatingips/{world['fip']['id']}",
                                             headers=MEMBER))["floatingip"]
    return result


def test_a_port_forwarding_and_what_it_does_to_its_floating_ip(
    client: TestClient, world: dict[str, Any]
) -> None:
    assert world["fip"]["status"] == "DOWN"
    pf = create_pf(client, world, description="ssh")
    assert pf == {"id": pf["id"], "protocol": "tcp", "internal_port_id": world["port"]["id"],
                  "internal_ip_address": world["address"], "internal_port": 22,
                  "external_port": 2222, "description": "ssh"}
    fip = show_fip(client, world)
    assert fip["router_id"] == world["router"]["id"] and fip["status"] == "ACTIVE"
    assert fip["port_id"] is None
    assert fip["port_forwardings"] == [{"internal_ip_address": world["address"],
                                        "protocol": "tcp", "internal_port": 22,
                                        "external_port": 2222}]
    assert body(client.get(pfs_path(world["fip"], pf["id"]), headers=MEMBER))["port_forwarding"] == pf
    assert body(client.get(pfs_path(world["fip"]), headers=MEMBER))["port_forwardings"] == [pf]


def test_port_forwardings_are_listed_filtered_sorted_and_paginated(
    client: TestClient, world: dict[str, Any]
) -> None:
    made = [create_pf(client, world, external_port=2000 + i, internal_port=20 + i,
                      protocol="udp" if i % 2 else "tcp") for i in range(4)]

    def listed(query: str) -> list[int]:
        return [p["external_port"] for p in body(client.get(
            f"{pfs_path(world['fip'])}?{query}", headers=MEMBER))["port_forwardings"]]

    assert listed("sort_key=external_port&sort_dir=desc") == [2003, 2002, 2001, 2000]
    assert listed("protocol=udp&sort_key=external_port") == [2001, 2003]
    assert listed("external_port=2002") == [2002]
    assert listed(f"internal_port_id={world['port']['id']}&limit=1&sort_key=external_port") == [2000]
    fields = body(client.get(f"{pfs_path(world['fip'])}?fields=id&external_port=2000",
                             headers=MEMBER))["port_forwardings"]
    assert fields == [{"id": made[0]["id"]}]
    for unsupported in ("internal_ip_address", "internal_port", "project_id"):
        response = client.get(f"{pfs_path(world['fip'])}?{unsupported}=1", headers=MEMBER)
        assert response.status_code == 400


def test_updating_a_port_forwarding(client: TestClient, db: Database, world: dict[str, Any]) -> None:
    pf = create_pf(client, world)
    path = pfs_path(world["fip"], pf["id"])
    updated = body(client.put(path, json={"port_forwarding": {
        "external_port": 8022, "internal_port": 2022, "description": "moved"}},
        headers=MEMBER))["port_forwarding"]
    assert (updated["external_port"], updated["internal_port"], updated["description"]) == (
        8022, 2022, "moved")
    # another port on the same subnet (so reached through the same router)
    other = port(client, world["net"]["id"], headers=MEMBER)
    moved = body(client.put(path, json={"port_forwarding": {"internal_port_id": other["id"]}},
                            headers=MEMBER))["port_forwarding"]
    assert moved["internal_port_id"] == other["id"]
    assert moved["internal_ip_address"] == other["fixed_ips"][0]["ip_address"]
    refused(client, db, "PUT", path, {"port_forwarding": {"internal_ip_address": "10.0.0.222"}},
            400, "BadRequest", headers=MEMBER)
    refused(client, db, "PUT", path, {"port_forwarding": {"protocol": "gre"}}, 400, headers=MEMBER)
    # its floating IP is named too: the compiler reads forwardings with their floating IP
    assert outbox_changes(db)[-1] == [{"kind": "port_forwarding", "id": pf["id"], "op": "update"},
                                      {"kind": "floatingip", "id": world["fip"]["id"],
                                       "op": "update"}]


def test_duplicate_port_forwardings_are_refused(client: TestClient, db: Database,
                                                world: dict[str, Any]) -> None:
    first = create_pf(client, world)
    path = pfs_path(world["fip"])
    error = refused(client, db, "POST", path,
                    {"port_forwarding": forwarding(world, internal_port=23)}, 400, "BadRequest",
                    headers=MEMBER)
    assert error["message"].startswith("Bad port_forwarding request: A duplicate port forwarding "
                                       "entry with same attributes already exists, conflicting "
                                       "values are {'floatingip_id'")
    refused(client, db, "POST", path, {"port_forwarding": forwarding(world, external_port=2223)},
            400, "BadRequest", headers=MEMBER)  # the same internal socket
    # the same ports over another protocol are another mapping
    create_pf(client, world, protocol="udp")
    second = create_pf(client, world, external_port=3333, internal_port=33)
    refused(client, db, "PUT", pfs_path(world["fip"], second["id"]),
            {"port_forwarding": {"external_port": 2222}}, 400, "BadRequest", headers=MEMBER)
    assert first["id"] != second["id"]


def test_a_floating_ip_is_either_associated_or_forwarding(
    client: TestClient, db: Database, ext: dict[str, Any], world: dict[str, Any]
) -> None:
    create_pf(client, world)
    spare = port(client, world["net"]["id"], headers=MEMBER)
    refused(client, db, "PUT", f"/v2.0/floatingips/{world['fip']['id']}",
            {"floatingip": {"port_id": spare["id"]}}, 409, "FipInUseByPortForwarding",
            headers=MEMBER)
    associated = floatingip(client, ext["id"], headers=MEMBER, port_id=spare["id"])
    other_world = dict(world, fip=associated)
    refused(client, db, "POST", pfs_path(associated), {"port_forwarding": forwarding(other_world)},
            409, "FloatingIPPortAlreadyAssociated", headers=MEMBER)
    # a port with a floating IP of its own cannot be the target of a port forwarding
    error = refused(client, db, "POST", pfs_path(world["fip"]), {"port_forwarding": forwarding(
        world, internal_port_id=spare["id"], internal_ip_address=spare["fixed_ips"][0]["ip_address"],
        external_port=4444)}, 409, "PortHasBindingFloatingIP", headers=MEMBER)
    assert associated["floating_ip_address"] in error["message"]


def test_a_port_forwarding_needs_a_route_and_an_address_of_its_port(
    client: TestClient, db: Database, world: dict[str, Any]
) -> None:
    path = pfs_path(world["fip"])
    unrouted_net, _ = tenant_network(client, "10.3.0.0/24")
    unrouted = port(client, unrouted_net["id"], headers=MEMBER)
    error = refused(client, db, "POST", path, {"port_forwarding": forwarding(
        world, internal_port_id=unrouted["id"],
        internal_ip_address=unrouted["fixed_ips"][0]["ip_address"])}, 400, "BadRequest",
        headers=MEMBER)
    assert "is not reachable from subnet" in error["message"]
    refused(client, db, "POST", path, {"port_forwarding": forwarding(
        world, internal_ip_address="10.0.0.250")}, 400, "BadRequest", headers=MEMBER)
    v6_net, _ = tenant_network(client, "fd00:9::/64")
    v6_only = port(client, v6_net["id"], headers=MEMBER)
    refused(client, db, "POST", path, {"port_forwarding": forwarding(
        world, internal_port_id=v6_only["id"], internal_ip_address="fd00:9::5")}, 400,
        "BadRequest", headers=MEMBER)
    refused(client, db, "POST", path, {"port_forwarding": forwarding(
        world, internal_port_id=UNKNOWN_ID)}, 404, "PortNotFound", headers=MEMBER)
    bad_values: list[dict[str, Any]] = [
        {"protocol": "gre"}, {"external_port": 0}, {"internal_port": 65536},
        {"external_port": "http"}, {"internal_ip_address": "x"}, {"internal_port_id": "x"},
        {"description": "d" * 1025},
    ]
    for bad in bad_values:
        refused(client, db, "POST", path, {"port_forwarding": forwarding(world, **bad)}, 400,
                headers=MEMBER)
    for missing in ("protocol", "internal_port_id", "internal_ip_address", "internal_port",
                    "external_port"):
        payload = forwarding(world)
        del payload[missing]
        refused(client, db, "POST", path, {"port_forwarding": payload}, 400, headers=MEMBER)
    refused(client, db, "POST", path, {"port_forwarding": forwarding(world, id=UNKNOWN_ID)}, 400,
            headers=MEMBER)


def test_port_forwardings_through_another_router_are_refused(
    client: TestClient, db: Database, ext: dict[str, Any], world: dict[str, Any]
) -> None:
    create_pf(client, world)
    elsewhere = routed_tenant(client, ext, "10.4.0.0/24")
    error = refused(client, db, "POST", pfs_path(world["fip"]), {"port_forwarding": forwarding(
        world, internal_port_id=elsewhere["port"]["id"],
        internal_ip_address=elsewhere["port"]["fixed_ips"][0]["ip_address"], external_port=80)},
        400, "BadRequest", headers=MEMBER)
    assert "can not reach it" in error["message"]


def test_deleting_the_last_port_forwarding_frees_the_floating_ip(
    client: TestClient, db: Database, world: dict[str, Any]
) -> None:
    first = create_pf(client, world)
    second = create_pf(client, world, external_port=80, internal_port=8080)
    assert client.delete(pfs_path(world["fip"], first["id"]), headers=MEMBER).status_code == 204
    assert show_fip(client, world)["status"] == "ACTIVE"
    assert client.delete(pfs_path(world["fip"], second["id"]), headers=MEMBER).status_code == 204
    fip = show_fip(client, world)
    assert (fip["router_id"], fip["status"], fip["port_forwardings"]) == (None, "DOWN", [])
    assert sorted((c["kind"], c["op"]) for c in outbox_changes(db)[-1]) == [
        ("floatingip", "update"), ("port_forwarding", "delete")]
    refused(client, db, "DELETE", pfs_path(world["fip"], second["id"]), None, 404,
            "PortForwardingNotFound", headers=MEMBER)


def test_deleting_the_internal_port_or_the_floating_ip_deletes_port_forwardings(
    client: TestClient, world: dict[str, Any], db: Database
) -> None:
    pf = create_pf(client, world)
    assert client.delete(f"/v2.0/ports/{world['port']['id']}", headers=MEMBER).status_code == 204
    assert body(client.get(pfs_path(world["fip"]), headers=MEMBER))["port_forwardings"] == []
    assert {"kind": "port_forwarding", "id": pf["id"], "op": "delete"} in outbox_changes(db)[-1]
    assert show_fip(client, world)["status"] == "DOWN"
    other = port(client, world["net"]["id"], headers=MEMBER)
    again = create_pf(client, world, internal_port_id=other["id"],
                      internal_ip_address=other["fixed_ips"][0]["ip_address"])
    assert client.delete(f"/v2.0/floatingips/{world['fip']['id']}",
                         headers=MEMBER).status_code == 204
    assert {"kind": "port_forwarding", "id": again["id"], "op": "delete"} in outbox_changes(db)[-1]


def test_port_forwardings_follow_their_floating_ips_visibility(
    client: TestClient, db: Database, world: dict[str, Any]
) -> None:
    pf = create_pf(client, world)
    item = pfs_path(world["fip"], pf["id"])
    for method, path, payload in (
        ("GET", pfs_path(world["fip"]), None),
        ("GET", item, None),
        ("POST", pfs_path(world["fip"]), {"port_forwarding": forwarding(world, external_port=1)}),
        ("PUT", item, {"port_forwarding": {"external_port": 1}}),
        ("DELETE", item, None),
    ):
        refused(client, db, method, path, payload, 404, "FloatingIPNotFound", headers=OTHER)
    refused(client, db, "POST", pfs_path(world["fip"]),
            {"port_forwarding": forwarding(world, external_port=1)}, 403, headers=READER)
    refused(client, db, "DELETE", item, None, 403, headers=READER)
    assert body(client.get(item, headers=READER))["port_forwarding"]["id"] == pf["id"]
    assert body(client.get(item, headers=ADMIN))["port_forwarding"]["id"] == pf["id"]
    refused(client, db, "GET", f"/v2.0/floatingips/{UNKNOWN_ID}/port_forwardings", None, 404,
            "FloatingIPNotFound", headers=MEMBER)
    # a port forwarding is only found under its own floating IP
    other_fip = floatingip(client, world["fip"]["floating_network_id"], headers=MEMBER)
    refused(client, db, "GET", pfs_path(other_fip, pf["id"]), None, 404, "PortForwardingNotFound",
            headers=MEMBER)
    refused(client, db, "DELETE", pfs_path(other_fip, pf["id"]), None, 404,
            "PortForwardingNotFound", headers=MEMBER)


def test_an_interface_serving_a_port_forwarding_cannot_be_removed(
    client: TestClient, db: Database, world: dict[str, Any]
) -> None:
    create_pf(client, world)
    refused(client, db, "PUT", f"/v2.0/routers/{world['router']['id']}/remove_router_interface",
            {"subnet_id": world["subnet"]["id"]}, 409, "RouterInterfaceInUseByFloatingIP",
            headers=MEMBER)
