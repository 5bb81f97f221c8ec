"""Specification of Neutron's standard attributes on every resource: id, project_id and
tenant_id, name, description, timestamps, revision_number (bumped on every change) and the
`If-Match: revision_number=N` precondition on updates and deletes."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.helpers import as_project, body, network, neutron_error, port, rule, security_group, subnet

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _network(client: TestClient) -> dict[str, Any]:
    return network(client)


def _subnet(client: TestClient) -> dict[str, Any]:
    return subnet(client, network(client)["id"])


def _port(client: TestClient) -> dict[str, Any]:
    return port(client, network(client)["id"])


def _group(client: TestClient) -> dict[str, Any]:
    return security_group(client)


def _rule(client: TestClient) -> dict[str, Any]:
    return rule(client, security_group(client)["id"], protocol="tcp", port_range_min=22,
                port_range_max=22)


# (URL path, resource key, factory)
KINDS: dict[str, tuple[str, str, Callable[[TestClient], dict[str, Any]]]] = {
    "network": ("networks", "network", _network),
    "subnet": ("subnets", "subnet", _subnet),
    "port": ("ports", "port", _port),
    "security_group": ("security-groups", "security_group", _group),
    "security_group_rule": ("security-group-rules", "security_group_rule", _rule),
}


class Kind:
    def __init__(self, client: TestClient, name: str) -> None:
        self.client = client
        self.path, self.key, self.factory = KINDS[name]
        self.name = name

    def make(self) -> dict[str, Any]:
        return self.factory(self.client)

    def url(self, item: dict[str, Any]) -> str:
        return f"/v2.0/{self.path}/{item['id']}"

    def get(self, item: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = body(self.client.get(self.url(item)))[self.key]
        return result

    def put(self, item: dict[str, Any], headers: dict[str, str] | None = None, **attrs: Any) -> Any:
        return self.client.put(self.url(item), json={self.key: attrs}, headers=headers)


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest, client: TestClient) -> Kind:
    return Kind(client, request.param)


def test_every_resource_has_the_standard_attributes(kind: Kind) -> None:
    item = kind.make()
    uuid.UUID(item["id"])
    assert item["project_id"] == item["tenant_id"] == "admin-project"
    assert TIMESTAMP.fullmatch(item["created_at"])
    assert TIMESTAMP.fullmatch(item["updated_at"])
    assert item["updated_at"] >= item["created_at"]
    assert item["revision_number"] == 1
    assert item["description"] == ""
    assert item["tags"] == [] or kind.name == "security_group_rule"
    if kind.name != "security_group_rule":
        assert isinstance(item["name"], str)
    assert kind.get(item) == item


def test_a_description_can_be_set_and_changed(kind: Kind) -> None:
    item = kind.make()
    updated = body(kind.put(item, description="changed"))[kind.key]
    assert updated["description"] == "changed"
    assert kind.get(item)["description"] == "changed"


def test_an_update_bumps_the_revision_number(kind: Kind) -> None:
    item = kind.make()
    first = body(kind.put(item, description="one"))[kind.key]
    second = body(kind.put(item, description="two"))[kind.key]
    assert (first["revision_number"], second["revision_number"]) == (2, 3)
    assert second["updated_at"] >= item["updated_at"]
    assert second["created_at"] == item["created_at"]
    assert kind.get(item)["revision_number"] == 3


@pytest.mark.parametrize("attr", ["id", "created_at", "updated_at", "revision_number",
                                  "project_id", "tenant_id"])
def test_standard_attributes_other_than_name_and_description_are_read_only(
    kind: Kind, attr: str
) -> None:
    item = kind.make()
    neutron_error(kind.put(item, **{attr: item[attr]}), 400)
    assert kind.get(item) == item


def test_a_description_longer_than_255_characters_is_refused(kind: Kind) -> None:
    item = kind.make()
    neutron_error(kind.put(item, description="x" * 256), 400)


def test_a_name_longer_than_255_characters_is_refused(client: TestClient) -> None:
    neutron_error(client.post("/v2.0/networks", json={"network": {"name": "x" * 256}}), 400)
    assert network(client, name="x" * 255)["name"] == "x" * 255


def test_an_admin_may_create_for_another_project(client: TestClient) -> None:
    net = network(client, project_id="p2")
    assert net["project_id"] == net["tenant_id"] == "p2"
    via_tenant = network(client, tenant_id="p3")
    assert via_tenant["project_id"] == "p3"


def test_project_id_and_tenant_id_must_agree(client: TestClient) -> None:
    response = client.post("/v2.0/networks",
                           json={"network": {"project_id": "p2", "tenant_id": "p3"}})
    neutron_error(response, 400)


def test_a_member_creates_in_its_own_project(client: TestClient) -> None:
    net = network(client, headers=as_project("p1"))
    assert net["project_id"] == "p1"


# --- If-Match --------------------------------------------------------------------------------------


def test_an_update_matching_the_revision_succeeds(kind: Kind) -> None:
    item = kind.make()
    response = kind.put(item, headers={"If-Match": "revision_number=1"}, description="cas")
    assert body(response)[kind.key]["revision_number"] == 2


def test_an_update_with_a_stale_revision_fails_and_changes_nothing(kind: Kind) -> None:
    item = kind.make()
    kind.put(item, description="newer")
    response = kind.put(item, headers={"If-Match": "revision_number=1"}, description="lost")
    neutron_error(response, 412)
    current = kind.get(item)
    assert (current["description"], current["revision_number"]) == ("newer", 2)


def test_a_delete_with_a_stale_revision_fails(client: TestClient) -> None:
    net = network(client)
    client.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "newer"}})
    response = client.delete(f"/v2.0/networks/{net['id']}", headers={"If-Match": "revision_number=1"})
    neutron_error(response, 412)
    assert body(client.get(f"/v2.0/networks/{net['id']}"))["network"]["name"] == "newer"
    response = client.delete(f"/v2.0/networks/{net['id']}", headers={"If-Match": "revision_number=2"})
    assert response.status_code == 204


def test_a_malformed_revision_constraint_is_a_bad_request(client: TestClient) -> None:
    net = network(client)
    response = client.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "x"}},
                          headers={"If-Match": "revision_number=one"})
    neutron_error(response, 400)


def test_an_if_match_without_a_revision_is_ignored(client: TestClient) -> None:
    net = network(client)
    response = client.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "x"}},
                          headers={"If-Match": '"some-etag"'})
    assert body(response)["network"]["name"] == "x"
