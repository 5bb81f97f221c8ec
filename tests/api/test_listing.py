"""Specification of Neutron's list semantics: filters on any attribute (repeated parameter =
OR), booleans, list attributes (fixed_ips), `fields`, sorting, and limit/marker pagination with
next/previous links walked in both directions."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi.testclient import TestClient

from api.helpers import UNKNOWN_ID, body, network, neutron_error, port, security_group, subnet


def names(client: TestClient, query: str, collection: str = "networks") -> list[str]:
    return [item["name"] for item in body(client.get(f"/v2.0/{collection}?{query}"))[collection]]


@pytest.fixture
def five(client: TestClient) -> list[dict[str, Any]]:
    """Networks n1..n5; n2 and n4 down; n5 with description 'last'."""
    nets = []
    for i in range(1, 6):
        nets.append(network(client, name=f"n{i}", admin_state_up=i % 2 == 1,
                            description="last" if i == 5 else ""))
    return nets


# --- filters -----------------------------------------------------------------------------------------


def test_a_filter_selects_matching_items(client: TestClient, five: list[dict[str, Any]]) -> None:
    assert names(client, "name=n3") == ["n3"]
    assert names(client, "description=last") == ["n5"]
    assert names(client, f"id={five[0]['id']}") == ["n1"]
    assert names(client, "name=nothing") == []


def test_a_repeated_filter_means_or(client: TestClient, five: list[dict[str, Any]]) -> None:
    assert sorted(names(client, "name=n1&name=n4&name=n9")) == ["n1", "n4"]


def test_different_filters_combine_with_and(client: TestClient, five: list[dict[str, Any]]) -> None:
    assert names(client, "name=n1&name=n2&admin_state_up=true") == ["n1"]


@pytest.mark.parametrize(("value", "expected"), [("true", ["n1", "n3", "n5"]), ("True", ["n1", "n3", "n5"]),
                                                 ("false", ["n2", "n4"]), ("0", ["n2", "n4"])])
def test_boolean_filters_accept_neutrons_spellings(
    client: TestClient, five: list[dict[str, Any]], value: str, expected: list[str]
) -> None:
    assert sorted(names(client, f"admin_state_up={value}")) == expected


def test_a_value_that_cannot_match_gives_an_empty_list(client: TestClient,
                                                       five: list[dict[str, Any]]) -> None:
    assert names(client, "id=not-a-uuid") == []
    assert names(client, "mtu=huge") == []


def test_filters_work_on_every_resource(client: TestClient) -> None:
    net = network(client, name="net")
    sub = subnet(client, net["id"], "10.0.0.0/24", name="sub")
    subnet(client, network(client)["id"], "10.1.0.0/24", name="other")
    port(client, net["id"], name="p", device_owner="compute:nova", device_id="vm-1")
    port(client, net["id"], name="q")
    security_group(client, name="web")
    assert names(client, f"network_id={net['id']}", "subnets") == ["sub"]
    assert names(client, "cidr=10.1.0.0/24", "subnets") == ["other"]
    assert names(client, "ip_version=4&enable_dhcp=true", "subnets") != []
    assert names(client, "device_owner=compute:nova", "ports") == ["p"]
    assert names(client, "device_id=vm-1", "ports") == ["p"]
    assert names(client, f"network_id={net['id']}&name=q", "ports") == ["q"]
    groups = body(client.get("/v2.0/security-groups?name=web"))["security_groups"]
    assert [g["name"] for g in groups] == ["web"]
    rules = body(client.get(f"/v2.0/security-group-rules?security_group_id={groups[0]['id']}"
                            "&direction=egress"))["security_group_rules"]
    assert sorted(r["ethertype"] for r in rules) == ["IPv4", "IPv6"]
    assert body(client.get(f"/v2.0/subnets/{sub['id']}"))["subnet"]["name"] == "sub"


def test_ports_can_be_filtered_by_fixed_ips(client: TestClient) -> None:
    net = network(client)
    # without DHCP, so that only the ports below hold addresses on these subnets
    a = subnet(client, net["id"], "10.0.0.0/24", enable_dhcp=False)
    b = subnet(client, net["id"], "10.0.1.0/24", enable_dhcp=False)
    port(client, net["id"], name="p1", fixed_ips=[{"ip_address": "10.0.0.5"}])
    port(client, net["id"], name="p2", fixed_ips=[{"ip_address": "10.0.1.5"}])
    port(client, net["id"], name="p3", fixed_ips=[{"ip_address": "10.0.0.15"}])
    assert names(client, "fixed_ips=ip_address=10.0.0.5", "ports") == ["p1"]
    assert sorted(names(client, f"fixed_ips=subnet_id={a['id']}", "ports")) == ["p1", "p3"]
    assert names(client, f"fixed_ips=subnet_id={b['id']}", "ports") == ["p2"]
    assert sorted(names(client, "fixed_ips=ip_address_substr=.0.1", "ports")) == ["p2", "p3"]
    assert sorted(names(client, "fixed_ips=ip_address=10.0.0.5&fixed_ips=ip_address=10.0.1.5",
                        "ports")) == ["p1", "p2"]


@pytest.mark.parametrize("query", ["colour=red", "availability_zones=az1", "security_group_rules=x"])
def test_an_unknown_filter_is_a_bad_request(client: TestClient, query: str) -> None:
    collection = "security-groups" if "rules" in query else "networks"
    neutron_error(client.get(f"/v2.0/{collection}?{query}"), 400)


# --- fields ------------------------------------------------------------------------------------------


def test_fields_select_the_attributes_returned(client: TestClient, five: list[dict[str, Any]]) -> None:
    items = body(client.get("/v2.0/networks?fields=id&fields=name"))["networks"]
    assert all(set(item) == {"id", "name"} for item in items)
    assert len(items) == 5


def test_fields_also_apply_to_show(client: TestClient, five: list[dict[str, Any]]) -> None:
    shown = body(client.get(f"/v2.0/networks/{five[0]['id']}?fields=name&fields=mtu"))["network"]
    assert shown == {"name": "n1", "mtu": five[0]["mtu"]}


def test_fields_combine_with_filters(client: TestClient, five: list[dict[str, Any]]) -> None:
    items = body(client.get("/v2.0/networks?fields=id&name=n2"))["networks"]
    assert items == [{"id": five[1]["id"]}]


# --- sorting -----------------------------------------------------------------------------------------


def test_lists_sort_by_a_key_in_either_direction(client: TestClient, five: list[dict[str, Any]]) -> None:
    assert names(client, "sort_key=name&sort_dir=asc") == ["n1", "n2", "n3", "n4", "n5"]
    assert names(client, "sort_key=name&sort_dir=desc") == ["n5", "n4", "n3", "n2", "n1"]
    assert names(client, "sort_key=name") == ["n1", "n2", "n3", "n4", "n5"]


def test_lists_sort_by_several_keys(client: TestClient, five: list[dict[str, Any]]) -> None:
    query = "sort_key=admin_state_up&sort_dir=desc&sort_key=name&sort_dir=desc"
    assert names(client, query) == ["n5", "n3", "n1", "n4", "n2"]


@pytest.mark.parametrize("query", ["sort_key=colour", "sort_key=name&sort_dir=up",
                                   "sort_key=name&sort_dir=asc&sort_dir=desc",
                                   "sort_key=subnets", "limit=-1", "limit=many"])
def test_invalid_sorting_or_limits_are_bad_requests(client: TestClient, query: str) -> None:
    neutron_error(client.get(f"/v2.0/networks?{query}"), 400)


# --- pagination ---------------------------------------------------------------------------------------


def follow(client: TestClient, href: str) -> dict[str, Any]:
    parts = urlsplit(href)
    result: dict[str, Any] = body(client.get(f"{parts.path}?{parts.query}"))
    return result


def link(page: dict[str, Any], rel: str, collection: str = "networks") -> str | None:
    for item in page.get(f"{collection}_links", []):
        if item["rel"] == rel:
            href: str = item["href"]
            return href
    return None


@pytest.fixture
def many(client: TestClient) -> list[dict[str, Any]]:
    return [network(client, name=f"m{i:02d}") for i in range(11)]


@pytest.mark.parametrize("limit", [1, 3, 4, 11, 20])
def test_walking_pages_forward_and_back_sees_every_item_once(
    client: TestClient, many: list[dict[str, Any]], limit: int
) -> None:
    expected = sorted(n["name"] for n in many)
    page = body(client.get(f"/v2.0/networks?limit={limit}&sort_key=name"))
    pages = [page]
    while (href := link(page, "next")) is not None:
        page = follow(client, href)
        pages.append(page)
    forward = [n["name"] for p in pages for n in p["networks"]]
    assert forward == expected
    assert all(0 < len(p["networks"]) <= limit for p in pages)
    assert len(pages) == -(-len(expected) // limit)
    assert link(pages[0], "previous") is None
    backward_pages = [pages[-1]]
    while (href := link(backward_pages[-1], "previous")) is not None:
        backward_pages.append(follow(client, href))
    backward = [n["name"] for p in reversed(backward_pages) for n in p["networks"]]
    assert backward == expected


def test_pagination_keeps_filters_and_sorting_in_its_links(client: TestClient,
                                                           many: list[dict[str, Any]]) -> None:
    query = "limit=2&sort_key=name&sort_dir=desc&name=m01&name=m02&name=m03&name=m04&name=m05"
    first = body(client.get(f"/v2.0/networks?{query}"))
    assert [n["name"] for n in first["networks"]] == ["m05", "m04"]
    href = link(first, "next")
    assert href is not None
    params = dict(parse_qsl(urlsplit(href).query))
    assert (params["limit"], params["sort_key"], params["sort_dir"], params["marker"]) == (
        "2", "name", "desc", first["networks"][-1]["id"])
    second = follow(client, href)
    assert [n["name"] for n in second["networks"]] == ["m03", "m02"]
    third = follow(client, link(second, "next") or "")
    assert [n["name"] for n in third["networks"]] == ["m01"]
    assert link(third, "next") is None


def test_a_page_after_a_marker_starts_after_it(client: TestClient, many: list[dict[str, Any]]) -> None:
    ordered = sorted(many, key=lambda n: n["name"])
    page = body(client.get(f"/v2.0/networks?sort_key=name&limit=2&marker={ordered[4]['id']}"))
    assert [n["name"] for n in page["networks"]] == ["m05", "m06"]


def test_pages_of_fields_still_link(client: TestClient, many: list[dict[str, Any]]) -> None:
    page = body(client.get("/v2.0/networks?limit=5&fields=name"))
    assert all(set(n) == {"name"} for n in page["networks"])
    assert link(page, "next") is not None


def test_an_unknown_marker_is_not_found(client: TestClient, many: list[dict[str, Any]]) -> None:
    neutron_error(client.get(f"/v2.0/networks?limit=2&marker={UNKNOWN_ID}"), 404)


def test_a_limit_of_zero_means_no_limit(client: TestClient, many: list[dict[str, Any]]) -> None:
    page = body(client.get("/v2.0/networks?limit=0"))
    assert len(page["networks"]) == 11
    assert "networks_links" not in page


def test_ports_paginate_with_a_list_filter(client: TestClient) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/24", enable_dhcp=False)  # only these 5 ports on it
    created = [port(client, net["id"], name=f"p{i}") for i in range(5)]
    query = f"fixed_ips=subnet_id={sub['id']}&limit=2&sort_key=name"
    page = body(client.get(f"/v2.0/ports?{query}"))
    seen = [p["name"] for p in page["ports"]]
    while (href := link(page, "next", "ports")) is not None:
        page = follow(client, href)
        seen += [p["name"] for p in page["ports"]]
    assert seen == sorted(p["name"] for p in created)
