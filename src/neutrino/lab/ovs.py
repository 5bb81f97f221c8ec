"""One private Open vSwitch: an ovsdb-server and an ovs-vswitchd inside one host namespace.

May touch: its run directory (database, sockets, pidfiles, logs all live there; OVS_RUNDIR,
OVS_DBDIR and OVS_LOGDIR point at it so nothing falls back to /run/openvswitch), the two
daemons it started (stopped by the pid in their pidfile, after checking that the process's
command line names that pidfile), and, through ovs-vsctl/ovs-ofctl/ovs-appctl with explicit
sockets, the OVS configuration and flows of that one switch.  The bridge layout of a lab host
is `neutrino.lab.host`'s business, not this module's.

OVS keeps bridges, ports and interfaces in its database, so they survive a vswitchd restart;
OpenFlow flows and groups do not (whoever installed them must install them again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from neutrino.lab import netns, process
from neutrino.lab.errors import LabError, require_binary

Daemon = Literal["ovsdb-server", "ovs-vswitchd"]
DAEMONS: tuple[Daemon, ...] = ("ovsdb-server", "ovs-vswitchd")
OPENFLOW_VERSION = "OpenFlow15"
VSCTL_TIMEOUT = 10  # seconds ovs-vsctl may wait for ovsdb-server / ovs-vswitchd


@dataclass(frozen=True)
class OpenVSwitch:
    """The Open vSwitch of one lab host: `namespace` it runs in, `run_dir` it keeps its state in."""

    namespace: str
    run_dir: Path

    # --- paths --------------------------------------------------------------------------------

    @property
    def db_path(self) -> Path:
        return self.run_dir / "conf.db"

    @property
    def db_socket(self) -> Path:
        return self.run_dir / "db.sock"

    def pidfile(self, daemon: Daemon) -> Path:
        return self.run_dir / f"{daemon}.pid"

    def control_socket(self, daemon: Daemon) -> Path:
        return self.run_dir / f"{daemon}.ctl"

    def log_file(self, daemon: Daemon) -> Path:
        return self.run_dir / f"{daemon}.log"

    def mgmt_socket(self, bridge: str) -> Path:
        """The OpenFlow service socket vswitchd opens for each bridge (`unix:` target of ovs-ofctl)."""
        return self.run_dir / f"{bridge}.mgmt"

    @property
    def env(self) -> dict[str, str]:
        """Environment for the daemons and the clients: everything under the private run dir."""
        where = str(self.run_dir)
        return {"OVS_RUNDIR": where, "OVS_DBDIR": where, "OVS_LOGDIR": where}

    # --- daemons ------------------------------------------------------------------------------

    def pid(self, daemon: Daemon) -> int | None:
        """The pid of `daemon` if it is running (and is the one our pidfile names), else None."""
        pid = process.read_pidfile(self.pidfile(daemon))
        if pid is None or not process.pid_alive(pid) or not self._owns(daemon)(pid):
            return None
        return pid

    def running(self, daemon: Daemon) -> bool:
        return self.pid(daemon) is not None

    def _owns(self, daemon: Daemon) -> process.OwnershipCheck:
        return process.cmdline_contains(f"--pidfile={self.pidfile(daemon)}")

    def _daemon_args(self, daemon: Daemon) -> list[str]:
        return [f"--pidfile={self.pidfile(daemon)}", f"--unixctl={self.control_socket(daemon)}",
                f"--log-file={self.log_file(daemon)}", "-vsyslog:off", "--detach", "--no-chdir"]

    def _start(self, daemon: Daemon, argv: list[str]) -> None:
        if self.running(daemon):
            raise LabError(f"{daemon} of {self.namespace} is already running")
        try:
            process.run(netns.exec_argv(self.namespace, argv), env=self.env, timeout=30)
        except LabError as error:
            raise LabError(f"{error}\n(see {self.log_file(daemon)})") from None
        if not self.running(daemon):
            raise LabError(f"{daemon} of {self.namespace} did not start (see {self.log_file(daemon)})")

    def create_db(self) -> None:
        """Create an empty vswitch database (the installed package's schema) in the run dir."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.db_path.exists():
            raise LabError(f"{self.db_path} already exists")
        process.run([require_binary("ovsdb-tool", "openvswitch-switch"), "create", str(self.db_path)],
                    env=self.env)

    def start_ovsdb(self) -> None:
        """Start ovsdb-server in the namespace and initialise the database (`ovs-vsctl init`)."""
        self._start("ovsdb-server", [
            require_binary("ovsdb-server", "openvswitch-switch"), str(self.db_path),
            f"--remote=punix:{self.db_socket}", *self._daemon_args("ovsdb-server")])
        self.vsctl("init", wait=False)

    def start_vswitchd(self) -> None:
        """Start ovs-vswitchd in the namespace; it returns once its bridges are configured."""
        self._start("ovs-vswitchd", [
            require_binary("ovs-vswitchd", "openvswitch-switch"), f"unix:{self.db_socket}",
            *self._daemon_args("ovs-vswitchd")])

    def start(self) -> None:
        """Create the database if needed, then start whichever daemon is not running."""
        if not self.db_path.exists():
            self.create_db()
        if not self.running("ovsdb-server"):
            self.start_ovsdb()
        if not self.running("ovs-vswitchd"):
            self.start_vswitchd()

    def stop_daemon(self, daemon: Daemon, *, timeout: float = 5.0) -> bool:
        """SIGTERM `daemon` (SIGKILL after `timeout`); whether it was running."""
        pid = process.read_pidfile(self.pidfile(daemon))
        return process.stop_pid(pid, self._owns(daemon), timeout=timeout)

    def kill_daemon(self, daemon: Daemon) -> bool:
        """SIGKILL `daemon`, as a crash would; whether it was running."""
        pid = process.read_pidfile(self.pidfile(daemon))
        return process.kill_pid(pid, self._owns(daemon))

    def stop(self) -> None:
        """Stop vswitchd, then ovsdb-server (the database file stays)."""
        self.stop_daemon("ovs-vswitchd")
        self.stop_daemon("ovsdb-server")

    # --- clients ------------------------------------------------------------------------------

    def vsctl(self, *args: str, wait: bool = True, timeout: int = VSCTL_TIMEOUT) -> str:
        """`ovs-vsctl args...` against this switch's database; its stdout.

        With `wait` (the default) ovs-vsctl waits until ovs-vswitchd has applied the change (so
        ofport numbers are known afterwards); that needs a running vswitchd, else it fails after
        `timeout` seconds.  Use wait=False for changes that must work while vswitchd is down.
        """
        argv = [require_binary("ovs-vsctl", "openvswitch-switch"), f"--db=unix:{self.db_socket}",
                f"--timeout={timeout}"]
        if not wait:
            argv.append("--no-wait")
        return process.run([*argv, *args], env=self.env, timeout=timeout + 5).stdout

    def ofctl(self, command: str, *args: str, bridge: str = "br-int", options: tuple[str, ...] = (),
              input: str | None = None) -> str:
        """`ovs-ofctl -O OpenFlow15 [options] command unix:<run_dir>/<bridge>.mgmt args...`; its stdout.

        Example: `ofctl("add-flows", "-", options=("--bundle",), input=flows_text)`.
        """
        argv = [require_binary("ovs-ofctl", "openvswitch-switch"), "-O", OPENFLOW_VERSION, *options,
                command, f"unix:{self.mgmt_socket(bridge)}", *args]
        return process.run(argv, env=self.env, input=input).stdout

    def appctl(self, *args: str, target: Daemon = "ovs-vswitchd") -> str:
        """`ovs-appctl -t <run_dir>/<target>.ctl args...`; its stdout."""
        argv = [require_binary("ovs-appctl", "openvswitch-switch"), "-t", str(self.control_socket(target)),
                *args]
        return process.run(argv, env=self.env).stdout

    # --- queries ------------------------------------------------------------------------------

    def bridges(self) -> list[str]:
        """The bridges in the database (works while vswitchd is down)."""
        return self.vsctl("list-br", wait=False).split()

    def ports(self, bridge: str) -> list[str]:
        return self.vsctl("list-ports", bridge, wait=False).split()

    def ofport(self, interface: str) -> int:
        """The OpenFlow port number vswitchd gave `interface` (a LabError if it has none)."""
        value = self.vsctl("get", "Interface", interface, "ofport", wait=False).strip()
        if not value.lstrip("-").isdigit() or int(value) <= 0:
            raise LabError(f"interface {interface} of {self.namespace} has no OpenFlow port ({value})")
        return int(value)

    def flows(self, bridge: str = "br-int") -> list[str]:
        """The flows of `bridge` (`dump-flows --no-stats`), one string per flow."""
        out = self.ofctl("dump-flows", options=("--no-stats",), bridge=bridge)
        return [line.strip() for line in out.splitlines() if line.strip() and "reply" not in line]
