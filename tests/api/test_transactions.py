"""Specification of the write path: a rejected request changes nothing (every table, the outbox
included, is the same before and after), and every successful mutation adds exactly one outbox
row naming what it changed."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.helpers import (
    UNKNOWN_ID,
    as_project,
    body,
    network,
    outbox_changes,
    port,
    rule,
    security_group,
    snapshot,
    subnet,
)
from neutrino.db.engine import Database
from neutrino.db.outbox import changes_since


@pytest.fixture
def world(client: TestClient) -> dict[str, Any]:
    """A small populated state: a member project with a network, a full /29 subnet, ports, a
    group with a rule and tags; and an admin-owned shared network."""
    member = as_project("p1")
    net = network(client, headers=member, name="net")
    # pool .2-.6, filled by the five ports (no DHCP port: it would take .2)
    sub = subnet(client, net["id"], "10.0.0.0/29", headers=member, enable_dhcp=False)
    ports = [port(client, net["id"], headers=member, name=f"p{i}") for i in range(5)]
    group = security_group(client, headers=member, name="web")
    r = rule(client, group["id"], headers=member, protocol="tcp", port_range_min=22,
             port_range_max=22)
    client.put(f"/v2.0/networks/{net['id']}/tags", json={"tags": ["blue"]}, headers=member)
    shared = network(client, shared=True, name="shared")
    shared_subnet = subnet(client, shared["id"], "10.9.0.0/30", enable_dhcp=False)  # pool: .2
    port(client, shared["id"])
    return {"net": net, "subnet": sub, "ports": ports, "group": group, "rule": r,
            "shared": shared, "shared_subnet": shared_subnet}


# (description, method, path template, json body, headers, expected status)
REJECTED: list[tuple[str, str, str, Any, dict[str, str] | None, int]] = [
    ("invalid body", "POST", "/v2.0/networks", {"network": {"mtu": "x"}}, None, 400),
    ("subnet exhausted", "POST", "/v2.0/ports", {"port": {"network_id": "{net}"}},
     as_project("p1"), 409),
    ("exhausted on a new project's first port (default group rolled back)", "POST", "/v2.0/ports",
     {"port": {"network_id": "{shared}"}}, as_project("newcomer"), 409),
    ("ip in use", "POST", "/v2.0/ports",
     {"port": {"network_id": "{net}", "fixed_ips": [{"ip_address": "10.0.0.2"}]}},
     as_project("p1"), 409),
    ("mac in use", "POST", "/v2.0/ports",
     {"port": {"network_id": "{net}", "fixed_ips": [], "mac_address": "{mac0}"}},
     as_project("p1"), 409),
    ("move to an address in use", "PUT", "/v2.0/ports/{port0}",
     {"port": {"fixed_ips": [{"ip_address": "10.0.0.3"}], "name": "renamed"}},
     as_project("p1"), 409),
    ("disable port security with groups", "PUT", "/v2.0/ports/{port0}",
     {"port": {"port_security_enabled": False, "name": "renamed"}}, as_project("p1"), 409),
    ("overlapping subnet", "POST", "/v2.0/subnets",
     {"subnet": {"network_id": "{net}", "cidr": "10.0.0.0/24"}}, as_project("p1"), 409),
    ("subnet in use", "DELETE", "/v2.0/subnets/{subnet}", None, as_project("p1"), 409),
    ("network in use", "DELETE", "/v2.0/networks/{net}", None, as_project("p1"), 409),
    ("group in use", "DELETE", "/v2.0/security-groups/{default}", None, None, 409),
    ("duplicate rule", "POST", "/v2.0/security-group-rules",
     {"security_group_rule": {"security_group_id": "{group}", "direction": "ingress",
                              "protocol": "tcp", "port_range_min": 22, "port_range_max": 22}},
     as_project("p1"), 409),
    ("stale revision", "PUT", "/v2.0/networks/{net}", {"network": {"name": "x"}},
     {**as_project("p1"), "If-Match": "revision_number=1"}, 412),
    ("stale revision on delete", "DELETE", "/v2.0/security-group-rules/{rule}", None,
     {**as_project("p1"), "If-Match": "revision_number=9"}, 412),
    ("reader writes", "PUT", "/v2.0/networks/{net}", {"network": {"name": "x"}},
     as_project("p1", "reader"), 403),
    ("other project writes", "DELETE", "/v2.0/ports/{port0}", None, as_project("p2"), 404),
    ("member updates a shared network", "PUT", "/v2.0/networks/{shared}",
     {"network": {"name": "mine"}}, as_project("p1"), 403),
    ("member sets an admin-only attribute", "POST", "/v2.0/networks",
     {"network": {"router:external": True}}, as_project("p1"), 403),
    ("tag limit", "PUT", "/v2.0/networks/{net}/tags", {"tags": [f"t{i}" for i in range(51)]},
     as_project("p1"), 400),
    ("missing tag", "DELETE", "/v2.0/networks/{net}/tags/red", None, as_project("p1"), 404),
    ("bulk with one conflict", "POST", "/v2.0/networks",
     {"networks": [{"name": "ok"}, {"provider:network_type": "flat",
                                    "provider:physical_network": "public"},
                   {"provider:network_type": "flat", "provider:physical_network": "public"}]},
     None, 409),
    ("unknown network", "POST", "/v2.0/subnets",
     {"subnet": {"network_id": UNKNOWN_ID, "cidr": "10.0.0.0/24"}}, None, 404),
]


def fill(template: Any, names: dict[str, str]) -> Any:
    if isinstance(template, str):
        for key, value in names.items():
            template = template.replace("{" + key + "}", value)
        return template
    if isinstance(template, list):
        return [fill(t, names) for t in template]
    if isinstance(template, dict):
        return {k: fill(v, names) for k, v in template.items()}
    return template


@pytest.mark.parametrize(("description", "method", "path", "payload", "headers", "status"),
                         REJECTED, ids=[r[0] for r in REJECTED])
def test_a_rejected_request_changes_nothing(
    client: TestClient, db: Database, world: dict[str, Any], description: str, method: str,
    path: str, payload: Any, headers: dict[str, str] | None, status: int,
) -> None:
    default = body(client.get("/v2.0/security-groups?name=default",
                              headers=as_project("p1")))["security_groups"][0]
    names = {"net": world["net"]["id"], "subnet": world["subnet"]["id"],
             "shared": world["shared"]["id"], "port0": world["ports"][0]["id"],
             "mac0": world["ports"][0]["mac_address"], "group": world["group"]["id"],
             "rule": world["rule"]["id"], "default": default["id"]}
    before = snapshot(db)
    response = client.request(method, fill(path, names), json=fill(payload, names),
                              headers=headers)
    assert response.status_code == status, (description, response.text)
    assert snapshot(db) == before, description


# --- the outbox ----------------------------------------------------------------------------------------


class Recorder:
    """Runs one request and checks it added exactly one outbox row (or none for a read)."""

    def __init__(self, client: TestClient, db: Database) -> None:
        self.client = client
        self.db = db

    def __call__(self, method: str, path: str, status: int, payload: Any = None,
                 headers: dict[str, str] | None = None) -> tuple[Any, list[dict[str, str]]]:
        before = outbox_changes(self.db)
        response = self.client.request(method, path, json=payload, headers=headers)
        assert response.status_code == status, response.text
        after = outbox_changes(self.db)
        assert after[: len(before)] == before
        added = after[len(before):]
        result = response.json() if response.content else None
        if method == "GET":
            assert len(added) <= 1
            return result, added[0] if added else []
        assert len(added) == 1, (method, path, added)
        return result, added[0]


def change(kind: str, resource_id: str, op: str) -> dict[str, str]:
    return {"kind": kind, "id": resource_id, "op": op}


def test_every_mutation_adds_one_outbox_row_naming_what_changed(client: TestClient,
                                                                db: Database) -> None:
    call = Recorder(client, db)
    me = as_project("p1")

    created, row = call("POST", "/v2.0/networks", 201, {"network": {"name": "n"}}, me)
    net = created["network"]["id"]
    assert row == [change("network", net, "create")]

    created, row = call("POST", "/v2.0/subnets", 201,
                        {"subnet": {"network_id": net, "cidr": "10.0.0.0/24"}}, me)
    sub = created["subnet"]["id"]
    [dhcp] = body(client.get(f"/v2.0/ports?network_id={net}&device_owner=network:dhcp",
                             headers=me))["ports"]
    # the network's DHCP port comes with its first DHCP subnet, in the same revision
    assert row == [change("subnet", sub, "create"), change("port", dhcp["id"], "create")]

    created, row = call("POST", "/v2.0/ports", 201, {"port": {"network_id": net}}, me)
    first_port = created["port"]
    default = first_port["security_groups"][0]
    assert sorted(row, key=lambda c: c["kind"]) == [change("port", first_port["id"], "create"),
                                                    change("security_group", default, "create")]

    _, row = call("PUT", f"/v2.0/ports/{first_port['id']}", 200, {"port": {"name": "vm"}}, me)
    assert row == [change("port", first_port["id"], "update")]

    _, row = call("PUT", f"/v2.0/ports/{first_port['id']}/tags/t", 201, None, me)
    assert row == [change("port", first_port["id"], "update")]

    _, row = call("PUT", f"/v2.0/networks/{net}/tags", 200, {"tags": ["a"]}, me)
    assert row == [change("network", net, "update")]

    created, row = call("POST", "/v2.0/security-groups", 201, {"security_group": {"name": "g"}}, me)
    group = created["security_group"]["id"]
    assert row == [change("security_group", group, "create")]

    created, row = call("POST", "/v2.0/security-group-rules", 201, {"security_group_rule": {
        "security_group_id": group, "direction": "ingress", "protocol": "icmp"}}, me)
    rule_id = created["security_group_rule"]["id"]
    assert sorted(row, key=lambda c: c["kind"]) == [change("security_group", group, "update"),
                                                    change("security_group_rule", rule_id, "create")]

    created, row = call("POST", "/v2.0/ports", 201, {"ports": [{"network_id": net}] * 3}, me)
    assert row == [change("port", p["id"], "create") for p in created["ports"]]

    _, row = call("DELETE", f"/v2.0/security-group-rules/{rule_id}", 204, None, me)
    assert sorted(row, key=lambda c: c["kind"]) == [change("security_group", group, "update"),
                                                    change("security_group_rule", rule_id, "delete")]

    _, row = call("DELETE", f"/v2.0/security-groups/{group}", 204, None, me)
    assert row[-1] == change("security_group", group, "delete")

    for p in [first_port, *created["ports"]]:
        _, row = call("DELETE", f"/v2.0/ports/{p['id']}", 204, None, me)
        assert row == [change("port", p["id"], "delete")]

    _, row = call("PUT", f"/v2.0/subnets/{sub}", 200, {"subnet": {"name": "s"}}, me)
    assert row == [change("subnet", sub, "update")]

    _, row = call("DELETE", f"/v2.0/networks/{net}", 204, None, me)
    assert sorted(row, key=lambda c: c["kind"]) == [change("network", net, "delete"),
                                                    change("port", dhcp["id"], "delete"),
                                                    change("subnet", sub, "delete")]


def test_reads_add_nothing_to_the_outbox(client: TestClient, db: Database) -> None:
    call = Recorder(client, db)
    net = network(client)
    call("GET", "/v2.0/security-groups", 200)  # the admin project's default group, once
    for path in ("/v2.0/networks", f"/v2.0/networks/{net['id']}", "/v2.0/subnets", "/v2.0/ports",
                 "/v2.0/security-groups", "/v2.0/security-group-rules",
                 f"/v2.0/networks/{net['id']}/tags"):
        _, row = call("GET", path, 200)
        assert row == [], path


def test_listing_groups_of_a_new_project_records_its_default_group(client: TestClient,
                                                                   db: Database) -> None:
    call = Recorder(client, db)
    groups, row = call("GET", "/v2.0/security-groups", 200, headers=as_project("fresh"))
    assert row == [change("security_group", groups["security_groups"][0]["id"], "create")]


def test_the_outbox_replays_changes_in_commit_order(client: TestClient, db: Database) -> None:
    nets = [network(client, name=f"n{i}") for i in range(3)]
    with db.engine.connect() as conn:
        rows = changes_since(conn, 0)
    revisions = [revision for revision, _ in rows]
    assert revisions == sorted(set(revisions))
    assert [c.id for _, changes in rows for c in changes] == [n["id"] for n in nets]
    with db.engine.connect() as conn:
        assert changes_since(conn, revisions[1]) == rows[2:]
