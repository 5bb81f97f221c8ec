"""Specification of tags (Neutron's standard-attr-tag extension) on every taggable resource:
replacing, adding, checking and removing tags, and the tags / tags-any / not-tags /
not-tags-any list filters."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.helpers import UNKNOWN_ID, as_project, body, network, neutron_error, port, security_group, subnet

COLLECTIONS = {
    "networks": "network",
    "subnets": "subnet",
    "ports": "port",
    "security-groups": "security_group",
}


def make(client: TestClient, path: str) -> dict[str, Any]:
    if path == "networks":
        return network(client)
    if path == "subnets":
        return subnet(client, network(client)["id"])
    if path == "ports":
        return port(client, network(client)["id"])
    return security_group(client)


@pytest.fixture(params=list(COLLECTIONS))
def tagged(request: pytest.FixtureRequest, client: TestClient) -> tuple[str, dict[str, Any]]:
    return request.param, make(client, request.param)


def url(path: str, item: dict[str, Any], tail: str = "") -> str:
    return f"/v2.0/{path}/{item['id']}/tags{tail}"


def view(client: TestClient, path: str, item: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = body(client.get(f"/v2.0/{path}/{item['id']}"))[COLLECTIONS[path]]
    return result


def test_tags_can_be_replaced_as_a_whole(client: TestClient, tagged: tuple[str, dict[str, Any]]) -> None:
    path, item = tagged
    assert sorted(body(client.put(url(path, item), json={"tags": ["red", "blue"]}))["tags"]) == [
        "blue", "red"]
    assert sorted(body(client.get(url(path, item)))["tags"]) == ["blue", "red"]
    assert sorted(view(client, path, item)["tags"]) == ["blue", "red"]
    assert body(client.put(url(path, item), json={"tags": ["green"]}))["tags"] == ["green"]
    assert view(client, path, item)["tags"] == ["green"]


def test_one_tag_can_be_added_checked_and_removed(client: TestClient,
                                                  tagged: tuple[str, dict[str, Any]]) -> None:
    path, item = tagged
    assert client.put(url(path, item, "/red")).status_code == 201
    assert client.put(url(path, item, "/red")).status_code == 201  # idempotent
    assert client.get(url(path, item, "/red")).status_code == 204
    neutron_error(client.get(url(path, item, "/blue")), 404)
    assert view(client, path, item)["tags"] == ["red"]
    assert client.delete(url(path, item, "/red")).status_code == 204
    neutron_error(client.delete(url(path, item, "/red")), 404)
    assert view(client, path, item)["tags"] == []


def test_all_tags_can_be_removed_at_once(client: TestClient, tagged: tuple[str, dict[str, Any]]) -> None:
    path, item = tagged
    client.put(url(path, item), json={"tags": ["a", "b", "c"]})
    assert client.delete(url(path, item)).status_code == 204
    assert body(client.get(url(path, item)))["tags"] == []


def test_changing_tags_bumps_the_revision(client: TestClient, tagged: tuple[str, dict[str, Any]]) -> None:
    path, item = tagged
    client.put(url(path, item, "/a"))
    client.put(url(path, item), json={"tags": ["b"]})
    assert view(client, path, item)["revision_number"] == item["revision_number"] + 2


def test_a_tag_may_hold_any_text_up_to_255_characters(client: TestClient) -> None:
    net = network(client)
    tags = ["x" * 255, "with space", "comma,inside", "ünïcödé"]
    assert sorted(body(client.put(url("networks", net), json={"tags": tags}))["tags"]) == sorted(tags)


@pytest.mark.parametrize(
    "payload",
    [{"tags": "red"}, {"tags": [1]}, {"tags": ["x" * 256]}, {"tags": ["a", "a"]},
     {"tags": [f"t{i}" for i in range(51)]}, {"tag": ["a"]}, ["a"]],
    ids=["not-a-list", "not-strings", "too-long", "duplicate", "more-than-50", "wrong-key",
         "bare-list"],
)
def test_an_invalid_tag_list_is_refused_and_changes_nothing(client: TestClient, payload: Any) -> None:
    net = network(client)
    client.put(url("networks", net), json={"tags": ["keep"]})
    neutron_error(client.put(url("networks", net), json=payload), 400)
    assert body(client.get(url("networks", net)))["tags"] == ["keep"]


def test_a_51st_tag_is_refused(client: TestClient) -> None:
    net = network(client)
    client.put(url("networks", net), json={"tags": [f"t{i}" for i in range(50)]})
    neutron_error(client.put(url("networks", net, "/one-too-many")), 400)
    assert client.put(url("networks", net, "/t7")).status_code == 201  # already there


def test_tags_of_an_unknown_resource_are_not_found(client: TestClient) -> None:
    neutron_error(client.get(f"/v2.0/networks/{UNKNOWN_ID}/tags"), 404, "NetworkNotFound")
    neutron_error(client.put(f"/v2.0/networks/{UNKNOWN_ID}/tags", json={"tags": []}), 404)
    neutron_error(client.put(f"/v2.0/networks/{UNKNOWN_ID}/tags/a"), 404)


def test_another_projects_tags_are_invisible(client: TestClient) -> None:
    net = network(client, headers=as_project("p1"))
    other = as_project("p2")
    neutron_error(client.get(url("networks", net), headers=other), 404)
    neutron_error(client.put(url("networks", net, "/mine"), headers=other), 404)
    neutron_error(client.delete(url("networks", net), headers=other), 404)


def test_a_reader_cannot_tag(client: TestClient) -> None:
    net = network(client, headers=as_project("p1"))
    reader = as_project("p1", "reader")
    assert body(client.get(url("networks", net), headers=reader))["tags"] == []
    neutron_error(client.put(url("networks", net, "/mine"), headers=reader), 403)
    neutron_error(client.put(url("networks", net), json={"tags": ["a"]}, headers=reader), 403)


# --- filters ---------------------------------------------------------------------------------------


@pytest.fixture
def tagged_networks(client: TestClient) -> dict[str, str]:
    """name -> id of networks tagged: a {red}, b {red, blue}, c {blue}, d {}."""
    ids = {}
    for name, tags in (("a", ["red"]), ("b", ["red", "blue"]), ("c", ["blue"]), ("d", [])):
        net = network(client, name=name)
        client.put(url("networks", net), json={"tags": tags})
        ids[name] = net["id"]
    return ids


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tags=red", "ab"),
        ("tags=red,blue", "b"),
        ("tags=red&tags=blue", "b"),
        ("tags-any=red,blue", "abc"),
        ("tags-any=green", ""),
        ("not-tags=red", "cd"),
        ("not-tags=red,blue", "acd"),
        ("not-tags-any=red,blue", "d"),
        ("not-tags-any=red", "cd"),
        ("tags=red&not-tags=blue", "a"),
        ("tags-any=red,blue&not-tags-any=blue", "a"),
    ],
)
def test_tag_filters_follow_neutrons_semantics(
    client: TestClient, tagged_networks: dict[str, str], query: str, expected: str
) -> None:
    found = body(client.get(f"/v2.0/networks?{query}"))["networks"]
    assert "".join(sorted(n["name"] for n in found)) == expected
