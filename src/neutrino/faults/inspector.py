"""The inspector: raw observations in, faults out (OPNFV Doctor's inspector).

Observations (all arrive through the server, each stamped with the server's clock):

* an agent's heartbeat, every `heartbeat_interval` (default 1 s) and at once when something it
  watches changes: the BFD session to each peer (`bfd`), its ovs-vswitchd (`switch`);
* an external monitor's report (`POST /v2.0/neutrino/fault-reports`): "host H down / up";
* an admin forcing a host down or up (Nova's os-services force_down), or putting it in
  maintenance.

A host is **down** while any of these holds (the first one found is the fault's `source`):

* `admin`: forced down (fault time: when it was forced);
* `vswitchd`: its own agent reports its ovs-vswitchd gone, the OpenFlow connection dropped
  (when the agent noticed);
* `bfd`: at least 2 peers that are themselves up saw their BFD session to it go from up to
  down, and it has stayed down for `bfd_confirm` (max(150 ms, 5 x the observer's BFD
  interval)): no single observer decides, and no blip does (a vswitchd starved of CPU for a
  few BFD intervals drops its sessions, which come back as soon as it runs again; a dead or
  cut-off host's never do). The fault time is the first such report minus the BFD detection
  time, 3 x interval. A session that never came up, or a peer draining on purpose
  (`drained`, bfd:cpath_down), is no evidence. The data path does not wait for any of this:
  OVS moves gateway traffic on the BFD state by itself;
* `report`: an external monitor reported it down and not up since (the report's time);
* `heartbeat`: no heartbeat for `misses` x the interval its agent announces, default 3 (one
  interval after the last heartbeat).

One fault per host at a time (deduplicated: later evidence of the same host's failure belongs
to the fault already raised). When no condition holds any more, the fault is cleared. The
actions (neutrino.faults.actions) run in the transaction that raises or clears it, and the
notifier (neutrino.faults.notifier) is handed the event in that same transaction.

A port is **down** (`port.down`) when its agent reports its VIF's link down while the VIF is
still plugged, or when a monitor reports it; cleared when the link comes back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import select

from neutrino.db.schema import chassis as chassis_table
from neutrino.db.schema import faults as faults_table
from neutrino.faults import actions
from neutrino.faults.events import SEVERITY, Affected, FaultEvent, new_id

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from neutrino.api.controller import NetworkingApi

log = logging.getLogger(__name__)
R = TypeVar("R")

HEARTBEAT_MISSES = 3  # heartbeats missed before a host is declared down
BFD_OBSERVERS = 2  # peers that must lose BFD to a host before it is declared down
DEFAULT_BFD_INTERVAL = 0.03  # seconds, when an agent does not say
TICK = 0.1  # seconds between checks for missed heartbeats
CLOCK_THREAD = "inspector-clock"
BFD_CONFIRM = 0.15  # seconds a BFD session must stay down to count (at least)...
BFD_CONFIRM_INTERVALS = 5  # ...and at least this many of the observer's BFD intervals


class Publisher(Protocol):
    """What the inspector needs of the notifier."""

    def publish(self, conn: Connection, event: FaultEvent) -> None: ...

    def wake(self) -> None: ...


@dataclass
class HostEvidence:
    """What the inspector knows about one host (in memory; rebuilt from heartbeats after a
    server restart)."""

    last_heartbeat: float
    # announced by the agent with its heartbeats: missed beats count only for agents that say
    # how often they beat (None: never judged by heartbeats)
    heartbeat_interval: float | None = None
    bfd_interval: float = DEFAULT_BFD_INTERVAL
    bfd: dict[str, str] = field(default_factory=dict)  # peer -> "up" / "down", as it sees them
    bfd_down_since: dict[str, float] = field(default_factory=dict)  # peer -> when reported down
    switch_down_since: float | None = None
    reported_down_since: float | None = None
    forced_down_since: float | None = None
    realised_revision: int = 0
    gateways: frozenset[str] = frozenset()  # routers it reports ready to serve as a gateway

    @property
    def bfd_confirm(self) -> float:
        """How long a session this host sees down must stay down to count as evidence."""
        return max(BFD_CONFIRM, BFD_CONFIRM_INTERVALS * self.bfd_interval)


def down_reasons(host: str, hosts: Mapping[str, HostEvidence], now: float,
                 misses: int = HEARTBEAT_MISSES,
                 down: Collection[str] = ()) -> dict[str, float]:
    """Why `host` is down (source -> estimated fault time), from everyone's evidence; hosts in
    `down` (already faulty: an isolated host sees everyone down) are no observers. PURE."""
    me = hosts[host]
    reasons: dict[str, float] = {}
    if me.forced_down_since is not None:
        reasons["admin"] = me.forced_down_since
    if me.switch_down_since is not None:
        reasons["vswitchd"] = me.switch_down_since
    observers = [e.bfd_down_since[host] - 3 * e.bfd_interval
                 for name, e in hosts.items()
                 if name != host and e.bfd.get(host) == "down" and host in e.bfd_down_since
                 and now - e.bfd_down_since[host] >= e.bfd_confirm
                 and name not in down and _alive(name, hosts, now, misses)]
    if len(observers) >= BFD_OBSERVERS:
        reasons["bfd"] = min(observers)
    if me.reported_down_since is not None:
        reasons["report"] = me.reported_down_since
    if me.heartbeat_interval is not None and now - me.last_heartbeat > misses * me.heartbeat_interval:
        reasons["heartbeat"] = me.last_heartbeat + me.heartbeat_interval
    return reasons


def next_confirmation(hosts: Mapping[str, HostEvidence], now: float) -> float | None:
    """When the earliest BFD evidence still waiting out its confirmation counts (None if
    none waits): the inspector looks again then, not at its next tick. PURE."""
    pending = [since + e.bfd_confirm for e in hosts.values() for since in e.bfd_down_since.values()
               if since + e.bfd_confirm > now]
    return min(pending, default=None)


def _alive(name: str, hosts: Mapping[str, HostEvidence], now: float, misses: int) -> bool:
    """An observer counts while its own evidence says nothing against it."""
    e = hosts[name]
    beating = e.heartbeat_interval is None or now - e.last_heartbeat <= misses * e.heartbeat_interval
    return beating and e.switch_down_since is None and e.forced_down_since is None


SOURCES_IN_ORDER = ("admin", "vswitchd", "bfd", "report", "heartbeat")


def _locked(method: Callable[..., R]) -> Callable[..., R]:
    """One observation at a time: agents' requests arrive on worker threads, the clock's
    checks on another."""
    @functools.wraps(method)
    def run(self: Inspector, *args: Any, **kwargs: Any) -> R:
        with self._lock:
            return method(self, *args, **kwargs)

    return run


class Inspector:
    """Correlates observations into host faults and runs their actions (see the module doc).
    Thread-safe (one observation at a time); its database work is synchronous, so the server
    calls it from worker threads, never on the event loop."""

    def __init__(self, api: NetworkingApi, publisher: Publisher | None = None,
                 misses: int = HEARTBEAT_MISSES) -> None:
        self.api = api
        self.publisher = publisher
        self.misses = misses
        self.hosts: dict[str, HostEvidence] = {}
        self.active: dict[str, str] = {}  # host -> id of its active host.down fault
        self.recovering: dict[str, int] = {}  # host -> revision its agent must realise
        self.port_faults: dict[str, str] = {}  # port id -> id of its active port.down fault
        self._loaded = False
        self._lock = threading.RLock()

    # --- observations ---------------------------------------------------------------------------
    @_locked
    def heartbeat(self, host: str, body: Mapping[str, Any], now: float | None = None) -> None:
        """An agent's heartbeat (periodic, or at once on a BFD or switch change)."""
        now = time.time() if now is None else now
        self._load()
        evidence = self._evidence(host, now)
        evidence.last_heartbeat = now
        if body.get("heartbeat_interval"):
            evidence.heartbeat_interval = float(body["heartbeat_interval"])
        if body.get("bfd_interval"):
            evidence.bfd_interval = float(body["bfd_interval"]) / 1000.0
        if body.get("realised_revision") is not None:
            evidence.realised_revision = int(body["realised_revision"])
        if body.get("gateways") is not None:
            evidence.gateways = frozenset(body["gateways"])
        bfd = body.get("bfd")
        touched = {host}
        if bfd is not None:
            for peer, state in bfd.items():
                # evidence is a session that WAS up going down; one that never came up (a new
                # tunnel, a peer starting) or a peer draining on purpose says nothing
                if state == "down" and evidence.bfd.get(peer) == "up":
                    evidence.bfd_down_since[peer] = now
                elif state != "down":
                    evidence.bfd_down_since.pop(peer, None)
            for peer in set(evidence.bfd) | set(bfd):
                if evidence.bfd.get(peer) != bfd.get(peer):
                    touched.add(peer)
            evidence.bfd = dict(bfd)
        switch = body.get("switch")
        if switch == "down" and evidence.switch_down_since is None:
            evidence.switch_down_since = now
        elif switch == "up":
            evidence.switch_down_since = None
        for name in sorted(touched):
            if name in self.hosts:
                self._assess(name, now)
        self._promote(host)

    @_locked
    def report(self, host: str, down: bool, at: float | None = None,
               now: float | None = None) -> None:
        """An external monitor says the host is down (or up again)."""
        now = time.time() if now is None else now
        self._load()
        evidence = self._evidence(host, now)
        evidence.reported_down_since = (at or now) if down else None
        self._assess(host, now)

    @_locked
    def force(self, host: str, down: bool, now: float | None = None) -> None:
        """An admin forces the host down (or lifts it)."""
        now = time.time() if now is None else now
        self._load()
        evidence = self._evidence(host, now)
        evidence.forced_down_since = now if down else None
        self._assess(host, now)

    @_locked
    def maintenance(self, host: str, requested: bool, drained: bool) -> None:
        """Maintenance: once the admin asked for it and the host's agent reports its tunnels
        drained (its peers already send it nothing), it leaves every gateway schedule (state
        "maintenance"); when the admin lifts it, it comes back recovering (last in the
        schedules) and takes its place once ready, as after a fault."""
        self._load()
        if requested and drained:
            self.api.write(lambda conn: (None, actions.set_state(conn, host, "maintenance",
                                                                 from_states=("up", "recovering"))))
            self.recovering.pop(host, None)
        elif not requested:
            changes: list[Any] = []

            def work(conn: Connection) -> tuple[bool, list[Any]]:
                changes.extend(actions.set_state(conn, host, "recovering",
                                                 from_states=("maintenance",)))
                return bool(changes), changes

            if self.api.write(work):
                with self.api.db.read() as conn:
                    self.recovering[host] = actions.current_revision(conn)
                self._promote(host)

    @_locked
    def port_link(self, port: Mapping[str, Any], down: bool, now: float | None = None) -> None:
        """A port's VIF link, as its agent reports it: a `port.down` fault while it is down
        (plugged, admin up, link down), cleared when the port is ACTIVE again."""
        now = time.time() if now is None else now
        port_id = str(port["id"])
        active = self.port_faults.get(port_id)
        if down and active is None:
            instance = port["device_id"] if str(port["device_owner"]).startswith("compute:") else ""
            project = str(port["project_id"])
            affected = Affected(ports=(port_id,), instances=(instance,) if instance else (),
                                projects={port_id: project, **({instance: project} if instance
                                                                else {})})
            fault_id = new_id()
            self.port_faults[port_id] = fault_id
            self._publish_new(fault_id, "port.down", "port", port_id, "link", now, affected)
        elif not down and active is not None and port.get("status") == "ACTIVE":
            del self.port_faults[port_id]
            self._publish_cleared(active, "port.down", "port", port_id, now)

    def _publish_new(self, fault_id: str, fault_type: str, resource_type: str, resource_id: str,
                     source: str, now: float, affected: Affected) -> None:
        def work(conn: Connection) -> tuple[None, list[Any]]:
            event = FaultEvent(id=new_id(), fault_id=fault_id, fault_type=fault_type,
                               state="active", severity=SEVERITY[fault_type],
                               resource_type=resource_type, resource_id=resource_id,
                               source=source, fault_time=now, detected_at=now, cleared_at=None,
                               affected=affected)
            actions.record_fault(conn, event)
            if self.publisher is not None:
                self.publisher.publish(conn, event)
            return None, []

        self.api.write(work)
        if self.publisher is not None:
            self.publisher.wake()

    def _publish_cleared(self, fault_id: str, fault_type: str, resource_type: str,
                         resource_id: str, now: float) -> None:
        def work(conn: Connection) -> tuple[None, list[Any]]:
            fault = actions.load_fault(conn, fault_id)
            if fault is None:
                return None, []
            actions.clear_fault(conn, fault_id, now)
            if self.publisher is not None:
                self.publisher.publish(conn, FaultEvent(
                    id=new_id(), fault_id=fault_id, fault_type=fault_type, state="cleared",
                    severity=fault.severity, resource_type=resource_type,
                    resource_id=resource_id, source=fault.source, fault_time=fault.fault_time,
                    detected_at=fault.detected_at, cleared_at=now, affected=fault.affected))
            return None, []

        self.api.write(work)
        if self.publisher is not None:
            self.publisher.wake()

    @_locked
    def forget(self, host: str) -> None:
        """The host was unregistered: no evidence about it any more (its open fault, if any,
        stays as it is)."""
        self.hosts.pop(host, None)
        self.active.pop(host, None)
        self.recovering.pop(host, None)
        for evidence in self.hosts.values():
            evidence.bfd.pop(host, None)
            evidence.bfd_down_since.pop(host, None)

    @_locked
    def tick(self, now: float | None = None) -> None:
        """Check every host for missed heartbeats."""
        now = time.time() if now is None else now
        self._load()
        for host in sorted(self.hosts):
            self._assess(host, now)

    async def run(self) -> None:
        """The clock: `tick` every TICK (sooner when BFD evidence is due), on a thread of its
        own named `inspector-clock`, never on the event loop."""
        loop = asyncio.get_running_loop()
        clock = ThreadPoolExecutor(max_workers=1, thread_name_prefix=CLOCK_THREAD)
        try:
            while True:
                now = time.time()
                with self._lock:
                    due = next_confirmation(self.hosts, now)
                await asyncio.sleep(TICK if due is None else min(TICK, due - now + 0.001))
                try:
                    await loop.run_in_executor(clock, self.tick)
                except Exception:
                    log.exception("inspector tick failed")
        finally:  # a tick under way finishes (milliseconds) before the app's database closes
            clock.shutdown(wait=True, cancel_futures=True)

    # --- correlation ------------------------------------------------------------------------------
    def _evidence(self, host: str, now: float) -> HostEvidence:
        evidence = self.hosts.get(host)
        if evidence is None:
            evidence = self.hosts[host] = HostEvidence(last_heartbeat=now)
        return evidence

    def _load(self) -> None:
        """At the first observation: the hosts known and the faults still active (a restarted
        server keeps them until the evidence clears them; every host gets a fresh heartbeat
        grace period)."""
        if self._loaded:
            return
        self._loaded = True
        now = time.time()
        with self.api.db.read() as conn:
            for row in conn.execute(select(chassis_table.c.name, chassis_table.c.forced_down)):
                evidence = self._evidence(row.name, now)
                if row.forced_down:
                    evidence.forced_down_since = now
            open_faults = conn.execute(
                select(faults_table.c.id, faults_table.c.type, faults_table.c.resource_id)
                .where(faults_table.c.type.in_(("host.down", "port.down")),
                       faults_table.c.state == "active")).all()
        for fault_id, fault_type, resource_id in open_faults:
            (self.active if fault_type == "host.down" else self.port_faults)[resource_id] = fault_id

    def _assess(self, host: str, now: float) -> None:
        reasons = down_reasons(host, self.hosts, now, self.misses,
                               down=set(self.active) - {host})
        if reasons and host not in self.active:
            source = next(s for s in SOURCES_IN_ORDER if s in reasons)
            self._raise(host, source, min(reasons.values()), now)
        elif not reasons and host in self.active:
            self._clear(host, now)

    def _raise(self, host: str, source: str, fault_time: float, now: float) -> None:
        fault_id = new_id()

        def work(conn: Connection) -> tuple[FaultEvent, list[Any]]:
            affected, changes = actions.host_down(conn, host, now)
            event = FaultEvent(id=new_id(), fault_id=fault_id, fault_type="host.down",
                               state="active", severity=SEVERITY["host.down"],
                               resource_type="host", resource_id=host, source=source,
                               fault_time=min(fault_time, now), detected_at=now, cleared_at=None,
                               affected=affected)
            actions.record_fault(conn, event)
            if self.publisher is not None:
                self.publisher.publish(conn, event)
            return event, changes

        self.active[host] = fault_id
        self.recovering.pop(host, None)
        try:
            self.api.write(work)
        except Exception:
            self.active.pop(host, None)
            raise
        log.warning("host %s is down (%s)", host, source)
        if self.publisher is not None:
            self.publisher.wake()

    def _clear(self, host: str, now: float) -> None:
        fault_id = self.active.pop(host)

        def work(conn: Connection) -> tuple[FaultEvent | None, list[Any]]:
            fault = actions.load_fault(conn, fault_id)
            changes = actions.host_up(conn, host, now, fault)
            if fault is None:
                return None, changes
            event = FaultEvent(id=new_id(), fault_id=fault_id, fault_type="host.down",
                               state="cleared", severity=fault.severity,
                               resource_type="host", resource_id=host, source=fault.source,
                               fault_time=fault.fault_time, detected_at=fault.detected_at,
                               cleared_at=now, affected=fault.affected)
            actions.clear_fault(conn, fault_id, now)
            if self.publisher is not None:
                self.publisher.publish(conn, event)
            return event, changes

        self.api.write(work)
        with self.api.db.read() as conn:  # back in service once it realised this revision
            self.recovering[host] = actions.current_revision(conn)
        log.warning("host %s is back", host)
        if self.publisher is not None:
            self.publisher.wake()
        self._promote(host)

    def _promote(self, host: str) -> None:
        """A recovering host whose agent realised the policy of its recovery, and reports itself
        ready for each gateway role it holds, takes its place in the gateway schedules again."""
        wanted = self.recovering.get(host)
        if wanted is None or host in self.active:
            return
        evidence = self.hosts[host]
        if evidence.realised_revision < wanted:
            return
        with self.api.db.read() as conn:  # and it is ready for every gateway role it holds
            routers = {router_id for router_id, _project in actions.gateway_routers(conn, host)}
        if routers <= evidence.gateways:
            del self.recovering[host]
            self.api.write(lambda conn: (None, actions.host_ready(conn, host)))
