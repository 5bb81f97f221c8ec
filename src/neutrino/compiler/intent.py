"""The intent snapshot the compiler reads: every network, subnet, port, security group, rule and
chassis, as immutable rows, with the indexes compilation needs.

`load_intent` reads it from the database with one SELECT per table (no per-object queries);
tests build `Intent` objects directly. The snapshot tolerates dangling references (a port naming
a deleted group or subnet, a rule whose group is gone): the compiler never looks an id up
without checking, so it can run on any consistent-or-not state it is given.

Indexes are derived in `__post_init__` and take no part in equality: two intents are equal when
their rows are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from neutrino.db import schema

OVERLAY_TYPES = frozenset({"vxlan", "geneve"})
PHYSICAL_TYPES = frozenset({"flat", "vlan"})
DHCP_OWNER = "network:dhcp"


@dataclass(frozen=True)
class NetworkRow:
    id: str
    network_type: str  # flat | vlan | vxlan | geneve
    segmentation_id: int | None = None
    physical_network: str | None = None
    mtu: int = 1500
    project_id: str = ""
    admin_state_up: bool = True


@dataclass(frozen=True)
class SubnetRow:
    id: str
    network_id: str
    cidr: str
    ip_version: int
    gateway_ip: str | None = None
    enable_dhcp: bool = True
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[tuple[str, str], ...] = ()  # (destination, nexthop)
    ipv6_ra_mode: str | None = None
    ipv6_address_mode: str | None = None


@dataclass(frozen=True)
class PortRow:
    id: str
    network_id: str
    mac_address: str
    fixed_ips: tuple[tuple[str, str], ...] = ()  # (subnet_id, ip_address), in the API's order
    host: str = ""  # binding:host_id; "" = not bound
    security_group_ids: tuple[str, ...] = ()  # sorted
    port_security_enabled: bool = True
    allowed_address_pairs: tuple[tuple[str, str], ...] = ()  # (ip_address or CIDR, mac_address)
    admin_state_up: bool = True
    status: str = "DOWN"
    device_owner: str = ""
    device_id: str = ""
    extra_dhcp_opts: tuple[tuple[str, str, int], ...] = ()  # (opt_name, opt_value, ip_version)
    project_id: str = ""
    revision_number: int = 0


@dataclass(frozen=True)
class SecurityGroupRow:
    id: str
    stateful: bool = True
    project_id: str = ""


@dataclass(frozen=True)
class RuleRow:
    id: str
    security_group_id: str
    direction: str  # ingress | egress
    ethertype: str  # IPv4 | IPv6
    protocol: str | None = None  # as the API stores it: a name ('tcp') or a number string ('6')
    port_range_min: int | None = None
    port_range_max: int | None = None
    remote_ip_prefix: str | None = None  # normalized (network address) when the API had one
    remote_group_id: str | None = None
    remote_address_group_id: str | None = None


@dataclass(frozen=True)
class ChassisRow:
    name: str
    tunnel_ip: str
    bridge_mappings: tuple[tuple[str, str], ...] = ()  # sorted (physnet, bridge)


def _group(pairs: Any) -> dict[str, tuple[str, ...]]:
    """{key: sorted tuple of values} from (key, value) pairs."""
    grouped: dict[str, set[str]] = defaultdict(set)
    for key, value in pairs:
        grouped[key].add(value)
    return {key: tuple(sorted(values)) for key, values in grouped.items()}


@dataclass(frozen=True)
class Intent:
    """An immutable snapshot of the networking intent. Treat the mappings as read-only."""

    networks: Mapping[str, NetworkRow] = field(default_factory=dict)
    subnets: Mapping[str, SubnetRow] = field(default_factory=dict)
    ports: Mapping[str, PortRow] = field(default_factory=dict)
    security_groups: Mapping[str, SecurityGroupRow] = field(default_factory=dict)
    rules: Mapping[str, RuleRow] = field(default_factory=dict)
    chassis: Mapping[str, ChassisRow] = field(default_factory=dict)

    # --- indexes (derived) -------------------------------------------------------------------
    #: host -> ids of the ports bound to it, sorted
    ports_by_chassis: Mapping[str, tuple[str, ...]] = field(init=False, compare=False, repr=False)
    #: network id -> ids of its ports (bound or not), sorted
    ports_by_network: Mapping[str, tuple[str, ...]] = field(init=False, compare=False, repr=False)
    #: group id -> ids of the ports that are members (port_security_groups), sorted
    ports_by_group: Mapping[str, tuple[str, ...]] = field(init=False, compare=False, repr=False)
    #: network id -> hosts with at least one port bound on the network, sorted
    chassis_by_network: Mapping[str, tuple[str, ...]] = field(init=False, compare=False, repr=False)
    #: group id -> hosts with a port in the group whose port security is on, sorted
    chassis_by_group: Mapping[str, tuple[str, ...]] = field(init=False, compare=False, repr=False)
    #: network id -> ids of its subnets, sorted
    subnets_by_network: Mapping[str, tuple[str, ...]] = field(init=False, compare=False, repr=False)
    #: group id -> ids of its rules, sorted
    rules_by_group: Mapping[str, tuple[str, ...]] = field(init=False, compare=False, repr=False)
    #: group id -> ids of the groups with a rule naming it as remote_group_id, sorted
    groups_referencing: Mapping[str, tuple[str, ...]] = field(init=False, compare=False, repr=False)
    #: subnet id -> id of the network's DHCP port (device_owner network:dhcp, device_id
    #: dhcp-<network id>: the one the server keeps) holding an address on it
    dhcp_port_by_subnet: Mapping[str, str] = field(init=False, compare=False, repr=False)
    #: every physical network name known (networks' physical_network, chassis bridge mappings)
    physical_networks: tuple[str, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        ports = self.ports.values()
        bound = [p for p in ports if p.host]
        dhcp: dict[str, str] = {}
        for port in sorted(ports, key=lambda p: p.id):
            if port.device_owner != DHCP_OWNER or port.device_id != f"dhcp-{port.network_id}":
                continue  # only the server's own DHCP port (neutrino.api.resources.dhcp_ports)
            for subnet_id, _ip in port.fixed_ips:
                subnet = self.subnets.get(subnet_id)
                if subnet is not None and subnet.network_id == port.network_id:
                    dhcp.setdefault(subnet_id, port.id)
        physnets = {n.physical_network for n in self.networks.values() if n.physical_network}
        for row in self.chassis.values():
            physnets.update(name for name, _bridge in row.bridge_mappings)
        derived: dict[str, object] = {
            "ports_by_chassis": _group((p.host, p.id) for p in bound),
            "ports_by_network": _group((p.network_id, p.id) for p in ports),
            "ports_by_group": _group((g, p.id) for p in ports for g in p.security_group_ids),
            "chassis_by_network": _group((p.network_id, p.host) for p in bound),
            "chassis_by_group": _group(
                (g, p.host) for p in bound if p.port_security_enabled for g in p.security_group_ids
            ),
            "subnets_by_network": _group((s.network_id, s.id) for s in self.subnets.values()),
            "rules_by_group": _group((r.security_group_id, r.id) for r in self.rules.values()),
            "groups_referencing": _group(
                (r.remote_group_id, r.security_group_id)
                for r in self.rules.values() if r.remote_group_id
            ),
            "dhcp_port_by_subnet": dhcp,
            "physical_networks": tuple(sorted(physnets)),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def address_set_consumers(self, group_id: str) -> set[str]:
        """Hosts that hold the address set of `group_id`: those with a port (port security on)
        in a group that has a rule naming `group_id` as remote group."""
        hosts: set[str] = set()
        for referencing in self.groups_referencing.get(group_id, ()):
            hosts.update(self.chassis_by_group.get(referencing, ()))
        return hosts


def _pairs(items: Any, first: str, second: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(item[first]), str(item[second])) for item in items or ())


def load_intent(conn: Connection) -> Intent:
    """The whole intent as one snapshot: one SELECT per table, run in the caller's transaction
    (use one read transaction so the snapshot is consistent)."""
    fixed_ips: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for alloc in conn.execute(
        select(schema.ip_allocations.c.port_id, schema.ip_allocations.c.subnet_id,
               schema.ip_allocations.c.ip_address)
        .order_by(schema.ip_allocations.c.port_id, schema.ip_allocations.c.position)
    ):
        fixed_ips[alloc.port_id].append((alloc.subnet_id, alloc.ip_address))
    groups_of: dict[str, list[str]] = defaultdict(list)
    for member in conn.execute(select(schema.port_security_groups)):
        groups_of[member.port_id].append(member.security_group_id)

    networks = {
        row.id: NetworkRow(
            id=row.id, network_type=row.network_type, segmentation_id=row.segmentation_id,
            physical_network=row.physical_network, mtu=row.mtu, project_id=row.project_id,
            admin_state_up=row.admin_state_up,
        )
        for row in conn.execute(select(schema.networks))
    }
    subnets = {
        row.id: SubnetRow(
            id=row.id, network_id=row.network_id, cidr=row.cidr, ip_version=row.ip_version,
            gateway_ip=row.gateway_ip, enable_dhcp=row.enable_dhcp,
            dns_nameservers=tuple(row.dns_nameservers or ()),
            host_routes=_pairs(row.host_routes, "destination", "nexthop"),
            ipv6_ra_mode=row.ipv6_ra_mode, ipv6_address_mode=row.ipv6_address_mode,
        )
        for row in conn.execute(select(schema.subnets))
    }
    ports = {
        row.id: PortRow(
            id=row.id, network_id=row.network_id, mac_address=row.mac_address,
            fixed_ips=tuple(fixed_ips.get(row.id, ())), host=row.binding_host_id or "",
            security_group_ids=tuple(sorted(groups_of.get(row.id, ()))),
            port_security_enabled=row.port_security_enabled,
            allowed_address_pairs=_pairs(row.allowed_address_pairs, "ip_address", "mac_address"),
            admin_state_up=row.admin_state_up, status=row.status,
            device_owner=row.device_owner, device_id=row.device_id,
            extra_dhcp_opts=tuple(
                (str(o["opt_name"]), str(o["opt_value"]), int(o.get("ip_version", 4)))
                for o in row.extra_dhcp_opts or ()
            ),
            project_id=row.project_id, revision_number=row.revision_number,
        )
        for row in conn.execute(select(schema.ports))
    }
    groups = {
        row.id: SecurityGroupRow(id=row.id, stateful=row.stateful, project_id=row.project_id)
        for row in conn.execute(select(schema.security_groups))
    }
    rules = {
        row.id: RuleRow(
            id=row.id, security_group_id=row.security_group_id, direction=row.direction,
            ethertype=row.ethertype, protocol=row.protocol, port_range_min=row.port_range_min,
            port_range_max=row.port_range_max,
            remote_ip_prefix=row.normalized_cidr or row.remote_ip_prefix,
            remote_group_id=row.remote_group_id,
            remote_address_group_id=row.remote_address_group_id,
        )
        for row in conn.execute(select(schema.security_group_rules))
    }
    chassis = {
        row.name: ChassisRow(
            name=row.name, tunnel_ip=row.tunnel_ip,
            bridge_mappings=tuple(sorted((str(k), str(v))
                                         for k, v in (row.bridge_mappings or {}).items())),
        )
        for row in conn.execute(select(schema.chassis))
    }
    return Intent(networks=networks, subnets=subnets, ports=ports, security_groups=groups,
                  rules=rules, chassis=chassis)
