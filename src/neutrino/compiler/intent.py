"""The intent snapshot the compiler reads: every network, subnet, port, security group, rule,
chassis, router, router port and floating IP, as immutable rows, with the indexes compilation needs.

`load_intent` reads it from the database with one SELECT per table (no per-object queries);
tests build `Intent` objects directly. The snapshot tolerates dangling references (a port naming
a deleted group or subnet, a rule whose group is gone): the compiler never looks an id up
without checking, so it can run on any consistent-or-not state it is given.

Indexes are derived in `__post_init__` and take no part in equality: two intents are equal when
their rows are.

`update_intent` is the incremental load: from the previous snapshot and the outbox changes
since, it reads again only the rows the changes name (`load_changed_rows`) and makes the new
snapshot with `updated_intent` (pure), which keeps every unchanged row object and updates only
the index entries the changed rows can move. `intent_differences` says what differs between two
snapshots, indexes included (the compiler loop's checks).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import InitVar, dataclass, field, fields
from typing import Any

from sqlalchemy import Connection, select

from neutrino.api.resources.l3 import INTERFACE_OWNERS
from neutrino.compiler.scheduling import gateway_chassis, gateway_role
from neutrino.db import schema
from neutrino.db.outbox import PORT_STATUS_KIND, Change

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
    is_gateway: bool = False  # its agent runs with --gateway, is up and in service
    gateway_priority: int = 0
    gateway_recovering: bool = False  # back from a fault: scheduled last until it is ready


@dataclass(frozen=True)
class RouterRow:
    id: str
    admin_state_up: bool = True
    distributed: bool = False
    ha: bool = False
    enable_snat: bool = True
    gw_port_id: str | None = None  # the gateway port (network:router_gateway), if any
    routes: tuple[tuple[str, str], ...] = ()  # extra routes (destination, nexthop), sorted
    project_id: str = ""


@dataclass(frozen=True)
class RouterPortRow:
    """A port a router owns (Neutron's routerports): the authority on which ports are a
    router's interfaces (`port_type` one of INTERFACE_OWNERS) and which is its gateway."""

    port_id: str
    router_id: str
    port_type: str  # the device_owner it was attached as (an interface owner, or the gateway's)


@dataclass(frozen=True)
class FloatingIpRow:
    """A floating IP: `floating_ip_address`, held by the port `floating_port_id`
    (network:floatingip) on `floating_network_id`, stands for `fixed_ip_address` of
    `fixed_port_id` (both None while unassociated) through `router_id`."""

    id: str
    floating_network_id: str
    floating_port_id: str
    floating_ip_address: str
    fixed_port_id: str | None = None
    fixed_ip_address: str | None = None
    router_id: str | None = None
    #: its port forwardings: (protocol, external_port, internal_ip_address, internal_port),
    #: sorted (the API names the floating IP in the outbox whenever one of them changes)
    port_forwardings: tuple[tuple[str, int, str, int], ...] = ()


def is_interface(row: RouterPortRow | None) -> bool:
    """Whether a router port row makes its port an interface of its router."""
    return row is not None and row.port_type in INTERFACE_OWNERS


#: bits 32-39 of a router's tunnel key (networks use 1-4: compile.TUNNEL_KEY_TYPE_CODES)
ROUTER_KEY_CODE = 5


def router_hash(router_id: str) -> int:
    """The 32-bit value a router's key is made of: the first 4 bytes of sha256(id), big-endian."""
    return int.from_bytes(hashlib.sha256(router_id.encode()).digest()[:4], "big")


def router_tunnel_keys(router_ids: Collection[str]) -> dict[str, int]:
    """Every router's key in the pipeline, `5 << 32 | h`, distinct per router (docs/policy-model.md,
    "Tunnel keys"): h is `router_hash(id)`; of routers with the same hash (astronomically rare),
    the one with the smallest id keeps it, and each other one, in id order, takes the first value
    after it (modulo 2**32) that is no router's hash and not taken yet. So a router's key only
    ever depends on other routers when its hash collides with another's."""
    ordered = sorted(router_ids)
    hashes = {router_id: router_hash(router_id) for router_id in ordered}
    taken = set(hashes.values())
    owners: dict[int, str] = {}
    values: dict[str, int] = {}
    for router_id in ordered:
        if hashes[router_id] not in owners:
            owners[hashes[router_id]] = router_id
            values[router_id] = hashes[router_id]
    for router_id in ordered:
        if router_id in values:
            continue
        value = hashes[router_id]
        while value in taken:
            value = (value + 1) % (1 << 32)
        taken.add(value)
        values[router_id] = value
    return {router_id: ROUTER_KEY_CODE << 32 | values[router_id] for router_id in ordered}


def _group(pairs: Any) -> dict[str, tuple[str, ...]]:
    """{key: sorted tuple of values} from (key, value) pairs."""
    grouped: dict[str, set[str]] = defaultdict(set)
    for key, value in pairs:
        grouped[key].add(value)
    return {key: tuple(sorted(values)) for key, values in grouped.items()}


@dataclass(frozen=True)
class Indexes:
    """The indexes an `Intent` derives from its rows (documented on `Intent`)."""

    ports_by_chassis: Mapping[str, tuple[str, ...]]
    ports_by_network: Mapping[str, tuple[str, ...]]
    ports_by_group: Mapping[str, tuple[str, ...]]
    chassis_by_network: Mapping[str, tuple[str, ...]]
    chassis_by_group: Mapping[str, tuple[str, ...]]
    subnets_by_network: Mapping[str, tuple[str, ...]]
    rules_by_group: Mapping[str, tuple[str, ...]]
    groups_referencing: Mapping[str, tuple[str, ...]]
    dhcp_port_by_subnet: Mapping[str, str]
    physical_networks: tuple[str, ...]
    interfaces_by_router: Mapping[str, tuple[str, ...]]
    routers_by_network: Mapping[str, tuple[str, ...]]
    router_keys: Mapping[str, int]
    routers_by_gateway_port: Mapping[str, tuple[str, ...]]
    routers_by_gateway_network: Mapping[str, tuple[str, ...]]
    floatingips_by_router: Mapping[str, tuple[str, ...]]
    floatingips_by_fixed_port: Mapping[str, tuple[str, ...]]
    floatingips_by_floating_port: Mapping[str, tuple[str, ...]]


INDEX_NAMES = tuple(f.name for f in fields(Indexes))


@dataclass(frozen=True)
class Intent:
    """An immutable snapshot of the networking intent. Treat the mappings as read-only.

    `indexes`, when given, are the snapshot's indexes already derived (`updated_intent` derives
    them from the previous snapshot's); when not, they are derived from the rows."""

    networks: Mapping[str, NetworkRow] = field(default_factory=dict)
    subnets: Mapping[str, SubnetRow] = field(default_factory=dict)
    ports: Mapping[str, PortRow] = field(default_factory=dict)
    security_groups: Mapping[str, SecurityGroupRow] = field(default_factory=dict)
    rules: Mapping[str, RuleRow] = field(default_factory=dict)
    chassis: Mapping[str, ChassisRow] = field(default_factory=dict)
    routers: Mapping[str, RouterRow] = field(default_factory=dict)
    #: port id -> the router port row of that port
    router_ports: Mapping[str, RouterPortRow] = field(default_factory=dict)
    floatingips: Mapping[str, FloatingIpRow] = field(default_factory=dict)
    indexes: InitVar[Indexes | None] = None
    #: router id -> its gateway chassis (memo of `gateway_chassis`; the snapshot never changes)
    _gateway_memo: dict[str, tuple[str, ...]] = field(default_factory=dict, init=False,
                                                      compare=False, repr=False)

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
    #: router id -> ids of its interface ports (router_ports rows of an interface type), sorted
    interfaces_by_router: Mapping[str, tuple[str, ...]] = field(init=False, compare=False,
                                                                repr=False)
    #: network id -> ids of the routers with an interface port (an existing port) on it, sorted
    routers_by_network: Mapping[str, tuple[str, ...]] = field(init=False, compare=False,
                                                              repr=False)
    #: router id -> its tunnel key (`router_tunnel_keys` of every router row)
    router_keys: Mapping[str, int] = field(init=False, compare=False, repr=False)
    #: port id -> ids of the routers whose gateway it is (their row's gw_port_id), sorted
    routers_by_gateway_port: Mapping[str, tuple[str, ...]] = field(init=False, compare=False,
                                                                   repr=False)
    #: network id -> ids of the routers whose gateway port (an existing port) is on it, sorted
    routers_by_gateway_network: Mapping[str, tuple[str, ...]] = field(init=False, compare=False,
                                                                      repr=False)
    #: router id -> ids of the floating IPs naming it as router_id, sorted
    floatingips_by_router: Mapping[str, tuple[str, ...]] = field(init=False, compare=False,
                                                                 repr=False)
    #: port id -> ids of the floating IPs associated with it (fixed_port_id), sorted
    floatingips_by_fixed_port: Mapping[str, tuple[str, ...]] = field(init=False, compare=False,
                                                                     repr=False)
    #: port id -> ids of the floating IPs it holds the address of (floating_port_id), sorted
    floatingips_by_floating_port: Mapping[str, tuple[str, ...]] = field(init=False, compare=False,
                                                                        repr=False)

    def __post_init__(self, indexes: Indexes | None) -> None:
        derived = indexes if indexes is not None else derive_indexes(self)
        for name in INDEX_NAMES:
            object.__setattr__(self, name, getattr(derived, name))

    def all_indexes(self) -> Indexes:
        """The derived indexes as one value (to compare two snapshots' indexes)."""
        return Indexes(**{name: getattr(self, name) for name in INDEX_NAMES})

    def address_set_consumers(self, group_id: str) -> set[str]:
        """Hosts that hold the address set of `group_id`: those with a port (port security on)
        in a group that has a rule naming `group_id` as remote group."""
        hosts: set[str] = set()
        for referencing in self.groups_referencing.get(group_id, ()):
            hosts.update(self.chassis_by_group.get(referencing, ()))
        return hosts

    def interface_networks(self, router_id: str) -> set[str]:
        """Networks of the router's interface ports, whether the router has a row or not."""
        return {self.ports[p].network_id
                for p in self.interfaces_by_router.get(router_id, ()) if p in self.ports}

    def router_networks(self, router_id: str) -> tuple[str, ...]:
        """The networks the router routes between (its interfaces'), sorted; none without a
        router row."""
        if router_id not in self.routers:
            return ()
        return tuple(sorted(self.interface_networks(router_id)))

    def router_hosts(self, router_id: str) -> set[str]:
        """Hosts that hold the router: those with a port bound on one of its networks, and its
        gateway chassis (`gateway_chassis`)."""
        hosts: set[str] = set(self.gateway_chassis(router_id))
        for network_id in self.router_networks(router_id):
            hosts.update(self.chassis_by_network.get(network_id, ()))
        return hosts

    def gateway_chassis(self, router_id: str) -> tuple[str, ...]:
        """The chassis the router's SNAT is scheduled on, preferred first
        (`neutrino.compiler.scheduling`); none without a gateway port or a row."""
        memo = self._gateway_memo
        if router_id not in memo:
            if self.gateway_port(router_id) is None:
                memo[router_id] = ()
            else:
                gateways = [c for c in self.chassis.values() if c.is_gateway]
                memo[router_id] = gateway_chassis(
                    router_id, [(c.name, c.gateway_priority) for c in gateways
                                if not c.gateway_recovering],
                    recovering=[(c.name, c.gateway_priority) for c in gateways
                                if c.gateway_recovering])
        return memo[router_id]

    def gateway_routers(self, chassis: str) -> set[str]:
        """Routers whose gateway chassis include `chassis`."""
        return {r for routers in self.routers_by_gateway_network.values() for r in routers
                if chassis in self.gateway_chassis(r)}

    def network_hosts(self, network_id: str) -> set[str]:
        """Hosts that hold the network: those with a port bound on it, those holding a router
        with an interface on it (they route into it), and those holding a router with its
        gateway on it and the port of one of its floating IPs (`external_hosts`)."""
        hosts = set(self.chassis_by_network.get(network_id, ()))
        for router_id in self.routers_by_network.get(network_id, ()):
            hosts |= self.router_hosts(router_id)
        for router_id in self.routers_by_gateway_network.get(network_id, ()):
            hosts |= self.external_hosts(router_id)
        return hosts

    def gateway_port(self, router_id: str) -> PortRow | None:
        """The router's gateway port (its row's gw_port_id), when both exist."""
        router = self.routers.get(router_id)
        if router is None or router.gw_port_id is None:
            return None
        return self.ports.get(router.gw_port_id)

    def gateway_network(self, router_id: str) -> str | None:
        """The network of the router's gateway port (its external network), if it has one."""
        port = self.gateway_port(router_id)
        return port.network_id if port is not None else None

    def router_port_forwardings(self, router_id: str) -> list[FloatingIpRow]:
        """The floating IPs with port forwardings the router serves, sorted by id (those naming
        it, unassociated: the API allows forwardings only there)."""
        return [self.floatingips[f] for f in self.floatingips_by_router.get(router_id, ())
                if self.floatingips[f].port_forwardings and self.floatingips[f].fixed_port_id is None]

    def router_floatingips(self, router_id: str) -> list[FloatingIpRow]:
        """The floating IPs the router serves, sorted by id: those naming it that are
        associated (a fixed port and address) and whose own port exists (its MAC)."""
        found = []
        for fip_id in self.floatingips_by_router.get(router_id, ()):
            fip = self.floatingips[fip_id]
            if (fip.fixed_port_id is not None and fip.fixed_ip_address is not None
                    and fip.floating_port_id in self.ports):
                found.append(fip)
        return found

    def floatingip_hosts(self, router_id: str) -> set[str]:
        """Hosts where a port of one of the router's floating IPs is bound."""
        hosts = set()
        for fip in self.router_floatingips(router_id):
            port = self.ports.get(fip.fixed_port_id or "")
            if port is not None and port.host:
                hosts.add(port.host)
        return hosts

    def external_hosts(self, router_id: str) -> set[str]:
        """Hosts that hold the router's external network through it: its gateway chassis, and
        those holding the router (it has a gateway) that host the port of one of its floating
        IPs."""
        if self.gateway_network(router_id) is None:
            return set()
        hosts = set(self.gateway_chassis(router_id))
        fip_hosts = self.floatingip_hosts(router_id)
        return hosts | (self.router_hosts(router_id) & fip_hosts if fip_hosts else set())


def _is_served_dhcp_port(port: PortRow) -> bool:
    """The server's own DHCP port of its network (neutrino.api.resources.dhcp_ports)."""
    return port.device_owner == DHCP_OWNER and port.device_id == f"dhcp-{port.network_id}"


def derive_indexes(intent: Intent) -> Indexes:
    """Every index of the snapshot, from its rows."""
    ports = intent.ports.values()
    bound = [p for p in ports if p.host]
    dhcp: dict[str, str] = {}
    for port in sorted(ports, key=lambda p: p.id):
        if not _is_served_dhcp_port(port):
            continue
        for subnet_id, _ip in port.fixed_ips:
            subnet = intent.subnets.get(subnet_id)
            if subnet is not None and subnet.network_id == port.network_id:
                dhcp.setdefault(subnet_id, port.id)
    interfaces = [r for r in intent.router_ports.values() if is_interface(r)]
    return Indexes(
        ports_by_chassis=_group((p.host, p.id) for p in bound),
        ports_by_network=_group((p.network_id, p.id) for p in ports),
        ports_by_group=_group((g, p.id) for p in ports for g in p.security_group_ids),
        chassis_by_network=_group((p.network_id, p.host) for p in bound),
        chassis_by_group=_group(
            (g, p.host) for p in bound if p.port_security_enabled for g in p.security_group_ids
        ),
        subnets_by_network=_group((s.network_id, s.id) for s in intent.subnets.values()),
        rules_by_group=_group((r.security_group_id, r.id) for r in intent.rules.values()),
        groups_referencing=_group(
            (r.remote_group_id, r.security_group_id)
            for r in intent.rules.values() if r.remote_group_id
        ),
        dhcp_port_by_subnet=dhcp,
        physical_networks=_physical_networks(intent.networks, intent.chassis),
        interfaces_by_router=_group((r.router_id, r.port_id) for r in interfaces),
        routers_by_network=_group((intent.ports[r.port_id].network_id, r.router_id)
                                  for r in interfaces if r.port_id in intent.ports),
        router_keys=router_tunnel_keys(intent.routers),
        routers_by_gateway_port=_group((r.gw_port_id, r.id) for r in intent.routers.values()
                                       if r.gw_port_id),
        routers_by_gateway_network=_group(
            (intent.ports[r.gw_port_id].network_id, r.id) for r in intent.routers.values()
            if r.gw_port_id and r.gw_port_id in intent.ports),
        **_floatingip_indexes(intent.floatingips.values()),
    )


def _floatingip_indexes(fips: Any) -> dict[str, Mapping[str, tuple[str, ...]]]:
    rows = list(fips)
    return {
        "floatingips_by_router": _group((f.router_id, f.id) for f in rows if f.router_id),
        "floatingips_by_fixed_port": _group((f.fixed_port_id, f.id) for f in rows
                                            if f.fixed_port_id),
        "floatingips_by_floating_port": _group((f.floating_port_id, f.id) for f in rows),
    }


def _physical_networks(
    networks: Mapping[str, NetworkRow], chassis: Mapping[str, ChassisRow]
) -> tuple[str, ...]:
    physnets = {n.physical_network for n in networks.values() if n.physical_network}
    for row in chassis.values():
        physnets.update(name for name, _bridge in row.bridge_mappings)
    return tuple(sorted(physnets))


# --- a snapshot from the previous one and the rows that changed ---------------------------------


@dataclass
class RowChanges:
    """Rows read again after a change, by table: id -> the row now, or None when it is gone."""

    networks: dict[str, NetworkRow | None] = field(default_factory=dict)
    subnets: dict[str, SubnetRow | None] = field(default_factory=dict)
    ports: dict[str, PortRow | None] = field(default_factory=dict)
    security_groups: dict[str, SecurityGroupRow | None] = field(default_factory=dict)
    rules: dict[str, RuleRow | None] = field(default_factory=dict)
    chassis: dict[str, ChassisRow | None] = field(default_factory=dict)
    routers: dict[str, RouterRow | None] = field(default_factory=dict)
    router_ports: dict[str, RouterPortRow | None] = field(default_factory=dict)
    floatingips: dict[str, FloatingIpRow | None] = field(default_factory=dict)


TABLE_NAMES = tuple(f.name for f in fields(RowChanges))


def _with_rows(
    rows: Mapping[str, Any], changes: Mapping[str, Any]
) -> tuple[Mapping[str, Any], set[str]]:
    """`rows` with `changes` applied (None deletes) and the ids whose row really differs. An
    unchanged row keeps its object; with nothing different, `rows` itself is returned."""
    differing = {id for id, row in changes.items() if rows.get(id) != row}
    if not differing:
        return rows, differing
    updated = dict(rows)
    for id in differing:
        row = changes[id]
        if row is None:
            del updated[id]
        else:
            updated[id] = row
    return updated, differing


def updated_intent(previous: Intent, changes: RowChanges) -> Intent:
    """`previous` with the rows of `changes`: equal to an `Intent` built from scratch on the new
    rows, sharing every unchanged row with `previous` and deriving only the index entries the
    changed rows can move (work in proportion to what changed, not to the snapshot)."""
    tables: dict[str, Mapping[str, Any]] = {}
    differing: dict[str, set[str]] = {}
    for name in TABLE_NAMES:
        tables[name], differing[name] = _with_rows(getattr(previous, name), getattr(changes, name))
    return Intent(**tables, indexes=_updated_indexes(previous, tables, differing))


def _regroup(
    index: Mapping[str, tuple[str, ...]],
    removed: list[tuple[str, str]],
    added: list[tuple[str, str]],
) -> Mapping[str, tuple[str, ...]]:
    """An index of sorted tuples (as `_group` makes) with (key, value) pairs removed, then
    added. Only for indexes where each pair comes from one row: removing it is then exact."""
    if not removed and not added:
        return index
    touched: dict[str, list[str]] = {}
    for key, value in removed:
        values = touched.setdefault(key, list(index.get(key, ())))
        at = bisect_left(values, value)
        if at < len(values) and values[at] == value:
            del values[at]
    for key, value in added:
        values = touched.setdefault(key, list(index.get(key, ())))
        at = bisect_left(values, value)
        if at == len(values) or values[at] != value:
            values.insert(at, value)
    updated = dict(index)
    for key, values in touched.items():
        if values:
            updated[key] = tuple(values)
        else:
            updated.pop(key, None)
    return updated


def _recomputed(
    index: Mapping[str, Any], keys: set[str], value_of: Callable[[str], Any]
) -> Mapping[str, Any]:
    """`index` with the entries of `keys` computed again (an empty value drops the key)."""
    if not keys:
        return index
    updated = dict(index)
    for key in keys:
        value = value_of(key)
        if value:
            updated[key] = value
        else:
            updated.pop(key, None)
    return updated


def _pairs_of(rows: list[Any], pairs: Callable[[Any], Any]) -> list[tuple[str, str]]:
    return [pair for row in rows for pair in pairs(row)]


def _updated_indexes(
    old: Intent, tables: Mapping[str, Mapping[str, Any]], differing: Mapping[str, set[str]]
) -> Indexes:
    """The indexes of the snapshot of `tables` (rows by table name), from `old`'s, given the
    ids of the rows that differ between the two."""
    ports: Mapping[str, PortRow] = tables["ports"]
    subnets: Mapping[str, SubnetRow] = tables["subnets"]
    rules: Mapping[str, RuleRow] = tables["rules"]
    port_ids, subnet_ids, rule_ids = differing["ports"], differing["subnets"], differing["rules"]
    old_ports = [old.ports[p] for p in port_ids if p in old.ports]
    new_ports = [ports[p] for p in port_ids if p in ports]
    old_subnets = [old.subnets[s] for s in subnet_ids if s in old.subnets]
    new_subnets = [subnets[s] for s in subnet_ids if s in subnets]
    old_rules = [old.rules[r] for r in rule_ids if r in old.rules]
    new_rules = [rules[r] for r in rule_ids if r in rules]

    def moved(rows_before: list[Any], rows_after: list[Any], index: Mapping[str, tuple[str, ...]],
              pairs: Callable[[Any], Any]) -> Mapping[str, tuple[str, ...]]:
        return _regroup(index, _pairs_of(rows_before, pairs), _pairs_of(rows_after, pairs))

    ports_by_network = moved(old_ports, new_ports, old.ports_by_network,
                             lambda p: [(p.network_id, p.id)])
    ports_by_group = moved(old_ports, new_ports, old.ports_by_group,
                           lambda p: [(g, p.id) for g in p.security_group_ids])
    touched_ports = old_ports + new_ports

    def hosts_on_network(network_id: str) -> tuple[str, ...]:
        members = (ports[p] for p in ports_by_network.get(network_id, ()))
        return tuple(sorted({p.host for p in members if p.host}))

    def hosts_in_group(group_id: str) -> tuple[str, ...]:
        members = (ports[p] for p in ports_by_group.get(group_id, ()))
        return tuple(sorted({p.host for p in members if p.host and p.port_security_enabled}))

    touched_remotes = {r.remote_group_id for r in old_rules + new_rules if r.remote_group_id}
    referencing: dict[str, set[str]] = defaultdict(set)
    if touched_remotes:
        for rule in rules.values():
            if rule.remote_group_id in touched_remotes:
                referencing[rule.remote_group_id].add(rule.security_group_id)

    def dhcp_port_of(subnet_id: str) -> str | None:
        subnet = subnets.get(subnet_id)
        if subnet is None:
            return None
        for port_id in ports_by_network.get(subnet.network_id, ()):
            port = ports[port_id]
            if _is_served_dhcp_port(port) and any(s == subnet_id for s, _ip in port.fixed_ips):
                return port_id
        return None

    subnets_of_ports = {s for p in touched_ports for s, _ip in p.fixed_ips}
    physical_changed = bool(differing["networks"] or differing["chassis"])

    router_ports: Mapping[str, RouterPortRow] = tables["router_ports"]
    router_port_ids = differing["router_ports"]
    old_router_ports = [old.router_ports[p] for p in router_port_ids if p in old.router_ports]
    new_router_ports = [router_ports[p] for p in router_port_ids if p in router_ports]
    # the networks where an interface may have come or gone: those of the ports whose router
    # port row changed, or that are a router's port and changed themselves (their network)
    moved_interfaces = router_port_ids | {p for p in port_ids
                                          if p in old.router_ports or p in router_ports}
    interface_networks = {rows[p].network_id for rows in (old.ports, ports)
                          for p in moved_interfaces if p in rows}

    def routers_on_network(network_id: str) -> tuple[str, ...]:
        rows = (router_ports.get(p) for p in ports_by_network.get(network_id, ()))
        return tuple(sorted({row.router_id for row in rows if row is not None and is_interface(row)}))

    routers: Mapping[str, RouterRow] = tables["routers"]
    router_ids = differing["routers"]
    routers_came_or_went = any((r in old.routers) != (r in routers) for r in router_ids)
    old_routers = [old.routers[r] for r in router_ids if r in old.routers]
    new_routers = [routers[r] for r in router_ids if r in routers]
    routers_by_gateway_port = moved(old_routers, new_routers, old.routers_by_gateway_port,
                                    lambda r: [(r.gw_port_id, r.id)] if r.gw_port_id else [])
    # a router's gateway network moves with its row or with its gateway port's row: one pair
    # per router, removed as it was and added as it is
    gateway_routers = set(router_ids)
    for port_id in port_ids:
        gateway_routers.update(old.routers_by_gateway_port.get(port_id, ()))
        gateway_routers.update(routers_by_gateway_port.get(port_id, ()))

    def gateway_pairs(router_rows: Mapping[str, RouterRow],
                      port_rows: Mapping[str, PortRow]) -> list[tuple[str, str]]:
        pairs = []
        for router_id in gateway_routers:
            row = router_rows.get(router_id)
            if row is not None and row.gw_port_id is not None and row.gw_port_id in port_rows:
                pairs.append((port_rows[row.gw_port_id].network_id, router_id))
        return pairs

    fips: Mapping[str, FloatingIpRow] = tables["floatingips"]
    fip_ids = differing["floatingips"]
    old_fips = [old.floatingips[f] for f in fip_ids if f in old.floatingips]
    new_fips = [fips[f] for f in fip_ids if f in fips]
    return Indexes(
        ports_by_chassis=moved(old_ports, new_ports, old.ports_by_chassis,
                               lambda p: [(p.host, p.id)] if p.host else []),
        ports_by_network=ports_by_network,
        ports_by_group=ports_by_group,
        chassis_by_network=_recomputed(old.chassis_by_network,
                                       {p.network_id for p in touched_ports}, hosts_on_network),
        chassis_by_group=_recomputed(old.chassis_by_group,
                                     {g for p in touched_ports for g in p.security_group_ids},
                                     hosts_in_group),
        subnets_by_network=moved(old_subnets, new_subnets, old.subnets_by_network,
                                 lambda s: [(s.network_id, s.id)]),
        rules_by_group=moved(old_rules, new_rules, old.rules_by_group,
                             lambda r: [(r.security_group_id, r.id)]),
        groups_referencing=_recomputed(old.groups_referencing, touched_remotes,
                                       lambda g: tuple(sorted(referencing.get(g, ())))),
        dhcp_port_by_subnet=_recomputed(old.dhcp_port_by_subnet, subnets_of_ports | subnet_ids,
                                        dhcp_port_of),
        physical_networks=(_physical_networks(tables["networks"], tables["chassis"])
                           if physical_changed else old.physical_networks),
        interfaces_by_router=moved(old_router_ports, new_router_ports, old.interfaces_by_router,
                                   lambda r: [(r.router_id, r.port_id)] if is_interface(r) else []),
        routers_by_network=_recomputed(old.routers_by_network, interface_networks,
                                       routers_on_network),
        # a new or deleted router can move the key of another only when their hashes collide;
        # such a change is rare enough to give every key again
        router_keys=router_tunnel_keys(routers) if routers_came_or_went else old.router_keys,
        routers_by_gateway_port=routers_by_gateway_port,
        routers_by_gateway_network=_regroup(old.routers_by_gateway_network,
                                            gateway_pairs(old.routers, old.ports),
                                            gateway_pairs(routers, ports)),
        floatingips_by_router=moved(old_fips, new_fips, old.floatingips_by_router,
                                    lambda f: [(f.router_id, f.id)] if f.router_id else []),
        floatingips_by_fixed_port=moved(
            old_fips, new_fips, old.floatingips_by_fixed_port,
            lambda f: [(f.fixed_port_id, f.id)] if f.fixed_port_id else []),
        floatingips_by_floating_port=moved(old_fips, new_fips, old.floatingips_by_floating_port,
                                           lambda f: [(f.floating_port_id, f.id)]),
    )


def _pairs(items: Any, first: str, second: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(item[first]), str(item[second])) for item in items or ())


def intent_differences(a: Intent, b: Intent) -> list[str]:
    """What differs between two snapshots, for a log line: the ids of differing rows by table,
    then the differing indexes by name; empty when they are equal, indexes included."""
    found = []
    for name in TABLE_NAMES:
        rows_a, rows_b = getattr(a, name), getattr(b, name)
        ids = sorted(i for i in rows_a.keys() | rows_b.keys() if rows_a.get(i) != rows_b.get(i))
        if ids:
            found.append(f"{name} {', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}")
    found += [f"index {name}" for name in INDEX_NAMES if getattr(a, name) != getattr(b, name)]
    return found


# --- rows from the database -------------------------------------------------------------------
# One builder per table, shared by the full load and the load of changed rows, so that both
# make equal rows from equal database rows.


def _network_row(row: Any) -> NetworkRow:
    return NetworkRow(
        id=row.id, network_type=row.network_type, segmentation_id=row.segmentation_id,
        physical_network=row.physical_network, mtu=row.mtu, project_id=row.project_id,
        admin_state_up=row.admin_state_up,
    )


def _subnet_row(row: Any) -> SubnetRow:
    return SubnetRow(
        id=row.id, network_id=row.network_id, cidr=row.cidr, ip_version=row.ip_version,
        gateway_ip=row.gateway_ip, enable_dhcp=row.enable_dhcp,
        dns_nameservers=tuple(row.dns_nameservers or ()),
        host_routes=_pairs(row.host_routes, "destination", "nexthop"),
        ipv6_ra_mode=row.ipv6_ra_mode, ipv6_address_mode=row.ipv6_address_mode,
    )


def _port_row(row: Any, fixed_ips: list[tuple[str, str]], groups: list[str]) -> PortRow:
    return PortRow(
        id=row.id, network_id=row.network_id, mac_address=row.mac_address,
        fixed_ips=tuple(fixed_ips), host=row.binding_host_id or "",
        security_group_ids=tuple(sorted(groups)),
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


def _group_row(row: Any) -> SecurityGroupRow:
    return SecurityGroupRow(id=row.id, stateful=row.stateful, project_id=row.project_id)


def _rule_row(row: Any) -> RuleRow:
    return RuleRow(
        id=row.id, security_group_id=row.security_group_id, direction=row.direction,
        ethertype=row.ethertype, protocol=row.protocol, port_range_min=row.port_range_min,
        port_range_max=row.port_range_max,
        remote_ip_prefix=row.normalized_cidr or row.remote_ip_prefix,
        remote_group_id=row.remote_group_id,
        remote_address_group_id=row.remote_address_group_id,
    )


def _chassis_row(row: Any) -> ChassisRow:
    role = gateway_role(bool(row.is_gateway), bool(row.admin_state_up), row.state,
                        bool(row.maintenance))
    return ChassisRow(
        name=row.name, tunnel_ip=row.tunnel_ip,
        bridge_mappings=tuple(sorted((str(k), str(v))
                                     for k, v in (row.bridge_mappings or {}).items())),
        is_gateway=role != "none",
        gateway_priority=int(row.gateway_priority or 0),
        gateway_recovering=role == "recovering",
    )


def _router_row(row: Any) -> RouterRow:
    return RouterRow(
        id=row.id, admin_state_up=row.admin_state_up, distributed=row.distributed, ha=row.ha,
        enable_snat=row.enable_snat, gw_port_id=row.gw_port_id,
        routes=tuple(sorted(_pairs(row.routes, "destination", "nexthop"))),
        project_id=row.project_id,
    )


def _router_port_row(row: Any) -> RouterPortRow:
    return RouterPortRow(port_id=row.port_id, router_id=row.router_id, port_type=row.port_type)


def _floatingip_row(row: Any, forwardings: Mapping[str, list[tuple[str, int, str, int]]]
                    ) -> FloatingIpRow:
    return FloatingIpRow(
        id=row.id, floating_network_id=row.floating_network_id,
        floating_port_id=row.floating_port_id, floating_ip_address=row.floating_ip_address,
        fixed_port_id=row.fixed_port_id, fixed_ip_address=row.fixed_ip_address,
        router_id=row.router_id, port_forwardings=tuple(sorted(forwardings.get(row.id, ()))),
    )


def _floatingips(conn: Connection, only: Collection[str] | None) -> dict[str, FloatingIpRow]:
    """Floating IPs with their port forwardings: all of them, or those of `only` that exist."""
    pfs = schema.port_forwardings
    rows = select(schema.floatingips)
    forwarding = select(pfs.c.floatingip_id, pfs.c.protocol, pfs.c.external_port,
                        pfs.c.internal_ip_address, pfs.c.internal_port)
    if only is not None:
        rows = rows.where(schema.floatingips.c.id.in_(only))
        forwarding = forwarding.where(pfs.c.floatingip_id.in_(only))
    forwardings: dict[str, list[tuple[str, int, str, int]]] = defaultdict(list)
    for pf in conn.execute(forwarding):
        forwardings[pf.floatingip_id].append((pf.protocol, pf.external_port,
                                              pf.internal_ip_address, pf.internal_port))
    return {row.id: _floatingip_row(row, forwardings) for row in conn.execute(rows)}


def _ports(conn: Connection, only: Collection[str] | None) -> dict[str, PortRow]:
    """Ports with their addresses and groups: all of them, or those of `only` that exist."""
    allocations = schema.ip_allocations
    addresses = select(allocations.c.port_id, allocations.c.subnet_id, allocations.c.ip_address)
    memberships = select(schema.port_security_groups)
    rows = select(schema.ports)
    if only is not None:
        addresses = addresses.where(allocations.c.port_id.in_(only))
        memberships = memberships.where(schema.port_security_groups.c.port_id.in_(only))
        rows = rows.where(schema.ports.c.id.in_(only))
    fixed_ips: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for alloc in conn.execute(addresses.order_by(allocations.c.port_id, allocations.c.position)):
        fixed_ips[alloc.port_id].append((alloc.subnet_id, alloc.ip_address))
    groups_of: dict[str, list[str]] = defaultdict(list)
    for member in conn.execute(memberships):
        groups_of[member.port_id].append(member.security_group_id)
    return {
        row.id: _port_row(row, fixed_ips.get(row.id, []), groups_of.get(row.id, []))
        for row in conn.execute(rows)
    }


def load_intent(conn: Connection) -> Intent:
    """The whole intent as one snapshot: one SELECT per table, run in the caller's transaction
    (use one read transaction so the snapshot is consistent)."""
    return Intent(
        networks={row.id: _network_row(row) for row in conn.execute(select(schema.networks))},
        subnets={row.id: _subnet_row(row) for row in conn.execute(select(schema.subnets))},
        ports=_ports(conn, None),
        security_groups={row.id: _group_row(row)
                         for row in conn.execute(select(schema.security_groups))},
        rules={row.id: _rule_row(row)
               for row in conn.execute(select(schema.security_group_rules))},
        chassis={row.name: _chassis_row(row) for row in conn.execute(select(schema.chassis))},
        routers={row.id: _router_row(row) for row in conn.execute(select(schema.routers))},
        router_ports={row.port_id: _router_port_row(row)
                      for row in conn.execute(select(schema.router_ports))},
        floatingips=_floatingips(conn, None),
    )


# --- the rows a list of changes names ---------------------------------------------------------

#: change kinds whose rows are in no table of the intent: what they change in it (their ports,
#: the floating IP's router_id) is named by changes of its own kind
#: (neutrino.api.resources.port_forwardings, l3)
KINDS_WITHOUT_ROWS = frozenset({"port_forwarding"})
#: change kinds `load_changed_rows` reads (a port's status report reads the port again)
KINDS_WITH_ROWS = frozenset({"network", "subnet", "port", PORT_STATUS_KIND, "security_group",
                             "security_group_rule", "chassis", "router", "floatingip"})


def _read(
    conn: Connection, table: Any, key: Any, ids: set[str], build: Callable[[Any], Any]
) -> dict[str, Any]:
    """{id: row now, or None when gone} for `ids` of one table."""
    if not ids:
        return {}
    found = {getattr(row, key.name): build(row)
             for row in conn.execute(select(table).where(key.in_(ids)))}
    return {id: found.get(id) for id in ids}


def load_changed_rows(conn: Connection, previous: Intent, changes: Sequence[Change]) -> RowChanges:
    """Every row of the intent that `changes` can have touched, read again (one SELECT per table
    named): a port with its addresses, groups and router port row, a security group with its
    rules (a new group comes with rules no change names), a router with its router port rows
    (interfaces and gateway), a network, subnet, rule, chassis or floating IP row. Raises ValueError for a
    kind it does not know."""
    ids: dict[str, set[str]] = defaultdict(set)
    for change in changes:
        if change.kind in KINDS_WITHOUT_ROWS:
            continue
        if change.kind not in KINDS_WITH_ROWS:
            raise ValueError(f"no rows known for changes of kind {change.kind!r}")
        kind = "port" if change.kind == PORT_STATUS_KIND else change.kind
        ids[kind].add(change.id)
    groups = ids["security_group"]
    rules: dict[str, RuleRow | None] = {}
    if groups:  # the groups' rules now, and those they had that are gone
        rules.update((r, None) for g in groups for r in previous.rules_by_group.get(g, ()))
        rules.update((row.id, _rule_row(row)) for row in conn.execute(
            select(schema.security_group_rules)
            .where(schema.security_group_rules.c.security_group_id.in_(groups))))
    rules.update(_read(conn, schema.security_group_rules, schema.security_group_rules.c.id,
                       ids["security_group_rule"], _rule_row))
    port_ids = ids["port"]
    ports: dict[str, PortRow | None] = dict.fromkeys(port_ids)
    if port_ids:
        ports.update(_ports(conn, port_ids))
    router_ids = ids["router"]
    # the router ports rows the routers had (gone unless read below), those of the ports (a
    # port's row goes with it, by cascade), and those the routers have now
    router_ports: dict[str, RouterPortRow | None] = {}
    if router_ids:
        router_ports.update((p, None) for p, row in previous.router_ports.items()
                            if row.router_id in router_ids)
    router_ports.update(_read(conn, schema.router_ports, schema.router_ports.c.port_id, port_ids,
                              _router_port_row))
    if router_ids:
        router_ports.update((row.port_id, _router_port_row(row)) for row in conn.execute(
            select(schema.router_ports).where(schema.router_ports.c.router_id.in_(router_ids))))
    return RowChanges(
        networks=_read(conn, schema.networks, schema.networks.c.id, ids["network"], _network_row),
        subnets=_read(conn, schema.subnets, schema.subnets.c.id, ids["subnet"], _subnet_row),
        ports=ports,
        security_groups=_read(conn, schema.security_groups, schema.security_groups.c.id, groups,
                              _group_row),
        rules=rules,
        chassis=_read(conn, schema.chassis, schema.chassis.c.name, ids["chassis"], _chassis_row),
        routers=_read(conn, schema.routers, schema.routers.c.id, router_ids, _router_row),
        router_ports=router_ports,
        floatingips=_changed_floatingips(conn, ids["floatingip"]),
    )


def _changed_floatingips(conn: Connection, ids: set[str]) -> dict[str, FloatingIpRow | None]:
    if not ids:
        return {}
    found = _floatingips(conn, ids)
    return {id: found.get(id) for id in ids}


#: beyond this many changes in one pass, reading everything is about as fast (and simpler)
MANY_CHANGES = 2000


def update_intent(conn: Connection, previous: Intent, changes: Sequence[Change]) -> Intent:
    """The intent now, from `previous` (the intent before `changes`) and the rows `changes`
    names, read in the caller's transaction: equal to `load_intent(conn)` when `changes` lists
    every object written since `previous` was loaded (the outbox contract). Much cheaper than
    `load_intent` for a few changes; for many changes, or a kind it does not know, it is
    `load_intent`."""
    known = KINDS_WITH_ROWS | KINDS_WITHOUT_ROWS
    if len(changes) > MANY_CHANGES or any(c.kind not in known for c in changes):
        return load_intent(conn)
    return updated_intent(previous, load_changed_rows(conn, previous, changes))
