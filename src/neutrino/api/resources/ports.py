"""Ports: attachments to a network, with IPAM (fixed IPs from pools, requested addresses,
EUI-64 on SLAAC subnets), MAC addresses, port security, security groups and binding."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, Select, bindparam, delete, insert, select

from neutrino import ipam
from neutrino.api import validators as v
from neutrino.api.attributes import (
    UNSET,
    Attr,
    dict_or_empty,
    list_of_strings,
    standard_attributes,
    string,
    to_boolean,
)
from neutrino.api.errors import BadRequest, Conflict, Forbidden, InvalidInput, resource_not_found
from neutrino.api.resources.base import Resource
from neutrino.api.resources.l3 import check_port_deletable, release_port
from neutrino.api.resources.security_groups import ensure_default_security_group
from neutrino.api.resources.subnets import ROUTER_OWNERS, is_auto_address, subnet_plan_pools
from neutrino.context import RequestContext
from neutrino.db.outbox import Change
from neutrino.db.schema import ip_allocations, networks, port_security_groups, ports, security_groups, subnets

VIF_TYPES = {"normal": "ovs", "direct": "hw_veb", "macvtap": "hw_veb",
             "direct-physical": "hostdev_physical", "virtio-forwarder": "vhostuser"}
MAC_RETRIES = 16
WINDOW = 8  # candidate addresses checked by one query
WINDOW_SEARCH_LIMIT = 8 * WINDOW  # then fall back to reading every allocation of the subnet

# statements of the port-create hot path, built once
NETWORK_BY_ID = select(networks).where(networks.c.id == bindparam("id"))
SUBNETS_OF_NETWORK = (select(subnets).where(subnets.c.network_id == bindparam("network_id"))
                      .order_by(subnets.c.created_at, subnets.c.id))
MAC_IN_USE = select(ports.c.id).where(ports.c.network_id == bindparam("network_id"),
                                      ports.c.mac_address == bindparam("mac"))
GROUP_OWNER = select(security_groups.c.project_id, security_groups.c.stateful).where(
    security_groups.c.id == bindparam("id"))
INSERT_PORT = insert(ports)
INSERT_PORT_GROUP = insert(port_security_groups)
INSERT_ALLOCATIONS = insert(ip_allocations)

ATTRIBUTES: dict[str, Attr] = {
    **standard_attributes(),
    "network_id": Attr("network_id", column="network_id", convert=v.validate_uuid, required=True,
                       allow_put=False, schema={"type": "string", "format": "uuid"}),
    "admin_state_up": Attr("admin_state_up", column="admin_state_up", convert=to_boolean,
                           default=True, schema={"type": "boolean"}),
    "mac_address": Attr("mac_address", column="mac_address", convert=v.validate_mac_address,
                        schema={"type": "string"}),
    "fixed_ips": Attr("fixed_ips", convert=v.validate_fixed_ips,
                      schema={"type": "array", "items": {"type": "object"}}),
    "device_id": Attr("device_id", column="device_id", convert=string(255), default="",
                      schema={"type": "string", "maxLength": 255}),
    "device_owner": Attr("device_owner", column="device_owner", convert=string(255), default="",
                         schema={"type": "string", "maxLength": 255}),
    "status": Attr("status", column="status", allow_post=False, allow_put=False),
    "binding:host_id": Attr("binding:host_id", column="binding_host_id", convert=string(255),
                            default="", admin_only=True, admin_visible_only=True,
                            schema={"type": "string", "maxLength": 255}),
    "binding:vnic_type": Attr("binding:vnic_type", column="binding_vnic_type",
                              convert=v.validate_vnic_type, default="normal",
                              schema={"type": "string"}),
    "binding:profile": Attr("binding:profile", convert=dict_or_empty, default={},
                            admin_only=True, admin_visible_only=True, schema={"type": "object"}),
    "binding:vif_type": Attr("binding:vif_type", column="binding_vif_type", allow_post=False,
                             allow_put=False, admin_visible_only=True),
    "binding:vif_details": Attr("binding:vif_details", allow_post=False, allow_put=False,
                                admin_visible_only=True),
    "port_security_enabled": Attr("port_security_enabled", column="port_security_enabled",
                                  convert=to_boolean, schema={"type": "boolean"}),
    "allowed_address_pairs": Attr("allowed_address_pairs", convert=v.validate_allowed_address_pairs,
                                  default=[], schema={"type": "array", "items": {"type": "object"}}),
    "security_groups": Attr("security_groups", convert=list_of_strings(36),
                            schema={"type": "array", "items": {"type": "string"}}),
    "extra_dhcp_opts": Attr("extra_dhcp_opts", convert=v.validate_extra_dhcp_opts, default=[],
                            schema={"type": "array", "items": {"type": "object"}}),
}


def binding_for(host: str, vnic_type: str) -> tuple[str, dict[str, Any]]:
    """vif_type and vif_details a port gets for its host (unbound while no host is set)."""
    if not host:
        return "unbound", {}
    vif_type = VIF_TYPES.get(vnic_type, "ovs")
    details: dict[str, Any] = {"port_filter": True, "connectivity": "l2"}
    if vif_type == "ovs":
        details.update(bridge_name="br-int", datapath_type="netdev", ovs_hybrid_plug=False)
    return vif_type, details


class Ports(Resource):
    resource = "port"
    collection = "ports"
    table = ports
    attributes = ATTRIBUTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.random = random.Random()

    # --- reading ----------------------------------------------------------------------------
    def load_related(self, conn: Connection, ids_query: Select[Any]) -> Any:
        fixed: dict[str, list[dict[str, str]]] = {}
        for port_id, subnet_id, address in conn.execute(
            select(ip_allocations.c.port_id, ip_allocations.c.subnet_id,
                   ip_allocations.c.ip_address)
            .where(ip_allocations.c.port_id.in_(ids_query))
            .order_by(ip_allocations.c.position)
        ):
            fixed.setdefault(port_id, []).append({"subnet_id": subnet_id, "ip_address": address})
        groups: dict[str, list[str]] = {}
        for port_id, group_id in conn.execute(
            select(port_security_groups.c.port_id, port_security_groups.c.security_group_id)
            .where(port_security_groups.c.port_id.in_(ids_query))
        ):
            groups.setdefault(port_id, []).append(group_id)
        return fixed, groups

    def view(self, row: Row[Any], related: Any) -> dict[str, Any]:
        fixed, groups = related
        return self.port_view(row._mapping, fixed.get(row.id, []), groups.get(row.id, []))

    def port_view(
        self, row: Mapping[Any, Any], fixed_ips: list[dict[str, str]], groups: list[str]
    ) -> dict[str, Any]:
        return {
            "id": row["id"],
            "name": row["name"],
            "description": row["description"],
            "project_id": row["project_id"],
            "tenant_id": row["project_id"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "revision_number": row["revision_number"],
            "network_id": row["network_id"],
            "admin_state_up": row["admin_state_up"],
            "mac_address": row["mac_address"],
            "fixed_ips": fixed_ips,
            "device_id": row["device_id"],
            "device_owner": row["device_owner"],
            "status": row["status"],
            "binding:host_id": row["binding_host_id"],
            "binding:vnic_type": row["binding_vnic_type"],
            "binding:profile": row["binding_profile"],
            "binding:vif_type": row["binding_vif_type"],
            "binding:vif_details": row["binding_vif_details"],
            "port_security_enabled": row["port_security_enabled"],
            "allowed_address_pairs": row["allowed_address_pairs"],
            "security_groups": sorted(groups),
            "extra_dhcp_opts": row["extra_dhcp_opts"],
        }

    def matches(self, view: dict[str, Any], key: str, values: list[str]) -> bool:
        if key != "fixed_ips":
            return super().matches(view, key, values)
        return any(_fixed_ip_matches(view["fixed_ips"], value) for value in values)

    # --- writes -----------------------------------------------------------------------------
    def _network(self, conn: Connection, ctx: RequestContext, network_id: str) -> Row[Any]:
        net = conn.execute(NETWORK_BY_ID, {"id": network_id}).first()
        if net is None or not (
            ctx.is_admin or net.project_id == ctx.project_id or net.shared or net.router_external
        ):
            raise resource_not_found("network", network_id)
        if not (ctx.is_admin or net.project_id == ctx.project_id or net.shared):
            raise Forbidden(f"Tenant {ctx.project_id} not allowed to create port on this network")
        return net

    def create(
        self, conn: Connection, ctx: RequestContext, values: dict[str, Any]
    ) -> tuple[str, list[Change]]:
        view, changes = self.create_view(conn, ctx, values)
        return view["id"], changes

    def create_view(
        self, conn: Connection, ctx: RequestContext, values: dict[str, Any]
    ) -> tuple[dict[str, Any], list[Change]]:
        """Create the port and build its view from what was written (no read-back)."""
        net = self._network(conn, ctx, values["network_id"])
        changes: list[Change] = []
        row = self.standard_row(values)
        port_id = row["id"]
        owner = values["device_owner"]
        port_security = values["port_security_enabled"]
        if port_security is UNSET:
            port_security = net.port_security_enabled
        groups = values["security_groups"]
        if groups is UNSET:
            groups = ([ensure_default_security_group(conn, values["project_id"], changes)]
                      if port_security and not owner.startswith("network:") else [])
        asked = [] if values["security_groups"] is UNSET else groups
        groups = self._check_groups(conn, ctx, groups)
        self._check_port_security(port_security, asked, groups, values["allowed_address_pairs"])
        mac = self._mac(conn, net.id, values["mac_address"])
        vif_type, vif_details = binding_for(values["binding:host_id"], values["binding:vnic_type"])
        row.update(
            network_id=net.id, mac_address=mac, admin_state_up=values["admin_state_up"],
            status="DOWN", device_id=values["device_id"], device_owner=owner,
            binding_host_id=values["binding:host_id"],
            binding_vnic_type=values["binding:vnic_type"],
            binding_profile=values["binding:profile"], binding_vif_type=vif_type,
            binding_vif_details=vif_details, port_security_enabled=port_security,
            allowed_address_pairs=with_mac(values["allowed_address_pairs"], mac),
            extra_dhcp_opts=merge_dhcp_opts([], values["extra_dhcp_opts"]),
        )
        conn.execute(INSERT_PORT, row)
        addresses = self._allocate(conn, net.id, mac, owner, values["fixed_ips"], [])
        self._write_addresses(conn, port_id, net.id, addresses)
        if groups:
            conn.execute(INSERT_PORT_GROUP,
                         [{"port_id": port_id, "security_group_id": g} for g in groups])
        changes.append(Change("port", port_id, "create"))
        fixed = [{"subnet_id": subnet_id, "ip_address": ip} for subnet_id, ip in addresses]
        view = self.port_view(row, fixed, groups)
        view["tags"] = []
        return view, changes

    def update(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any],
        values: dict[str, Any],
    ) -> list[Change]:
        port_id = current["id"]
        columns = self.column_updates(values)
        port_security = values.get("port_security_enabled", current["port_security_enabled"])
        groups = values.get("security_groups", current["security_groups"])
        if "security_groups" in values:
            groups = self._check_groups(conn, ctx, groups)
        elif "port_security_enabled" in values and port_security and not groups and not (
            current["device_owner"].startswith("network:")
        ):
            pass  # Neutron keeps an empty group list when port security is turned back on
        pairs = values.get("allowed_address_pairs", current["allowed_address_pairs"])
        self._check_port_security(port_security, values.get("security_groups", []), groups, pairs)
        if "mac_address" in values and values["mac_address"] != current["mac_address"]:
            columns["mac_address"] = self._mac(conn, current["network_id"], values["mac_address"])
        if "binding:profile" in values:
            columns["binding_profile"] = values["binding:profile"]
        if "allowed_address_pairs" in values:
            mac = columns.get("mac_address", current["mac_address"])
            columns["allowed_address_pairs"] = with_mac(values["allowed_address_pairs"], mac)
        if "extra_dhcp_opts" in values:
            columns["extra_dhcp_opts"] = merge_dhcp_opts(current["extra_dhcp_opts"],
                                                         values["extra_dhcp_opts"])
        if "binding:host_id" in values or "binding:vnic_type" in values:
            vif_type, details = binding_for(
                values.get("binding:host_id", current["binding:host_id"]),
                values.get("binding:vnic_type", current["binding:vnic_type"]),
            )
            columns.update(binding_vif_type=vif_type, binding_vif_details=details)
        changes: list[Change] = []
        if "fixed_ips" in values:
            self._free_addresses(conn, current["fixed_ips"])
            conn.execute(delete(ip_allocations).where(ip_allocations.c.port_id == port_id))
            owner = values.get("device_owner", current["device_owner"])
            mac = columns.get("mac_address", current["mac_address"])
            addresses = self._allocate(conn, current["network_id"], mac, owner,
                                       values["fixed_ips"], current["fixed_ips"])
            self._write_addresses(conn, port_id, current["network_id"], addresses)
            # floating IPs and port forwardings on an address the port no longer has let go
            changes += release_port(conn, port_id, [address for _, address in addresses])
        elif "mac_address" in columns:
            self._readdress_auto(conn, port_id, current["mac_address"], columns["mac_address"])
        if "security_groups" in values:
            conn.execute(delete(port_security_groups)
                         .where(port_security_groups.c.port_id == port_id))
            if groups:
                conn.execute(insert(port_security_groups),
                             [{"port_id": port_id, "security_group_id": g} for g in groups])
        self.touch(conn, port_id, columns)
        return [Change("port", port_id, "update"), *changes]

    def delete(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any]
    ) -> list[Change]:
        port_id = current["id"]
        check_port_deletable(conn, current)  # a router's or floating IP's port: 409
        changes = release_port(conn, port_id)  # its floating IPs, port forwardings
        self._free_addresses(conn, current["fixed_ips"])
        conn.execute(delete(ip_allocations).where(ip_allocations.c.port_id == port_id))
        conn.execute(delete(port_security_groups).where(port_security_groups.c.port_id == port_id))
        conn.execute(delete(ports).where(ports.c.id == port_id))
        return [*changes, Change("port", port_id, "delete")]

    def _free_addresses(self, conn: Connection, fixed_ips: list[dict[str, str]]) -> None:
        for entry in fixed_ips:
            self.hints.freed(entry["subnet_id"], ipam.ip_to_int(entry["ip_address"]))

    @staticmethod
    def _readdress_auto(conn: Connection, port_id: str, old_mac: str, mac: str) -> None:
        """A new MAC moves the port's EUI-64 addresses (those made from the old MAC on its
        SLAAC subnets) to the new MAC's, as in Neutron."""
        held = conn.execute(
            select(ip_allocations.c.subnet_id, ip_allocations.c.ip_address, subnets.c.cidr,
                   subnets.c.ipv6_ra_mode, subnets.c.ipv6_address_mode)
            .join(subnets, subnets.c.id == ip_allocations.c.subnet_id)
            .where(ip_allocations.c.port_id == port_id)
        ).mappings()
        for row in map(dict, held):
            if is_auto_address(row) and row["ip_address"] == ipam.eui64_address(row["cidr"], old_mac):
                conn.execute(ip_allocations.update()
                             .where(ip_allocations.c.port_id == port_id,
                                    ip_allocations.c.subnet_id == row["subnet_id"])
                             .values(ip_address=ipam.eui64_address(row["cidr"], mac)))

    # --- rules --------------------------------------------------------------------------------
    def _check_groups(self, conn: Connection, ctx: RequestContext, groups: list[str]) -> list[str]:
        """The port's groups, each once; 404 for one the caller may not use, 409 for a mix of
        stateful and stateless groups (Neutron's SecurityGroupConflict: the data path could
        not honour both on one port)."""
        unique = list(dict.fromkeys(groups))
        stateful: set[bool] = set()
        for group_id in unique:
            row = conn.execute(GROUP_OWNER, {"id": group_id}).first()
            if row is None or (not ctx.is_admin and row.project_id != ctx.project_id):
                raise resource_not_found("security_group", group_id)
            stateful.add(bool(row.stateful))
        if len(stateful) > 1:
            raise Conflict("Error Cannot apply both stateful and stateless security groups on "
                           "the same port at the same time. while attempting the operation.",
                           type="SecurityGroupConflict")
        return unique

    @staticmethod
    def _check_port_security(
        enabled: bool, asked: list[str], groups: list[str], pairs: list[Any]
    ) -> None:
        """Neutron's rules for a port without port security: no address pairs, and no security
        groups (a bad request when the request `asked` for some, a conflict when the port
        still has them)."""
        if enabled:
            return
        if pairs:
            raise Conflict("Port Security must be enabled in order to have allowed address pairs "
                           "on a port.", type="AddressPairAndPortSecurityRequired")
        if asked:
            raise v.NamedInvalidInput(
                "PortSecurityAndIPRequiredForSecurityGroups",
                "Port security must be enabled and port must have an IP address in order to use "
                "security groups.")
        if groups:
            raise Conflict("Port has security group associated. Cannot disable port security or "
                           "ip address until security group is removed",
                           type="PortSecurityPortHasSecurityGroup")

    def _mac(self, conn: Connection, network_id: str, requested: Any) -> str:
        def taken(mac: str) -> bool:
            return conn.execute(MAC_IN_USE, {"network_id": network_id, "mac": mac}).first() is not None

        if requested is not UNSET and requested is not None:
            if taken(requested):
                raise Conflict(f"Unable to complete operation for network {network_id}. The mac "
                               f"address {requested} is in use.", type="MacAddressInUse")
            return str(requested)
        for _ in range(MAC_RETRIES):
            mac = ipam.generate_mac(self.settings.base_mac, self.random)
            if not taken(mac):
                return mac
        raise Conflict(f"Unable to generate unique mac on network {network_id}.",
                       type="MacAddressGenerationFailure")

    # --- IPAM ---------------------------------------------------------------------------------
    def _allocate(
        self, conn: Connection, network_id: str, mac: str, owner: str, requested: Any,
        keep: list[dict[str, str]],
    ) -> list[tuple[str, str]]:
        """(subnet_id, ip) pairs for the port. `keep` are the port's previous addresses, which
        it may ask for again on update without them counting as in use."""
        subnet_rows = conn.execute(SUBNETS_OF_NETWORK, {"network_id": network_id}).all()
        by_id = {s.id: s for s in subnet_rows}
        router = owner in ROUTER_OWNERS
        kept = {(a["subnet_id"], a["ip_address"]) for a in keep}
        if requested is UNSET:
            return self._auto_addresses(conn, network_id, subnet_rows, mac, router)
        out: list[tuple[str, str]] = []
        for entry in requested:
            subnet = self._subnet_for(entry, by_id, network_id)
            address = entry.get("ip_address")
            if address is not None:
                ipam.check_fixed_ip_in_subnet(address, subnet.cidr, subnet.ip_version,
                                              device_owner=owner)
                if is_auto_address(subnet) and not router and address != ipam.eui64_address(
                    subnet.cidr, mac
                ):
                    raise InvalidInput(f"IPv6 address {address} cannot be directly assigned to a "
                                       f"port on subnet {subnet.id} with {subnet.ipv6_address_mode} "
                                       "address mode")
                if address == subnet.gateway_ip and not router:
                    raise _in_use(address, subnet.id)
                if (subnet.id, address) not in kept and _allocated(conn, subnet.id, address):
                    raise _in_use(address, subnet.id)
            elif is_auto_address(subnet) and not router:
                address = ipam.eui64_address(subnet.cidr, mac)
            else:
                address = self._pick(conn, subnet, network_id, exclude={a for _, a in out})
            if (subnet.id, address) in out:
                raise BadRequest(f"Duplicate IP address '{address}' in fixed_ips")
            out.append((subnet.id, address))
        if not router:  # SLAAC addresses are implied, as in Neutron
            given = {subnet_id for subnet_id, _ in out}
            out += [(s.id, ipam.eui64_address(s.cidr, mac)) for s in subnet_rows
                    if is_auto_address(s) and s.id not in given]
        return out

    @staticmethod
    def _subnet_for(entry: dict[str, str], by_id: dict[str, Row[Any]], network_id: str) -> Row[Any]:
        if "subnet_id" in entry:
            subnet = by_id.get(entry["subnet_id"])
            if subnet is None:
                raise InvalidInput(f"Failed to create port on network {network_id}, because "
                                   f"fixed_ips included invalid subnet {entry['subnet_id']}")
            return subnet
        address = entry["ip_address"]
        for subnet in by_id.values():
            if ipam.address_in_cidr(address, subnet.cidr):
                return subnet
        raise InvalidInput(f"IP address {address} is not a valid IP for any of the subnets on the "
                           "specified network.")

    def _auto_addresses(
        self, conn: Connection, network_id: str, subnet_rows: Sequence[Row[Any]], mac: str,
        router: bool,
    ) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for version in (4, 6):
            stateful = [s for s in subnet_rows
                        if s.ip_version == version and not is_auto_address(s)]
            if not stateful:
                continue
            for subnet in stateful:
                address = self._pick(conn, subnet, network_id, exclude=set(), fail=False)
                if address is not None:
                    out.append((subnet.id, address))
                    break
            else:
                raise _exhausted(network_id)
        if not router:
            out += [(s.id, ipam.eui64_address(s.cidr, mac)) for s in subnet_rows
                    if is_auto_address(s)]
        return out

    def _pick(
        self, conn: Connection, subnet: Row[Any], network_id: str, exclude: set[str],
        fail: bool = True,
    ) -> Any:
        """The lowest free address of the subnet's pools (None or 409 when there is none)."""
        pools = subnet_plan_pools(subnet)
        reserved = {ipam.ip_to_int(a) for a in exclude}
        if subnet.gateway_ip:
            reserved.add(ipam.ip_to_int(subnet.gateway_ip))
        bound = self.hints.lower_bound(subnet.id)
        found = self._search_windows(conn, subnet, pools, bound, reserved)
        if found is None:  # the windows ran out: read every allocation of the subnet
            allocated = {
                ipam.ip_to_int(r[0]) for r in conn.execute(
                    select(ip_allocations.c.ip_address)
                    .where(ip_allocations.c.subnet_id == subnet.id)
                )
            }
            found = ipam.pick_free_address(pools, allocated | reserved)
        if found is None:
            if fail:
                raise _exhausted(network_id)
            return None
        if not exclude:
            self.hints.allocated_lowest(subnet.id, found)
        return ipam.int_to_ip(found, subnet.ip_version)

    @staticmethod
    def _search_windows(
        conn: Connection, subnet: Row[Any], pools: list[tuple[int, int]], bound: int | None,
        reserved: set[int],
    ) -> int | None:
        """Look for the lowest free address at or above `bound` a window at a time; None when
        the search gives up (few free addresses near the bound) and a full scan must decide."""
        start = bound if bound is not None else min((p[0] for p in pools), default=0)
        checked = 0
        for first, last in sorted(pools):
            candidate = max(first, start)
            while candidate <= last:
                if checked >= WINDOW_SEARCH_LIMIT:
                    return None
                window = [a for a in range(candidate, min(last, candidate + WINDOW - 1) + 1)
                          if a not in reserved]
                checked += WINDOW
                candidate += WINDOW
                if not window:
                    continue
                spelled = {ipam.int_to_ip(a, subnet.ip_version): a for a in window}
                taken = {spelled[r[0]] for r in conn.execute(
                    select(ip_allocations.c.ip_address).where(
                        ip_allocations.c.subnet_id == subnet.id,
                        ip_allocations.c.ip_address.in_(list(spelled)),
                    )
                ) if r[0] in spelled}
                for address in window:
                    if address not in taken:
                        return address
        return None

    @staticmethod
    def _write_addresses(
        conn: Connection, port_id: str, network_id: str, addresses: list[tuple[str, str]]
    ) -> None:
        if addresses:
            conn.execute(INSERT_ALLOCATIONS, [
                {"port_id": port_id, "subnet_id": subnet_id, "network_id": network_id,
                 "ip_address": address, "position": n}
                for n, (subnet_id, address) in enumerate(addresses)
            ])


def with_mac(pairs: list[dict[str, str]], mac: str) -> list[dict[str, str]]:
    """Allowed address pairs as Neutron stores them: a pair without a MAC takes the port's."""
    return [{"ip_address": p["ip_address"], "mac_address": p.get("mac_address", mac)}
            for p in pairs]


def merge_dhcp_opts(
    current: list[dict[str, Any]], given: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Neutron's extra_dhcp_opts semantics: options are keyed by (name, ip_version); a given
    option replaces the value of the one it names, a null value removes it, and an option
    without a value is never stored."""
    merged = {(o["opt_name"], o["ip_version"]): o for o in current}
    for opt in given:
        key = (opt["opt_name"], opt["ip_version"])
        if opt["opt_value"] is None:
            merged.pop(key, None)
        else:
            merged[key] = opt
    return list(merged.values())


def _allocated(conn: Connection, subnet_id: str, address: str) -> bool:
    return conn.execute(select(ip_allocations.c.port_id).where(
        ip_allocations.c.subnet_id == subnet_id, ip_allocations.c.ip_address == address
    )).first() is not None


def _in_use(address: str, subnet_id: str) -> Conflict:
    return Conflict(f"IP address {address} already allocated in subnet {subnet_id}",
                    type="IpAddressAlreadyAllocated")


def _exhausted(network_id: str) -> Conflict:
    return Conflict(f"No more IP addresses available on network {network_id}.",
                    type="IpAddressGenerationFailure")


def _fixed_ip_matches(fixed_ips: list[dict[str, str]], value: str) -> bool:
    """Neutron's fixed_ips filter: `ip_address=X`, `subnet_id=Y` or `ip_address_substr=Z`."""
    key, _, wanted = value.partition("=")
    for entry in fixed_ips:
        if key == "ip_address_substr" and wanted in entry["ip_address"]:
            return True
        if key in ("ip_address", "subnet_id") and entry[key] == wanted:
            return True
    return False
