"""Floating IPs: an address of an external network (held by a network:floatingip port) that a
router translates to a port's fixed IPv4 address, with Neutron's fip-port-details
(`port_details`) and expose-port-forwarding-in-fip (`port_forwardings`).

A floating IP may be associated with a port only if a router has an interface on the subnet of
the port's fixed address and its gateway on the floating IP's network (404
ExternalGatewayForFloatingIPNotFound otherwise). Its status is ACTIVE while a router serves it,
DOWN while not.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, Select, delete, insert, select, update
from sqlalchemy.orm import aliased

from neutrino.api import validators as v
from neutrino.api.attributes import UNSET, Attr, standard_attributes
from neutrino.api.errors import Conflict, NotFound, resource_not_found
from neutrino.api.resources.base import Resource, new_id
from neutrino.api.resources.l3 import (
    FIP_PORT_STATUS,
    FLOATINGIP_OWNER,
    bad_request,
    create_service_port,
    delete_service_port,
    fip_status,
    fixed_ips_of,
    in_use,
    is_ipv4,
    router_for_floatingip,
    visible_port,
)
from neutrino.context import RequestContext
from neutrino.db.outbox import Change
from neutrino.db.schema import floatingips, networks, port_forwardings, ports, routers, subnets


def _uuid_or_none(value: Any) -> str | None:
    return None if value is None else v.validate_uuid(value)


IP_SCHEMA = {"type": ["string", "null"]}
ATTRIBUTES: dict[str, Attr] = {
    **{k: a for k, a in standard_attributes().items() if k != "name"},
    "floating_ip_address": Attr("floating_ip_address", column="floating_ip_address",
                                convert=v.validate_ip_address_or_none, default=None,
                                allow_put=False, admin_only=True, schema=IP_SCHEMA),
    # input only, as in Neutron: the subnet to take the address from
    "subnet_id": Attr("subnet_id", convert=_uuid_or_none, default=None, allow_put=False,
                      filterable=False, schema={"type": ["string", "null"], "format": "uuid"}),
    "floating_network_id": Attr("floating_network_id", column="floating_network_id",
                                convert=v.validate_uuid, required=True, allow_put=False,
                                schema={"type": "string", "format": "uuid"}),
    "router_id": Attr("router_id", column="router_id", allow_post=False, allow_put=False),
    "port_id": Attr("port_id", column="fixed_port_id", convert=_uuid_or_none, default=None,
                    schema={"type": ["string", "null"], "format": "uuid"}),
    "fixed_ip_address": Attr("fixed_ip_address", column="fixed_ip_address",
                             convert=v.validate_ip_address_or_none, default=None,
                             schema=IP_SCHEMA),
    "status": Attr("status", column="status", allow_post=False, allow_put=False),
    "port_details": Attr("port_details", allow_post=False, allow_put=False, filterable=False),
    "port_forwardings": Attr("port_forwardings", allow_post=False, allow_put=False,
                             filterable=False),
}
PORT_DETAILS = ("name", "network_id", "mac_address", "admin_state_up", "status", "device_id",
                "device_owner")


class FloatingIps(Resource):
    resource = "floatingip"
    collection = "floatingips"
    table = floatingips
    attributes = ATTRIBUTES
    #: the Ports resource (IPAM, MAC allocation), set by the NetworkingApi
    ports: Any = None

    def not_found(self, resource_id: str) -> NotFound:
        return NotFound(f"Floating IP {resource_id} could not be found", type="FloatingIPNotFound")

    # --- reading ----------------------------------------------------------------------------
    def load_related(self, conn: Connection, ids_query: Select[Any]) -> Any:
        fip = aliased(floatingips)  # not `floatingips`: ids_query must not correlate with it
        details: dict[str, dict[str, Any]] = {}
        for row in conn.execute(
            select(fip.c.id.label("fip_id"), *(ports.c[k] for k in PORT_DETAILS))
            .select_from(fip.join(ports, ports.c.id == fip.c.fixed_port_id))
            .where(fip.c.id.in_(ids_query))
        ).mappings():
            details[row["fip_id"]] = {k: row[k] for k in PORT_DETAILS}
        forwardings: dict[str, list[dict[str, Any]]] = {}
        for pf in conn.execute(
            select(port_forwardings)
            .where(port_forwardings.c.floatingip_id.in_(ids_query))
            .order_by(port_forwardings.c.external_port, port_forwardings.c.protocol)
        ):
            forwardings.setdefault(pf.floatingip_id, []).append({
                "internal_ip_address": pf.internal_ip_address, "protocol": pf.protocol,
                "internal_port": pf.internal_port, "external_port": pf.external_port})
        return details, forwardings

    def view(self, row: Row[Any], related: Any) -> dict[str, Any]:
        details, forwardings = related
        view = self.standard_view(row)
        del view["name"]
        view.update({
            "floating_ip_address": row.floating_ip_address,
            "floating_network_id": row.floating_network_id,
            "router_id": row.router_id,
            "port_id": row.fixed_port_id,
            "fixed_ip_address": row.fixed_ip_address,
            "status": row.status,
            "port_details": details.get(row.id) if row.fixed_port_id else None,
            "port_forwardings": forwardings.get(row.id, []),
        })
        return view

    # --- writes -----------------------------------------------------------------------------
    def create(
        self, conn: Connection, ctx: RequestContext, values: dict[str, Any]
    ) -> tuple[str, list[Change]]:
        network_id = values["floating_network_id"]
        net = conn.execute(select(networks).where(networks.c.id == network_id)).first()
        if net is None or not (ctx.is_admin or net.project_id == ctx.project_id or net.shared
                               or net.router_external):
            raise resource_not_found("network", network_id)
        if not net.router_external:
            raise bad_request("floatingip", f"Network {network_id} is not a valid external "
                              "network")
        v4_subnets = conn.execute(
            select(subnets).where(subnets.c.network_id == network_id, subnets.c.ip_version == 4)
            .order_by(subnets.c.created_at, subnets.c.id)).all()
        if not v4_subnets:
            raise bad_request("floatingip", f"Network {network_id} does not contain any IPv4 "
                              "subnet")
        requested: dict[str, str] = {}
        if values["subnet_id"] not in (UNSET, None):
            requested["subnet_id"] = values["subnet_id"]
        if values["floating_ip_address"] not in (UNSET, None):
            requested["ip_address"] = values["floating_ip_address"]
        fixed_ips: list[dict[str, str]]
        if requested:
            fixed_ips = [requested]
        else:  # the lowest free address of the first IPv4 subnet that has one
            for subnet in v4_subnets:
                address = self.ports._pick(conn, subnet, network_id, exclude=set(), fail=False)
                if address is not None:
                    fixed_ips = [{"subnet_id": subnet.id, "ip_address": address}]
                    break
            else:
                raise Conflict(f"No more IP addresses available on network {network_id}.",
                               type="IpAddressGenerationFailure")
        fip_id = new_id()
        port, changes = create_service_port(
            conn, self.ports, network_id=network_id, project_id="", device_owner=FLOATINGIP_OWNER,
            device_id=fip_id, fixed_ips=fixed_ips)
        conn.execute(update(ports).where(ports.c.id == port["id"]).values(status=FIP_PORT_STATUS))
        addresses = [f["ip_address"] for f in port["fixed_ips"] if is_ipv4(f["ip_address"])]
        if not addresses:
            raise bad_request_named("ExternalIpAddressExhausted", "Unable to find any IP address "
                                    f"on external network {network_id}.")
        state = {"id": fip_id, "project_id": values["project_id"], "port_id": None,
                 "fixed_ip_address": None, "router_id": None, "floating_network_id": network_id,
                 "floating_ip_address": addresses[0]}
        port_id, fixed_ip, router_id = self._association(conn, ctx, state, values)
        row = self.standard_row(values, fip_id)
        row.update(floating_network_id=network_id, floating_port_id=port["id"],
                   floating_ip_address=addresses[0], fixed_port_id=port_id,
                   fixed_ip_address=fixed_ip, router_id=router_id, status=fip_status(router_id))
        conn.execute(insert(floatingips).values(**row))
        return fip_id, [*changes, Change("floatingip", fip_id, "create")]

    def update(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any],
        values: dict[str, Any],
    ) -> list[Change]:
        port_id, fixed_ip, router_id = self._association(conn, ctx, current, values)
        columns = self.column_updates({k: val for k, val in values.items() if k == "description"})
        columns.update(fixed_port_id=port_id, fixed_ip_address=fixed_ip, router_id=router_id,
                       status=fip_status(router_id))
        self.touch(conn, current["id"], columns)
        return [Change("floatingip", current["id"], "update")]

    def delete(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any]
    ) -> list[Change]:
        fip_id = current["id"]
        changes = [Change("port_forwarding", r[0], "delete") for r in conn.execute(
            select(port_forwardings.c.id).where(port_forwardings.c.floatingip_id == fip_id))]
        conn.execute(delete(port_forwardings).where(port_forwardings.c.floatingip_id == fip_id))
        port_id = conn.execute(select(floatingips.c.floating_port_id)
                               .where(floatingips.c.id == fip_id)).scalar_one()
        conn.execute(delete(floatingips).where(floatingips.c.id == fip_id))
        changes += delete_service_port(conn, self.ports, port_id)
        return [*changes, Change("floatingip", fip_id, "delete")]

    # --- association ------------------------------------------------------------------------
    def _association(
        self, conn: Connection, ctx: RequestContext, fip: dict[str, Any], request: dict[str, Any]
    ) -> tuple[str | None, str | None, str | None]:
        """(port_id, fixed_ip_address, router_id) after a create or update request, with
        Neutron's rules (_check_and_get_fip_assoc). Without port_id in the request the
        association stays as it is."""
        port_id = request.get("port_id", UNSET)
        fixed_ip = request.get("fixed_ip_address")
        if fixed_ip and port_id in (UNSET, None):
            raise bad_request("floatingip", "fixed_ip_address cannot be specified without a "
                              "port_id")
        has_forwardings = conn.execute(select(port_forwardings.c.id).where(
            port_forwardings.c.floatingip_id == fip["id"])).first() is not None
        if port_id is UNSET:
            return fip["port_id"], fip["fixed_ip_address"], fip["router_id"]
        if port_id is None:  # disassociate (a floating IP with port forwardings keeps its router)
            return None, None, fip["router_id"] if has_forwardings else None
        port = visible_port(conn, ctx, port_id)
        if port.project_id != fip["project_id"] and not ctx.is_admin:
            raise bad_request("floatingip", f"Cannot process floating IP association with Port "
                              f"{port_id}, since that port is owned by a different project")
        if port.device_owner == "network:dhcp":
            raise bad_request("floatingip", f"Port {port_id} is unable to be assigned a floating "
                              "IP")
        held = fixed_ips_of(conn, port_id)
        if fixed_ip:
            if not is_ipv4(fixed_ip):
                raise bad_request("floatingip", f"Cannot process floating IP association with "
                                  f"{fixed_ip}, since that is not an IPv4 address")
            subnet_ids = [s for s, a in held if a == fixed_ip]
            if not subnet_ids:
                raise bad_request("floatingip", f"Port {port_id} does not have fixed ip "
                                  f"{fixed_ip}")
            subnet_id = subnet_ids[0]
        else:
            v4 = [(s, a) for s, a in held if is_ipv4(a)]
            if not v4:
                raise bad_request("floatingip", f"Cannot add floating IP to port {port_id} that "
                                  "has no fixed IPv4 addresses")
            if len(v4) > 1:
                raise bad_request("floatingip", f"Port {port_id} has multiple fixed IPv4 "
                                  "addresses.  Must provide a specific IPv4 address when "
                                  "assigning a floating IP")
            subnet_id, fixed_ip = v4[0]
        subnet = conn.execute(select(subnets).where(subnets.c.id == subnet_id)).one()
        router_id = router_for_floatingip(conn, port_id, port.network_id, subnet,
                                          fip["floating_network_id"])
        if port_id == fip["port_id"]:
            return port_id, fixed_ip, router_id
        taken = conn.execute(select(floatingips.c.id).where(
            floatingips.c.fixed_port_id == port_id,
            floatingips.c.floating_network_id == fip["floating_network_id"],
            floatingips.c.fixed_ip_address == fixed_ip)).first()
        if taken is not None:
            raise in_use("FloatingIPPortAlreadyAssociated", f"Cannot associate floating IP "
                         f"{fip['floating_ip_address']} ({fip['id']}) with port {port_id} using "
                         f"fixed IP {fixed_ip}, as that fixed IP already has a floating IP on "
                         f"external network {fip['floating_network_id']}.")
        if has_forwardings:
            raise in_use("FipInUseByPortForwarding",
                         f"Floating IP {fip['id']} in use by Port Forwarding resources.")
        distributed_forwarding = conn.execute(
            select(port_forwardings.c.id)
            .join(floatingips, floatingips.c.id == port_forwardings.c.floatingip_id)
            .join(routers, routers.c.id == floatingips.c.router_id)
            .where(port_forwardings.c.internal_port_id == port_id, routers.c.distributed.is_(True))
        ).first()
        if distributed_forwarding is not None:
            raise bad_request_named("PortHasPortForwarding", f"Cannot associate floating IP to "
                                    f"port {port_id} because it already has a Port Forwarding "
                                    "binding.")
        return port_id, fixed_ip, router_id


def bad_request_named(type_name: str, message: str) -> Any:
    return v.NamedInvalidInput(type_name, message)
