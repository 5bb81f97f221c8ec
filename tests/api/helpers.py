"""Helpers shared by the API tests: creating resources, reading Neutron error envelopes,
snapshotting the whole database and reading the outbox."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from sqlalchemy import select

from neutrino.db.engine import Database
from neutrino.db.meta import metadata
from neutrino.db.schema import outbox
from support.api_app import ADMIN, as_project

__all__ = ["ADMIN", "as_project"]

UNKNOWN_ID = "9b1d7f0e-5c4a-4c1e-8d2f-6a0e3b7c5d41"


def body(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of a response that must have `status`."""
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def neutron_error(response: httpx.Response, status: int, type: str | None = None) -> dict[str, str]:
    """The NeutronError of a refused request, checked for shape, status and (optionally) type."""
    assert response.status_code == status, (response.status_code, response.text)
    payload = response.json()
    assert set(payload) == {"NeutronError"}, payload
    error = payload["NeutronError"]
    assert set(error) == {"type", "message", "detail"}, error
    assert all(isinstance(v, str) for v in error.values()), error
    assert error["message"], error
    if type is not None:
        assert error["type"] == type, error
    return error


def create(client: Any, collection: str, resource: str, headers: dict[str, str] | None = None,
           **attrs: Any) -> dict[str, Any]:
    path = collection.replace("_", "-") if collection.startswith("security_group") else collection
    response = client.post(f"/v2.0/{path}", json={resource: attrs}, headers=headers)
    result: dict[str, Any] = body(response, 201)[resource]
    return result


def network(client: Any, headers: dict[str, str] | None = None, **attrs: Any) -> dict[str, Any]:
    attrs.setdefault("name", "net")
    return create(client, "networks", "network", headers, **attrs)


def subnet(client: Any, network_id: str, cidr: str = "10.0.0.0/24",
           headers: dict[str, str] | None = None, **attrs: Any) -> dict[str, Any]:
    attrs.setdefault("ip_version", 6 if ":" in cidr else 4)
    return create(client, "subnets", "subnet", headers, network_id=network_id, cidr=cidr, **attrs)


def port(client: Any, network_id: str, headers: dict[str, str] | None = None,
         **attrs: Any) -> dict[str, Any]:
    return create(client, "ports", "port", headers, network_id=network_id, **attrs)


def security_group(client: Any, headers: dict[str, str] | None = None,
                   **attrs: Any) -> dict[str, Any]:
    attrs.setdefault("name", "web")
    return create(client, "security_groups", "security_group", headers, **attrs)


def rule(client: Any, group_id: str, headers: dict[str, str] | None = None,
         **attrs: Any) -> dict[str, Any]:
    attrs.setdefault("direction", "ingress")
    return create(client, "security_group_rules", "security_group_rule", headers,
                  security_group_id=group_id, **attrs)


def ips(port_view: dict[str, Any]) -> list[str]:
    return [f["ip_address"] for f in port_view["fixed_ips"]]


def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: equal snapshots mean nothing changed."""
    with db.engine.connect() as conn:
        return {
            table.name: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
            for table in metadata.sorted_tables
        }


def outbox_changes(db: Database) -> list[list[dict[str, str]]]:
    """The outbox, oldest first: one list of {"kind", "id", "op"} per committed mutation."""
    with db.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.changes).order_by(outbox.c.revision))
        return [orjson.loads(changes) for (changes,) in rows]
