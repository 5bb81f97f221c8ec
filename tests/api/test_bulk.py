"""Specification of bulk creation: a list body creates every item in one transaction, and one
bad item (invalid, conflicting or forbidden) means nothing is created."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.helpers import as_project, body, ips, network, neutron_error, snapshot, subnet
from neutrino.db.engine import Database


def test_a_list_body_creates_every_item(client: TestClient) -> None:
    created = body(client.post("/v2.0/networks", json={"networks": [{"name": "a"}, {"name": "b"}]}),
                   201)["networks"]
    assert [n["name"] for n in created] == ["a", "b"]
    listed = body(client.get("/v2.0/networks"))["networks"]
    assert sorted(n["id"] for n in listed) == sorted(n["id"] for n in created)


def test_bulk_items_may_be_wrapped_in_their_resource_key(client: TestClient) -> None:
    created = body(client.post("/v2.0/networks", json={"networks": [{"network": {"name": "a"}}]}),
                   201)["networks"]
    assert [n["name"] for n in created] == ["a"]


def test_bulk_ports_get_distinct_addresses(client: TestClient) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    ports = body(client.post("/v2.0/ports", json={"ports": [{"network_id": net["id"]}] * 10}),
                 201)["ports"]
    addresses = [ips(p)[0] for p in ports]
    assert len(set(addresses)) == 10
    assert len({p["mac_address"] for p in ports}) == 10


def test_bulk_subnets_and_rules_are_created(client: TestClient) -> None:
    net = network(client)
    subnets = body(client.post("/v2.0/subnets", json={"subnets": [
        {"network_id": net["id"], "cidr": "10.0.0.0/24"},
        {"network_id": net["id"], "cidr": "fd00::/64", "ip_version": 6},
    ]}), 201)["subnets"]
    assert [s["ip_version"] for s in subnets] == [4, 6]
    group = body(client.post("/v2.0/security-groups", json={"security_group": {"name": "g"}}),
                 201)["security_group"]
    rules = body(client.post("/v2.0/security-group-rules", json={"security_group_rules": [
        {"security_group_id": group["id"], "direction": "ingress", "protocol": "tcp",
         "port_range_min": port, "port_range_max": port} for port in (22, 80, 443)
    ]}), 201)["security_group_rules"]
    assert [r["port_range_min"] for r in rules] == [22, 80, 443]


@pytest.mark.parametrize(
    ("collection", "items", "status"),
    [
        ("networks", [{"name": "ok"}, {"mtu": "big"}], 400),
        ("networks", [{"name": "ok"}, {"colour": "red"}], 400),
        ("networks", [{"name": "ok"}, {"provider:network_type": "vlan",
                                       "provider:physical_network": "physnet1",
                                       "provider:segmentation_id": 200},
                      {"provider:network_type": "vlan", "provider:physical_network": "physnet1",
                       "provider:segmentation_id": 200}], 409),
        ("ports", "SAME_IP", 409),
        ("ports", "EXHAUST", 409),
        ("subnets", "OVERLAP", 409),
    ],
    ids=["invalid", "unknown-attribute", "segment-conflict", "same-ip", "exhausted", "overlap"],
)
def test_one_bad_item_means_nothing_is_created(
    client: TestClient, db: Database, collection: str, items: Any, status: int
) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/29")  # pool .2-.6
    if items == "SAME_IP":
        items = [{"network_id": net["id"]}, {"network_id": net["id"], "fixed_ips": [
            {"subnet_id": sub["id"], "ip_address": "10.0.0.2"}]}]
    elif items == "EXHAUST":
        items = [{"network_id": net["id"]}] * 6
    elif items == "OVERLAP":
        other = network(client)
        items = [{"network_id": other["id"], "cidr": "10.1.0.0/24"},
                 {"network_id": other["id"], "cidr": "10.1.0.0/16"}]
    before = snapshot(db)
    neutron_error(client.post(f"/v2.0/{collection}", json={collection: items}), status)
    assert snapshot(db) == before


def test_a_bulk_request_with_a_forbidden_item_creates_nothing(client: TestClient, db: Database) -> None:
    member = as_project("p1")
    before = snapshot(db)
    response = client.post("/v2.0/networks", json={"networks": [{"name": "ok"}, {"shared": True}]},
                           headers=member)
    neutron_error(response, 403)
    assert snapshot(db) == before
    assert body(client.get("/v2.0/networks", headers=member))["networks"] == []
