"""A lab host: a network namespace with its own Open vSwitch, an underlay link, maybe an agent.

May touch: the host's namespace and everything in it, its run directory, its fabric port (to
cut and restore the link), and the host's agent process (started by us; stopped by pid).

Layout inside the namespace, OVS "userspace tunneling" style (all bridges datapath_type=netdev):

    br-int   integration bridge: fail_mode=secure (no flows, no traffic), OpenFlow10/13/15;
             instances, tunnels and patch ports go here; the agent owns its flows.
    br-phy   owns the underlay NIC `eth-ul`; the host's underlay address sits on br-phy's tap,
             so the userspace datapath routes tunnel packets out through it.
    br-physnet1... one provider bridge per bridge mapping (physnet -> bridge), NORMAL (a
             learning switch), owning the host's NIC on that physical network,
             `eth-<physnet>`: a veth to the physnet's bridge in the fabric namespace (see
             `fabric`); the agent patches br-int to it (int-<bridge> / phy-<bridge>).

The Open_vSwitch row's external_ids tell a future agent who it is and how to reach others,
as OVN does: system-id / hostname (the host name), neutrino-encap-ip (underlay address),
neutrino-bridge-mappings ("physnet1:br-ex,...").
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from neutrino.lab import netns, process
from neutrino.lab.errors import LabError
from neutrino.lab.fabric import Fabric, readable_ifname
from neutrino.lab.ovs import OpenVSwitch
from neutrino.lab.state import HostRecord

INTEGRATION_BRIDGE = "br-int"
UNDERLAY_BRIDGE = "br-phy"
UNDERLAY_NIC = "eth-ul"
PROVIDER_NIC_PREFIX = "eth-"  # the host's NIC on a physical network: eth-<physnet>
OPENFLOW_PROTOCOLS = "OpenFlow10,OpenFlow13,OpenFlow15"
AGENT_START_TIMEOUT = 5.0  # seconds until the agent process must be inside the namespace

FailureMode = Literal["agent", "vswitchd", "link"]
FAILURE_MODES: tuple[str, ...] = get_args(FailureMode)

# no dashes: "<prefix>-<host>" must never look like "<prefix>-i-<instance>" or "<prefix>-fabric"
_HOST_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")


def check_host_name(name: str) -> str:
    if not _HOST_NAME.match(name) or name == "fabric":
        raise LabError(f"invalid host name {name!r}: 1-12 lower-case letters and digits, "
                       "starting with a letter (e.g. host1)")
    return name


def provider_nic(physnet: str) -> str:
    """The host's NIC on physical network `physnet` (a port of its provider bridge):
    `eth-<physnet>`, or `eth-<hash>` when that is not a short plain name."""
    name = readable_ifname(PROVIDER_NIC_PREFIX + physnet, PROVIDER_NIC_PREFIX, physnet)
    if name == UNDERLAY_NIC:  # a physnet called "ul"
        name = readable_ifname("", PROVIDER_NIC_PREFIX, physnet)
    return name


def check_bridge_mappings(mappings: dict[str, str]) -> dict[str, str]:
    reserved = {INTEGRATION_BRIDGE, UNDERLAY_BRIDGE}
    for physnet, bridge in mappings.items():
        netns.check_ifname(bridge)
        if not physnet or bridge in reserved:
            raise LabError(f"invalid bridge mapping {physnet}:{bridge}")
    if len(set(mappings.values())) != len(mappings):
        raise LabError("two physical networks are mapped to the same bridge")
    return mappings


@dataclass(frozen=True)
class HostStatus:
    """A host as observed right now (not as recorded)."""

    name: str
    namespace: str
    namespace_exists: bool
    underlay_address: str
    ovsdb_server_pid: int | None
    ovs_vswitchd_pid: int | None
    agent_pid: int | None  # None: no agent configured or not running
    agent_configured: bool
    link_up: bool | None  # fabric-side port administratively up (None: missing)
    bridges: list[str] = field(default_factory=list)
    # physnet -> its fabric-side port administratively up (None: missing); not part of healthy
    provider_links: dict[str, bool | None] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return (self.namespace_exists and self.ovsdb_server_pid is not None
                and self.ovs_vswitchd_pid is not None and self.link_up is True
                and (self.agent_pid is not None or not self.agent_configured))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


class LabHost:
    """One host of a lab, built from its persisted record and the lab's fabric.

    Changes that must outlive the process (the agent pid) are made on `record`; the caller saves
    the lab state afterwards.
    """

    def __init__(self, record: HostRecord, fabric: Fabric) -> None:
        self.record = record
        self.fabric = fabric
        self.ovs = OpenVSwitch(record.namespace, Path(record.run_dir))

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def namespace(self) -> str:
        return self.record.namespace

    @property
    def underlay_address(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(self.record.underlay_address)

    @property
    def underlay_ip(self) -> str:
        return str(self.underlay_address.ip)

    @property
    def run_dir(self) -> Path:
        return Path(self.record.run_dir)

    def __repr__(self) -> str:
        return f"LabHost({self.name}, {self.namespace}, {self.underlay_address})"

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Create the namespace, attach it to the fabric, start OVS, build the bridges, and
        start the agent if the host has one.

        After `stop()` this is a reboot: the OVS database in the run directory is kept, so
        bridges, tunnels and provider bridges come back (instance VIFs do not: their veths died
        with the namespace)."""
        netns.create_namespace(self.namespace)
        self.fabric.attach(self.name, self.namespace, UNDERLAY_NIC)
        for physnet in sorted(self.record.bridge_mappings):
            self.fabric.attach_physnet(physnet, self.name, self.namespace, provider_nic(physnet))
        self.ovs.start()
        mappings = ",".join(f"{k}:{v}" for k, v in sorted(self.record.bridge_mappings.items()))
        self.ovs.vsctl(
            "set", "Open_vSwitch", ".",
            f"external_ids:system-id={self.name}", f"external_ids:hostname={self.name}",
            f"external_ids:neutrino-encap-ip={self.underlay_ip}",
            f'external_ids:neutrino-bridge-mappings="{mappings}"',
            "--", "--may-exist", "add-br", UNDERLAY_BRIDGE,
            "--", "set", "Bridge", UNDERLAY_BRIDGE, "datapath_type=netdev",
            "--", "set", "Interface", UNDERLAY_BRIDGE, f"mtu_request={self.fabric.mtu}",
            "--", "--may-exist", "add-port", UNDERLAY_BRIDGE, UNDERLAY_NIC,
            "--", "--may-exist", "add-br", INTEGRATION_BRIDGE,
            "--", "set", "Bridge", INTEGRATION_BRIDGE, "datapath_type=netdev", "fail_mode=secure",
            f"protocols={OPENFLOW_PROTOCOLS}",
            *self._provider_bridge_args(),
        )
        netns.ip("address", "replace", str(self.underlay_address), "dev", UNDERLAY_BRIDGE,
                 namespace=self.namespace)
        netns.set_link(self.namespace, UNDERLAY_BRIDGE, up=True)
        if self.record.agent_command:
            self.start_agent()

    def _provider_bridge_args(self) -> list[str]:
        args: list[str] = []
        for physnet, bridge in sorted(self.record.bridge_mappings.items()):
            args += ["--", "--may-exist", "add-br", bridge,
                     "--", "set", "Bridge", bridge, "datapath_type=netdev",
                     f"external_ids:neutrino-physnet={physnet}",
                     "--", "--may-exist", "add-port", bridge, provider_nic(physnet)]
        return args

    def stop(self) -> None:
        """Stop the agent and OVS, and delete the namespace (its links and taps go with it);
        the run directory and its OVS database stay."""
        self.stop_agent()
        self.ovs.stop()
        self.fabric.detach(self.name)
        for physnet in sorted(self.record.bridge_mappings):
            self.fabric.detach_physnet(physnet, self.name)
        netns.delete_namespace(self.namespace)

    # --- the agent hook ---------------------------------------------------------------------

    @property
    def agent_log(self) -> Path:
        return self.run_dir / "agent.log"

    def agent_pid(self) -> int | None:
        """The agent's pid if it is running, else None."""
        pid = self.record.agent_pid
        if pid is None or not process.pid_alive(pid) or not self._owns_agent(pid):
            return None
        return pid

    def _owns_agent(self, pid: int) -> bool:
        return process.in_namespace(self.namespace)(pid) or \
            process.cmdline(pid) == self.record.agent_command

    def start_agent(self) -> int:
        """Start `record.agent_command` inside the namespace (its own session, output to
        agent.log, OVS_RUNDIR etc. set) and remember its pid."""
        return self.await_agent(self.spawn_agent())

    def spawn_agent(self) -> subprocess.Popen[bytes]:
        """Launch the agent without waiting for it (`await_agent` then): many hosts' agents
        can start together."""
        command = self.record.agent_command
        if not command:
            raise LabError(f"{self.name} has no agent command")
        if self.agent_pid() is not None:
            raise LabError(f"the agent of {self.name} is already running")
        with open(self.agent_log, "ab") as log:
            try:
                return subprocess.Popen(
                    netns.exec_argv(self.namespace, command), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    env={**os.environ, **self.ovs.env, "NEUTRINO_LAB_HOST": self.name})
            except OSError as error:
                raise LabError(f"cannot start the agent of {self.name}: {error}") from None

    def await_agent(self, child: subprocess.Popen[bytes]) -> int:
        """Wait until the launched agent runs inside the namespace and remember its pid."""
        command = self.record.agent_command or []
        # `ip netns exec` execs, so the child becomes the agent itself once it has entered the
        # namespace and exec'd; wait for that so that the pid is verifiably ours from now on
        deadline = time.monotonic() + AGENT_START_TIMEOUT
        launcher = netns.exec_argv(self.namespace, command)
        while not process.in_namespace(self.namespace)(child.pid) or process.cmdline(child.pid) == launcher:
            if child.poll() is not None:
                raise LabError(f"the agent of {self.name} exited at once (status {child.returncode}); "
                               f"see {self.agent_log}")
            if time.monotonic() > deadline:
                process.kill_pid(child.pid, lambda pid: True)
                raise LabError(f"the agent of {self.name} did not start; see {self.agent_log}")
            time.sleep(0.01)
        self.record.agent_pid = child.pid
        return child.pid

    def stop_agent(self) -> bool:
        """SIGTERM (then SIGKILL) the agent; whether it was running."""
        stopped = process.stop_pid(self.agent_pid(), self._owns_agent)
        self.record.agent_pid = None
        return stopped

    # --- faults -----------------------------------------------------------------------------

    def fail(self, how: FailureMode) -> None:
        """Inject a fault: `agent` / `vswitchd` are killed with SIGKILL (a crash: no cleanup),
        `link` sets the host's fabric port down (the host sees NO-CARRIER on eth-ul)."""
        if how == "agent":
            if not self.record.agent_command:
                raise LabError(f"{self.name} has no agent to fail")
            if not process.kill_pid(self.agent_pid(), self._owns_agent):
                raise LabError(f"the agent of {self.name} is not running")
        elif how == "vswitchd":
            if not self.ovs.kill_daemon("ovs-vswitchd"):
                raise LabError(f"ovs-vswitchd of {self.name} is not running")
        elif how == "link":
            self.fabric.set_port_up(self.name, False)
        else:
            raise LabError(f"unknown failure {how!r}: choose one of {', '.join(FAILURE_MODES)}")

    def heal(self) -> list[str]:
        """Repair whatever is broken: restart ovsdb-server / ovs-vswitchd from the same database
        (bridges and ports come back; OpenFlow flows do not), bring the link up, restart the
        agent.  Returns what was repaired."""
        repaired: list[str] = []
        if not netns.namespace_exists(self.namespace):
            raise LabError(f"the namespace of {self.name} is gone; tear the lab down and start again")
        if not self.ovs.running("ovsdb-server"):
            self.ovs.start_ovsdb()
            repaired.append("ovsdb-server")
        if not self.ovs.running("ovs-vswitchd"):
            self.ovs.start_vswitchd()
            repaired.append("vswitchd")
        if self.fabric.port_up(self.name) is False:
            self.fabric.set_port_up(self.name, True)
            repaired.append("link")
        if self.record.agent_command and self.agent_pid() is None:
            self.start_agent()
            repaired.append("agent")
        return repaired

    # --- observation ------------------------------------------------------------------------

    def status(self) -> HostStatus:
        exists = netns.namespace_exists(self.namespace)
        ovsdb_pid = self.ovs.pid("ovsdb-server")
        bridges: list[str] = []
        if ovsdb_pid is not None:
            try:
                bridges = self.ovs.bridges()
            except LabError:
                bridges = []
        return HostStatus(
            name=self.name, namespace=self.namespace, namespace_exists=exists,
            underlay_address=self.record.underlay_address, ovsdb_server_pid=ovsdb_pid,
            ovs_vswitchd_pid=self.ovs.pid("ovs-vswitchd"), agent_pid=self.agent_pid(),
            agent_configured=bool(self.record.agent_command),
            link_up=self.fabric.port_up(self.name) if self.fabric.exists() else None,
            bridges=bridges,
            provider_links={physnet: self.fabric.physnet_port_up(physnet, self.name)
                            if self.fabric.exists() else None
                            for physnet in sorted(self.record.bridge_mappings)})

    def bfd_sessions(self) -> dict[str, dict[str, str]]:
        """Tunnel interface -> its BFD session as ovs-vswitchd runs it now (`ovs-appctl
        bfd/show`: "Local Session State", "Remote Minimum TX Interval", "Detect Time"...).
        Right after a session comes up its peer may still announce the slow 1 s transmit
        interval of a session not yet up, and a failure then takes up to 3 s to detect."""
        return parse_bfd_show(self.ovs.appctl("bfd/show"))

    def exec(self, argv: list[str], *, check: bool = True,
             timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the host namespace (with this host's OVS environment)."""
        return process.run(netns.exec_argv(self.namespace, argv), check=check, timeout=timeout,
                           env=self.ovs.env)


def parse_bfd_show(text: str) -> dict[str, dict[str, str]]:
    """`ovs-appctl bfd/show` output -> interface -> field -> value. PURE."""
    sessions: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("---- ") and line.endswith(" ----"):
            current = sessions.setdefault(line[5:-5], {})
        elif current is not None and ": " in line:
            key, value = line.split(": ", 1)
            current[key] = value
    return sessions


def bfd_at_full_rate(session: Mapping[str, str]) -> bool:
    """A session of `LabHost.bfd_sessions` is up and its peer transmits at the rate this side
    asked for (not the 1 s of a session not yet up): a failure is detected in 3 intervals. PURE."""
    def ms(name: str) -> int:
        return int(session.get(name, "0ms").removesuffix("ms"))
    return (session.get("Local Session State") == "up"
            and 0 < ms("Remote Minimum TX Interval") <= ms("Local Minimum RX Interval"))
