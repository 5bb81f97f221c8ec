"""The lab's persisted state, and the teardown that removes everything the lab made.

May touch: the lab's files in its state directory (`lab.json`, `lab.lock`, the `run/` tree), and,
for `teardown`, every namespace whose name starts with the lab's prefix, the processes living in
them, and the daemons named by the pidfiles under `run/` (checked against their command line
before they are signalled).  Each `neutrino lab ...` command is a separate process: it takes the
lock, loads `lab.json`, acts, and saves.

The name prefix of namespaces comes from a hash of the state directory's absolute path, so two
labs (two state directories, e.g. parallel CI jobs) never share a namespace, and `teardown` can
find everything of a lab from its state directory alone, even when `lab.json` is lost.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from neutrino.lab import netns, process
from neutrino.lab.errors import LabError
from neutrino.lab.fabric import DEFAULT_UNDERLAY
from neutrino.lab.ovs import DAEMONS, OpenVSwitch

STATE_FILE = "lab.json"
LOCK_FILE = "lab.lock"
RUN_DIR = "run"
FORMAT_VERSION = 1


def default_state_dir() -> Path:
    """`$NEUTRINO_LAB_STATE_DIR`, else ~/.neutrino/lab."""
    return Path(os.environ.get("NEUTRINO_LAB_STATE_DIR", "~/.neutrino/lab")).expanduser()


def lab_prefix(state_dir: Path) -> str:
    """The namespace name prefix of the lab kept in `state_dir`: "nl" + 6 hex digits."""
    digest = hashlib.sha256(str(state_dir.expanduser().resolve()).encode()).hexdigest()
    return "nl" + digest[:6]


@dataclass
class HostRecord:
    """One lab host as persisted: enough to find and stop all of it."""

    name: str  # host1, host2, ...
    index: int  # 1-based; picks the underlay address
    namespace: str
    underlay_address: str  # CIDR, on br-phy
    run_dir: str  # OVS database, sockets, pidfiles, logs, agent log
    bridge_mappings: dict[str, str] = field(default_factory=dict)  # physnet -> provider bridge
    agent_command: list[str] | None = None  # run inside the namespace; None: no agent
    agent_pid: int | None = None


@dataclass
class InstanceRecord:
    """One instance namespace plugged into a host's br-int, as persisted."""

    name: str
    host: str
    namespace: str
    port_id: str  # external_ids:iface-id
    device_id: str  # external_ids:vm-uuid
    mac: str
    mtu: int
    host_ifname: str  # the br-int end of the veth, in the host namespace
    run_dir: str  # DHCP client script and leases
    addresses: list[str] = field(default_factory=list)  # CIDRs configured on eth0


@dataclass
class LabState:
    """Everything the lab made, as saved in `<state_dir>/lab.json`."""

    state_dir: Path
    prefix: str
    underlay: str = str(DEFAULT_UNDERLAY)
    underlay_mtu: int = 1500
    hosts: dict[str, HostRecord] = field(default_factory=dict)
    instances: dict[str, InstanceRecord] = field(default_factory=dict)
    # the `external` namespace (the upstream network): its address on its physical network,
    # and that network; None = the lab has none
    external_address: str | None = None
    external_physnet: str | None = None

    @classmethod
    def new(cls, state_dir: Path, **settings: Any) -> LabState:
        state_dir = state_dir.expanduser().resolve()
        return cls(state_dir=state_dir, prefix=lab_prefix(state_dir), **settings)

    @property
    def path(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def run_dir(self) -> Path:
        return self.state_dir / RUN_DIR

    @property
    def fabric_namespace(self) -> str:
        return f"{self.prefix}-fabric"

    def host_namespace(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def instance_namespace(self, instance: str) -> str:
        return f"{self.prefix}-i-{instance}"

    @property
    def external_namespace(self) -> str:
        return f"{self.prefix}-external"

    @staticmethod
    def exists(state_dir: Path) -> bool:
        return (state_dir.expanduser() / STATE_FILE).exists()

    @classmethod
    def load(cls, state_dir: Path) -> LabState:
        """The saved state, or a LabError saying there is no lab there."""
        state_dir = state_dir.expanduser().resolve()
        path = state_dir / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise LabError(f"no lab is up in {state_dir} (run `neutrino lab up` first)") from None
        except (OSError, ValueError) as error:
            raise LabError(f"cannot read {path}: {error}") from None
        if data.get("format") != FORMAT_VERSION:
            raise LabError(f"{path} has format {data.get('format')!r}, expected {FORMAT_VERSION}")
        return cls(
            state_dir=state_dir,
            prefix=data["prefix"],
            underlay=data["underlay"],
            underlay_mtu=data["underlay_mtu"],
            hosts={name: HostRecord(**host) for name, host in data["hosts"].items()},
            instances={name: InstanceRecord(**inst) for name, inst in data["instances"].items()},
            external_address=data.get("external_address"),
            external_physnet=data.get("external_physnet"),
        )

    @classmethod
    def load_or_bare(cls, state_dir: Path) -> LabState:
        """The saved state, or (missing or unreadable file) a state with only the prefix, which
        is all `teardown` needs to find the lab's namespaces and pidfiles."""
        try:
            return cls.load(state_dir)
        except LabError:
            return cls.new(state_dir)

    def save(self) -> None:
        """Write the state atomically (a reader never sees half a file)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FORMAT_VERSION,
            "prefix": self.prefix,
            "underlay": self.underlay,
            "underlay_mtu": self.underlay_mtu,
            "hosts": {name: asdict(host) for name, host in self.hosts.items()},
            "instances": {name: asdict(inst) for name, inst in self.instances.items()},
            "external_address": self.external_address,
            "external_physnet": self.external_physnet,
        }
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)


@contextlib.contextmanager
def locked(state_dir: Path, *, timeout: float = 60.0) -> Iterator[None]:
    """Hold the lab's lock (one lab command at a time per state directory)."""
    state_dir = state_dir.expanduser()
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / LOCK_FILE, "a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise LabError(f"another lab command holds {state_dir / LOCK_FILE}; "
                                   "try again when it has finished") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass
class TeardownReport:
    """What `teardown` removed, and what it could not."""

    namespaces: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def teardown(state: LabState) -> TeardownReport:
    """Remove every process, namespace, link and file of the lab; tolerate parts already gone.

    Order: instances, then each host (agent, vswitchd, ovsdb-server by pid, then its
    namespace, which takes the veths and OVS's persistent taps with it), then the fabric, then
    any other namespace with the lab's prefix and any daemon still named by a pidfile under
    `run/` (both cover a lab that crashed before it saved its state), then the files.
    Raises a LabError listing whatever is left.
    """
    report = TeardownReport()

    def attempt(what: str, action: Any, *args: Any) -> Any:
        try:
            return action(*args)
        except (LabError, OSError) as error:
            report.errors.append(f"{what}: {error}")
            return None

    def drop_namespace(name: str) -> None:
        report.pids.extend(attempt(f"processes in {name}", netns.stop_namespace_processes, name) or [])
        if attempt(f"namespace {name}", netns.delete_namespace, name):
            report.namespaces.append(name)

    for inst in state.instances.values():
        drop_namespace(inst.namespace)
    for host in state.hosts.values():
        if host.agent_command and host.agent_pid:
            agent_owned = _any_of(process.in_namespace(host.namespace),
                                  _cmdline_is(host.agent_command))
            if attempt(f"agent of {host.name}", process.stop_pid, host.agent_pid, agent_owned):
                report.pids.append(host.agent_pid)
        switch = OpenVSwitch(host.namespace, Path(host.run_dir))
        for daemon in reversed(DAEMONS):
            pid = switch.pid(daemon)
            if attempt(f"{daemon} of {host.name}", switch.stop_daemon, daemon) and pid:
                report.pids.append(pid)
        drop_namespace(host.namespace)
    drop_namespace(state.fabric_namespace)
    for name in attempt("listing namespaces", netns.list_namespaces, state.prefix + "-") or []:
        drop_namespace(name)
    if state.run_dir.is_dir():
        for pidfile in sorted(state.run_dir.glob("*/*.pid")):
            pid = process.read_pidfile(pidfile)
            owned = process.cmdline_contains(str(pidfile))
            if attempt(f"process of {pidfile}", process.stop_pid, pid, owned) and pid:
                report.pids.append(pid)
        attempt(f"removing {state.run_dir}", shutil.rmtree, state.run_dir)
    with contextlib.suppress(FileNotFoundError):
        state.path.unlink()

    left = netns.list_namespaces(state.prefix + "-")
    if left:
        report.errors.append("namespaces still present: " + ", ".join(left))
    if report.errors:
        raise LabError("teardown incomplete:\n  " + "\n  ".join(report.errors))
    return report


def _cmdline_is(argv: list[str]) -> process.OwnershipCheck:
    return lambda pid: process.cmdline(pid) == argv


def _any_of(*checks: process.OwnershipCheck) -> process.OwnershipCheck:
    return lambda pid: any(check(pid) for check in checks)
