"""Port forwardings of a floating IP (Neutron's floating-ip-port-forwarding and
floating-ip-port-forwarding-description): `/v2.0/floatingips/{id}/port_forwardings`.

A port forwarding maps (floating IP, protocol, external port) to (internal port, one of its
fixed IPv4 addresses, internal port number). The floating IP must not be associated with a
port, the internal port must not have a floating IP of its own, and a router must connect the
internal address's subnet to the floating IP's network: the floating IP then takes that router
(all its port forwardings go through the same one). Duplicates on either side are refused with
Neutron's 400.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, delete, insert, select, update
from sqlalchemy.sql.expression import true

from neutrino.api import validators as v
from neutrino.api.attributes import Attr, string
from neutrino.api.errors import NeutronError, NotFound
from neutrino.api.resources.base import Resource, new_id
from neutrino.api.resources.floatingips import FloatingIps
from neutrino.api.resources.l3 import (
    FIP_ACTIVE,
    FIP_DOWN,
    bad_request,
    fixed_ips_of,
    in_use,
    is_ipv4,
    router_for_floatingip,
    visible_port,
)
from neutrino.context import RequestContext
from neutrino.db.outbox import Change
from neutrino.db.schema import floatingips, port_forwardings, subnets

#: neutron-lib's IPTABLES_PROTOCOL_MAP keys: what a port forwarding's protocol may be
PROTOCOLS = ("dccp", "icmp", "ipv6-icmp", "sctp", "tcp", "udp")


def validate_protocol(value: Any) -> str:
    protocol = value.lower() if isinstance(value, str) else value
    if protocol not in PROTOCOLS:
        raise v.AttributeValidationError(f"{value} is not in {list(PROTOCOLS)}")
    return str(protocol)


def validate_port_number(value: Any) -> int:
    """A TCP/UDP port, 1-65535 (strings of digits accepted, as Neutron converts them)."""
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        number = int(value)
    except (TypeError, ValueError):
        raise v.AttributeValidationError(f"Invalid port: {value}") from None
    if not 1 <= number <= 65535:
        raise v.AttributeValidationError(f"Invalid port: {value}")
    return number


PORT_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 65535}
ATTRIBUTES: dict[str, Attr] = {
    "id": Attr("id", column="id", allow_post=False, allow_put=False, schema={"type": "string"}),
    "external_port": Attr("external_port", column="external_port", convert=validate_port_number,
                          required=True, schema=PORT_SCHEMA),
    # Neutron does not filter on the internal socket (PortForwardingNotSupportFilterField)
    "internal_port": Attr("internal_port", column="internal_port", convert=validate_port_number,
                          required=True, filterable=False, schema=PORT_SCHEMA),
    "internal_ip_address": Attr("internal_ip_address", column="internal_ip_address",
                                convert=v.validate_ip_address, required=True, filterable=False,
                                schema={"type": "string"}),
    "protocol": Attr("protocol", column="protocol", convert=validate_protocol, required=True,
                     schema={"type": "string", "enum": list(PROTOCOLS)}),
    "internal_port_id": Attr("internal_port_id", column="internal_port_id",
                             convert=v.validate_uuid, required=True,
                             schema={"type": "string", "format": "uuid"}),
    "description": Attr("description", column="description", convert=string(1024), default="",
                        schema={"type": "string", "maxLength": 1024}),
}
HIDDEN = frozenset({"project_id"})  # kept for ownership checks, never shown (as in Neutron)


class PortForwardings(Resource):
    resource = "port_forwarding"
    collection = "port_forwardings"
    path = "floatingips/{floatingip_id}/port_forwardings"
    parent = "floatingips"
    parent_key = "floatingip_id"
    table = port_forwardings
    attributes = ATTRIBUTES
    taggable = False

    def scope(self, ctx: RequestContext) -> ColumnElement[bool]:
        return true() if ctx.is_admin else port_forwardings.c.project_id == ctx.project_id

    def not_found(self, resource_id: str) -> NotFound:
        return NotFound(f"Port Forwarding {resource_id} could not be found.",
                        type="PortForwardingNotFound")

    def hidden_attributes(self, ctx: RequestContext) -> frozenset[str]:
        return HIDDEN

    def view(self, row: Row[Any], related: Any) -> dict[str, Any]:
        return {
            "id": row.id,
            "external_port": row.external_port,
            "internal_port": row.internal_port,
            "internal_ip_address": row.internal_ip_address,
            "protocol": row.protocol,
            "internal_port_id": row.internal_port_id,
            "description": row.description,
            "project_id": row.project_id,
        }

    # --- rules ------------------------------------------------------------------------------
    @staticmethod
    def _fip(conn: Connection, fip_id: str) -> Row[Any]:
        return conn.execute(select(floatingips).where(floatingips.c.id == fip_id)).one()

    @staticmethod
    def _check_port_has_no_floating_ip(conn: Connection, pf: dict[str, Any]) -> None:
        bound = conn.execute(select(floatingips).where(
            floatingips.c.fixed_port_id == pf["internal_port_id"])).first()
        if bound is not None:
            raise in_use("PortHasBindingFloatingIP", f"Cannot create port forwarding to floating "
                         f"IP {bound.floating_ip_address} ({bound.id}) with port "
                         f"{pf['internal_port_id']} using fixed IP {pf['internal_ip_address']}, "
                         "as that port already has a binding floating IP.")

    @staticmethod
    def _find_router(
        conn: Connection, ctx: RequestContext, pf: dict[str, Any], fip: Row[Any]
    ) -> str:
        """Neutron's _find_a_router_for_fip_port_forwarding (fills internal_ip_address with
        the port's first IPv4 address when it is not given)."""
        port_id = pf["internal_port_id"]
        port = visible_port(conn, ctx, port_id)
        v4 = [(s, a) for s, a in fixed_ips_of(conn, port_id) if is_ipv4(a)]
        if not v4:
            raise bad_request("port_forwarding", f"Requested internal port {port_id} must "
                              "allocate an IPv4 address at least")
        if not pf.get("internal_ip_address"):
            pf["internal_ip_address"] = v4[0][1]
        matching = [s for s, a in v4 if a == pf["internal_ip_address"]]
        if not matching:
            raise bad_request("port_forwarding", f"Requested internal IP address "
                              f"{pf['internal_ip_address']} is not suitable for internal neutron "
                              f"port {port_id}, as its fixed_ips are {_fixed_ips_repr(v4)}")
        subnet = conn.execute(select(subnets).where(subnets.c.id == matching[0])).one()
        try:
            return router_for_floatingip(conn, port_id, port.network_id, subnet,
                                         fip.floating_network_id)
        except NeutronError as exc:
            if exc.type != "ExternalGatewayForFloatingIPNotFound":
                raise
        raise bad_request("port_forwarding", f"External network {fip.floating_network_id} is not "
                          f"reachable from subnet {subnet.id}. Cannot set Port forwarding for port "
                          f"{port_id} with Floating IP {fip.id}")

    @staticmethod
    def _check_router_match(
        conn: Connection, fip: Row[Any], router_id: str, pf: dict[str, Any], own_id: str | None
    ) -> None:
        if not fip.router_id or fip.router_id == router_id:
            return
        same = conn.execute(select(port_forwardings.c.id).where(
            port_forwardings.c.floatingip_id == fip.id,
            port_forwardings.c.internal_ip_address == pf["internal_ip_address"],
            port_forwardings.c.internal_port == pf["internal_port"],
            port_forwardings.c.id != (own_id or ""))).first()
        if same is not None:
            raise bad_request("port_forwarding", f"Floating IP {fip.id} with params: "
                              f"internal_ip_address: {pf['internal_ip_address']}, internal_port: "
                              f"{pf['internal_port']} already exists")
        raise bad_request("port_forwarding", f"The Floating IP {fip.id} had been set on router "
                          f"{fip.router_id}, the internal Neutron port {pf['internal_port_id']} "
                          "can not reach it")

    @staticmethod
    def _check_duplicates(
        conn: Connection, pf: dict[str, Any], own_id: str | None, *, updating: bool
    ) -> None:
        """Neutron's two uniqueness rules (one mapping per external port and protocol, one per
        internal socket and protocol); a duplicate is a 400, as in Neutron."""
        other = port_forwardings.c.id != (own_id or "")
        outside = {"floatingip_id": pf["floatingip_id"], "external_port": pf["external_port"],
                   "protocol": pf["protocol"]}
        inside = {"internal_port_id": pf["internal_port_id"],
                  "internal_ip_address": pf["internal_ip_address"],
                  "internal_port": pf["internal_port"], "protocol": pf["protocol"]}
        for params in (outside, inside):
            found = conn.execute(select(port_forwardings.c.id).where(
                and_(other, *(port_forwardings.c[k] == val for k, val in params.items())))).first()
            if found is not None:
                lead = ("Another port forwarding entry with the same attributes already exists"
                        if updating else
                        "A duplicate port forwarding entry with same attributes already exists")
                raise bad_request("port_forwarding", f"{lead}, conflicting values are {params}")

    # --- writes -----------------------------------------------------------------------------
    def create(
        self, conn: Connection, ctx: RequestContext, values: dict[str, Any]
    ) -> tuple[str, list[Change]]:
        pf = {k: values[k] for k in (*ATTRIBUTES, "floatingip_id") if k != "id"}
        self._check_port_has_no_floating_ip(conn, pf)
        fip = self._fip(conn, pf["floatingip_id"])
        if fip.fixed_port_id:
            raise in_use("FloatingIPPortAlreadyAssociated", f"Cannot associate floating IP "
                         f"{fip.floating_ip_address} ({fip.id}) with port {pf['internal_port_id']} "
                         f"using fixed IP {pf['internal_ip_address']}, as that fixed IP already "
                         f"has a floating IP on external network {fip.floating_network_id}.")
        router_id = self._find_router(conn, ctx, pf, fip)
        self._check_router_match(conn, fip, router_id, pf, None)
        self._check_duplicates(conn, pf, None, updating=False)
        pf_id = new_id()
        conn.execute(insert(port_forwardings).values(id=pf_id, project_id=fip.project_id, **pf))
        # the floating IP is named too: the compiler reads forwardings with their floating IP
        changes = [Change("port_forwarding", pf_id, "create"), Change("floatingip", fip.id, "update")]
        if not fip.router_id:
            FloatingIps(self.settings).touch(conn, fip.id, {"router_id": router_id,
                                                            "status": FIP_ACTIVE})
        return pf_id, changes

    def update(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any],
        values: dict[str, Any],
    ) -> list[Change]:
        fip_id = conn.execute(select(port_forwardings.c.floatingip_id)
                              .where(port_forwardings.c.id == current["id"])).scalar_one()
        fip = self._fip(conn, fip_id)
        pf = {k: current[k] for k in ATTRIBUTES if k != "id"}
        pf["floatingip_id"] = fip_id
        pf.update(values)
        new_port = values.get("internal_port_id")
        if new_port and new_port != current["internal_port_id"]:
            self._check_port_has_no_floating_ip(conn, pf)
            if "internal_ip_address" not in values:
                pf["internal_ip_address"] = None  # the new port's first IPv4 address
            router_id = self._find_router(conn, ctx, pf, fip)
            self._check_router_match(conn, fip, router_id, pf, current["id"])
        v4 = [(s, a) for s, a in fixed_ips_of(conn, pf["internal_port_id"]) if is_ipv4(a)]
        if pf["internal_ip_address"] not in {a for _, a in v4}:
            raise bad_request("port_forwarding", f"The requested internal IP address "
                              f"{pf['internal_ip_address']} is not suitable for internal neutron "
                              f"port {pf['internal_port_id']}, as its fixed_ips are "
                              f"{_fixed_ips_repr(v4)}")
        self._check_duplicates(conn, pf, current["id"], updating=True)
        conn.execute(update(port_forwardings).where(port_forwardings.c.id == current["id"])
                     .values(**{k: pf[k] for k in ATTRIBUTES if k != "id"}))
        return [Change("port_forwarding", current["id"], "update"),
                Change("floatingip", fip_id, "update")]

    def delete(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any]
    ) -> list[Change]:
        fip_id = conn.execute(select(port_forwardings.c.floatingip_id)
                              .where(port_forwardings.c.id == current["id"])).scalar_one()
        conn.execute(delete(port_forwardings).where(port_forwardings.c.id == current["id"]))
        changes = [Change("port_forwarding", current["id"], "delete"),
                   Change("floatingip", fip_id, "update")]
        left = conn.execute(select(port_forwardings.c.id)
                            .where(port_forwardings.c.floatingip_id == fip_id)).first()
        fip = self._fip(conn, fip_id)
        if left is None and fip.fixed_port_id is None and fip.router_id is not None:
            FloatingIps(self.settings).touch(conn, fip_id, {"router_id": None, "status": FIP_DOWN})
        return changes


def _fixed_ips_repr(fixed_ips: list[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"{{'subnet_id': '{s}', 'ip_address': '{a}'}}" for s, a in fixed_ips) + "]"

