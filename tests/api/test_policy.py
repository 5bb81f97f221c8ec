"""Specification of policy (RBAC through the noauth headers): members see and change their own
project only (other projects' resources are 404, not 403), readers only read, shared networks
are visible to and usable by everyone but changed only by their owner, and admin-only
attributes are refused to and hidden from non-admins."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.helpers import as_project, body, network, neutron_error, port, rule, security_group, subnet

A = as_project("project-a")
B = as_project("project-b")
A_READER = as_project("project-a", "reader")

PORT_ADMIN_ATTRS = ("binding:host_id", "binding:profile", "binding:vif_type", "binding:vif_details")
NETWORK_ADMIN_ATTRS = ("provider:network_type", "provider:physical_network",
                       "provider:segmentation_id")


@pytest.fixture
def owned(client: TestClient) -> dict[str, dict[str, Any]]:
    """One of each resource, owned by project A."""
    net = network(client, headers=A, name="a-net")
    sub = subnet(client, net["id"], headers=A, name="a-sub")
    group = security_group(client, headers=A, name="a-group")
    created = {
        "networks": net,
        "subnets": sub,
        "ports": port(client, net["id"], headers=A, name="a-port"),
        "security-groups": group,
        "security-group-rules": rule(client, group["id"], headers=A, protocol="udp",
                                     port_range_min=53, port_range_max=53),
    }
    # as they are now (the network has its subnet, the group its new rule)
    return {path: body(client.get(f"/v2.0/{path}/{item['id']}", headers=A))[KEYS[path]]
            for path, item in created.items()}


KEYS = {"networks": "network", "subnets": "subnet", "ports": "port",
        "security-groups": "security_group", "security-group-rules": "security_group_rule"}


@pytest.fixture(params=list(KEYS))
def path(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


# --- projects are isolated ---------------------------------------------------------------------


def test_a_member_cannot_see_another_projects_resources(
    client: TestClient, owned: dict[str, dict[str, Any]], path: str
) -> None:
    item = owned[path]
    listed = body(client.get(f"/v2.0/{path}", headers=B))[path.replace("-", "_")]
    assert item["id"] not in {x["id"] for x in listed}
    neutron_error(client.get(f"/v2.0/{path}/{item['id']}", headers=B), 404)


def test_a_member_cannot_change_another_projects_resources(
    client: TestClient, owned: dict[str, dict[str, Any]], path: str
) -> None:
    item = owned[path]
    neutron_error(client.put(f"/v2.0/{path}/{item['id']}", json={KEYS[path]: {"description": "x"}},
                             headers=B), 404)
    neutron_error(client.delete(f"/v2.0/{path}/{item['id']}", headers=B), 404)
    neutron_error(client.put(f"/v2.0/{path}/{item['id']}/tags/x", headers=B), 404)
    assert body(client.get(f"/v2.0/{path}/{item['id']}", headers=A))[KEYS[path]] == item


def test_a_member_sees_and_changes_its_own_resources(
    client: TestClient, owned: dict[str, dict[str, Any]], path: str
) -> None:
    item = owned[path]
    listed = body(client.get(f"/v2.0/{path}", headers=A))[path.replace("-", "_")]
    assert item["id"] in {x["id"] for x in listed}
    updated = client.put(f"/v2.0/{path}/{item['id']}", json={KEYS[path]: {"description": "mine"}},
                         headers=A)
    assert body(updated)[KEYS[path]]["description"] == "mine"


def test_a_member_cannot_build_on_another_projects_network(
    client: TestClient, owned: dict[str, dict[str, Any]]
) -> None:
    net_id = owned["networks"]["id"]
    neutron_error(client.post("/v2.0/subnets", json={"subnet": {"network_id": net_id,
                                                                "cidr": "10.5.0.0/24"}},
                              headers=B), 404, "NetworkNotFound")
    neutron_error(client.post("/v2.0/ports", json={"port": {"network_id": net_id}}, headers=B), 404,
                  "NetworkNotFound")


def test_a_member_cannot_use_another_projects_security_group(
    client: TestClient, owned: dict[str, dict[str, Any]]
) -> None:
    group_id = owned["security-groups"]["id"]
    mine = network(client, headers=B)
    neutron_error(client.post("/v2.0/ports", json={"port": {"network_id": mine["id"],
                                                            "security_groups": [group_id]}},
                              headers=B), 404, "SecurityGroupNotFound")
    neutron_error(client.post("/v2.0/security-group-rules", json={"security_group_rule": {
        "security_group_id": group_id, "direction": "ingress"}}, headers=B), 404)
    own_group = security_group(client, headers=B)
    neutron_error(client.post("/v2.0/security-group-rules", json={"security_group_rule": {
        "security_group_id": own_group["id"], "direction": "ingress",
        "remote_group_id": group_id}}, headers=B), 404)


def test_a_member_cannot_create_for_another_project(client: TestClient) -> None:
    response = client.post("/v2.0/networks", json={"network": {"project_id": "project-b"}}, headers=A)
    neutron_error(response, 403)
    mine = client.post("/v2.0/networks", json={"network": {"project_id": "project-a"}}, headers=A)
    assert body(mine, 201)["network"]["project_id"] == "project-a"


def test_an_admin_sees_every_project(client: TestClient, owned: dict[str, dict[str, Any]],
                                     path: str) -> None:
    network(client, headers=B)
    listed = body(client.get(f"/v2.0/{path}"))[path.replace("-", "_")]
    assert owned[path]["id"] in {x["id"] for x in listed}
    if path == "networks":
        assert {x["project_id"] for x in listed} >= {"project-a", "project-b"}


def test_an_admin_may_change_another_projects_resources(
    client: TestClient, owned: dict[str, dict[str, Any]], path: str
) -> None:
    item = owned[path]
    updated = client.put(f"/v2.0/{path}/{item['id']}", json={KEYS[path]: {"description": "admin"}})
    assert body(updated)[KEYS[path]]["description"] == "admin"


# --- readers -------------------------------------------------------------------------------------


def test_a_reader_reads_its_project(client: TestClient, owned: dict[str, dict[str, Any]],
                                    path: str) -> None:
    item = owned[path]
    assert body(client.get(f"/v2.0/{path}/{item['id']}", headers=A_READER))[KEYS[path]] == item
    listed = body(client.get(f"/v2.0/{path}", headers=A_READER))[path.replace("-", "_")]
    assert item["id"] in {x["id"] for x in listed}


def test_a_reader_cannot_write(client: TestClient, owned: dict[str, dict[str, Any]], path: str) -> None:
    item = owned[path]
    neutron_error(client.put(f"/v2.0/{path}/{item['id']}", json={KEYS[path]: {"description": "x"}},
                             headers=A_READER), 403)
    neutron_error(client.delete(f"/v2.0/{path}/{item['id']}", headers=A_READER), 403)
    neutron_error(client.delete(f"/v2.0/{path}/{item['id']}/tags", headers=A_READER), 403)
    assert body(client.get(f"/v2.0/{path}/{item['id']}", headers=A))[KEYS[path]] == item


def test_a_reader_cannot_create(client: TestClient, owned: dict[str, dict[str, Any]]) -> None:
    net_id = owned["networks"]["id"]
    for path, payload in (
        ("networks", {"network": {}}),
        ("subnets", {"subnet": {"network_id": net_id, "cidr": "10.7.0.0/24"}}),
        ("ports", {"port": {"network_id": net_id}}),
        ("security-groups", {"security_group": {"name": "x"}}),
        ("security-group-rules", {"security_group_rule": {
            "security_group_id": owned["security-groups"]["id"], "direction": "egress",
            "protocol": "tcp"}}),
    ):
        neutron_error(client.post(f"/v2.0/{path}", json=payload, headers=A_READER), 403)


def test_a_reader_of_another_project_sees_nothing(client: TestClient,
                                                  owned: dict[str, dict[str, Any]]) -> None:
    reader = as_project("project-b", "reader")
    assert body(client.get("/v2.0/networks", headers=reader))["networks"] == []
    neutron_error(client.get(f"/v2.0/ports/{owned['ports']['id']}", headers=reader), 404)


# --- shared and external networks ---------------------------------------------------------------


@pytest.fixture
def shared(client: TestClient) -> dict[str, Any]:
    net = network(client, shared=True, name="shared")
    subnet(client, net["id"], "172.16.0.0/24", name="shared-sub")
    return net


def test_a_shared_network_and_its_subnets_are_visible_to_everyone(client: TestClient,
                                                                  shared: dict[str, Any]) -> None:
    for who in (A, B, A_READER):
        assert [n["name"] for n in body(client.get("/v2.0/networks", headers=who))["networks"]] == [
            "shared"]
        assert body(client.get(f"/v2.0/networks/{shared['id']}", headers=who))["network"]["shared"]
        assert [s["name"] for s in body(client.get("/v2.0/subnets", headers=who))["subnets"]] == [
            "shared-sub"]


def test_other_projects_may_attach_ports_to_a_shared_network(client: TestClient,
                                                             shared: dict[str, Any]) -> None:
    a_port = port(client, shared["id"], headers=A)
    b_port = port(client, shared["id"], headers=B)
    assert a_port["project_id"] == "project-a"
    assert a_port["fixed_ips"][0]["ip_address"] != b_port["fixed_ips"][0]["ip_address"]
    assert [p["id"] for p in body(client.get("/v2.0/ports", headers=B))["ports"]] == [b_port["id"]]
    neutron_error(client.get(f"/v2.0/ports/{a_port['id']}", headers=B), 404)


def test_other_projects_cannot_change_a_shared_network(client: TestClient,
                                                       shared: dict[str, Any]) -> None:
    url = f"/v2.0/networks/{shared['id']}"
    neutron_error(client.put(url, json={"network": {"name": "mine"}}, headers=A), 403)
    neutron_error(client.delete(url, headers=A), 403)
    neutron_error(client.put(f"{url}/tags/mine", headers=A), 403)
    sub_id = body(client.get(url))["network"]["subnets"][0]
    neutron_error(client.put(f"/v2.0/subnets/{sub_id}", json={"subnet": {"name": "x"}}, headers=A), 403)
    neutron_error(client.delete(f"/v2.0/subnets/{sub_id}", headers=A), 403)
    neutron_error(client.post("/v2.0/subnets", json={"subnet": {"network_id": shared["id"],
                                                                "cidr": "172.17.0.0/24"}},
                              headers=A), 403)
    assert body(client.get(url))["network"]["name"] == "shared"


def test_an_external_network_is_visible_but_not_for_ports(client: TestClient) -> None:
    ext = network(client, name="public", **{"router:external": True})
    subnet(client, ext["id"], "203.0.113.0/24")
    assert [n["name"] for n in body(client.get("/v2.0/networks", headers=A))["networks"]] == ["public"]
    neutron_error(client.post("/v2.0/ports", json={"port": {"network_id": ext["id"]}}, headers=A), 403)


# --- admin-only attributes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attrs",
    [{"shared": True}, {"shared": False}, {"router:external": True},
     {"provider:network_type": "vxlan"}, {"provider:physical_network": "physnet1"},
     {"provider:segmentation_id": 5}],
)
def test_a_member_cannot_set_admin_only_network_attributes(client: TestClient,
                                                           attrs: dict[str, Any]) -> None:
    neutron_error(client.post("/v2.0/networks", json={"network": attrs}, headers=A), 403)


def test_a_member_cannot_share_its_network(client: TestClient) -> None:
    net = network(client, headers=A)
    neutron_error(client.put(f"/v2.0/networks/{net['id']}", json={"network": {"shared": True}},
                             headers=A), 403)


@pytest.mark.parametrize("attrs", [{"binding:host_id": "compute-1"},
                                   {"binding:profile": {"pci_slot": "0000:05:00.1"}}])
def test_a_member_cannot_set_admin_only_port_attributes(client: TestClient,
                                                        attrs: dict[str, Any]) -> None:
    net = network(client, headers=A)
    neutron_error(client.post("/v2.0/ports", json={"port": {"network_id": net["id"], **attrs}},
                              headers=A), 403)
    p = port(client, net["id"], headers=A)
    neutron_error(client.put(f"/v2.0/ports/{p['id']}", json={"port": attrs}, headers=A), 403)


def test_admin_only_attributes_are_hidden_from_members(client: TestClient) -> None:
    net = network(client, headers=A)
    p = port(client, net["id"], headers=A, **{"binding:vnic_type": "direct"})
    assert not set(NETWORK_ADMIN_ATTRS) & set(net)
    assert not set(PORT_ADMIN_ATTRS) & set(p)
    assert p["binding:vnic_type"] == "direct"
    for who in (A, A_READER):
        shown = body(client.get(f"/v2.0/networks/{net['id']}", headers=who))["network"]
        assert not set(NETWORK_ADMIN_ATTRS) & set(shown)
        listed = body(client.get("/v2.0/ports", headers=who))["ports"]
        assert not set(PORT_ADMIN_ATTRS) & set(listed[0])
        only = body(client.get("/v2.0/networks?fields=provider:network_type&fields=name",
                               headers=who))["networks"]
        assert only == [{"name": net["name"]}]
    as_admin = body(client.get(f"/v2.0/ports/{p['id']}"))["port"]
    assert set(PORT_ADMIN_ATTRS) <= set(as_admin)
    as_admin_net = body(client.get(f"/v2.0/networks/{net['id']}"))["network"]
    assert as_admin_net["provider:network_type"] == "geneve"
