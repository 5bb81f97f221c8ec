"""Subnets: IPv4/IPv6 address ranges of a network, with gateway, pools, DNS, host routes and
IPv6 RA/address modes. Address arithmetic lives in the pure `neutrino.ipam`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, delete, insert, or_, select

from neutrino import ipam
from neutrino.api import validators as v
from neutrino.api.attributes import UNSET, Attr, standard_attributes, to_boolean, to_int
from neutrino.api.errors import BadRequest, Conflict, Forbidden, InvalidInput, resource_not_found
from neutrino.api.resources.base import Resource
from neutrino.api.resources.dhcp_ports import DhcpPorts
from neutrino.context import RequestContext
from neutrino.db.outbox import Change
from neutrino.db.schema import ip_allocations, networks, ports, subnets
from neutrino.timeutil import now_iso

AUTO_ADDRESS_MODES = ("slaac", "dhcpv6-stateless")
ROUTER_OWNERS = ("network:router_interface", "network:router_interface_distributed",
                 "network:ha_router_replicated_interface", "network:router_gateway")
# ports whose addresses go away with the subnet instead of blocking its deletion
SERVICE_OWNERS = ("network:dhcp",)

IP_SCHEMA = {"type": ["string", "null"]}
ATTRIBUTES: dict[str, Attr] = {
    **standard_attributes(),
    "network_id": Attr("network_id", column="network_id", convert=v.validate_uuid, required=True,
                       allow_put=False, schema={"type": "string", "format": "uuid"}),
    "cidr": Attr("cidr", column="cidr", convert=v.validate_cidr, required=True, allow_put=False,
                 schema={"type": "string"}),
    "ip_version": Attr("ip_version", column="ip_version", convert=to_int(4, 6), allow_put=False,
                       schema={"type": "integer", "enum": [4, 6]}),
    "gateway_ip": Attr("gateway_ip", column="gateway_ip", convert=v.validate_ip_address_or_none,
                       schema=IP_SCHEMA),
    "allocation_pools": Attr("allocation_pools", convert=v.validate_allocation_pools,
                             schema={"type": "array", "items": {"type": "object"}}),
    "dns_nameservers": Attr("dns_nameservers", convert=v.validate_dns_nameservers, default=[],
                            schema={"type": "array", "items": {"type": "string"}}),
    "host_routes": Attr("host_routes", convert=v.validate_host_routes, default=[],
                        schema={"type": "array", "items": {"type": "object"}}),
    "enable_dhcp": Attr("enable_dhcp", column="enable_dhcp", convert=to_boolean, default=True,
                        schema={"type": "boolean"}),
    "ipv6_ra_mode": Attr("ipv6_ra_mode", column="ipv6_ra_mode", default=None, allow_put=False,
                         schema={"type": ["string", "null"]}),
    "ipv6_address_mode": Attr("ipv6_address_mode", column="ipv6_address_mode", default=None,
                              allow_put=False, schema={"type": ["string", "null"]}),
    "subnetpool_id": Attr("subnetpool_id", allow_post=False, allow_put=False),
}


def subnet_plan_pools(subnet: dict[str, Any] | Row[Any]) -> list[tuple[int, int]]:
    pools = subnet["allocation_pools"] if isinstance(subnet, dict) else subnet.allocation_pools
    return [(ipam.ip_to_int(p["start"]), ipam.ip_to_int(p["end"])) for p in pools]


def is_auto_address(subnet: dict[str, Any] | Row[Any]) -> bool:
    """Neutron's is_auto_address_subnet: hosts make their own (EUI-64) addresses when the
    address mode says so, or when only the RA mode is set and says so."""
    if isinstance(subnet, dict):
        ra_mode, mode = subnet["ipv6_ra_mode"], subnet["ipv6_address_mode"]
    else:
        ra_mode, mode = subnet.ipv6_ra_mode, subnet.ipv6_address_mode
    return mode in AUTO_ADDRESS_MODES or (mode is None and ra_mode in AUTO_ADDRESS_MODES)


class Subnets(Resource):
    resource = "subnet"
    collection = "subnets"
    table = subnets
    attributes = ATTRIBUTES
    #: keeps each network's DHCP port (set by the NetworkingApi, which knows the Ports resource)
    dhcp_ports: DhcpPorts | None = None

    def scope(self, ctx: RequestContext) -> ColumnElement[bool]:
        if ctx.is_admin:
            return super().scope(ctx)
        public = select(networks.c.id).where(
            or_(networks.c.shared.is_(True), networks.c.router_external.is_(True))
        )
        return or_(subnets.c.project_id == ctx.project_id, subnets.c.network_id.in_(public))

    def view(self, row: Row[Any], related: Any) -> dict[str, Any]:
        view = self.standard_view(row)
        view.update(
            {
                "network_id": row.network_id,
                "cidr": row.cidr,
                "ip_version": row.ip_version,
                "gateway_ip": row.gateway_ip,
                "allocation_pools": row.allocation_pools,
                "dns_nameservers": row.dns_nameservers,
                "host_routes": row.host_routes,
                "enable_dhcp": row.enable_dhcp,
                "ipv6_ra_mode": row.ipv6_ra_mode,
                "ipv6_address_mode": row.ipv6_address_mode,
                "subnetpool_id": None,
                "service_types": [],
            }
        )
        return view

    def _network(self, conn: Connection, ctx: RequestContext, network_id: str) -> Row[Any]:
        net = conn.execute(select(networks).where(networks.c.id == network_id)).first()
        visible = net is not None and (
            ctx.is_admin or net.project_id == ctx.project_id or net.shared or net.router_external
        )
        if net is None or not visible:
            raise resource_not_found("network", network_id)
        if not ctx.is_admin and net.project_id != ctx.project_id:
            raise Forbidden("(rule:create_subnet) is disallowed by policy")
        return net

    def create(
        self, conn: Connection, ctx: RequestContext, values: dict[str, Any]
    ) -> tuple[str, list[Change]]:
        net = self._network(conn, ctx, values["network_id"])
        cidr = values["cidr"]
        version = values["ip_version"]
        cidr_version = 6 if ":" in cidr else 4
        if version is UNSET:
            version = cidr_version
        if version != cidr_version:
            raise InvalidInput(f"Cannot use {cidr} with ip_version {version}")
        ra_mode, address_mode = v.validate_ipv6_modes(values["ipv6_ra_mode"],
                                                      values["ipv6_address_mode"])
        if version == 4 and (ra_mode or address_mode):
            raise InvalidInput("ipv6_ra_mode or ipv6_address_mode cannot be set when ip_version "
                               "is 4")
        plan = ipam.plan_subnet(
            cidr, version, ipam.UNSET if values["gateway_ip"] is UNSET else values["gateway_ip"],
            None if values["allocation_pools"] is UNSET else values["allocation_pools"],
            ipv6_ra_mode=ra_mode, ipv6_address_mode=address_mode,
            enable_dhcp=values["enable_dhcp"],
        )
        self._check_overlap(conn, net.id, plan.cidr, None)
        self._check_routes_and_dns(values, version)
        row = self.standard_row(values)
        row["project_id"] = values["project_id"]
        row.update(
            network_id=net.id, cidr=plan.cidr, ip_version=version, gateway_ip=plan.gateway_ip,
            allocation_pools=plan.allocation_pools, dns_nameservers=values["dns_nameservers"],
            host_routes=values["host_routes"], enable_dhcp=values["enable_dhcp"],
            ipv6_ra_mode=ra_mode, ipv6_address_mode=address_mode,
        )
        conn.execute(insert(subnets).values(**row))
        changes = [Change("subnet", row["id"], "create")]
        if is_auto_address(row):
            changes += self._address_existing_ports(conn, net.id, row["id"], plan.cidr)
        changes += self._sync_dhcp(conn, net.id)
        return row["id"], changes

    def _sync_dhcp(self, conn: Connection, network_id: str) -> list[Change]:
        return self.dhcp_ports.sync(conn, network_id) if self.dhcp_ports is not None else []

    def _address_existing_ports(
        self, conn: Connection, network_id: str, subnet_id: str, cidr: str
    ) -> list[Change]:
        """A new SLAAC subnet gives every existing port of the network its EUI-64 address."""
        changes = []
        rows = conn.execute(
            select(ports.c.id, ports.c.mac_address).where(
                ports.c.network_id == network_id, ports.c.device_owner.notin_(ROUTER_OWNERS)
            )
        ).all()
        for port_id, mac in rows:
            conn.execute(insert(ip_allocations).values(
                port_id=port_id, subnet_id=subnet_id, network_id=network_id,
                ip_address=ipam.eui64_address(cidr, mac), position=1000,
            ))
            changes.append(Change("port", port_id, "update"))
        return changes

    @staticmethod
    def _check_routes_and_dns(values: dict[str, Any], version: int,
                              subnet_id: str | None = None) -> None:
        """Neutron's limits (5 nameservers, 20 routes) and IP version agreement."""
        ipam.check_subnet_attributes(version, dns_nameservers=values.get("dns_nameservers"),
                                     host_routes=values.get("host_routes"), subnet_id=subnet_id)

    @staticmethod
    def _check_overlap(conn: Connection, network_id: str, cidr: str, own_id: str | None) -> None:
        for other_id, other_cidr in conn.execute(
            select(subnets.c.id, subnets.c.cidr).where(subnets.c.network_id == network_id)
        ):
            if other_id != own_id and ipam.cidrs_overlap(cidr, other_cidr):
                raise Conflict(f"Invalid input for operation: Requested subnet with cidr: {cidr} "
                               f"for network: {network_id} overlaps with another subnet.",
                               type="SubnetOverlap")

    def update(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any],
        values: dict[str, Any],
    ) -> list[Change]:
        self._check_routes_and_dns(values, current["ip_version"], current["id"])
        columns = self.column_updates(values)
        if "gateway_ip" in values or "allocation_pools" in values or "enable_dhcp" in values:
            gateway = values.get("gateway_ip", current["gateway_ip"])
            pools = values.get("allocation_pools", current["allocation_pools"])
            plan = ipam.plan_subnet(
                current["cidr"], current["ip_version"], gateway, pools,
                ipv6_ra_mode=current["ipv6_ra_mode"],
                ipv6_address_mode=current["ipv6_address_mode"],
                enable_dhcp=values.get("enable_dhcp", current["enable_dhcp"]),
            )
            if plan.gateway_ip != current["gateway_ip"] and current["gateway_ip"]:
                router = conn.execute(select(ip_allocations.c.port_id).join(
                    ports, ports.c.id == ip_allocations.c.port_id).where(
                    ip_allocations.c.subnet_id == current["id"],
                    ip_allocations.c.ip_address == current["gateway_ip"],
                    ports.c.device_owner.in_(ROUTER_OWNERS))).first()
                if router:  # a router's interface holds the gateway address
                    raise Conflict(f"Current gateway ip {current['gateway_ip']} already in use "
                                   f"by port {router[0]}. Unable to update.",
                                   type="GatewayIpInUse")
            if plan.gateway_ip and plan.gateway_ip != current["gateway_ip"]:
                holder = conn.execute(select(ip_allocations.c.port_id).where(
                    ip_allocations.c.subnet_id == current["id"],
                    ip_allocations.c.ip_address == plan.gateway_ip)).first()
                if holder:
                    raise Conflict(f"Gateway ip {plan.gateway_ip} conflicts with allocation to "
                                   f"port {holder[0]}", type="GatewayConflictWithAllocationPools")
            columns.update(gateway_ip=plan.gateway_ip, allocation_pools=plan.allocation_pools)
            self.hints.reset(current["id"])  # new pools: start the next search from scratch
        for key in ("dns_nameservers", "host_routes"):
            if key in values:
                columns[key] = values[key]
        self.touch(conn, current["id"], columns)
        changes = [Change("subnet", current["id"], "update")]
        if "enable_dhcp" in values:
            changes += self._sync_dhcp(conn, current["network_id"])
        return changes

    def delete(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any]
    ) -> list[Change]:
        subnet_id = current["id"]
        holders = conn.execute(
            select(ip_allocations.c.port_id, ports.c.device_owner)
            .join(ports, ports.c.id == ip_allocations.c.port_id)
            .where(ip_allocations.c.subnet_id == subnet_id)
        ).all()
        auto = is_auto_address(current)
        blocking = [
            pid for pid, owner in holders
            if owner not in SERVICE_OWNERS and not (auto and owner not in ROUTER_OWNERS)
        ]
        if blocking:
            raise Conflict(f"Unable to complete operation on subnet {subnet_id}: One or more "
                           "ports have an IP allocation from this subnet.", type="SubnetInUse")
        conn.execute(delete(ip_allocations).where(ip_allocations.c.subnet_id == subnet_id))
        conn.execute(delete(subnets).where(subnets.c.id == subnet_id))
        self.hints.reset(subnet_id)
        if holders:  # their fixed_ips changed: a new revision for each
            conn.execute(ports.update().where(ports.c.id.in_([pid for pid, _o in holders]))
                         .values(updated_at=now_iso(), revision_number=ports.c.revision_number + 1))
        changes = [Change("port", pid, "update") for pid, _owner in holders]
        changes += self._sync_dhcp(conn, current["network_id"])
        return [*changes, Change("subnet", subnet_id, "delete")]

    def check_writable(self, ctx: RequestContext, current: dict[str, Any]) -> None:
        if not ctx.is_admin and current["project_id"] != ctx.project_id:
            raise Forbidden("(rule:update_subnet) is disallowed by policy")


__all__ = ["BadRequest", "Subnets", "is_auto_address", "subnet_plan_pools"]
