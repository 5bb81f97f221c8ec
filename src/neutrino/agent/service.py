"""The agent's main loop: one chassis, one policy stream, one br-int.

Concurrency model: one asyncio loop owns all state (`desired` policy items, the revision they
come from, the last reported port statuses). Three inputs wake the reconciler:
- the policy stream from the server (JSON lines; resumed with `?since=<revision>` after a
  disconnect, or replaced by a full snapshot when the server says the revision is too old);
- OVSDB changes (VIFs plugged or unplugged), signalled from ovsdbapp's thread with
  `call_soon_threadsafe`;
- a slow safety tick (every 30 s), and a retry soon after a status report failed.
The reconciler is debounced and runs one at a time: it makes the tunnel ports match the
`tunnel` items, renders the flows for what is plugged, applies the delta to br-int atomically
(FlowTable; the bridge is never flushed, so restarting the agent drops no packets), and then
reports each port's status: ACTIVE once its flows are installed, DOWN when its VIF is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import orjson

from neutrino.agent import BFD_INTERVAL
from neutrino.agent.dhcp import Lease, lease_for
from neutrino.agent.dhcp_responder import DhcpResponder
from neutrino.agent.flows import OPENFLOW_VERSION, FlowDelta, FlowTable, Ofctl
from neutrino.agent.neighbours import NeighbourResolver, Wanted
from neutrino.agent.ovsdb import HostOvsdb, TunnelSpec
from neutrino.agent.ra import RaResponder, RouterAdvert, advert_for
from neutrino.agent.server_auth import AdminTokenAuth
from neutrino.pipeline.render import ChassisRenderer, probe_mac
from neutrino.policy.model import (
    Document,
    NetworkPolicy,
    PortPolicy,
    RouterPolicy,
    TunnelPolicy,
    load_document,
    parse_key,
)
from neutrino.timeutil import backoff_delay

log = logging.getLogger(__name__)
T = TypeVar("T")

SLOW_RECONCILE = 0.1  # seconds: a reconcile slower than this is logged with its breakdown
SWITCH_SETTLE = 0.2  # seconds an OpenFlow connection must hold to count as the switch being up
SWITCH_RETRY = 0.1  # seconds between attempts to reach a switch that is down
SAFETY_TICK = 30.0  # seconds between reconciles when nothing wakes the agent
DEBOUNCE = 0.001  # seconds to wait after a wake-up for more changes (changes that arrive
# during a reconcile are batched into the next one anyway)
RETRY_BASE = 0.2  # seconds before the first retry of the server (registration, policy stream)
RETRY_CAP = 1.0  # ...doubling up to this
DHCP_PORT_NAME = "nt-dhcp"  # the internal port of br-int where the DHCP responder listens


@dataclass
class AgentConfig:
    host: str
    server: str  # http://127.0.0.1:9696
    ovsdb: str  # unix:/.../db.sock
    ofctl_target: str  # unix:/.../br-int.mgmt
    tunnel_ip: str
    bridge_mappings: dict[str, str] = field(default_factory=dict)
    is_gateway: bool = False
    gateway_priority: int = 0
    availability_zone: str = "nova"
    heartbeat_interval: float = 1.0
    password: str | None = None  # of user admin, for tokens (neutrino.agent.server_auth); None: noauth
    token_file: Path | None = None  # where the token is kept across restarts
    ofctl_env: dict[str, str] = field(default_factory=dict)
    native_dhcp: bool = True  # answer DHCPv4 on this chassis (neutrino.agent.dhcp_responder)
    bfd_interval: int = BFD_INTERVAL  # ms between BFD packets on every tunnel (0 = no BFD)


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.desired: dict[str, Document] = {}
        self.revision = 0  # of the policy received
        self.realised = 0  # of the policy installed
        self.synced = False  # a snapshot has arrived (until then the switch is left alone)
        self._policy_version = 0  # counts changes of `desired`
        self._rendered_from: tuple[Any, ...] | None = None  # inputs of the installed flows
        self.reported: dict[str, str] = {}  # port id -> status last reported
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.http = server_client(
            config.server,
            AdminTokenAuth(config.password, token_file=config.token_file) if config.password
            else None)
        self.flows = FlowTable(Ofctl(config.ofctl_target, config.ofctl_env))
        self.renderer = ChassisRenderer()  # the flows of the policy, updated unit by unit
        self.ovsdb: HostOvsdb | None = None
        self.dhcp: DhcpResponder | None = None
        self.ra: RaResponder | None = None
        self.neighbours: NeighbourResolver | None = None
        self.leases: dict[int, Lease] = {}  # VIF ofport -> its DHCP lease (read by the responder)
        self.adverts: dict[int, RouterAdvert] = {}  # VIF ofport -> its router advertisement
        # readiness (HA gateways): until the flows are in after a start or a switch restart,
        # every tunnel signals bfd:cpath_down, so no peer picks this chassis as a gateway;
        # a tunnel created later stays drained until the flows using it are in
        self._switch_ready = False
        self._switch_lost = False  # the OpenFlow connection dropped and is not back yet
        self._ready_peers: set[str] = set()
        self._peers: dict[str, TunnelSpec] = {}
        self._announced: set[tuple[str, str, str]] = set()  # (network, IP, MAC) of interfaces
        # monitors (neutrino.faults): a heartbeat goes at once when the BFD sessions or the
        # switch change, so the inspector hears of a failure in milliseconds, not seconds
        self._beat_now = asyncio.Event()
        self._bfd_sent: dict[str, str] | None = None
        self._streamed = False  # the current policy stream delivered something
        self._switch_state = "up"
        # maintenance (an admin's request, seen in the heartbeat's answer): every tunnel stays
        # drained, and once the peers had time to notice, the agent reports itself drained
        self.maintenance = False
        self._drained_since: float | None = None
        self._lease_of = PortAnswers[Lease](lambda port, network, _: lease_for(port, network))
        self._advert_of = PortAnswers[RouterAdvert](advert_for)

    # --- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.ovsdb = await asyncio.to_thread(
            HostOvsdb, self.config.ovsdb, on_change=self._ovsdb_changed
        )
        self._defaults_from_host(self.ovsdb.host_config())
        if self.config.native_dhcp:
            self.dhcp = await asyncio.to_thread(self._start_dhcp, self.ovsdb)
        await self.register()
        tasks = [asyncio.create_task(self._stream_forever()),
                 asyncio.create_task(self._heartbeat_forever()),
                 asyncio.create_task(self._solicit_forever()),
                 asyncio.create_task(self._reconcile_forever()),
                 asyncio.create_task(self._watch_switch_forever())]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await self.http.aclose()
            if self.dhcp is not None:
                self.dhcp.stop()
            if self.ra is not None:
                self.ra.stop()
            if self.neighbours is not None:
                self.neighbours.stop()
            if self.ovsdb is not None:
                self.ovsdb.close()

    def _start_dhcp(self, ovsdb: HostOvsdb) -> DhcpResponder | None:
        """The DHCP port (an internal port of br-int, a tap here) and its responder; None, with
        the reason logged, when this host cannot have them (DHCP is then not intercepted)."""
        try:
            ovsdb.ensure_internal_port(DHCP_PORT_NAME, "dhcp")
            deadline = time.monotonic() + 10.0
            while not os.path.exists(f"/sys/class/net/{DHCP_PORT_NAME}"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the tap of {DHCP_PORT_NAME} did not appear")
                time.sleep(0.05)
            # no addresses and no IPv6 on it: the kernel must not answer or send anything there
            with open(f"/proc/sys/net/ipv6/conf/{DHCP_PORT_NAME}/disable_ipv6", "w") as knob:
                knob.write("1")
            subprocess.run(["ip", "link", "set", DHCP_PORT_NAME, "up"], check=True,
                           capture_output=True, timeout=10)
            responder = DhcpResponder(DHCP_PORT_NAME, self.leases.get)
            responder.start()
            self.ra = RaResponder(DHCP_PORT_NAME, self.adverts.get)
            self.ra.start()
            self.neighbours = NeighbourResolver(DHCP_PORT_NAME, self._ovsdb_changed)
            self.neighbours.start()
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            log.error("native DHCP disabled on %s: %s", self.config.host, exc)
            return None
        log.info("native DHCP and router advertisements answering on %s", DHCP_PORT_NAME)
        return responder

    def _defaults_from_host(self, external_ids: Mapping[str, str]) -> None:
        """Tunnel IP and bridge mappings the host declares in OVSDB (as ovn-controller reads
        ovn-encap-ip and ovn-bridge-mappings), unless given on the command line."""
        if not self.config.tunnel_ip:
            self.config.tunnel_ip = external_ids.get("neutrino-encap-ip", "")
        if not self.config.bridge_mappings:
            self.config.bridge_mappings = parse_bridge_mappings(
                external_ids.get("neutrino-bridge-mappings", ""))
        if not self.config.tunnel_ip:
            raise RuntimeError("no tunnel IP: pass --tunnel-ip or set external_ids:"
                               "neutrino-encap-ip in the Open_vSwitch table")

    def _ovsdb_changed(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)
            self._loop.call_soon_threadsafe(self._check_bfd)

    def _check_bfd(self) -> None:
        """Beat now if a BFD session changed since the last heartbeat."""
        if self.ovsdb is not None and self.config.bfd_interval > 0 \
                and self.ovsdb.bfd_states() != self._bfd_sent:
            self._beat_now.set()

    async def register(self) -> None:
        body = {"chassis": {
            "name": self.config.host, "tunnel_ip": self.config.tunnel_ip,
            "bridge_mappings": self.config.bridge_mappings, "is_gateway": self.config.is_gateway,
            "gateway_priority": self.config.gateway_priority,
            "availability_zone": self.config.availability_zone,
            "configurations": {"tunneling_ip": self.config.tunnel_ip,
                               "bridge_mappings": self.config.bridge_mappings,
                               "datapath_type": "netdev", "integration_bridge": "br-int"},
        }}
        attempts = 0
        while True:
            try:
                response = await self.http.post("/v2.0/neutrino/chassis", json=body)
                response.raise_for_status()
                return
            except httpx.HTTPError as exc:
                attempts += 1
                log.warning("registering chassis %s failed (%s); retrying", self.config.host, exc)
                await asyncio.sleep(retry_delay(attempts))

    # --- the policy stream ----------------------------------------------------------------------
    async def _stream_forever(self) -> None:
        """Follow the policy stream; when it breaks, resume after a jittered backoff (a server
        restart must not see every agent of the cloud come back in the same millisecond)."""
        attempts = 0
        while True:
            self._streamed = False
            try:
                await self._stream_once()
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("policy stream interrupted (%s); resuming from %d", exc, self.revision)
            attempts = 1 if self._streamed else attempts + 1  # a stream that worked: start over
            await asyncio.sleep(retry_delay(attempts))

    async def _stream_once(self) -> None:
        params = {"since": str(self.revision)} if self.revision else {}
        url = f"/v2.0/neutrino/chassis/{self.config.host}/policy"
        async with self.http.stream("GET", url, params=params, timeout=None) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.strip():
                    self.apply_message(orjson.loads(line))
                    self._streamed = True

    def apply_message(self, message: Mapping[str, Any]) -> None:
        """Take one stream message into `desired`. Never raises on bad input (the stream would
        resume from the same revision and fail again forever): an item whose key or document
        is invalid is logged at ERROR with its key and the reason, and left out (a change that
        makes an item invalid removes it: fail closed); the other items still apply. A message
        without its type's fields is logged and ignored."""
        kind = message.get("type")
        if kind == "keepalive":
            self._keepalive(message)
            return
        if kind not in ("snapshot", "change"):
            return
        try:
            revision = int(message["revision"])
            if kind == "snapshot":
                items = message["items"]
                if not isinstance(items, Mapping):
                    raise TypeError(f"items is a {type(items).__name__}, not an object")
                loaded = {key: self._load_item(key, doc) for key, doc in items.items()}
                self.desired = {key: doc for key, doc in loaded.items() if doc is not None}
                self.synced = True
                self._policy_version += 1
            else:
                key = message["key"]
                document = message.get("document")
                loaded_doc = None if document is None else self._load_item(key, document)
                if loaded_doc is None:
                    self.desired.pop(key, None)
                    self._policy_version += 1
                else:
                    self.desired[key] = loaded_doc
                    self._policy_version += 1
        except (KeyError, TypeError, ValueError) as exc:
            log.error("ignoring a malformed policy %s message (%s): %.300r", kind, exc, message)
            return
        self.revision = max(self.revision, revision)
        self._wake.set()

    def _keepalive(self, message: Mapping[str, Any]) -> None:
        """Nothing of this chassis changed up to the committed revision: if everything before
        it is installed, so is that revision (the realised revision moves on without a
        reconcile, so `GET /v2.0/neutrino/revision` can tell when a change is live everywhere)."""
        try:
            revision = int(message["revision"])
        except (KeyError, TypeError, ValueError) as exc:
            log.error("ignoring a malformed keepalive (%s): %.300r", exc, message)
            return
        if revision <= self.revision:
            return
        caught_up = self.realised == self.revision
        self.revision = revision
        if caught_up:
            self.realised = max(self.realised, revision)
        else:
            self._wake.set()

    def _load_item(self, key: Any, data: Any) -> Document | None:
        """The document of one policy item, or None (logged at ERROR) if it is not valid here."""
        try:
            chassis, kind, _item_id = parse_key(key)
            if chassis != self.config.host:
                raise ValueError(f"an item of chassis {chassis!r}, not of {self.config.host!r}")
            document = load_document(kind, data)  # validates every value (policy.model)
        except (AttributeError, TypeError, ValueError) as exc:  # ValidationError is a ValueError
            log.error("skipping invalid policy item %s: %s", key, exc)
            return None
        return document

    # --- the switch ---------------------------------------------------------------------------
    async def _watch_switch_forever(self) -> None:
        """Hold an OpenFlow connection to br-int (`ovs-ofctl monitor`): it ends when
        ovs-vswitchd goes away, which takes every flow with it. Once a new connection holds,
        the agent installs the whole flow table again (replace-flows)."""
        ofctl = self.flows.ofctl
        argv = [shutil.which(ofctl.binary) or ofctl.binary, "-O", OPENFLOW_VERSION, "monitor",
                ofctl.target]
        connected = False
        while True:
            try:
                monitor = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL, env={**os.environ, **ofctl.env})
            except OSError as exc:
                log.error("cannot watch br-int (%s); flows are not restored after a switch "
                          "restart", exc)
                return
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SWITCH_SETTLE):
                        await monitor.wait()
                if monitor.returncode is None:  # connected, and it holds
                    if not connected:
                        connected = True
                        if self.flows.synced or self._switch_lost:  # the switch came back
                            log.warning("ovs-vswitchd is back; installing every flow again")
                            self.flows.forget()
                            self._rendered_from = None
                            self._switch_lost = False
                            self._wake.set()
                    await monitor.wait()
                    log.warning("lost the OpenFlow connection to br-int (ovs-vswitchd gone?)")
                    connected = False
                    await self._drain()
            finally:
                if monitor.returncode is None:
                    monitor.kill()
                    await monitor.wait()
            await asyncio.sleep(SWITCH_RETRY)

    async def _drain(self) -> None:
        """The switch lost its flows: signal cpath_down on every tunnel (in OVSDB, which a
        restarting ovs-vswitchd reads), so no peer sends gateway traffic here until the flows
        are back (the next reconcile clears it once they are)."""
        self._switch_ready = False
        self._switch_lost = True  # no reconcile installs (or undrains) until it is back
        self._switch_state = "down"
        self._beat_now.set()
        self.flows.forget()
        self._rendered_from = None
        if self.ovsdb is None or not self._peers:
            return
        try:
            await asyncio.to_thread(self.ovsdb.ensure_tunnels, self._peers,
                                    self.config.bfd_interval, set(self._peers))
        except Exception:  # ovsdb-server may be gone too; the reconcile retries
            log.exception("draining the tunnels failed")

    def _drain_settle(self) -> float:
        """Seconds after draining until every peer has noticed (BFD: 3 intervals, and margin)."""
        return 3 * self.config.bfd_interval / 1000.0 + 0.2

    def _follow_host_state(self, chassis: Mapping[str, Any]) -> None:
        """The admin's maintenance flag, from the server's view of this chassis: drain every
        tunnel (gateway traffic moves to the other gateways without loss), or undrain."""
        wanted = bool(chassis.get("maintenance", False))
        if wanted == self.maintenance:
            return
        self.maintenance = wanted
        log.warning("maintenance %s: %s every tunnel", "on" if wanted else "off",
                    "draining" if wanted else "undraining")
        self._drained_since = time.monotonic() if wanted else None
        self._wake.set()
        if wanted and self._loop is not None:  # report drained as soon as it settles
            self._loop.call_later(self._drain_settle() + 0.05, self._beat_now.set)

    def gateway_roles(self) -> dict[str, str]:
        """Router id -> "active" / "standby" for each router scheduled on this chassis that it
        is ready to serve (its external next hop is known): active when no gateway chassis
        before this one in its list is reachable (BFD), as the data path decides (stage
        gateway_redirect). The inspector moves a recovering host back to its place in the
        schedules only once it reports every router it holds as a gateway here."""
        if self.ovsdb is None:
            return {}
        states = self.ovsdb.bfd_states()
        learned = self.neighbours.learned if self.neighbours is not None else {}
        roles: dict[str, str] = {}
        for doc in self.desired.values():
            if isinstance(doc, RouterPolicy) and doc.gateway is not None \
                    and self.config.host in doc.gateway.chassis:
                hops = [(doc.gateway.network_id, h) for h in doc.gateway.next_hops if ":" not in h]
                if self.neighbours is not None and hops and not any(h in learned for h in hops):
                    continue  # not ready: it could not send anything out yet
                before = doc.gateway.chassis[:doc.gateway.chassis.index(self.config.host)]
                reachable = any(states.get(peer) == "up" for peer in before)
                roles[doc.id] = "standby" if reachable else "active"
        return roles

    # --- reconciling ----------------------------------------------------------------------------
    async def _reconcile_forever(self) -> None:
        while True:
            # every input that can change the outcome wakes it (a policy message, an OVSDB
            # change, a failure); the slow tick only retries what could not be reported
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=SAFETY_TICK)
            self._wake.clear()
            await asyncio.sleep(DEBOUNCE)  # a burst of changes becomes one bundle
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconcile failed; will retry")
                await asyncio.sleep(0.5)
                self._wake.set()

    async def reconcile(self) -> None:
        assert self.ovsdb is not None
        if not self.synced:
            # no snapshot yet: the agent does not know what the host should have, and an empty
            # policy would remove every tunnel and flow the last agent installed
            return
        revision, version = self.revision, self._policy_version
        documents = dict(self.desired)
        started = time.perf_counter()
        peers = {doc.id: TunnelSpec(doc.ip, doc.encap) for doc in documents.values()
                 if isinstance(doc, TunnelPolicy)}
        self._peers = peers
        drained = set(peers) - self._ready_peers if self._switch_ready else set(peers)
        if self.maintenance:
            drained = set(peers)
        await asyncio.to_thread(self.ovsdb.ensure_tunnels, peers, self.config.bfd_interval,
                                drained)
        # flat / vlan networks leave through the patch port to their physnet's provider bridge
        provider = await asyncio.to_thread(self.ovsdb.ensure_provider_patches,
                                           self.config.bridge_mappings)
        vifs = await asyncio.to_thread(self.ovsdb.vifs)  # (a snapshot rebuild may take a while)
        ports = {doc.id: doc for doc in documents.values() if isinstance(doc, PortPolicy)}
        local = {pid: vif.ofport for pid, vif in vifs.items() if pid in ports and vif.ofport > 0}
        networks = {doc.id for doc in documents.values() if isinstance(doc, NetworkPolicy)}
        routers = [doc for doc in documents.values() if isinstance(doc, RouterPolicy)]
        # a conntrack zone per network, and per router that translates addresses here (floating
        # IPs of local ports; SNAT on a gateway chassis)
        nat_routers = {r.id for r in routers if r.gateway is not None
                       and (any(f.port_id in local for f in r.floating_ips)
                            or self.config.host in r.gateway.chassis)}
        zones = await asyncio.to_thread(self.ovsdb.ct_zones, networks | nat_routers)
        neighbours = self._want_next_hops(routers, local)
        dhcp_ofport = self.ovsdb.ofport_of(DHCP_PORT_NAME) if self.dhcp is not None else None
        tunnels = self.ovsdb.tunnel_ofports()
        switch_read = rendered = time.perf_counter()
        # the flows and leases depend on nothing else: when none of it changed (an OVSDB event
        # about a link state, an ofport we already had), there is nothing to render or install
        inputs = (version, tuple(sorted(local.items())), tuple(sorted(tunnels.items())),
                  tuple(sorted(zones.items())), dhcp_ofport, tuple(sorted(provider.items())),
                  tuple(sorted(neighbours.items())))
        delta = FlowDelta()
        if self._switch_lost:  # nothing to install into; the watcher wakes us when it is back
            return
        if inputs != self._rendered_from or not self.flows.synced:
            self._update_answers(documents, local)
            self._rendered_from = None  # unknown until the bundle is in
            rendered, delta = await asyncio.to_thread(  # off the event loop: heartbeats go on
                self._render_and_apply, documents, local, tunnels, zones, dhcp_ofport, provider,
                neighbours)
            self._rendered_from = inputs
        if self.flows.synced:
            await asyncio.to_thread(self._announce_interfaces, routers, documents, local)
        if drained and self.flows.synced and not self.maintenance:
            self._switch_ready = True  # the flows using those tunnels are in: undrain
            self._ready_peers = set(peers)
            await asyncio.to_thread(self.ovsdb.ensure_tunnels, peers, self.config.bfd_interval)
        elif self.flows.synced:
            self._switch_ready = True
            self._ready_peers = set(peers)
        if self._switch_ready and self._switch_state == "down":  # back, with its flows
            self._switch_state = "up"
            self._beat_now.set()
        applied = time.perf_counter()
        self.realised = max(self.realised, revision)
        await self.report_ports(ports, {pid for pid, vif in vifs.items()
                                        if pid in local and vif.link_up}, set(local))
        done = time.perf_counter()
        if done - started > SLOW_RECONCILE:
            log.info("reconcile of revision %d took %.0f ms: OVSDB %.0f, render %.0f (%d flows), "
                     "apply %.0f (+%d -%d), report %.0f", revision, (done - started) * 1e3,
                     (switch_read - started) * 1e3, (rendered - switch_read) * 1e3,
                     len(self.renderer.flows),
                     (applied - rendered) * 1e3, len(delta.added), len(delta.removed),
                     (done - applied) * 1e3)

    def _render_and_apply(self, documents: Mapping[str, Document], local: Mapping[str, int],
                          tunnels: Mapping[str, int], zones: Mapping[str, int],
                          dhcp_ofport: int | None, provider: Mapping[str, int],
                          neighbours: Mapping[tuple[str, str], str]) -> tuple[float, FlowDelta]:
        """Update the rendered flows and install what changed (everything, diffed against what
        is installed, when the renderer or the table starts afresh); (time rendered, delta)."""
        changes = self.renderer.update(documents, local, tunnels, zones, dhcp_ofport, provider,
                                       neighbours, self.config.host)
        rendered = time.perf_counter()
        if changes is None or not self.flows.synced:
            return rendered, self.flows.apply(self.renderer.flows.values())
        return rendered, self.flows.apply_changes(changes)

    def _announce_interfaces(self, routers: list[RouterPolicy], documents: Mapping[str, Document],
                             local: Mapping[str, int]) -> None:
        """A gratuitous ARP for each IPv4 address of a router interface on a network with a
        local port, once per (network, address, MAC): instances learn a new interface's MAC
        now, not when their neighbour entry goes stale."""
        if self.neighbours is None:
            return
        networks = {d.network_id for d in documents.values()
                    if isinstance(d, PortPolicy) and d.id in local}
        current = {(i.network_id, a.ip_address, i.mac_address) for r in routers if r.admin_state_up
                   for i in r.interfaces if i.network_id in networks
                   for a in i.fixed_ips if ":" not in a.ip_address}
        new = current - self._announced
        if new:
            self.neighbours.announce((ip, mac) for _network, ip, mac in sorted(new))
        self._announced = current

    def _want_next_hops(self, routers: list[RouterPolicy],
                        local: Mapping[str, int]) -> dict[tuple[str, str], str]:
        """Ask the resolver for the external next hops of the floating IPs translated here (as
        the first such floating IP of each router) and of the routers SNATed here (as this
        chassis, by ARP probe: see `probe_mac`); what it has learned so far."""
        if self.neighbours is None:
            return {}
        wanted: dict[tuple[str, str], Wanted] = {}
        for router in sorted(routers, key=lambda r: r.id):
            gateway = router.gateway
            if gateway is None:
                continue
            fip = next((f for f in router.floating_ips if f.port_id in local), None)
            if self.config.host in gateway.chassis and gateway.enable_snat:
                asker = (probe_mac(self.config.host), "0.0.0.0")
            elif fip is not None:
                asker = (fip.mac_address.lower(), fip.floating_ip_address)
            else:
                continue
            for hop in gateway.next_hops:
                if ":" not in hop:
                    wanted.setdefault((gateway.network_id, hop),
                                      Wanted(gateway.network_id, hop, *asker))
        if set(wanted) != set(self.neighbours.wanted):
            self.neighbours.want(wanted.values())
            self.neighbours.solicit()
        return dict(self.neighbours.learned)

    async def _solicit_forever(self) -> None:
        """ARP requests for the external next hops, when due (neutrino.agent.neighbours)."""
        while True:
            await asyncio.sleep(0.5)
            if self.neighbours is not None and self.neighbours.wanted:
                await asyncio.to_thread(self.neighbours.solicit)

    def _update_answers(self, documents: Mapping[str, Document], local: Mapping[str, int]) -> None:
        """What the responders answer each plugged port, by ofport: its DHCP lease and its
        router advertisement (each swapped in whole: a responder's thread only ever reads one
        complete dict)."""
        networks = {d.id: d for d in documents.values() if isinstance(d, NetworkPolicy)}
        routers = tuple(sorted((d for d in documents.values() if isinstance(d, RouterPolicy)),
                               key=lambda r: r.id))
        plugged = [(d, networks.get(d.network_id), local[d.id]) for d in documents.values()
                   if isinstance(d, PortPolicy) and d.id in local]
        leases = self._lease_of.update(plugged)
        if leases != self.leases:
            self.leases = leases
            if self.dhcp is not None:
                self.dhcp.lookup = leases.get
        into: dict[str, list[RouterPolicy]] = {}  # network -> the routers into it
        for router in routers:
            for network_id in {i.network_id for i in router.interfaces}:
                into.setdefault(network_id, []).append(router)
        adverts = self._advert_of.update(plugged, {n: tuple(rs) for n, rs in into.items()})
        if adverts != self.adverts:
            self.adverts = adverts
            if self.ra is not None:
                self.ra.lookup = adverts.get

    async def report_ports(self, ports: Mapping[str, PortPolicy], up: set[str],
                           plugged: set[str] | None = None) -> None:
        """Each port's status once it changes: ACTIVE (flows in, link up, admin up) or DOWN,
        with why when its VIF is plugged but its link is down (a fault: port.down)."""
        for port_id, port in ports.items():
            status = "ACTIVE" if port_id in up and port.admin_state_up else "DOWN"
            if self.reported.get(port_id) == status:
                continue
            report = {"status": status, "chassis": self.config.host}
            if status == "DOWN" and port.admin_state_up and port_id in (plugged or set()):
                report["reason"] = "link_down"
            try:
                response = await self.http.put(
                    f"/v2.0/neutrino/ports/{port_id}/status", json=report)
                if response.status_code < 300:
                    self.reported[port_id] = status
            except httpx.HTTPError as exc:
                log.warning("reporting port %s %s failed: %s", port_id, status, exc)
                if self._loop is not None:  # try again soon, not at the safety tick
                    self._loop.call_later(1.0, self._wake.set)
        for gone in set(self.reported) - set(ports):
            del self.reported[gone]

    async def _heartbeat_forever(self) -> None:
        """A heartbeat every heartbeat_interval, and at once when a BFD session or the switch
        changes (the inspector's monitors: neutrino.faults.inspector)."""
        while True:
            started = time.monotonic()
            self._beat_now.clear()
            body: dict[str, Any] = {"realised_revision": self.realised,
                                    "heartbeat_interval": self.config.heartbeat_interval,
                                    "switch": self._switch_state}
            if self.ovsdb is not None and self.config.bfd_interval > 0:
                body["bfd"] = self.ovsdb.bfd_states()  # each tunnel's session: the peer's view
                body["bfd_interval"] = self.config.bfd_interval
            if self.config.is_gateway:
                body["gateways"] = self.gateway_roles()
            if self.maintenance and self._drained_since is not None and (
                    time.monotonic() - self._drained_since > self._drain_settle()):
                body["drained"] = True
            try:
                response = await self.http.put(
                    f"/v2.0/neutrino/chassis/{self.config.host}/heartbeat", json=body)
                self._bfd_sent = body.get("bfd")
                if response.status_code < 300:
                    self._follow_host_state(response.json().get("chassis", {}))
            except httpx.HTTPError as exc:
                log.warning("heartbeat failed: %s", exc)
            wait = max(0.0, self.config.heartbeat_interval - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), timeout=wait)


class PortAnswers(Generic[T]):
    """What a responder answers each plugged port (a DHCP lease, a router advertisement), by
    ofport: `compute(port, network, extra)`, called again for a port only when its document,
    its network's, its ofport or its `extra` changed (`extra` maps a network id to what the
    answers of that network's ports also depend on: the routers into it)."""

    def __init__(self, compute: Callable[[PortPolicy, NetworkPolicy, Any], T | None]) -> None:
        self.compute = compute
        self._known: dict[str, tuple[tuple[Any, ...], T | None]] = {}  # port id -> inputs, answer

    def update(self, plugged: Iterable[tuple[PortPolicy, NetworkPolicy | None, int]],
               extra: Mapping[str, Any] | None = None) -> dict[int, T]:
        known, self._known = self._known, {}
        answers: dict[int, T] = {}
        for port, network, ofport in plugged:
            own = (extra or {}).get(port.network_id, ())
            inputs = (port, network, ofport, own)
            old = known.get(port.id)
            if old is not None and old[0] == inputs:  # (the documents: identical objects)
                answer = old[1]
            else:
                answer = self.compute(port, network, own) if network is not None else None
            self._known[port.id] = (inputs, answer)
            if answer is not None:
                answers[ofport] = answer
        return answers


def parse_bridge_mappings(text: str | list[str]) -> dict[str, str]:
    """`physnet1:br-ex,physnet2:br-vlan` (or a list of such items) -> {physnet: bridge}."""
    items = text if isinstance(text, list) else text.split(",")
    out: dict[str, str] = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        physnet, sep, bridge = item.partition(":")
        if not sep or not physnet or not bridge:
            raise ValueError(f"bad bridge mapping {item!r}: expected physnet:bridge")
        out[physnet] = bridge
    return out


def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt to reach the server after `attempts` failed ones:
    RETRY_BASE doubling up to RETRY_CAP, each a random 50-100 % of it, so that agents that
    lost the server together do not all come back at the same instant."""
    return backoff_delay(attempts, RETRY_BASE, RETRY_CAP) * random.uniform(0.5, 1.0)


def server_client(server: str, auth: httpx.Auth | None = None) -> httpx.AsyncClient:
    """An HTTP client for `http://host:port` or `unix:/path/to/server.sock`."""
    if server.startswith("unix:"):
        transport = httpx.AsyncHTTPTransport(uds=server[5:])
        return httpx.AsyncClient(transport=transport, base_url="http://neutrino", auth=auth,
                                 timeout=10.0)
    return httpx.AsyncClient(base_url=server, auth=auth, timeout=10.0)
