"""Helpers shared by the router, floating IP and port forwarding API tests: an external network,
a member's tenant network, routers, interfaces, floating IPs, and refused requests checked to
change nothing."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import event

from api.helpers import body, create, network, neutron_error, snapshot, subnet
from neutrino.db.engine import Database
from neutrino.faults.inspector import CLOCK_THREAD

MEMBER = {"X-Project-Id": "p1", "X-Roles": "member,reader"}
OTHER = {"X-Project-Id": "p2", "X-Roles": "member,reader"}
READER = {"X-Project-Id": "p1", "X-Roles": "reader"}
EXT_CIDR = "172.24.4.0/24"


def external_network(
    client: Any, cidr: str = EXT_CIDR, **attrs: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An admin's external flat network on physnet `public` with one IPv4 subnet (no DHCP)."""
    attrs.setdefault("provider:network_type", "flat")
    attrs.setdefault("provider:physical_network", "public")
    net = network(client, name="ext", **{"router:external": True}, **attrs)
    sub = subnet(client, net["id"], cidr, enable_dhcp=False)
    return net, sub


def tenant_network(client: Any, cidr: str = "10.0.0.0/24", headers: dict[str, str] | None = None,
                   **attrs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    net = network(client, headers=headers or MEMBER, name=f"net-{cidr}")
    sub = subnet(client, net["id"], cidr, headers=headers or MEMBER, **attrs)
    return net, sub


def router(client: Any, headers: dict[str, str] | None = None, **attrs: Any) -> dict[str, Any]:
    attrs.setdefault("name", "r1")
    return create(client, "routers", "router", headers, **attrs)


def add_interface(client: Any, router_id: str, headers: dict[str, str] | None = None,
                  **interface: str) -> dict[str, Any]:
    response = client.put(f"/v2.0/routers/{router_id}/add_router_interface", json=interface,
                          headers=headers)
    result: dict[str, Any] = body(response)
    return result


def remove_interface(client: Any, router_id: str, headers: dict[str, str] | None = None,
                     **interface: str) -> dict[str, Any]:
    response = client.put(f"/v2.0/routers/{router_id}/remove_router_interface", json=interface,
                          headers=headers)
    result: dict[str, Any] = body(response)
    return result


def set_gateway(client: Any, router_id: str, info: dict[str, Any] | None,
                headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.put(f"/v2.0/routers/{router_id}",
                          json={"router": {"external_gateway_info": info}}, headers=headers)
    result: dict[str, Any] = body(response)["router"]
    return result


def floatingip(client: Any, network_id: str, headers: dict[str, str] | None = None,
               **attrs: Any) -> dict[str, Any]:
    return create(client, "floatingips", "floatingip", headers, floating_network_id=network_id,
                  **attrs)


def routed_tenant(client: Any, ext: dict[str, Any], cidr: str = "10.0.0.0/24",
                  headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A member's network and subnet, a router with the subnet as interface and its gateway on
    `ext`, and a port on the network."""
    net, sub = tenant_network(client, cidr, headers=headers)
    r = router(client, headers=headers or MEMBER, external_gateway_info={"network_id": ext["id"]})
    interface = add_interface(client, r["id"], headers=headers or MEMBER, subnet_id=sub["id"])
    p = create(client, "ports", "port", headers or MEMBER, network_id=net["id"], name="vm")
    return {"net": net, "subnet": sub, "router": r, "interface": interface, "port": p}


def refused(client: Any, db: Database, method: str, path: str, payload: Any, status: int,
            type: str | None = None, headers: dict[str, str] | None = None) -> dict[str, str]:
    """Send a request that must be refused with Neutron's error `type`; check nothing changed
    (every table, the outbox included)."""
    before = snapshot(db)
    response = client.request(method, path, json=payload, headers=headers)
    error = neutron_error(response, status, type)
    assert snapshot(db) == before, f"{method} {path} changed the database"
    return error


def ports_of(client: Any, **filters: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    result: list[dict[str, Any]] = body(client.get(f"/v2.0/ports?{query}"))["ports"]
    return result


def statements_to_list(client: Any, db: Database, path: str) -> int:
    """How many SQL statements one GET of `path` runs (a list must not cost one per item).
    The fault notifier's background worker (webhook deliveries, on a 1 s tick) and the
    inspector's clock (its own thread) share the engine: their statements are not the
    listing's."""
    statements: list[str] = []

    def count(*args: Any) -> None:
        if threading.current_thread().name.startswith(CLOCK_THREAD):
            return
        if "fault_deliveries" not in args[2] and "fault_subscriptions" not in args[2]:
            statements.append(args[2])

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert client.get(path).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return len(statements)
