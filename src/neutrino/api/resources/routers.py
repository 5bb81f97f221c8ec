"""Routers: Neutron's `router` extension with ext-gw-mode (enable_snat), dvr (`distributed`),
l3-ha (`ha`), extraroute (`routes`) and extraroute-atomic.

A router's ports are service ports (`neutrino.api.resources.l3`): interfaces added by subnet
(a new port holding the subnet's gateway IP) or by port (an existing port of the caller's,
taken over), and one gateway port on an external network. Every change of a router, its
interfaces or its gateway is one transaction with its outbox row (kind `router`, plus `port`
changes for the ports created, changed or deleted).
"""

from __future__ import annotations

from typing import Any

import netaddr
from sqlalchemy import Connection, Row, Select, insert, select, update

from neutrino.api import validators as v
from neutrino.api.attributes import UNSET, Attr, standard_attributes, to_boolean
from neutrino.api.errors import Forbidden, NotFound, resource_not_found
from neutrino.api.resources.base import Resource
from neutrino.api.resources.l3 import (
    INTERFACE_OWNERS,
    ROUTER_GATEWAY,
    bad_request,
    create_service_port,
    delete_service_port,
    fixed_ips_of,
    in_use,
    interface_owner,
    not_found,
    visible_port,
)
from neutrino.context import RequestContext
from neutrino.db.outbox import Change
from neutrino.db.schema import (
    floatingips,
    ip_allocations,
    networks,
    port_forwardings,
    ports,
    router_ports,
    routers,
    subnets,
)
from neutrino.timeutil import now_iso

GATEWAY_KEYS = ("network_id", "enable_snat", "external_fixed_ips")


def validate_gateway_info(value: Any) -> dict[str, Any] | None:
    """`external_gateway_info` (neutron-lib's type:dict_or_nodata): null or {} for no gateway,
    else network_id (required), enable_snat and external_fixed_ips."""
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise v.AttributeValidationError(f"'{value}' is not a dictionary")
    if "network_id" not in value:
        raise v.AttributeValidationError(
            "Validation of dictionary's keys failed. Expected keys: {'network_id'} Provided "
            f"keys: {v._format_key_set(value)}")
    unexpected = [key for key in value if key not in GATEWAY_KEYS]
    if unexpected:
        raise v.AttributeValidationError(f"Unexpected keys supplied: {', '.join(unexpected)}")
    info: dict[str, Any] = {"network_id": v.validate_uuid(value["network_id"])}
    if "enable_snat" in value:
        info["enable_snat"] = to_boolean(value["enable_snat"])
    if value.get("external_fixed_ips") is not None:
        info["external_fixed_ips"] = v.validate_fixed_ips(value["external_fixed_ips"])
    return info


def validate_routes(value: Any) -> list[dict[str, str]]:
    """extraroute's `routes`: null is an empty list, else unique {destination, nexthop}."""
    return [] if value is None else v.validate_host_routes(value)


def _boolean_or_none(value: Any) -> bool | None:
    return None if value is None else to_boolean(value)


ROUTES_SCHEMA = {"type": ["array", "null"], "items": {"type": "object"}}
ATTRIBUTES: dict[str, Attr] = {
    **standard_attributes(),
    "admin_state_up": Attr("admin_state_up", column="admin_state_up", convert=to_boolean,
                           default=True, schema={"type": "boolean"}),
    "status": Attr("status", column="status", allow_post=False, allow_put=False),
    "external_gateway_info": Attr("external_gateway_info", convert=validate_gateway_info,
                                  default=None, filterable=False,
                                  schema={"type": ["object", "null"]}),
    "routes": Attr("routes", convert=validate_routes, allow_post=False, filterable=False,
                   schema=ROUTES_SCHEMA),
    "distributed": Attr("distributed", column="distributed", convert=_boolean_or_none,
                        admin_only=True, admin_visible_only=True,
                        schema={"type": ["boolean", "null"]}),
    "ha": Attr("ha", column="ha", convert=_boolean_or_none, admin_only=True,
               admin_visible_only=True, schema={"type": ["boolean", "null"]}),
}

INTERFACE_BODY_SCHEMA = {
    "type": "object",
    "properties": {"subnet_id": {"type": "string", "format": "uuid"},
                   "port_id": {"type": "string", "format": "uuid"}},
}
ROUTES_BODY_SCHEMA = {
    "type": "object",
    "properties": {"router": {"type": "object", "properties": {"routes": ROUTES_SCHEMA},
                              "required": ["routes"]}},
    "required": ["router"],
}


class Routers(Resource):
    resource = "router"
    collection = "routers"
    table = routers
    attributes = ATTRIBUTES
    # PUT /v2.0/routers/{id}/<action>: the request body's schema (OpenAPI) for each
    actions = {"add_router_interface": INTERFACE_BODY_SCHEMA,
               "remove_router_interface": INTERFACE_BODY_SCHEMA,
               "add_extraroutes": ROUTES_BODY_SCHEMA,
               "remove_extraroutes": ROUTES_BODY_SCHEMA}
    #: the Ports resource (IPAM, MAC allocation), set by the NetworkingApi
    ports: Any = None

    def not_found(self, resource_id: str) -> NotFound:
        return not_found("RouterNotFound", f"Router {resource_id} could not be found")

    # --- reading ----------------------------------------------------------------------------
    def load_related(self, conn: Connection, ids_query: Select[Any]) -> Any:
        gateways: dict[str, dict[str, Any]] = {}
        for router_id, network_id, subnet_id, address in conn.execute(
            select(router_ports.c.router_id, ports.c.network_id, ip_allocations.c.subnet_id,
                   ip_allocations.c.ip_address)
            .select_from(router_ports.join(ports, ports.c.id == router_ports.c.port_id)
                         .outerjoin(ip_allocations, ip_allocations.c.port_id == ports.c.id))
            .where(router_ports.c.router_id.in_(ids_query),
                   router_ports.c.port_type == ROUTER_GATEWAY)
            .order_by(ip_allocations.c.position)
        ):
            gateway = gateways.setdefault(router_id, {"network_id": network_id,
                                                      "external_fixed_ips": []})
            if subnet_id is not None:
                gateway["external_fixed_ips"].append({"subnet_id": subnet_id,
                                                      "ip_address": address})
        return gateways

    def view(self, row: Row[Any], related: Any) -> dict[str, Any]:
        view = self.standard_view(row)
        gateway = related.get(row.id) if row.gw_port_id else None
        view.update({
            "admin_state_up": row.admin_state_up,
            "status": row.status,
            "external_gateway_info": None if gateway is None else {
                "network_id": gateway["network_id"], "enable_snat": row.enable_snat,
                "external_fixed_ips": gateway["external_fixed_ips"]},
            "routes": row.routes,
            "distributed": row.distributed,
            "ha": row.ha,
        })
        return view

    @staticmethod
    def _row(conn: Connection, router_id: str) -> Row[Any]:
        return conn.execute(select(routers).where(routers.c.id == router_id)).one()

    # --- create, update, delete -------------------------------------------------------------
    @staticmethod
    def _check_gateway_policy(ctx: RequestContext, action: str, info: Any) -> None:
        """enable_snat and external_fixed_ips are admin-only (Neutron's default policy)."""
        if ctx.is_admin or not info:
            return
        for key in ("enable_snat", "external_fixed_ips"):
            if key in info:
                raise Forbidden(f"(rule:{action}_router:external_gateway_info:{key}) is "
                                "disallowed by policy")

    def create(
        self, conn: Connection, ctx: RequestContext, values: dict[str, Any]
    ) -> tuple[str, list[Change]]:
        info = values["external_gateway_info"]
        self._check_gateway_policy(ctx, "create", info)
        distributed = values["distributed"]
        ha = values["ha"]
        row = self.standard_row(values)
        row.update(
            admin_state_up=values["admin_state_up"], status="ACTIVE", gw_port_id=None,
            enable_snat=self.settings.enable_snat_by_default,
            distributed=self.settings.router_distributed if distributed in (UNSET, None)
            else distributed,
            ha=self.settings.l3_ha if ha in (UNSET, None) else ha,
            routes=[],
        )
        conn.execute(insert(routers).values(**row))
        changes = [Change("router", row["id"], "create")]
        if info:
            changes += self._update_gateway(conn, ctx, self._row(conn, row["id"]), info)
        return row["id"], changes

    def update(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any],
        values: dict[str, Any],
    ) -> list[Change]:
        router_id = current["id"]
        if "external_gateway_info" in values:
            self._check_gateway_policy(ctx, "update", values["external_gateway_info"])
        row = self._row(conn, router_id)
        columns = {k: v for k, v in self.column_updates(values).items()
                   if k not in ("distributed", "ha")}
        changes = [Change("router", router_id, "update")]
        admin_up = values.get("admin_state_up", row.admin_state_up)
        distributed = values.get("distributed")
        ha = values.get("ha")
        distributed = row.distributed if distributed is None else distributed
        ha = row.ha if ha is None else ha
        if distributed != row.distributed and admin_up:
            raise bad_request("router", "Cannot change the 'distributed' attribute of active "
                              "routers. Please set router admin_state_up to False prior to "
                              "upgrade")
        if ha != row.ha and admin_up:
            raise bad_request("router", "Cannot change HA attribute of active routers. Please "
                              "set router admin_state_up to False prior to upgrade")
        if (distributed, ha) != (row.distributed, row.ha):
            columns.update(distributed=distributed, ha=ha)
            changes += self._migrate_interfaces(conn, router_id, interface_owner(distributed, ha))
        if "routes" in values:
            self._check_routes(conn, router_id, values["routes"])
            columns["routes"] = values["routes"]
        if "external_gateway_info" in values:
            changes += self._update_gateway(conn, ctx, row, values["external_gateway_info"])
        self.touch(conn, router_id, columns)
        return changes

    def delete(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any]
    ) -> list[Change]:
        router_id = current["id"]
        if conn.execute(select(router_ports.c.port_id).where(
            router_ports.c.router_id == router_id, router_ports.c.port_type.in_(INTERFACE_OWNERS)
        )).first() is not None:
            raise in_use("RouterInUse", f"Router {router_id} still has ports")
        row = self._row(conn, router_id)
        changes = self._update_gateway(conn, ctx, row, None)
        for (port_id,) in conn.execute(select(router_ports.c.port_id)
                                       .where(router_ports.c.router_id == router_id)).all():
            changes += delete_service_port(conn, self.ports, port_id)
        conn.execute(routers.delete().where(routers.c.id == router_id))
        return [*changes, Change("router", router_id, "delete")]

    def _migrate_interfaces(self, conn: Connection, router_id: str, owner: str) -> list[Change]:
        """A router turned distributed, HA or back: its interfaces change device_owner."""
        port_ids = [r[0] for r in conn.execute(select(router_ports.c.port_id).where(
            router_ports.c.router_id == router_id, router_ports.c.port_type.in_(INTERFACE_OWNERS),
            router_ports.c.port_type != owner))]
        if not port_ids:
            return []
        conn.execute(update(router_ports).where(router_ports.c.port_id.in_(port_ids))
                     .values(port_type=owner))
        conn.execute(update(ports).where(ports.c.id.in_(port_ids)).values(
            device_owner=owner, updated_at=now_iso(), revision_number=ports.c.revision_number + 1))
        return [Change("port", p, "update") for p in port_ids]

    # --- the gateway ------------------------------------------------------------------------
    def _update_gateway(
        self, conn: Connection, ctx: RequestContext, router: Row[Any], info: dict[str, Any] | None
    ) -> list[Change]:
        """Neutron's _update_router_gw_info: set, move, readdress or remove the gateway port."""
        gw_port = None
        if router.gw_port_id:
            gw_port = conn.execute(select(ports).where(ports.c.id == router.gw_port_id)).one()
        ext_ips = (info or {}).get("external_fixed_ips") or []
        network_id = info["network_id"] if info else None
        if network_id:
            net = conn.execute(select(networks).where(networks.c.id == network_id)).first()
            if net is None or not (ctx.is_admin or net.project_id == ctx.project_id
                                   or net.shared or net.router_external):
                raise resource_not_found("network", network_id)
            if not net.router_external:
                raise bad_request("router", f"Network {network_id} is not an external network")
            gateways = {s.gateway_ip for s in conn.execute(
                select(subnets.c.gateway_ip).where(subnets.c.network_id == network_id))
                if s.gateway_ip}
            for entry in ext_ips:
                if entry.get("ip_address") in gateways:
                    raise bad_request("router", f"External IP {entry['ip_address']} is the same "
                                      "as the gateway IP")
        enable_snat = (info or {}).get("enable_snat", self.settings.enable_snat_by_default)
        columns: dict[str, Any] = {"enable_snat": enable_snat}
        changes: list[Change] = []
        if gw_port is not None and gw_port.network_id == network_id:
            if self._external_ips_change(conn, gw_port.id, ext_ips):
                current = self.ports.get(conn, RequestContext.admin(), gw_port.id)
                changes += self.ports.update(conn, RequestContext.admin(), current,
                                             {"fixed_ips": ext_ips})
        else:
            if gw_port is not None:
                in_use_by = conn.execute(select(floatingips.c.id)
                                         .where(floatingips.c.router_id == router.id)).first()
                if in_use_by is not None:
                    raise in_use("RouterExternalGatewayInUseByFloatingIp",
                                 f"Gateway cannot be updated for router {router.id}, since a "
                                 f"gateway to external network {gw_port.network_id} is required "
                                 "by one or more floating IPs.")
                conn.execute(update(routers).where(routers.c.id == router.id)
                             .values(gw_port_id=None))
                changes += delete_service_port(conn, self.ports, gw_port.id)
                columns["gw_port_id"] = None
            if network_id:
                new_subnets = {r[0] for r in conn.execute(
                    select(subnets.c.id).where(subnets.c.network_id == network_id))}
                self._check_not_attached(conn, router.id, new_subnets)
                port, created = create_service_port(
                    conn, self.ports, network_id=network_id, project_id="",
                    device_owner=ROUTER_GATEWAY, device_id=router.id,
                    fixed_ips=ext_ips if ext_ips else UNSET)
                conn.execute(insert(router_ports).values(port_id=port["id"], router_id=router.id,
                                                         port_type=ROUTER_GATEWAY))
                columns["gw_port_id"] = port["id"]
                changes += created
        conn.execute(update(routers).where(routers.c.id == router.id).values(**columns))
        return changes

    @staticmethod
    def _external_ips_change(conn: Connection, port_id: str, ext_ips: list[dict[str, str]]) -> bool:
        """Neutron's _check_for_external_ip_change."""
        if not ext_ips:
            return False
        held = fixed_ips_of(conn, port_id)
        if {s for s, _ in held} != {e["subnet_id"] for e in ext_ips if "subnet_id" in e}:
            return True
        return {a for _, a in held} != {e["ip_address"] for e in ext_ips if "ip_address" in e}

    @staticmethod
    def _check_not_attached(conn: Connection, router_id: str, subnet_ids: set[str]) -> None:
        for (subnet_id,) in conn.execute(
            select(ip_allocations.c.subnet_id)
            .join(router_ports, router_ports.c.port_id == ip_allocations.c.port_id)
            .where(router_ports.c.router_id == router_id)
            .order_by(ip_allocations.c.subnet_id)
        ):
            if subnet_id in subnet_ids:
                raise bad_request("router", f"Router already has a port on subnet {subnet_id}")

    # --- extra routes -----------------------------------------------------------------------
    def _check_routes(self, conn: Connection, router_id: str, routes: list[dict[str, str]]) -> None:
        """extraroute: at most max_routes, each nexthop on a subnet of the router's ports and
        not one of the router's own addresses."""
        if len(routes) > self.settings.max_routes:
            raise bad_request_named(
                "RoutesExhausted", f"Unable to complete operation for {router_id}. The number of "
                f"routes exceeds the maximum {self.settings.max_routes}.")
        attached = conn.execute(
            select(subnets.c.cidr, ip_allocations.c.ip_address)
            .select_from(router_ports.join(ip_allocations,
                                           ip_allocations.c.port_id == router_ports.c.port_id)
                         .join(subnets, subnets.c.id == ip_allocations.c.subnet_id))
            .where(router_ports.c.router_id == router_id)
        ).all()
        cidrs = [c for c, _ in attached]
        own = {a for _, a in attached}
        shown = _routes_repr(routes)
        for route in routes:
            nexthop = route["nexthop"]
            if not netaddr.all_matching_cidrs(nexthop, cidrs):
                raise invalid_routes(shown, "the nexthop is not connected with router")
            if nexthop in own:
                raise invalid_routes(shown, "the nexthop is used by router")

    def _edit_routes(
        self, conn: Connection, current: dict[str, Any], body: Any, add: bool
    ) -> tuple[dict[str, Any], list[Change]]:
        """extraroute-atomic: add routes not yet there / remove the ones given."""
        if (not isinstance(body, dict) or set(body) != {"router"} or not isinstance(body["router"], dict)
                or set(body["router"]) != {"routes"}):
            raise bad_request("router", "Body must be {'router': {'routes': [...]}}")
        try:
            given = validate_routes(body["router"]["routes"])
        except v.AttributeValidationError as exc:
            raise exc.for_attribute("routes") from None
        old = list(current["routes"])
        if add:
            new = old + [r for r in given if r not in old]
            self._check_routes(conn, current["id"], new)
        else:
            new = [r for r in old if r not in given]
        if new == old:
            return {"router": current}, []
        self.touch(conn, current["id"], {"routes": new})
        return {"router": self.get(conn, RequestContext.admin(), current["id"])}, [
            Change("router", current["id"], "update")]

    # --- interfaces -------------------------------------------------------------------------
    def act(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any], action: str,
        body: Any,
    ) -> tuple[dict[str, Any], list[Change]]:
        if action == "add_extraroutes":
            return self._edit_routes(conn, current, body, add=True)
        if action == "remove_extraroutes":
            return self._edit_routes(conn, current, body, add=False)
        if action == "add_router_interface":
            return self._add_interface(conn, ctx, current, body)
        return self._remove_interface(conn, ctx, current, body)

    @staticmethod
    def _interface_info(body: Any, for_removal: bool) -> tuple[str | None, str | None]:
        """Neutron's _validate_interface_info: (port_id, subnet_id)."""
        if not isinstance(body, dict) or ("port_id" not in body and "subnet_id" not in body):
            raise bad_request("router", "Either subnet_id or port_id must be specified")
        found: dict[str, str | None] = {"port_id": None, "subnet_id": None}
        for key in found:
            if key in body:
                try:
                    found[key] = v.validate_uuid(body[key])
                except v.AttributeValidationError as exc:
                    raise bad_request("router", exc.reason) from None
        if not for_removal and found["port_id"] and found["subnet_id"]:
            raise bad_request("router", "Cannot specify both subnet-id and port-id")
        return found["port_id"], found["subnet_id"]

    @staticmethod
    def _info(router_id: str, port: Any, subnet_ids: list[str], last: bool) -> dict[str, Any]:
        """Neutron's _make_router_interface_info."""
        return {"id": router_id, "tenant_id": port.project_id, "project_id": port.project_id,
                "port_id": port.id, "network_id": port.network_id,
                "subnet_id": subnet_ids[-1] if last else subnet_ids[0], "subnet_ids": subnet_ids}

    def _visible_subnet(self, conn: Connection, ctx: RequestContext, subnet_id: str) -> Any:
        row = conn.execute(select(subnets, networks.c.project_id.label("network_project"),
                                  networks.c.shared, networks.c.router_external)
                           .join(networks, networks.c.id == subnets.c.network_id)
                           .where(subnets.c.id == subnet_id)).first()
        if row is None or not (ctx.is_admin or row.project_id == ctx.project_id or row.shared
                               or row.router_external):
            raise resource_not_found("subnet", subnet_id)
        return row

    def _attached_subnets(self, conn: Connection, router_id: str) -> list[tuple[str, Any]]:
        """(port_type, subnet row) for every address of the router's ports."""
        return [(r.port_type, r) for r in conn.execute(
            select(router_ports.c.port_type, ip_allocations.c.port_id, subnets.c.id,
                   subnets.c.cidr, subnets.c.ip_version, subnets.c.network_id)
            .select_from(router_ports.join(ip_allocations,
                                           ip_allocations.c.port_id == router_ports.c.port_id)
                         .join(subnets, subnets.c.id == ip_allocations.c.subnet_id))
            .where(router_ports.c.router_id == router_id)
            .order_by(router_ports.c.port_id, ip_allocations.c.position))]

    def _check_new_subnets(self, conn: Connection, router_id: str, new: list[Any]) -> None:
        """Neutron's _check_for_dup_router_subnets for an interface: not already attached, and
        no overlap with the subnets of the router's other interfaces."""
        attached = self._attached_subnets(conn, router_id)
        new_ids = {s.id for s in new}
        for _port_type, sub in attached:
            if sub.id in new_ids:
                raise bad_request("router", f"Router already has a port on subnet {sub.id}")
        for port_type, sub in attached:
            if port_type == ROUTER_GATEWAY:
                continue
            for s in new:
                if netaddr.IPNetwork(s.cidr) in netaddr.IPNetwork(sub.cidr) or \
                        netaddr.IPNetwork(sub.cidr) in netaddr.IPNetwork(s.cidr):
                    raise bad_request("router", f"Cidr {s.cidr} of subnet {s.id} overlaps with "
                                      f"cidr {sub.cidr} of subnet {sub.id}")

    def _add_interface(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any], body: Any
    ) -> tuple[dict[str, Any], list[Change]]:
        port_id, subnet_id = self._interface_info(body, for_removal=False)
        router = self._row(conn, current["id"])
        owner = interface_owner(router.distributed, router.ha)
        changes: list[Change] = []
        if port_id is not None:
            port = visible_port(conn, ctx, port_id)
            if port.device_id != "":
                raise in_use("PortInUse", f"Unable to complete operation on port {port.id} for "
                             f"network {port.network_id}. Port already has an attached device "
                             f"{port.device_id}.")
            held = fixed_ips_of(conn, port.id)
            if not held:
                raise bad_request("router", "Router port must have at least one fixed IP")
            port_subnets = [conn.execute(select(subnets).where(subnets.c.id == s)).one()
                            for s, _ in held]
            if any(s.ip_version == 6 for s in port_subnets):
                for _t, sub in self._attached_subnets(conn, router.id):
                    if sub.network_id == port.network_id and sub.ip_version == 6:
                        raise bad_request(
                            "router", "Cannot have multiple router ports with the same network "
                            "id if both contain IPv6 subnets. Existing port "
                            f"{sub.port_id} has IPv6 subnet(s) and network id {sub.network_id}")
            self._check_new_subnets(conn, router.id, port_subnets)
            if len([s for s in port_subnets if s.ip_version == 4]) > 1:
                raise bad_request("router", "Cannot have multiple IPv4 subnets on router port")
            conn.execute(update(ports).where(ports.c.id == port.id).values(
                device_id=router.id, device_owner=owner, updated_at=now_iso(),
                revision_number=ports.c.revision_number + 1))
            conn.execute(insert(router_ports).values(port_id=port.id, router_id=router.id,
                                                     port_type=owner))
            changes.append(Change("port", port.id, "update"))
            subnet_ids = [s.id for s in port_subnets]
        else:
            assert subnet_id is not None
            subnet = self._visible_subnet(conn, ctx, subnet_id)
            if not subnet.gateway_ip:
                raise bad_request("router", "Subnet for router interface must have a gateway IP")
            if subnet.ip_version == 6 and subnet.ipv6_ra_mode is None and \
                    subnet.ipv6_address_mode is not None:
                raise bad_request("router", f"IPv6 subnet {subnet.id} configured to receive RAs "
                                  "from an external router cannot be added to Neutron Router.")
            self._check_new_subnets(conn, router.id, [subnet])
            fixed = {"subnet_id": subnet.id, "ip_address": subnet.gateway_ip}
            port = self._ipv6_interface(conn, router.id, subnet) if subnet.ip_version == 6 else None
            if port is not None:  # another IPv6 prefix on the network's existing IPv6 interface
                existing = self.ports.get(conn, RequestContext.admin(), port.id)
                changes += self.ports.update(conn, RequestContext.admin(), existing,
                                             {"fixed_ips": [*existing["fixed_ips"], fixed]})
            else:
                view, created = create_service_port(
                    conn, self.ports, network_id=subnet.network_id, project_id=router.project_id,
                    device_owner=owner, device_id=router.id, fixed_ips=[fixed])
                conn.execute(insert(router_ports).values(port_id=view["id"], router_id=router.id,
                                                         port_type=owner))
                changes += created
                port = conn.execute(select(ports).where(ports.c.id == view["id"])).one()
            subnet_ids = [subnet.id]
        self.touch(conn, router.id, {})
        changes.append(Change("router", router.id, "update"))
        return self._info(router.id, port, subnet_ids, last=True), changes

    @staticmethod
    def _ipv6_interface(conn: Connection, router_id: str, subnet: Row[Any]) -> Row[Any] | None:
        """The router's interface on the subnet's network that already holds an IPv6 address."""
        return conn.execute(
            select(ports.c.id, ports.c.project_id, ports.c.network_id).distinct()
            .join(router_ports, router_ports.c.port_id == ports.c.id)
            .join(ip_allocations, ip_allocations.c.port_id == ports.c.id)
            .join(subnets, subnets.c.id == ip_allocations.c.subnet_id)
            .where(router_ports.c.router_id == router_id,
                   router_ports.c.port_type.in_(INTERFACE_OWNERS),
                   ports.c.network_id == subnet.network_id, subnets.c.ip_version == 6)
        ).first()

    def _confirm_not_in_use(self, conn: Connection, router: Row[Any], subnet: Row[Any]) -> None:
        """Neutron's _confirm_router_interface_not_in_use (with extraroute's check): no floating
        IP or port forwarding reaches the subnet through this router, no route's nexthop is
        on it."""
        cidr = netaddr.IPNetwork(subnet.cidr)
        by_floating_ip = in_use(
            "RouterInterfaceInUseByFloatingIP", f"Router interface for subnet {subnet.id} on "
            f"router {router.id} cannot be deleted, as it is required by one or more floating "
            "IPs.")
        fips = conn.execute(select(floatingips.c.id, floatingips.c.fixed_ip_address)
                            .where(floatingips.c.router_id == router.id)).all()
        for (address,) in conn.execute(
            select(port_forwardings.c.internal_ip_address)
            .where(port_forwardings.c.floatingip_id.in_([f.id for f in fips]))
        ):
            if netaddr.IPAddress(address) in cidr:
                raise by_floating_ip
        for fip in fips:
            if fip.fixed_ip_address and netaddr.IPAddress(fip.fixed_ip_address) in cidr:
                raise by_floating_ip
        for route in router.routes or ():
            if netaddr.IPAddress(route["nexthop"]) in cidr:
                raise in_use("RouterInterfaceInUseByRoute", f"Router interface for subnet "
                             f"{subnet.id} on router {router.id} cannot be deleted, as it is "
                             "required by one or more routes.")

    def _remove_interface(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any], body: Any
    ) -> tuple[dict[str, Any], list[Change]]:
        port_id, subnet_id = self._interface_info(body, for_removal=True)
        router = self._row(conn, current["id"])
        changes: list[Change] = []
        if port_id is not None:
            attached = conn.execute(
                select(ports).join(router_ports, router_ports.c.port_id == ports.c.id)
                .where(router_ports.c.router_id == router.id, ports.c.id == port_id,
                       router_ports.c.port_type.in_(INTERFACE_OWNERS))
            ).first()
            if attached is None:
                raise not_found("RouterInterfaceNotFound", f"Router {router.id} does not have "
                                f"an interface with id {port_id}")
            port_subnet_ids = [s for s, _ in fixed_ips_of(conn, port_id)]
            if subnet_id and subnet_id not in port_subnet_ids:
                raise bad_request_named(
                    "SubnetMismatchForPort", f"Subnet on port {port_id} does not match the "
                    f"requested subnet {subnet_id}.")
            port_subnets = [conn.execute(select(subnets).where(subnets.c.id == s)).one()
                            for s in port_subnet_ids]
            for sub in port_subnets:
                self._confirm_not_in_use(conn, router, sub)
            changes += delete_service_port(conn, self.ports, port_id)
            port, subnet_ids = attached, port_subnet_ids
        else:
            assert subnet_id is not None
            subnet = self._visible_subnet(conn, ctx, subnet_id)
            self._confirm_not_in_use(conn, router, subnet)
            found = conn.execute(
                select(ports).join(router_ports, router_ports.c.port_id == ports.c.id)
                .join(ip_allocations, ip_allocations.c.port_id == ports.c.id)
                .where(router_ports.c.router_id == router.id,
                       router_ports.c.port_type.in_(INTERFACE_OWNERS),
                       ip_allocations.c.subnet_id == subnet.id)
            ).first()
            if found is None:
                raise not_found("RouterInterfaceNotFoundForSubnet", f"Router {router.id} has no "
                                f"interface on subnet {subnet.id}")
            held = fixed_ips_of(conn, found.id)
            if len(held) > 1:  # a multi-prefix IPv6 interface: only this prefix goes
                existing = self.ports.get(conn, RequestContext.admin(), found.id)
                kept = [f for f in existing["fixed_ips"] if f["subnet_id"] != subnet.id]
                changes += self.ports.update(conn, RequestContext.admin(), existing,
                                             {"fixed_ips": kept})
            else:
                changes += delete_service_port(conn, self.ports, found.id)
            port, subnet_ids = found, [subnet.id]
        self.touch(conn, router.id, {})
        changes.append(Change("router", router.id, "update"))
        return self._info(router.id, port, subnet_ids, last=False), changes


def bad_request_named(type_name: str, message: str) -> Any:
    return v.NamedInvalidInput(type_name, message)


def invalid_routes(routes: str, reason: str) -> Any:
    """extraroute's InvalidRoutes (an InvalidInput)."""
    return v.NamedInvalidInput("InvalidRoutes", f"Invalid format for routes: {routes}, {reason}")


def _routes_repr(routes: list[dict[str, str]]) -> str:
    """As Neutron prints them: [{'destination': '10.1.0.0/24', 'nexthop': '10.0.0.5'}]."""
    return str([{"destination": r["destination"], "nexthop": r["nexthop"]} for r in routes])
