"""The agent's view of its host's Open vSwitch database (through ovsdbapp).

What it reads: the VIFs plugged into br-int the way Nova's os-vif plugs them
(`external_ids:iface-id` = the Neutron port id, `attached-mac`, `vm-uuid`, `iface-status`) with
their OpenFlow port numbers and link state, and what the host says about itself in the
`Open_vSwitch` row's external_ids (`system-id`, `neutrino-encap-ip`,
`neutrino-bridge-mappings`). What it writes: the tunnel ports of br-int, one per peer chassis,
named `tn-<hash of the peer's name>`, with `options:remote_ip` and `options:key=flow`; and one
pair of patch ports per bridge mapping whose provider bridge exists, `int-<bridge>` on br-int and
`phy-<bridge>` on the provider bridge, marked `external_ids:neutrino-physnet=<physnet>` (the
provider bridge itself is the host's: its flows are left alone, so it keeps OVS's NORMAL).

ovsdbapp keeps a replica of the tables up to date in its own thread; `on_change` is called from
that thread whenever an Interface row changes, so callers must only schedule work from it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ovsdbapp.backend.ovs_idl import connection, event, idlutils
from ovsdbapp.schema.open_vswitch import impl_idl

log = logging.getLogger(__name__)

TABLES = ("Open_vSwitch", "Bridge", "Port", "Interface")
TUNNEL_PREFIX = "tn-"
ZONE_KEY = "neutrino-ct-zone-"
PHYSNET_KEY = "neutrino-physnet"  # external_ids of the patch ports to the provider bridges
IFNAME_MAX = 15
T = TypeVar("T")


@dataclass(frozen=True)
class Vif:
    port_id: str  # external_ids:iface-id
    name: str
    ofport: int  # -1 while OVS has not attached it
    mac: str
    device_id: str
    link_up: bool


@dataclass(frozen=True)
class TunnelSpec:
    ip: str
    encap: str = "geneve"


def tunnel_port_name(chassis: str) -> str:
    """A stable interface name (<= 15 characters) for the tunnel to `chassis`."""
    return TUNNEL_PREFIX + hashlib.sha256(chassis.encode()).hexdigest()[:11]


def patch_port_names(bridge: str) -> tuple[str, str]:
    """The patch port pair between br-int and provider bridge `bridge`: (`int-<bridge>` on br-int,
    `phy-<bridge>` on `bridge`), as Neutron's OVS agent names them; a hash of the bridge name
    instead when that would be longer than 15 characters."""
    if len(f"int-{bridge}") <= IFNAME_MAX:
        return f"int-{bridge}", f"phy-{bridge}"
    digest = hashlib.sha256(bridge.encode()).hexdigest()[:IFNAME_MAX - 4]
    return f"int-{digest}", f"phy-{digest}"


@dataclass(frozen=True)
class Iface:
    """One interface of some bridge, as read once from the IDL replica."""

    bridge: str
    name: str
    type: str
    ofport: int  # -1 while OVS has not attached it
    link_up: bool
    external_ids: Mapping[str, str]
    options: Mapping[str, str]
    bfd: Mapping[str, str] = field(default_factory=dict)  # its BFD configuration
    bfd_status: Mapping[str, str] = field(default_factory=dict)  # what OVS says of the session


def _iface(bridge: str, row: Any) -> Iface:
    ofport = int(row.ofport[0]) if row.ofport else -1
    link = row.link_state[0] if row.link_state else "down"
    return Iface(bridge=bridge, name=row.name, type=row.type, ofport=ofport,
                 link_up=link == "up" and ofport > 0, external_ids=dict(row.external_ids),
                 options=dict(row.options), bfd=dict(getattr(row, "bfd", {}) or {}),
                 bfd_status=dict(getattr(row, "bfd_status", {}) or {}))


class _InterfaceChanged(event.RowEvent):
    def __init__(self, callback: Callable[[str, Any], None]) -> None:
        super().__init__((self.ROW_CREATE, self.ROW_UPDATE, self.ROW_DELETE), "Interface", None)
        self.callback = callback

    def run(self, event: str, row: Any, old: Any) -> None:
        self.callback(event, row)


class _NotifyingIdl(connection.OvsdbIdl):
    def __init__(self, remote: str, helper: Any) -> None:
        super().__init__(remote, helper)
        self.notify_handler = event.RowEventHandler()

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        self.notify_handler.notify(event, row, updates)


class HostOvsdb:
    def __init__(
        self, url: str, bridge: str = "br-int", on_change: Callable[[], None] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.bridge = bridge
        helper = idlutils.get_schema_helper(url, "Open_vSwitch")
        for table in TABLES:
            helper.register_table(table)
        self.idl = _NotifyingIdl(url, helper)
        self._on_change = on_change
        # every interface of every bridge by row uuid, read in full once (reading thousands of
        # IDL rows is slow), then kept up to date row by row from the Interface table's events
        # (`_pending`: rows changed since, None = deleted); `_generation` counts invalidations,
        # so that a full read overtaken by one is not kept
        self._ifaces: dict[Any, Iface] | None = None
        self._pending: dict[Any, Any] = {}
        self._generation = 0
        self._version = 0  # counts changes of the interface view (`_ifaces`)
        # what the readers below derived from the view: name -> (version, arguments, result)
        self._derived: dict[str, tuple[int, Any, Any]] = {}
        self._cache_lock = threading.Lock()
        self.idl.notify_handler.watch_event(_InterfaceChanged(self._interfaces_changed))
        self.connection = connection.Connection(idl=self.idl, timeout=timeout)
        # ovsdbapp keeps the connection of its API class in a class attribute (the first one
        # made in the process wins), so each HostOvsdb gets a class of its own: several in one
        # process (tests, benches) then talk to their own databases
        api_class = type("HostOvsdbApi", (impl_idl.OvsdbIdl,), {"_ovsdb_connection": None})
        self.api = api_class(self.connection)
        self._lock = threading.Lock()
        self._bound: dict[str, str] = {}  # port id -> the interface name its VIF is
        self._conflicts: dict[str, tuple[str, ...]] = {}  # port id -> interfaces claiming it

    # --- reading --------------------------------------------------------------------------
    def _rows(self, table: str) -> list[Any]:
        return list(self.idl.tables[table].rows.values())

    def host_config(self) -> dict[str, str]:
        rows = self._rows("Open_vSwitch")
        return dict(rows[0].external_ids) if rows else {}

    def _interfaces_changed(self, event: str | None = None, row: Any = None) -> None:
        """An Interface row changed (`row`), or anything did (no row: read everything again)."""
        with self._cache_lock:
            if row is not None and self._ifaces is not None:
                self._pending[row.uuid] = None if event == _InterfaceChanged.ROW_DELETE else row
            else:
                self._generation += 1
                self._ifaces = None
                self._pending = {}
        if self._on_change is not None:
            self._on_change()

    def interfaces(self) -> list[Iface]:
        """Every interface of every bridge (read in full once, then row by row as they change)."""
        return self._versioned_interfaces()[1]

    def _versioned_interfaces(self) -> tuple[int, list[Iface]]:
        """(version of the view, every interface): the version changes whenever the view does."""
        with self._cache_lock:
            if self._ifaces is not None:
                unresolved: dict[Any, Any] = {}  # new rows whose port is on no bridge yet
                changed = False  # (most updates are statistics, which the view leaves out)
                for uuid, row in self._pending.items():
                    if row is None:
                        changed |= self._ifaces.pop(uuid, None) is not None
                        continue
                    known = self._ifaces.get(uuid)
                    bridge = known.bridge if known is not None else self._bridge_of(row.name)
                    if bridge is None:
                        unresolved[uuid] = row
                    elif (iface := _iface(bridge, row)) != known:
                        self._ifaces[uuid] = iface
                        changed = True
                if changed:
                    self._version += 1
                self._pending = unresolved
                return self._version, list(self._ifaces.values())
            generation = self._generation
        snapshot = {iface.uuid: _iface(bridge.name, iface)
                    for bridge in self._rows("Bridge") for port in bridge.ports
                    for iface in port.interfaces}
        with self._cache_lock:
            self._version += 1
            version = self._version
            if self._generation == generation and self._ifaces is None:
                self._ifaces = snapshot
                self._pending = {}
        return version, list(snapshot.values())

    def _derive(self, name: str, arguments: Any, compute: Callable[[list[Iface]], T]) -> T:
        """`compute(interfaces)`, recomputed only when the interface view or `arguments`
        changed since the last call of that name (a reconcile asks the same questions again and
        again; at thousands of interfaces each walk costs milliseconds)."""
        version, ifaces = self._versioned_interfaces()
        known = self._derived.get(name)
        if known is not None and known[0] == version and known[1] == arguments:
            return known[2]
        result = compute(ifaces)
        self._derived[name] = (version, arguments, result)
        return result

    def _bridge_of(self, port_name: str) -> str | None:
        """The bridge with a port named `port_name` (an interface's port shares its name)."""
        for bridge in self._rows("Bridge"):
            if any(port.name == port_name for port in bridge.ports):
                return str(bridge.name)
        return None

    def _bridge_interfaces(self) -> list[Iface]:
        return self._derive("bridge", None, lambda ifaces: [i for i in ifaces
                                                             if i.bridge == self.bridge])

    def vifs(self) -> dict[str, Vif]:
        """Port id -> VIF (see `_vifs`), derived again only when an interface changed."""
        return dict(self._derive("vifs", None, lambda _: self._vifs()))

    def _vifs(self) -> dict[str, Vif]:
        """Port id -> VIF, for every interface of the bridge carrying an iface-id.

        Two interfaces claiming one port (a leftover tap, a confused plug): the one this agent
        already uses keeps the port, else the one with the lowest ofport (plugged first); the
        other gets nothing, and the conflict is logged once."""
        candidates: dict[str, list[Vif]] = {}
        for iface in self._bridge_interfaces():
            ids = iface.external_ids
            port_id = ids.get("iface-id")
            if not port_id:
                continue
            candidates.setdefault(port_id, []).append(Vif(
                port_id=port_id, name=iface.name, ofport=iface.ofport,
                mac=ids.get("attached-mac", ""), device_id=ids.get("vm-uuid", ""),
                link_up=iface.link_up))
        out: dict[str, Vif] = {}
        for port_id, vifs in candidates.items():
            if len(vifs) == 1:
                chosen = vifs[0]
            else:
                held = [v for v in vifs if v.name == self._bound.get(port_id)]
                chosen = held[0] if held else min(
                    vifs, key=lambda v: (v.ofport <= 0, v.ofport, v.name))
                names = tuple(sorted(v.name for v in vifs))
                if self._conflicts.get(port_id) != names:
                    log.error("interfaces %s all claim port %s; %s keeps it, the others get "
                              "nothing", ", ".join(names), port_id, chosen.name)
                self._conflicts[port_id] = names
            out[port_id] = chosen
        self._bound = {port_id: vif.name for port_id, vif in out.items()}
        self._conflicts = {p: n for p, n in self._conflicts.items() if len(candidates.get(p, ())) > 1}
        return out

    def tunnel_ofports(self) -> dict[str, int]:
        """Peer chassis -> ofport of the tunnel port to it (only ports that are attached)."""
        def compute(_: list[Iface]) -> dict[str, int]:
            out: dict[str, int] = {}
            for iface in self._bridge_interfaces():
                peer = iface.external_ids.get("neutrino-peer")
                if peer and iface.ofport > 0:
                    out[peer] = iface.ofport
            return out
        return dict(self._derive("tunnel_ofports", None, compute))

    def bfd_states(self) -> dict[str, str]:
        """Peer chassis -> "up" / "down" / "drained": the BFD session on the tunnel to it ("up"
        when OVS says it is forwarding; "drained" when not, because the peer signals
        concatenated path down on purpose: it is starting or in maintenance, not failed), for
        tunnels that run BFD."""
        def compute(_: list[Iface]) -> dict[str, str]:
            out: dict[str, str] = {}
            for iface in self._bridge_interfaces():
                peer = iface.external_ids.get("neutrino-peer")
                if peer and iface.bfd.get("enable") == "true":
                    status = iface.bfd_status
                    if status.get("forwarding") == "true":
                        out[peer] = "up"
                    elif status.get("state") == "up" and "Concatenated Path Down" in status.get(
                            "remote_diagnostic", ""):
                        out[peer] = "drained"
                    else:
                        out[peer] = "down"
            return out
        return dict(self._derive("bfd_states", None, compute))

    def ofport_of(self, name: str) -> int | None:
        """The ofport of br-int's interface `name` (None while it is missing or unattached)."""
        by_name = self._derive("by_name", None, lambda _: {
            i.name: i for i in self._bridge_interfaces()})
        iface = by_name.get(name)
        return iface.ofport if iface is not None and iface.ofport > 0 else None

    # --- writing --------------------------------------------------------------------------
    def ensure_internal_port(self, name: str, role: str) -> None:
        """An internal port `name` on br-int (a tap in this namespace), marked
        `external_ids:neutrino-role=<role>`; left alone if it exists."""
        with self._lock:
            if any(i.name == name for i in self._bridge_interfaces()):
                return
            with self.api.transaction(check_error=True) as txn:
                txn.add(self.api.add_port(self.bridge, name, may_exist=True))
                txn.add(self.api.db_set("Interface", name, ("type", "internal"),
                                        ("external_ids", {"neutrino-role": role})))
            self._interfaces_changed()

    def ensure_tunnels(self, peers: Mapping[str, TunnelSpec], bfd_interval: int = 0,
                       drained: Collection[str] = ()) -> None:
        """Make br-int's tunnel ports exactly one per peer, in one OVSDB transaction; with
        `bfd_interval` (ms) > 0, each runs BFD at that interval (min_rx = min_tx, mult 3), and
        the tunnels to `drained` peers signal `bfd:cpath_down=true` (the peer then takes this
        chassis's end as not forwarding: it sends nothing here that it can send elsewhere, see
        the agent's readiness)."""
        def bfd_of(peer: str) -> dict[str, str]:
            if bfd_interval <= 0:
                return {}
            return {"enable": "true", "min_rx": str(bfd_interval), "min_tx": str(bfd_interval),
                    "cpath_down": "true" if peer in drained else "false"}
        wanted_peers = (tuple(sorted(peers.items())), bfd_interval,
                        tuple(sorted(set(drained) & set(peers))))
        version, _ = self._versioned_interfaces()
        if self._derived.get("tunnels") == (version, wanted_peers, True):
            return  # found right, and no interface changed since
        with self._lock:
            existing = {i.external_ids.get("neutrino-peer"): i
                        for i in self._bridge_interfaces() if i.name.startswith(TUNNEL_PREFIX)}
            stale = [iface.name for peer, iface in existing.items() if peer not in peers]
            changed = []
            for peer, spec in sorted(peers.items()):
                iface = existing.get(peer)
                wanted = {"remote_ip": spec.ip, "key": "flow"}
                if iface is None or iface.type != spec.encap or dict(iface.options) != wanted \
                        or dict(iface.bfd) != bfd_of(peer):
                    changed.append((peer, spec, wanted, iface))
            if not stale and not changed:
                self._derived["tunnels"] = (version, wanted_peers, True)
                return
            with self.api.transaction(check_error=True) as txn:
                for name in stale:
                    txn.add(self.api.del_port(name, bridge=self.bridge, if_exists=True))
                for peer, spec, wanted, iface in changed:
                    name = iface.name if iface is not None else tunnel_port_name(peer)
                    if iface is None:
                        txn.add(self.api.add_port(self.bridge, name, may_exist=True))
                    txn.add(self.api.db_set(
                        "Interface", name, ("type", spec.encap), ("options", wanted),
                        ("external_ids", {"neutrino-peer": peer}), ("bfd", bfd_of(peer)),
                    ))
            self._interfaces_changed()

    def ensure_provider_patches(self, mappings: Mapping[str, str]) -> dict[str, int]:
        """Patch br-int to the provider bridge of every bridge mapping (physnet -> bridge) whose
        bridge exists, in one OVSDB transaction (none when everything is right); remove patch
        ports of ours that no mapping wants any more.  Returns physnet -> ofport of its patch
        port on br-int (only ports that are attached)."""
        arguments = tuple(sorted(mappings.items()))
        version, _ = self._versioned_interfaces()
        known = self._derived.get("patches")
        if known is not None and known[:2] == (version, arguments):
            return dict(known[2])  # found right, and no interface changed since
        with self._lock:
            bridges = {b.name: b for b in self._rows("Bridge")}
            wanted: dict[str, tuple[str, str, str]] = {}  # interface name -> (bridge, peer, physnet)
            ours: dict[str, str] = {}  # physnet -> its br-int patch port
            for physnet, bridge in sorted(mappings.items()):
                if bridge not in bridges or bridge == self.bridge:
                    continue
                int_name, phy_name = patch_port_names(bridge)
                wanted[int_name] = (self.bridge, phy_name, physnet)
                wanted[phy_name] = (bridge, int_name, physnet)
                ours[physnet] = int_name
            found: dict[str, tuple[str, Iface]] = {}  # interface name -> (bridge, it), ours only
            for iface in self.interfaces():
                if PHYSNET_KEY in iface.external_ids:
                    found[iface.name] = (iface.bridge, iface)
            stale = [(bridge, name) for name, (bridge, _) in found.items()
                     if name not in wanted or wanted[name][0] != bridge]
            missing = []
            for name, (bridge, peer, physnet) in wanted.items():
                have = found.get(name)
                right = have is not None and have[0] == bridge and have[1].type == "patch" \
                    and dict(have[1].options) == {"peer": peer} \
                    and dict(have[1].external_ids).get(PHYSNET_KEY) == physnet
                if not right:
                    missing.append((name, bridge, peer, physnet))
            if stale or missing:
                with self.api.transaction(check_error=True) as txn:
                    for bridge, name in stale:
                        txn.add(self.api.del_port(name, bridge=bridge, if_exists=True))
                    for name, bridge, peer, physnet in missing:
                        if name not in found or found[name][0] != bridge:
                            txn.add(self.api.add_port(bridge, name, may_exist=True))
                        txn.add(self.api.db_set("Interface", name, ("type", "patch"),
                                                ("options", {"peer": peer}),
                                                ("external_ids", {PHYSNET_KEY: physnet})))
                self._interfaces_changed()
            out: dict[str, int] = {}
            by_name = {iface.name: iface for iface in self._bridge_interfaces()}
            for physnet, name in ours.items():
                found_iface = by_name.get(name)
                if found_iface is not None and found_iface.ofport > 0:
                    out[physnet] = found_iface.ofport
            if not stale and not missing:
                self._derived["patches"] = (version, arguments, dict(out))
            return out

    def ct_zones(self, network_ids: set[str]) -> dict[str, int]:
        """Conntrack zones of the networks on this chassis, kept in br-int's external_ids
        (`neutrino-ct-zone-<network id>`), so a restarted agent keeps every connection's zone.
        New networks get the lowest free zone; networks no longer here free theirs."""
        with self._lock:
            bridge = next((b for b in self._rows("Bridge") if b.name == self.bridge), None)
            if bridge is None:
                raise RuntimeError(f"bridge {self.bridge} does not exist")
            ids = dict(bridge.external_ids)
            zones = {k[len(ZONE_KEY):]: int(v) for k, v in ids.items() if k.startswith(ZONE_KEY)}
            kept = {net: zone for net, zone in zones.items() if net in network_ids}
            used = set(kept.values())
            free = (z for z in range(1, 1 << 16) if z not in used)
            for net in sorted(network_ids - set(kept)):
                kept[net] = next(free)
            if kept != zones:
                stale = [ZONE_KEY + net for net in zones if net not in kept]
                with self.api.transaction(check_error=True) as txn:
                    if stale:
                        txn.add(self.api.db_remove("Bridge", self.bridge, "external_ids", *stale))
                    txn.add(self.api.db_set("Bridge", self.bridge, ("external_ids", {
                        ZONE_KEY + net: str(zone) for net, zone in kept.items()})))
            return kept

    def close(self) -> None:
        self.connection.stop()


__all__ = ["HostOvsdb", "TunnelSpec", "Vif", "patch_port_names", "tunnel_port_name"]
