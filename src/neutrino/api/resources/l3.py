"""What routers, floating IPs and port forwardings share, and what ports must respect of them.

Routers and floating IPs own *service ports*, created and deleted here in the transaction of the
router or floating IP change, never through the port API:

* a router's interfaces, `device_owner` network:router_interface (network:router_interface_
  distributed when the router is distributed, network:ha_router_replicated_interface when it is
  HA and not distributed), owned by the router's project;
* a router's gateway port on an external network, network:router_gateway, and each floating
  IP's port, network:floatingip, both with an empty project (hidden from everyone but admins,
  as in Neutron).

`router_ports` records which ports a router owns and as what. The port API may not delete a
port a router or floating IP owns (`check_port_deletable`, Neutron's ServicePortInUse), and
deleting or readdressing a port releases what pointed at its addresses (`release_port`):
floating IPs are disassociated, port forwardings deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.orm import aliased

from neutrino.api.attributes import UNSET, prepare_create
from neutrino.api.errors import BadRequest, Conflict, NotFound, resource_not_found
from neutrino.context import RequestContext
from neutrino.db.outbox import Change
from neutrino.db.schema import (
    floatingips,
    ip_allocations,
    port_forwardings,
    port_security_groups,
    ports,
    router_ports,
    routers,
    tags,
)
from neutrino.timeutil import now_iso

ROUTER_INTERFACE = "network:router_interface"
ROUTER_INTERFACE_DISTRIBUTED = "network:router_interface_distributed"
ROUTER_INTERFACE_HA = "network:ha_router_replicated_interface"
ROUTER_GATEWAY = "network:router_gateway"
FLOATINGIP_OWNER = "network:floatingip"
INTERFACE_OWNERS = (ROUTER_INTERFACE, ROUTER_INTERFACE_DISTRIBUTED, ROUTER_INTERFACE_HA)
# ports the port API may not delete while their router or floating IP exists
L3_OWNERS = (*INTERFACE_OWNERS, ROUTER_GATEWAY, FLOATINGIP_OWNER)

FIP_ACTIVE = "ACTIVE"
FIP_DOWN = "DOWN"
FIP_PORT_STATUS = "N/A"  # Neutron's PORT_STATUS_NOTAPPLICABLE


def interface_owner(distributed: bool, ha: bool) -> str:
    """The device_owner of a router's interfaces (Neutron's _get_device_owner)."""
    if distributed:
        return ROUTER_INTERFACE_DISTRIBUTED
    return ROUTER_INTERFACE_HA if ha else ROUTER_INTERFACE


def fip_status(router_id: str | None) -> str:
    """A floating IP is ACTIVE while a router serves it (associated, or with port forwardings)."""
    return FIP_ACTIVE if router_id else FIP_DOWN


def bad_request(resource: str, message: str) -> BadRequest:
    """neutron-lib's BadRequest: 'Bad <resource> request: <message>.'"""
    text = message if message.endswith(".") else f"{message}."
    return BadRequest(f"Bad {resource} request: {text}", type="BadRequest")


def in_use(type_name: str, message: str) -> Conflict:
    return Conflict(message, type=type_name)


def not_found(type_name: str, message: str) -> NotFound:
    return NotFound(message, type=type_name)


# --- service ports ------------------------------------------------------------------------------

def create_service_port(
    conn: Connection, ports_resource: Any, *, network_id: str, project_id: str, device_owner: str,
    device_id: str, fixed_ips: Any = UNSET,
) -> tuple[dict[str, Any], list[Change]]:
    """Create a port owned by a router or floating IP, with the port resource's own IPAM, MAC
    allocation and defaults (no security groups: its owner is network:*)."""
    item: dict[str, Any] = {"network_id": network_id, "device_owner": device_owner,
                            "device_id": device_id, "name": ""}
    if fixed_ips is not UNSET:
        item["fixed_ips"] = fixed_ips
    admin = RequestContext.admin("neutrino")
    values = prepare_create(admin, "port", item, ports_resource.attributes)
    values["project_id"] = project_id
    view: dict[str, Any]
    view, changes = ports_resource.create_view(conn, admin, values)
    return view, changes


def delete_service_port(conn: Connection, ports_resource: Any, port_id: str) -> list[Change]:
    """Delete a port a router or floating IP owned (its addresses freed, tags and all)."""
    held = conn.execute(
        select(ip_allocations.c.subnet_id, ip_allocations.c.ip_address)
        .where(ip_allocations.c.port_id == port_id)
    ).all()
    ports_resource._free_addresses(conn, [{"subnet_id": s, "ip_address": a} for s, a in held])
    conn.execute(delete(ip_allocations).where(ip_allocations.c.port_id == port_id))
    conn.execute(delete(port_security_groups).where(port_security_groups.c.port_id == port_id))
    conn.execute(delete(router_ports).where(router_ports.c.port_id == port_id))
    conn.execute(delete(tags).where(tags.c.resource_type == "port", tags.c.resource_id == port_id))
    conn.execute(delete(ports).where(ports.c.id == port_id))
    return [Change("port", port_id, "delete")]


def fixed_ips_of(conn: Connection, port_id: str) -> list[tuple[str, str]]:
    """(subnet_id, ip_address) of a port, in its fixed_ips order."""
    return [(r.subnet_id, r.ip_address) for r in conn.execute(
        select(ip_allocations.c.subnet_id, ip_allocations.c.ip_address)
        .where(ip_allocations.c.port_id == port_id).order_by(ip_allocations.c.position))]


def is_ipv4(address: str) -> bool:
    return ":" not in address


# --- which router serves a floating IP --------------------------------------------------------

def router_for_floatingip(
    conn: Connection, port_id: str, network_id: str, subnet: Any, external_network_id: str
) -> str:
    """Neutron's get_router_for_floatingip: a router with an interface on the fixed address's
    subnet and its gateway on the floating IP's network (the one whose interface holds the
    subnet's gateway IP first); else 404 ExternalGatewayForFloatingIPNotFound."""
    interface = aliased(ports)
    gateway = aliased(ports)
    rows = conn.execute(
        select(router_ports.c.router_id, ip_allocations.c.ip_address)
        .select_from(
            router_ports.join(interface, interface.c.id == router_ports.c.port_id)
            .join(ip_allocations, ip_allocations.c.port_id == interface.c.id)
            .join(routers, routers.c.id == router_ports.c.router_id)
            .join(gateway, gateway.c.id == routers.c.gw_port_id)
        )
        .where(interface.c.network_id == network_id,
               router_ports.c.port_type.in_(INTERFACE_OWNERS),
               ip_allocations.c.subnet_id == subnet.id,
               gateway.c.network_id == external_network_id)
        .order_by(routers.c.created_at, routers.c.id)
    ).all()
    for router_id, address in rows:
        if address == subnet.gateway_ip:
            return str(router_id)
    if rows:
        return str(rows[0][0])
    raise not_found(
        "ExternalGatewayForFloatingIPNotFound",
        f"External network {external_network_id} is not reachable from subnet {subnet.id}.  "
        f"Therefore, cannot associate Port {port_id} with a Floating IP.")


# --- what the port API must respect -------------------------------------------------------------

def check_port_deletable(conn: Connection, port: dict[str, Any]) -> None:
    """Neutron's prevent_l3_port_deletion: a port with addresses owned by an existing router or
    floating IP is deleted through them, not through the port API (409 ServicePortInUse)."""
    owner = port["device_owner"]
    if owner not in L3_OWNERS or not port["fixed_ips"]:
        return
    table = floatingips if owner == FLOATINGIP_OWNER else routers
    if conn.execute(select(table.c.id).where(table.c.id == port["device_id"])).first() is None:
        return  # a stale port: its router or floating IP is gone
    raise in_use("ServicePortInUse", f"Port {port['id']} cannot be deleted directly via the port "
                 f"API: has device owner {owner}.")


def release_port(
    conn: Connection, port_id: str, kept_addresses: Iterable[str] | None = None
) -> list[Change]:
    """Before a port is deleted (`kept_addresses` None) or readdressed: floating IPs on an
    address it no longer has are disassociated, and port forwardings to such an address are
    deleted (the floating IP losing its router when its last one goes), as Neutron does."""
    kept = set(kept_addresses) if kept_addresses is not None else set()
    changes: list[Change] = []
    for fip_id, address in conn.execute(
        select(floatingips.c.id, floatingips.c.fixed_ip_address)
        .where(floatingips.c.fixed_port_id == port_id)
    ).all():
        if address in kept:
            continue
        conn.execute(update(floatingips).where(floatingips.c.id == fip_id).values(
            fixed_port_id=None, fixed_ip_address=None, router_id=None, status=FIP_DOWN,
            updated_at=now_iso(), revision_number=floatingips.c.revision_number + 1))
        changes.append(Change("floatingip", fip_id, "update"))
    gone = [(pf_id, fip_id) for pf_id, fip_id, address in conn.execute(
        select(port_forwardings.c.id, port_forwardings.c.floatingip_id,
               port_forwardings.c.internal_ip_address)
        .where(port_forwardings.c.internal_port_id == port_id)
    ).all() if address not in kept]
    if gone:
        conn.execute(delete(port_forwardings)
                     .where(port_forwardings.c.id.in_([pf_id for pf_id, _ in gone])))
        changes += [Change("port_forwarding", pf_id, "delete") for pf_id, _ in gone]
        for fip_id in sorted({fip_id for _, fip_id in gone}):
            left = conn.execute(select(port_forwardings.c.id)
                                .where(port_forwardings.c.floatingip_id == fip_id)).first()
            if left is None:
                conn.execute(update(floatingips)
                             .where(floatingips.c.id == fip_id, floatingips.c.fixed_port_id.is_(None))
                             .values(router_id=None, status=FIP_DOWN, updated_at=now_iso(),
                                     revision_number=floatingips.c.revision_number + 1))
            changes.append(Change("floatingip", fip_id, "update"))
    return changes


def visible_port(conn: Connection, ctx: RequestContext, port_id: str) -> Any:
    """The port row if the caller may see it (admin: any; others: their project's), else 404."""
    row = conn.execute(select(ports).where(ports.c.id == port_id)).first()
    if row is None or not (ctx.is_admin or row.project_id == ctx.project_id):
        raise resource_not_found("port", port_id)
    return row
