"""`make bench` (data plane): the reference topology of /work/shared/bench/ovn built in Neutrino and
in OVN (Debian's ovn-central/ovn-host) side by side, one host binding every port.

For each size TxP (T tenants x 2 networks x P ports; default 10x10 = 200 ports and 50x20 = 2,000)
the same intent is built on both systems, one after the other (never both at once: the machine
has 2 cores), from `ovn_topo.gen_topology` (same MACs, IPs, security-group rules):

  * per tenant: 2 networks with one /24 subnet each (no DHCP, as the harness's default), P VM
    ports per network, one security group holding all the tenant's ports with neutron's rules:
    2 default egress (IPv4, IPv6), ingress IPv4 from remote group = itself, ingress tcp/22 from
    0.0.0.0/0;
  * EXCLUDED on both sides (bench/routing.py builds the full topology, with them): routers,
    router interfaces, gateway ports, SNAT, floating IPs, and the external flat network (it only
    carries the routers' gateways).
    OVN keeps what neutron's OVN driver needs for the rest: the `neutron_pg_drop` port group with
    its two drop ACLs and one explicit address set per group (`as_ip4_<sg>`).

OVN: a private stack in a fresh run dir (the shared harness's layout: standalone NB and SB
ovsdb-servers on unix sockets, ovn-northd, an `ovn-nbctl` daemon, ovsdb-server + ovs-vswitchd in a
private `unshare --net` namespace with a netdev br-int, one ovn-controller as chassis hv1). Every
VM port is bound by an OVS internal port with external_ids:iface-id before the NB is loaded (with
northd paused, then one compile), as the harness does.

Neutrino: `neutrino lab up --hosts 1` (a server with SQLite, host1 = a namespace with its own
ovsdb-server/ovs-vswitchd (netdev) and `neutrino agent`); the intent is created through the
REST API (bulk creates; every port with binding:host_id=host1), then one OVS internal port per
port is plugged into br-int os-vif style (iface-id, attached-mac, iface-status=active), and the
bench waits until every port has its flows and the agent has realised the last revision.

VIF links (--vif-links): the taps of the internal ports stay down on both sides by default, as
in the harness (a port then stays DOWN in Neutrino, whose agent reports ACTIVE only for a VIF
whose link is up, so "port add -> ACTIVE" is not measured); `--vif-links up` sets every tap up
on both sides (in the OVN vswitchd's private namespace too), as a VM's tap is. The condition
matters: with 2,000 taps up, ovs-vswitchd (netdev) needs about 0.7 s for each reconfiguration
(a VIF plug is one) and every OpenFlow request waits behind it; with them down about 0.12 s.
Before each timed operation both sides wait until ovs-vswitchd answers an OpenFlow echo twice,
0.2 s apart (`settle_switch`): a port created just before t0 is not still being added.

Measured on each side:
  1. OpenFlow flows on br-int once everything is bound: `ovs-ofctl -O OpenFlow15 dump-flows`
     lines that are flows (the reply headers are not counted), also split by table;
  2. one port add, API change -> flows on the host, the same procedure on both: an OVS internal
     port is created first (no iface-id; not timed); t0; the API call (Neutrino: POST
     /v2.0/ports with binding:host_id=host1; OVN: the harness's `port` transaction: LSP, switch,
     port group, pg_drop, address set), then, as soon as it returns, iface-id (+attached-mac) is
     set on the interface (the VIF plug, Nova's order: the port exists before the VIF is
     plugged); done when br-int holds flows matching in_port=<its ofport>, dl_src=<its MAC> and
     dl_dst=<its MAC> (seen by `ovs-ofctl monitor`, which reports every flow change as it
     happens). Also reported: when the system says so itself (Neutrino: port ACTIVE, which the
     agent reports only after the bundle with its flows is installed, with --vif-links up only;
     OVN: LSP up=true);
  3. one security-group rule add (ingress tcp/1000+k from 0.0.0.0/0 on tenant k%T's group):
     t0; POST /v2.0/security-group-rules, or the harness's `acl` transaction with
     `ovn-nbctl --wait=hv`; done when a flow matching tcp,tp_dst=1000+k appears on br-int (also
     reported: when `--wait=hv` returned).
  Each latency is repeated --reps times (median, min, max). Also recorded (information, not
  targets): build time to all ports up, CPU of the daemons, RSS, load average.

Prints `name value unit` lines, then a table (Neutrino, OVN, ratio, target met?), and writes
everything as JSON to --output. Every process, namespace and directory it makes is removed on
exit, also after an error or Ctrl-C (processes are stopped by pid, after checking
/proc/<pid>/comm; the lab by `neutrino lab down`).

Needs root, Open vSwitch and OVN (`--install-ovn` installs ovn-central/ovn-host with apt-get,
with service starts blocked).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

HARNESS_DIR = Path("/work/shared/bench/ovn")
TICK = os.sysconf("SC_CLK_TCK")
HOST = "host1"
CHASSIS = "hv1"
TARGET_LATENCY_RATIO = 5.0  # Neutrino <= 1/5 of OVN's change-to-flows latency
TARGET_FLOW_RATIO = 3.0  # Neutrino <= 1/3 of OVN's flows
EXCLUDED = ("routers, router interfaces, gateway ports, SNAT, floating IPs and the external flat "
            "network (bench/routing.py measures the topology with them); excluded on both sides")
VSCTL_BATCH = 200


class BenchError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120.0,
        check: bool = True, input: str | None = None) -> str:
    full_env = {**os.environ, **(env or {})}
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              env=full_env, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(argv[:8])}") from None
    if check and done.returncode != 0:
        raise BenchError(f"failed ({done.returncode}): {' '.join(argv[:8])} ...\n"
                         f"{(done.stderr or done.stdout)[-2000:]}")
    return done.stdout


# --- /proc ----------------------------------------------------------------------------------------
def cpu_seconds(pid: int | None) -> float:
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_kib(pid: int | None) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    if pid:
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    return rss, hwm


def host_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / TICK, sum(v[:8]) / TICK


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def stop_pid(pid: int, expected_comm: str, timeout: float = 10.0) -> None:
    """SIGTERM (then SIGKILL) `pid` if it is still the process we started."""
    if comm(pid) != expected_comm:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = None
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            state = next((line.split()[1] for line in f if line.startswith("State:")), None)
        if state is None or state == "Z":
            return
        time.sleep(0.05)
    if comm(pid) == expected_comm:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- the shared harness ---------------------------------------------------------------------------
def load_harness(directory: Path) -> ModuleType:
    path = directory / "ovn_topo.py"
    if not path.exists():
        raise BenchError(f"the OVN harness is not at {path} (--harness)")
    spec = importlib.util.spec_from_file_location("ovn_topo", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def all_ports(topo: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(tenant, network, port) for every VM port, in the harness's order."""
    return [(t, n, p) for t in topo["tenants"] for n in t["networks"] for p in n["ports"]]


# --- flows ----------------------------------------------------------------------------------------
@dataclass
class FlowCount:
    flows: int
    by_table: dict[int, int]
    by_cookie: Counter[int]


def count_flows(target: str, env: dict[str, str]) -> FlowCount:
    """`ovs-ofctl -O OpenFlow15 dump-flows`: every line that is a flow (reply headers excluded)."""
    out = run(["ovs-ofctl", "-O", "OpenFlow15", "--no-stats", "dump-flows", target], env=env,
              timeout=600)
    by_table: Counter[int] = Counter()
    by_cookie: Counter[int] = Counter()
    flows = 0
    for line in out.splitlines():
        if not line.strip() or ("reply" in line and "(xid=" in line):
            continue
        flows += 1
        m = re.search(r"\btable=(\d+)", line)
        by_table[int(m.group(1)) if m else 0] += 1
        c = re.search(r"\bcookie=(0x[0-9a-f]+|\d+)", line)
        by_cookie[int(c.group(1), 0) if c else 0] += 1
    return FlowCount(flows, dict(sorted(by_table.items())), by_cookie)


def aggregate_flows(target: str, env: dict[str, str]) -> int:
    out = run(["ovs-ofctl", "-O", "OpenFlow15", "dump-aggregate", target], env=env, timeout=300)
    m = re.search(r"flow_count=(\d+)", out)
    return int(m.group(1)) if m else -1


class FlowMonitor:
    """`ovs-ofctl monitor <bridge> watch:!initial`: every flow added or modified on the bridge,
    time-stamped when it is read (ovs-ofctl writes the events to stderr, unbuffered)."""

    def __init__(self, target: str, env: dict[str, str]) -> None:
        self.events: list[tuple[float, frozenset[str]]] = []
        self.actions: list[str] = []  # the actions of each event
        self._cond = threading.Condition()
        self._ready = False
        self.proc = subprocess.Popen(
            ["ovs-ofctl", "monitor", target, "watch:!initial"], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, bufsize=1,
            env={**os.environ, **env})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        with self._cond:
            while not self._ready:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    self.stop()
                    raise BenchError("ovs-ofctl monitor did not start")
                self._cond.wait(left)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.monotonic()
            if "event=" not in line:
                if "FLOW_MONITOR reply" in line:
                    with self._cond:
                        self._ready = True
                        self._cond.notify_all()
                continue
            if "event=ADDED" not in line and "event=MODIFIED" not in line:
                continue
            match, _, actions = line.partition(" actions=")
            tokens = frozenset(t for part in match.split() for t in part.split(","))
            with self._cond:
                self.events.append((now, tokens))
                self.actions.append(actions.strip())
                self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def wait_for(self, since: int, wanted: Sequence[str], timeout: float) -> float:
        """The time by which every token in `wanted` has appeared in some flow added or modified
        after event number `since`."""
        deadline = time.monotonic() + timeout
        first: dict[str, float] = {}
        i = since
        with self._cond:
            while True:
                while i < len(self.events):
                    t, tokens = self.events[i]
                    for w in wanted:
                        if w not in first and w in tokens:
                            first[w] = t
                    i += 1
                if len(first) == len(wanted):
                    return max(first.values())
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [w for w in wanted if w not in first]
                    raise BenchError(f"no flow with {', '.join(missing)} within {timeout:.0f} s")
                self._cond.wait(left)

    def wait_for_flow(self, since: int, match: Sequence[str], action: str, timeout: float) -> float:
        """The time of the first flow added or modified after event number `since` whose match
        holds every token of `match` and whose actions contain `action`."""
        deadline = time.monotonic() + timeout
        wanted = frozenset(match)
        i = since
        with self._cond:
            while True:
                while i < len(self.events):
                    t, tokens = self.events[i]
                    if wanted <= tokens and action in self.actions[i]:
                        return t
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"no flow with {', '.join(match)} and {action!r} within "
                                     f"{timeout:.0f} s")
                self._cond.wait(left)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --- results --------------------------------------------------------------------------------------
@dataclass
class OpSample:
    k: int
    flows_ms: float  # API call issued -> flows seen on br-int
    ack_ms: float | None = None  # API call issued -> the system's own "done"
    call_ms: float | None = None  # the API call itself (until it returned)
    published_ms: float | None = None  # Neutrino: -> the change is on the chassis's policy stream


@dataclass(frozen=True)
class OpSpec:
    """One timed operation: `key` is the side's method (`side.<key>(k, timeout)`), the JSON key
    of its samples and the prefix of its metrics."""

    key: str  # "port_add"
    label: str  # "port add", in the log and the table
    row: str  # the table's latency row
    ack_key: str  # the table's row (and JSON key) of the system's own "done"
    ack_row: str
    ack_names: tuple[str, str]  # what that "done" is on (Neutrino, OVN)


DATAPLANE_OPS = (
    OpSpec("port_add", "port add", "port add -> flows on host, median", "port_ack",
           "port add -> ACTIVE / LSP up, median", ("ACTIVE", "up / --wait=hv")),
    OpSpec("rule_add", "rule add", "SG rule add -> flows on host, median", "rule_ack",
           "SG rule add -> OVN --wait=hv returned, median", ("ACTIVE", "up / --wait=hv")),
)


@dataclass
class SideResult:
    system: str
    metrics: dict[str, Any] = field(default_factory=dict)
    ops: dict[str, list[OpSample]] = field(default_factory=dict)  # OpSpec.key -> samples
    by_table: dict[int, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def samples(self, key: str) -> list[OpSample]:
        return self.ops.setdefault(key, [])

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "metrics": self.metrics,
                **{key: [vars(s) for s in samples] for key, samples in self.ops.items()},
                "flows_by_table": {str(k): v for k, v in self.by_table.items()},
                "notes": self.notes}


def summarize(samples: Sequence[OpSample], attr: str = "flows_ms") -> dict[str, float] | None:
    xs = [getattr(s, attr) for s in samples if getattr(s, attr) is not None]
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def emit(prefix: str, name: str, value: Any, unit: str) -> None:
    if isinstance(value, float):
        text = f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}".rstrip("0").rstrip(".")
    else:
        text = str(value)
    print(f"{prefix}.{name} {text} {unit}", flush=True)


# --- OVN ------------------------------------------------------------------------------------------
OVN_FIXED_TABLES = {0: "phy_to_logical", 37: "output_large_pkt_detect", 38: "output_large_pkt_process",
                    39: "remote_output", 40: "local_output", 41: "check_loopback", 64: "save_inport",
                    65: "log_to_phy", 73: "chk_in_port_sec", 74: "chk_in_port_sec_nd",
                    75: "chk_out_port_sec"}


class OvnSide:
    """A private OVN stack (the harness's layout) with one chassis binding every port."""

    def __init__(self, harness: ModuleType, tenants: int, ports: int, links_up: bool = False) -> None:
        self.h = harness
        self.T, self.P = tenants, ports
        self.links_up = links_up
        self.topo: dict[str, Any] = harness.gen_topology(tenants, ports)
        self.run_dir: Path | None = None
        self.procs: list[tuple[str, int, str]] = []  # (name, pid, comm)
        self.env: dict[str, str] = {}
        self.monitor: FlowMonitor | None = None
        self.result = SideResult("ovn")
        self._vif = 0

    # daemons
    def _daemon(self, name: str, comm_name: str, argv: list[str], prefix: Sequence[str] = ()) -> None:
        assert self.run_dir is not None
        pidfile = self.run_dir / f"{name}.pid"
        # ovn-controller has no --unixctl: its socket is $OVN_RUNDIR/ovn-controller.<pid>.ctl
        ctl = [] if name == "controller" else [f"--unixctl={self.run_dir / name}.ctl"]
        out = run([*prefix, *argv, "--detach", "--no-chdir", f"--pidfile={pidfile}",
                   f"--log-file={self.run_dir / name}.log", *ctl], env=self.env, timeout=60)
        for _ in range(200):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            time.sleep(0.05)
        pid = int(pidfile.read_text().strip())
        self.procs.append((name, pid, comm_name))
        if name == "nbctld":
            self.env["OVN_NB_DAEMON"] = out.strip()

    def pid(self, name: str) -> int | None:
        return next((p for n, p, _ in self.procs if n == name), None)

    @property
    def target(self) -> str:
        assert self.run_dir is not None
        return f"unix:{self.run_dir}/br-int.mgmt"

    def vsctl(self, *args: str, timeout: int = 120) -> str:
        assert self.run_dir is not None
        return run(["ovs-vsctl", f"--db=unix:{self.run_dir}/db.sock", f"--timeout={timeout}", *args],
                   env=self.env, timeout=timeout + 10)

    def nbctl(self, args: Sequence[str], wait: str | None = None, timeout: int = 900) -> str:
        argv = ["ovn-nbctl", f"--timeout={timeout}"]
        if wait:
            argv.append(f"--wait={wait}")
        return run([*argv, *args], env=self.env, timeout=timeout + 30)

    def start(self) -> None:
        run_dir = self.run_dir = Path(tempfile.mkdtemp(prefix="dataplane-ovn."))
        r = str(run_dir)
        self.env = {"OVS_RUNDIR": r, "OVS_DBDIR": r, "OVS_LOGDIR": r, "OVN_RUNDIR": r, "OVN_DBDIR": r,
                    "OVN_LOGDIR": r, "OVN_NB_DB": f"unix:{r}/nb.sock", "OVN_SB_DB": f"unix:{r}/sb.sock"}
        os.environ.pop("OVN_NB_DAEMON", None)
        for db, schema in (("nb", "/usr/share/ovn/ovn-nb.ovsschema"),
                           ("sb", "/usr/share/ovn/ovn-sb.ovsschema"),
                           ("conf", "/usr/share/openvswitch/vswitch.ovsschema")):
            run(["ovsdb-tool", "create", f"{r}/{db}.db", schema], env=self.env)
        self._daemon("nb", "ovsdb-server", ["ovsdb-server", f"--remote=punix:{r}/nb.sock", f"{r}/nb.db"])
        self._daemon("sb", "ovsdb-server", ["ovsdb-server", f"--remote=punix:{r}/sb.sock", f"{r}/sb.db"])
        run(["ovn-nbctl", "init"], env=self.env)
        run(["ovn-sbctl", "init"], env=self.env)
        self._daemon("northd", "ovn-northd", ["ovn-northd", f"--ovnnb-db=unix:{r}/nb.sock",
                                              f"--ovnsb-db=unix:{r}/sb.sock"])
        self._daemon("nbctld", "ovn-nbctl", ["ovn-nbctl", "-vfile:warn"])
        self._daemon("ovsdb", "ovsdb-server", ["ovsdb-server", f"--remote=punix:{r}/db.sock", f"{r}/conf.db"])
        self.vsctl("--no-wait", "init")
        # a private, unnamed network namespace: br-int's taps never touch the host
        self._daemon("vswitchd", "ovs-vswitchd", ["ovs-vswitchd", f"unix:{r}/db.sock"],
                     prefix=["unshare", "--net"])
        self.vsctl("--", "add-br", "br-int", "--", "set", "Bridge", "br-int", "datapath_type=netdev",
                   "fail-mode=secure", "other-config:disable-in-band=true",
                   "--", "set", "Open_vSwitch", ".", f"external_ids:system-id={CHASSIS}",
                   f"external_ids:ovn-remote=unix:{r}/sb.sock", "external_ids:ovn-encap-type=geneve",
                   "external_ids:ovn-encap-ip=127.0.0.1", "external_ids:ovn-bridge=br-int",
                   "external_ids:ovn-bridge-datapath-type=netdev")
        self._daemon("controller", "ovn-controller", ["ovn-controller", f"unix:{r}/db.sock"])
        deadline = time.monotonic() + 60
        while CHASSIS not in run(["ovn-sbctl", "--bare", "--columns=name", "list", "Chassis_Private"],
                                 env=self.env, check=False).split():
            if time.monotonic() > deadline:
                raise BenchError("ovn-controller did not register its chassis")
            time.sleep(0.1)
        self.nbctl(["sync"], wait="hv", timeout=60)

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
        for _name, pid, comm_name in reversed(self.procs):
            stop_pid(pid, comm_name)
        self.procs = []
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None

    # topology (the harness's NB shapes, without routers, the external network and FIPs)
    def batches(self) -> Iterator[list[str]]:
        h, q = self.h, self.h.q
        yield ["--", "--id=@d1", "create", "ACL", "direction=from-lport", "priority=1001", "action=drop",
               "match=" + q("inport == @neutron_pg_drop && ip"),
               "--", "--id=@d2", "create", "ACL", "direction=to-lport", "priority=1001", "action=drop",
               "match=" + q("outport == @neutron_pg_drop && ip"),
               "--", "create", "Port_Group", "name=neutron_pg_drop", "acls=@d1,@d2"]
        for tenant in self.topo["tenants"]:
            a: list[str] = []
            vm_syms: list[str] = []
            ips: list[str] = []
            for n, net in enumerate(tenant["networks"]):
                syms = []
                for i, p in enumerate(net["ports"]):
                    s = f"@p{n}_{i}"
                    a += h.lsp_cmd(s, p)
                    syms.append(s)
                    ips.append(p["ip_address"])
                vm_syms += syms
                a += ["--", "create", "Logical_Switch", "name=neutron-" + net["id"],
                      "ports=" + ",".join(syms), "other_config:mcast_snoop=false",
                      "other_config:mcast_flood_unregistered=false",
                      'external_ids:"neutron:network_name"=' + q(net["name"])]
            sg = tenant["security_group"]
            acl_syms = []
            for k, rule in enumerate(sg["rules"]):
                a += h.acl_cmd(f"@a{k}", sg["id"], rule, "as")
                acl_syms.append(f"@a{k}")
            a += ["--", "create", "Port_Group", "name=" + h.pg_name(sg["id"]), "ports=" + ",".join(vm_syms),
                  "acls=" + ",".join(acl_syms), 'external_ids:"neutron:security_group_id"=' + q(sg["id"])]
            a += ["--", "create", "Address_Set", "name=" + h.as_name(sg["id"]),
                  "addresses=" + ",".join(q(ip) for ip in ips)]
            a += ["--", "add", "Port_Group", "neutron_pg_drop", "ports", *vm_syms]
            yield a

    def add_vifs(self, iface_ids: Sequence[str | None], prefix: str) -> list[str]:
        names = []
        for c in range(0, len(iface_ids), VSCTL_BATCH):
            args: list[str] = []
            for iface_id in iface_ids[c:c + VSCTL_BATCH]:
                name = f"{prefix}{self._vif}"
                self._vif += 1
                names.append(name)
                args += ["--", "add-port", "br-int", name, "--", "set", "Interface", name, "type=internal"]
                if iface_id:
                    args.append("external_ids:iface-id=" + iface_id)
            self.vsctl(*args, timeout=300)
            if self.links_up:  # in vswitchd's private namespace
                run(["nsenter", "-t", str(self.pid("vswitchd")), "-n", "ip", "-batch", "-"],
                    input="".join(f"link set {n} up\n" for n in names[c:c + VSCTL_BATCH]))
        return names

    def settle(self) -> None:
        """Until ovs-vswitchd has caught up (it answers OpenFlow echoes from its main loop)."""
        settle_switch(self.target, self.env)

    def spare_vif(self) -> str:
        return self.add_vifs([None], "spare")[0]

    def ofport(self, name: str) -> int:
        deadline = time.monotonic() + 30
        while True:
            value = self.vsctl("get", "Interface", name, "ofport").strip()
            if value.lstrip("-").isdigit() and int(value) > 0:
                return int(value)
            if time.monotonic() > deadline:
                raise BenchError(f"{name} got no ofport")
            time.sleep(0.05)

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid, _ in self.procs}

    def start_watching(self) -> None:
        self.monitor = FlowMonitor(self.target, self.env)

    def anatomy(self) -> None:
        pass

    def build(self) -> None:
        m = self.result.metrics
        ports = all_ports(self.topo)
        t0 = time.monotonic()
        self.add_vifs([p["id"] for _t, _n, p in ports], "vif")
        m["bind_ovs_ifaces_s"] = time.monotonic() - t0
        assert self.run_dir is not None
        northd_ctl = str(self.run_dir / "northd.ctl")
        cpu0 = self.cpu()
        run(["ovn-appctl", "-t", northd_ctl, "pause"], env=self.env)
        t0 = time.monotonic()
        batches = list(self.batches())
        for b in batches:
            self.nbctl(b, timeout=600)
        m["nb_load_s"] = time.monotonic() - t0
        m["nb_load_txns"] = len(batches)
        t1 = time.monotonic()
        run(["ovn-appctl", "-t", northd_ctl, "resume"], env=self.env)
        self.nbctl(["sync"], wait="sb")
        m["cold_compile_sb_s"] = time.monotonic() - t1
        self.nbctl(["sync"], wait="hv")
        m["cold_compile_hv_s"] = time.monotonic() - t1
        want = {p["id"] for _t, _n, p in ports}
        deadline = time.monotonic() + 1200
        while True:
            out = self.nbctl(["--bare", "--columns=name,up", "find", "Logical_Switch_Port", "up=true"])
            up = len(want & set(out.split()))
            if up >= len(want):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"only {up} of {len(want)} OVN ports came up")
            time.sleep(0.2)
        m["all_ports_up_s"] = time.monotonic() - t1
        self.nbctl(["sync"], wait="hv")
        m["settled_s"] = time.monotonic() - t1
        cpu1 = self.cpu()
        for name in ("northd", "sb", "controller", "vswitchd"):
            m[f"{name}_cpu_to_settled_s"] = cpu1[name] - cpu0[name]
        m["ports_bound"] = len(want)

    def measure_flows(self) -> None:
        m = self.result.metrics
        fc = count_flows(self.target, self.env)
        m["of_flows"] = fc.flows
        m["of_flows_aggregate"] = aggregate_flows(self.target, self.env)
        self.result.by_table = fc.by_table
        select = {"op": "select", "table": "Logical_Flow", "where": [],
                  "columns": ["pipeline", "table_id", "external_ids"]}
        out = run(["ovsdb-client", "transact", self.env["OVN_SB_DB"], json.dumps(["OVN_Southbound", select])],
                  env=self.env, timeout=300)
        rows = json.loads(out)[0]["rows"]
        m["sb_logical_flows"] = len(rows)
        # OpenFlow table of each logical stage (OVN 23.03: ingress from table 8, egress from 42;
        # a switch's and a router's stage of one number share the table)
        stages: dict[int, set[str]] = {t: {n} for t, n in OVN_FIXED_TABLES.items()}
        for row in rows:
            ext = dict(row["external_ids"][1]) if row["external_ids"][0] == "map" else {}
            base = 8 if row["pipeline"] == "ingress" else 42
            stages.setdefault(base + int(row["table_id"]), set()).add(ext.get("stage-name", "?"))
        names = {t: "/".join(sorted(n)) for t, n in stages.items()}
        self.result.notes.append("tables: " + ", ".join(f"{t}={names.get(t, '?')}" for t in fc.by_table))
        for name in ("northd", "sb", "controller", "vswitchd"):
            m[f"{name}_rss_kib"], m[f"{name}_rss_peak_kib"] = rss_kib(self.pid(name))

    # incremental operations
    def port_add(self, k: int, timeout: float) -> OpSample:
        it = self.h.intent_add_port(self.topo, k)
        port = it["port"]
        name = self.add_vifs([None], "inc")[0]
        ofport = self.ofport(name)
        self.settle()
        assert self.monitor is not None
        mark = self.monitor.mark()
        t0 = time.monotonic()
        self.nbctl(self.h.op_add_port(self.topo, k))
        t_call = time.monotonic()
        self.vsctl("set", "Interface", name, "external_ids:iface-id=" + port["id"],
                   f'external_ids:attached-mac="{port["mac_address"]}"', "external_ids:iface-status=active")
        t_flows = self.monitor.wait_for(mark, [f"in_port={ofport}", f"dl_src={port['mac_address']}",
                                               f"dl_dst={port['mac_address']}"], timeout)
        deadline = time.monotonic() + timeout
        while self.nbctl(["get", "Logical_Switch_Port", port["id"], "up"]).strip() != "true":
            if time.monotonic() > deadline:
                raise BenchError(f"OVN port {port['id']} did not come up")
            time.sleep(0.005)
        t_up = time.monotonic()
        self.nbctl(["sync"], wait="hv")  # settled before the next operation
        return OpSample(k, (t_flows - t0) * 1000, (t_up - t0) * 1000, (t_call - t0) * 1000)

    def rule_add(self, k: int, timeout: float) -> OpSample:
        it = self.h.intent_add_acl(self.topo, k)
        return self.timed_change(k, self.h.op_add_acl(self.topo, k),
                                 [f"tp_dst={it['rule']['port_range_min']}"], "", timeout)

    def timed_change(self, k: int, txn: Sequence[str], match: Sequence[str], action: str,
                     timeout: float) -> OpSample:
        """t0; the NB transaction `txn` with `ovn-nbctl --wait=hv` (its return is the ack); done
        when a flow whose match has every token of `match` and whose actions contain `action`
        appears on br-int."""
        self.settle()
        assert self.monitor is not None
        mark = self.monitor.mark()
        t0 = time.monotonic()
        self.nbctl(txn, wait="hv")
        t_wait = time.monotonic()
        t_flows = self.monitor.wait_for_flow(mark, match, action, timeout)
        return OpSample(k, (t_flows - t0) * 1000, (t_wait - t0) * 1000, (t_wait - t0) * 1000)


# --- Neutrino -------------------------------------------------------------------------------------
class PolicyObserver:
    """A second reader of host1's policy stream (the one its agent follows): when each change left
    the server, i.e. the API commit + compile + publish part of a change's latency."""

    def __init__(self, base_url: str, token: str, since: int) -> None:
        self.events: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._client = httpx.Client(base_url=base_url, headers={"X-Auth-Token": token}, timeout=None)
        self._closed = False
        self._thread = threading.Thread(target=self._read, args=(since,), daemon=True)
        self._thread.start()

    def _read(self, since: int) -> None:
        url = f"/v2.0/neutrino/chassis/{HOST}/policy"
        with contextlib.suppress(Exception), self._client.stream("GET", url, params={"since": since}) as r:
            for line in r.iter_lines():
                now = time.monotonic()
                if self._closed:
                    return
                if '"change"' not in line[:40]:
                    continue
                key = json.loads(line).get("key", "")
                with self._cond:
                    self.events.append((now, key))
                    self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def wait_for(self, since: int, suffix: str, timeout: float) -> float | None:
        """When the first change of a key ending in `suffix` arrived after event `since`."""
        deadline = time.monotonic() + timeout
        i = since
        with self._cond:
            while True:
                while i < len(self.events):
                    t, key = self.events[i]
                    if key.endswith(suffix):
                        return t
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def stop(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self._client.close()


class NeutrinoSide:
    """`neutrino lab up --hosts 1`, the intent through the REST API, one VIF per port."""

    def __init__(self, harness: ModuleType, tenants: int, ports: int, links_up: bool = False) -> None:
        self.h = harness
        self.T, self.P = tenants, ports
        self.links_up = links_up
        self.topo: dict[str, Any] = harness.gen_topology(tenants, ports)
        self.state_dir: Path | None = None
        self.lab_up = False
        self.client: httpx.Client | None = None
        self.host: Any = None  # neutrino.lab.host.LabHost
        self.server_pid: int | None = None
        self.monitor: FlowMonitor | None = None
        self.observer: PolicyObserver | None = None
        self.result = SideResult("neutrino")
        self.net_ids: dict[str, str] = {}  # topology network id -> Neutrino id
        self.subnet_ids: dict[str, str] = {}
        self.sg_ids: dict[str, str] = {}
        self.port_ids: dict[str, str] = {}  # topology port id -> Neutrino id
        self._vif = 0

    def _cli(self, *args: str, timeout: float = 300) -> str:
        assert self.state_dir is not None
        return run([sys.executable, "-m", "neutrino.cli.main", "lab", *args, "--state-dir",
                    str(self.state_dir)], timeout=timeout)

    def start(self) -> None:
        from neutrino.credentials import password_auth
        from neutrino.lab.lab import Lab

        self.state_dir = Path(tempfile.mkdtemp(prefix="dataplane-neutrino."))
        self.lab_up = True  # from here on, `lab down` on the way out
        self._cli("up", *self.lab_up_args())
        info = json.loads((self.state_dir / "server.json").read_text())
        self.server_pid = info.get("pid")
        password = Path(info["password_file"]).read_text().strip()
        self.base_url = info["url"]
        self.client = httpx.Client(base_url=self.base_url, timeout=300.0)
        r = self.client.post("/v3/auth/tokens", json=password_auth(password))
        r.raise_for_status()
        self.token = r.headers["X-Subject-Token"]
        self.client.headers["X-Auth-Token"] = self.token
        self.host = Lab.load(self.state_dir).host(HOST)

    def lab_up_args(self) -> list[str]:
        return ["--hosts", "1"]

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
        if self.observer is not None:
            self.observer.stop()
            self.observer = None
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.state_dir is not None:
            from neutrino.lab.lab import Lab

            agent_log = Lab.load(self.state_dir).host(HOST).agent_log if self.lab_up else Path()
            keep = os.environ.get("NEUTRINO_BENCH_AGENT_LOG")
            if keep and agent_log.exists():  # for profiling: where the agent's time went
                shutil.copyfile(agent_log, keep)
            if self.lab_up:
                try:
                    self._cli("down", timeout=180)
                except BenchError as error:
                    log(f"neutrino lab down failed: {error}")
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None

    @property
    def agent_pid(self) -> int | None:
        pid: int | None = self.host.agent_pid()
        return pid

    @property
    def vswitchd_pid(self) -> int | None:
        pid: int | None = self.host.ovs.pid("ovs-vswitchd")
        return pid

    @property
    def target(self) -> str:
        return f"unix:{self.host.ovs.mgmt_socket('br-int')}"

    @property
    def env(self) -> dict[str, str]:
        env: dict[str, str] = self.host.ovs.env
        return env

    def api(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        assert self.client is not None
        r = self.client.request(method, path, json=body)
        if r.status_code >= 400:
            raise BenchError(f"{method} {path} -> {r.status_code}: {r.text[:500]}")
        data: dict[str, Any] = r.json() if r.content else {}
        return data

    def vsctl(self, *args: str, timeout: int = 300) -> str:
        out: str = self.host.ovs.vsctl(*args, timeout=timeout)
        return out

    def cpu(self) -> dict[str, float]:
        return {"server": cpu_seconds(self.server_pid), "agent": cpu_seconds(self.agent_pid),
                "vswitchd": cpu_seconds(self.vswitchd_pid)}

    def start_watching(self) -> None:
        self.monitor = FlowMonitor(self.target, self.env)
        self.observer = PolicyObserver(self.base_url, self.token, int(self.revision()["revision"]))

    def anatomy(self) -> None:
        """In-process timings of what one change costs at this size (the server and the agent
        redo these for every change): load_intent (the whole intent from the lab's SQLite),
        compile_chassis(host1), render_chassis (every flow of host1), and the agent's diff."""
        from neutrino.agent.flows import FlowTable
        from neutrino.compiler import compile_chassis, load_intent
        from neutrino.db.engine import Database
        from neutrino.pipeline.render import render_chassis
        from neutrino.policy.model import NetworkPolicy, PortPolicy, RouterPolicy

        assert self.state_dir is not None
        m = self.result.metrics
        found = list((self.state_dir / "server").glob("*.sqlite"))
        if not found:
            self.result.notes.append("anatomy: no SQLite database found")
            return
        db = Database(f"sqlite:///{found[0]}")
        try:
            times: dict[str, list[float]] = {"load_intent": [], "compile_chassis": [], "render_chassis": [],
                                             "agent_diff": []}
            for _ in range(3):
                t0 = time.perf_counter()
                with db.read() as conn:
                    intent = load_intent(conn)
                t1 = time.perf_counter()
                docs = compile_chassis(intent, HOST)
                t2 = time.perf_counter()
                ports = [d.id for d in docs.values() if isinstance(d, PortPolicy)]
                zoned = [d.id for d in docs.values() if isinstance(d, NetworkPolicy | RouterPolicy)]
                flows = render_chassis(docs, {p: i + 1 for i, p in enumerate(ports)}, {},
                                       {n: i + 1 for i, n in enumerate(zoned)}, chassis=HOST)
                t3 = time.perf_counter()
                table = FlowTable(no_switch_ofctl())
                table.apply(flows)  # the first apply goes through replace-flows (not timed)
                t4 = time.perf_counter()
                table.apply(flows[:-1])  # then a diff of everything against everything, one removal
                times["agent_diff"].append(time.perf_counter() - t4)
                times["load_intent"].append(t1 - t0)
                times["compile_chassis"].append(t2 - t1)
                times["render_chassis"].append(t3 - t2)
            for name, xs in times.items():
                m[f"anatomy_{name}_ms"] = statistics.median(xs) * 1000
            m["anatomy_policy_items"] = len(docs)
            m["anatomy_rendered_flows"] = len(flows)
        finally:
            db.dispose()

    def port_body(self, tenant: dict[str, Any], net: dict[str, Any], port: dict[str, Any]) -> dict[str, Any]:
        return {"network_id": self.net_ids[net["id"]], "name": port["name"],
                "project_id": tenant["project_id"], "mac_address": port["mac_address"],
                "fixed_ips": [{"subnet_id": self.subnet_ids[net["subnet"]["id"]],
                               "ip_address": port["ip_address"]}],
                "security_groups": [self.sg_ids[tenant["security_group"]["id"]]],
                "binding:host_id": HOST, "device_owner": "compute:nova", "device_id": str(uuid.uuid4())}

    def create_intent(self) -> None:
        for tenant in self.topo["tenants"]:
            proj = tenant["project_id"]
            sg = tenant["security_group"]
            made = self.api("POST", "/v2.0/security-groups", {"security_group": {
                "name": sg["name"], "project_id": proj}})["security_group"]
            sg_id = self.sg_ids[sg["id"]] = made["id"]
            auto = sorted((r["direction"], r["ethertype"]) for r in made.get("security_group_rules", []))
            rules = []
            for rule in sg["rules"]:
                if rule["direction"] == "egress" and (rule["direction"], rule["ethertype"]) in auto:
                    continue  # created with the group, as neutron does
                body = {k: v for k, v in rule.items() if k != "id"}
                if rule.get("remote_group_id"):
                    body["remote_group_id"] = sg_id
                rules.append({**body, "security_group_id": sg_id, "project_id": proj})
            self.api("POST", "/v2.0/security-group-rules", {"security_group_rules": rules})
            nets = self.api("POST", "/v2.0/networks", {"networks": [
                {"name": n["name"], "project_id": proj} for n in tenant["networks"]]})["networks"]
            for n, made_net in zip(tenant["networks"], nets, strict=True):
                self.net_ids[n["id"]] = made_net["id"]
            subnets = self.api("POST", "/v2.0/subnets", {"subnets": [
                {"network_id": self.net_ids[n["id"]], "project_id": proj, "ip_version": 4,
                 "cidr": n["subnet"]["cidr"], "gateway_ip": n["subnet"]["gateway_ip"],
                 "enable_dhcp": False, "name": n["name"] + "-subnet"}
                for n in tenant["networks"]]})["subnets"]
            for n, made_sub in zip(tenant["networks"], subnets, strict=True):
                self.subnet_ids[n["subnet"]["id"]] = made_sub["id"]
            for net in tenant["networks"]:
                made_ports = self.api("POST", "/v2.0/ports", {"ports": [
                    self.port_body(tenant, net, p) for p in net["ports"]]})["ports"]
                for p, made_port in zip(net["ports"], made_ports, strict=True):
                    self.port_ids[p["id"]] = made_port["id"]

    def plug(self, vifs: Sequence[tuple[str | None, str]], prefix: str) -> list[str]:
        """One OVS internal port per (port id or None, MAC), set up with --vif-links up; their
        names."""
        names = []
        for c in range(0, len(vifs), VSCTL_BATCH):
            args: list[str] = []
            for port_id, mac in vifs[c:c + VSCTL_BATCH]:
                name = f"{prefix}{self._vif}"
                self._vif += 1
                names.append(name)
                args += ["--", "add-port", "br-int", name, "--", "set", "Interface", name, "type=internal"]
                if port_id:
                    args += vif_ids(port_id, mac)
            self.vsctl(*args)
            if self.links_up:
                run(["ip", "-n", self.host.namespace, "-batch", "-"],
                    input="".join(f"link set {n} up\n" for n in names[c:c + VSCTL_BATCH]))
        return names

    def settle(self) -> None:
        settle_switch(self.target, self.env)

    def spare_vif(self) -> str:
        return self.plug([(None, "fa:16:3e:ff:ff:fe")], "ns")[0]

    def bound_ports(self) -> int:
        """How many VIFs have their classify flow on br-int (in_port=<ofport>, which sets the
        network's key in metadata)."""
        out = run(["ovs-ofctl", "-O", "OpenFlow15", "--no-names", "--no-stats", "dump-flows",
                   self.target, "table=0"], env=self.env, timeout=120)
        return sum(1 for line in out.splitlines() if "in_port=" in line and "->metadata" in line)

    def revision(self) -> dict[str, Any]:
        return self.api("GET", "/v2.0/neutrino/revision")

    def wait_realised(self, timeout: float) -> None:
        """Until the compiler has caught up with the newest write and the agent has realised it."""
        deadline = time.monotonic() + timeout
        while True:
            rev = self.revision()
            if rev["revision"] >= rev["outbox_revision"] and \
                    rev.get("chassis", {}).get(HOST, -1) >= rev["revision"]:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"agent did not realise the newest revision: {rev}")
            time.sleep(0.1)

    def build(self) -> None:
        m = self.result.metrics
        cpu0 = self.cpu()
        t0 = time.monotonic()
        self.create_intent()
        m["api_build_s"] = time.monotonic() - t0
        t1 = time.monotonic()
        ports = all_ports(self.topo)
        self.plug([(self.port_ids[p["id"]], p["mac_address"]) for _t, _n, p in ports], "nv")
        m["bind_ovs_ifaces_s"] = time.monotonic() - t1
        want = set(self.port_ids.values())
        deadline = time.monotonic() + 1200
        while not self.links_up:  # ports stay DOWN while their link is: wait for their flows
            if self.bound_ports() >= len(want):
                break
            if time.monotonic() > deadline or self.agent_pid is None:
                raise BenchError(f"not every Neutrino port got its flows (see {self.host.agent_log})")
            time.sleep(0.5)
        while self.links_up:
            listed = self.api("GET", "/v2.0/ports?fields=id&fields=status&binding:host_id=" + HOST)["ports"]
            active = sum(1 for p in listed if p["id"] in want and p["status"] == "ACTIVE")
            if active >= len(want):
                break
            if time.monotonic() > deadline or self.agent_pid is None:
                raise BenchError(f"only {active} of {len(want)} Neutrino ports ACTIVE "
                                 f"(agent {'running' if self.agent_pid else 'NOT running'}; "
                                 f"see {self.host.agent_log})")
            time.sleep(0.2)
        m["all_ports_active_s"] = time.monotonic() - t0
        m["all_ports_active_after_plug_s"] = time.monotonic() - t1
        self.wait_realised(300)
        m["settled_s"] = time.monotonic() - t0
        cpu1 = self.cpu()
        for name in cpu0:
            m[f"{name}_cpu_to_settled_s"] = cpu1[name] - cpu0[name]
        m["ports_bound"] = len(want)

    def measure_flows(self) -> None:
        from neutrino.pipeline.flows import cookie_for
        from neutrino.pipeline.stages import STAGES_BY_TABLE

        m = self.result.metrics
        fc = count_flows(self.target, self.env)
        m["of_flows"] = fc.flows
        m["of_flows_aggregate"] = aggregate_flows(self.target, self.env)
        self.result.by_table = fc.by_table
        self.result.notes.append("tables: " + ", ".join(f"{t}={STAGES_BY_TABLE[t].name}"
                                                        for t in fc.by_table if t in STAGES_BY_TABLE))
        kinds: Counter[str] = Counter()
        cookies = {cookie_for(kind, item): kind for kind, item in self.policy_items()}
        cookies[cookie_for("pipeline", "static")] = "static"
        for cookie, n in fc.by_cookie.items():
            kinds[cookies.get(cookie, "other")] += n
        m["of_flows_by_item_kind"] = dict(kinds)
        for name, pid in (("server", self.server_pid), ("agent", self.agent_pid),
                          ("vswitchd", self.vswitchd_pid)):
            m[f"{name}_rss_kib"], m[f"{name}_rss_peak_kib"] = rss_kib(pid)

    def policy_items(self) -> Iterator[tuple[str, str]]:
        """(kind, id) of the policy items the intent made (their flows' cookies)."""
        yield from (("port", p) for p in self.port_ids.values())
        yield from (("network", n) for n in self.net_ids.values())
        yield from (("security_group", g) for g in self.sg_ids.values())
        yield from (("address_set", g) for g in self.sg_ids.values())

    def port_add(self, k: int, timeout: float) -> OpSample:
        it = self.h.intent_add_port(self.topo, k)
        port, net, tenant = it["port"], it["network"], it["tenant"]
        name = self.plug([(None, port["mac_address"])], "nb")[0]
        ofport = int(self.host.ovs.ofport(name))
        self.settle()
        assert self.monitor is not None and self.observer is not None
        mark, seen = self.monitor.mark(), self.observer.mark()
        t0 = time.monotonic()
        made = self.api("POST", "/v2.0/ports", {"port": self.port_body(tenant, net, port)})["port"]
        t_call = time.monotonic()
        self.vsctl("set", "Interface", name, *vif_ids(made["id"], port["mac_address"]))
        t_flows = self.monitor.wait_for(mark, [f"in_port={ofport}", f"dl_src={port['mac_address']}",
                                               f"dl_dst={port['mac_address']}"], timeout)
        t_pub = self.observer.wait_for(seen, f"/port/{made['id']}", 5.0)
        deadline = time.monotonic() + timeout
        t_active: float | None = None
        while self.links_up:  # a port whose link is down stays DOWN
            if self.api("GET", f"/v2.0/ports/{made['id']}?fields=status")["port"]["status"] == "ACTIVE":
                t_active = time.monotonic()
                break
            if time.monotonic() > deadline:
                raise BenchError(f"Neutrino port {made['id']} did not become ACTIVE")
            time.sleep(0.005)
        self.wait_realised(60)  # settled before the next operation
        return OpSample(k, (t_flows - t0) * 1000, None if t_active is None else (t_active - t0) * 1000,
                        (t_call - t0) * 1000, None if t_pub is None else (t_pub - t0) * 1000)

    def rule_add(self, k: int, timeout: float) -> OpSample:
        it = self.h.intent_add_acl(self.topo, k)
        rule, tenant = it["rule"], it["tenant"]
        body = {key: v for key, v in rule.items() if key != "id"}
        body |= {"security_group_id": self.sg_ids[tenant["security_group"]["id"]],
                 "project_id": tenant["project_id"]}
        return self.timed_change(k, "POST", "/v2.0/security-group-rules", {"security_group_rule": body},
                                 [f"tp_dst={rule['port_range_min']}"], "",
                                 f"/security_group/{body['security_group_id']}", timeout)

    def timed_change(self, k: int, method: str, path: str, body: Any, match: Sequence[str], action: str,
                     item: str, timeout: float) -> OpSample:
        """t0; the API call; done when a flow whose match has every token of `match` and whose
        actions contain `action` appears on br-int; also when the change of policy item `item`
        (`/<kind>/<id>`) reached host1's policy stream. Settled (realised) before it returns."""
        self.settle()
        assert self.monitor is not None and self.observer is not None
        mark, seen = self.monitor.mark(), self.observer.mark()
        t0 = time.monotonic()
        self.api(method, path, body)
        t_call = time.monotonic()
        t_flows = self.monitor.wait_for_flow(mark, match, action, timeout)
        t_pub = self.observer.wait_for(seen, item, 5.0)
        self.wait_realised(60)
        return OpSample(k, (t_flows - t0) * 1000, None, (t_call - t0) * 1000,
                        None if t_pub is None else (t_pub - t0) * 1000)


def settle_switch(target: str, env: dict[str, str]) -> None:
    """Before an operation starts: until ovs-vswitchd answers an OpenFlow echo (from its main
    loop, so any reconfiguration in progress is over), twice, 0.2 s apart."""
    for _ in range(2):
        run(["ovs-ofctl", "-O", "OpenFlow15", "probe", target], env=env, timeout=120)
        time.sleep(0.2)


def measure_floors(side: OvnSide | NeutrinoSide, reps: int = 5) -> None:
    """What the switch alone costs at this size, the same on both sides (information): one
    `ovs-ofctl --no-names --bundle add-flows` of one flow (process start, connection, bundle
    commit; the floor of any change installed the way the issue asks), and one ovs-vswitchd
    reconfiguration after an OVSDB change of a spare interface (`ovs-vsctl set` waits for it; a
    VIF plug is such a change, and OpenFlow requests wait behind it)."""
    m = side.result.metrics
    side.settle()
    ofctl, reconfigure = [], []
    for i in range(reps):
        t0 = time.monotonic()
        run(["ovs-ofctl", "-O", "OpenFlow15", "--no-names", "--bundle", "add-flows", side.target, "-"],
            env=side.env, input=f"add table=200,priority={i + 1},reg0=0xbe5c,actions=drop\n")
        ofctl.append((time.monotonic() - t0) * 1000)
    run(["ovs-ofctl", "-O", "OpenFlow15", "del-flows", side.target, "table=200"], env=side.env)
    spare = side.spare_vif()
    side.settle()
    for i in range(max(3, reps // 2)):
        t0 = time.monotonic()
        side.vsctl("set", "Interface", spare, f"external_ids:bench-seq={i}")
        reconfigure.append((time.monotonic() - t0) * 1000)
        time.sleep(0.2)
    m["floor_ofctl_bundle_ms"] = statistics.median(ofctl)
    m["floor_reconfigure_ms"] = statistics.median(reconfigure)


def no_switch_ofctl() -> Any:
    """An agent Ofctl that talks to no switch: times the agent's flow diff alone."""
    from neutrino.agent.flows import Ofctl

    class NoSwitch(Ofctl):
        def run(self, command: str, *args: str, options: Sequence[str] = (), input: str | None = None) -> str:
            return ""

    return NoSwitch("")


def vif_ids(port_id: str, mac: str) -> list[str]:
    """external_ids of a VIF plugged os-vif style."""
    return ["external_ids:iface-id=" + port_id, f'external_ids:attached-mac="{mac}"',
            "external_ids:iface-status=active",
            "external_ids:vm-uuid=" + str(uuid.uuid5(uuid.NAMESPACE_OID, port_id))]


# --- one size, both systems -----------------------------------------------------------------------
def measure_side(side: OvnSide | NeutrinoSide, reps: int, op_timeout: float, prefix: str,
                 ops: Sequence[OpSpec] = DATAPLANE_OPS) -> SideResult:
    """Start `side`, build its topology, count its flows and the switch's floors, then time each
    operation of `ops` `reps` times (`side.<key>(k, timeout)`, k = 0..reps-1)."""
    res = side.result
    name = res.system
    res.metrics["loadavg_start"] = loadavg()
    log(f"{prefix} {name}: starting")
    t0 = time.monotonic()
    side.start()
    res.metrics["start_s"] = time.monotonic() - t0
    log(f"{prefix} {name}: building the topology")
    side.build()
    log(f"{prefix} {name}: counting flows")
    side.measure_flows()
    side.anatomy()
    log(f"{prefix} {name}: the switch's own costs")
    measure_floors(side, reps)
    side.start_watching()
    busy0 = host_busy()
    for spec in ops:
        operation = getattr(side, spec.key)
        samples = res.samples(spec.key)
        cpu0 = side.cpu()
        for r in range(reps):
            log(f"{prefix} {name}: {spec.label} {r + 1}/{reps}")
            samples.append(operation(r, op_timeout))
            time.sleep(0.2)
        cpu1 = side.cpu()
        for proc in cpu0:
            res.metrics[f"{proc}_cpu_per_{spec.key}_ms"] = (cpu1[proc] - cpu0[proc]) * 1000 / max(reps, 1)
    busy1 = host_busy()
    wall = busy1[1] - busy0[1]
    res.metrics["host_cpu_busy_during_ops"] = (busy1[0] - busy0[0]) / wall if wall > 0 else None
    res.metrics["of_flows_after_ops"] = aggregate_flows(side.target, side.env)
    res.metrics["loadavg_end"] = loadavg()
    return res


def emit_side(prefix: str, res: SideResult) -> None:
    p = f"{prefix}.{res.system}"
    for key, value in res.metrics.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                emit(p, f"{key}.{sub}", v, "flows")
            continue
        unit = ("s" if key.endswith("_s") else "ms" if key.endswith("_ms") else "KiB" if "_kib" in key
                else "" if isinstance(value, str) else "count")
        if value is not None:
            emit(p, key, value, unit)
    for label, samples in res.ops.items():
        for attr, what in (("flows_ms", "to_flows"), ("ack_ms", "to_ack"), ("call_ms", "api_call"),
                           ("published_ms", "to_stream")):
            s = summarize(samples, attr)
            if s:
                for stat in ("median", "min", "max"):
                    emit(p, f"{label}_{what}_{stat}_ms", s[stat], "ms")
    for table, n in res.by_table.items():
        emit(p, f"of_flows_table_{table}", n, "flows")


def ratio(theirs: float | None, ours: float | None) -> float | None:
    if theirs is None or ours is None or ours <= 0:
        return None
    return theirs / ours


def compare(size: str, ports: int, ovn: SideResult | None, neu: SideResult | None,
            ops: Sequence[OpSpec] = DATAPLANE_OPS) -> dict[str, Any]:
    out: dict[str, Any] = {"size": size, "ports": ports}
    rows = []

    def med(res: SideResult | None, key: str, attr: str = "flows_ms") -> float | None:
        if res is None:
            return None
        s = summarize(res.ops.get(key, []), attr)
        return s["median"] if s else None

    def flows(res: SideResult | None) -> float | None:
        return None if res is None else float(res.metrics.get("of_flows", 0)) or None

    targets: list[tuple[str, str, str, float, Any]] = [
        (spec.key, spec.row, "ms", TARGET_LATENCY_RATIO, lambda r, k=spec.key: med(r, k)) for spec in ops]
    targets.append(("of_flows", "OpenFlow flows on br-int", "flows", TARGET_FLOW_RATIO, flows))
    for key, label, unit, target, get in targets:
        n, o = get(neu), get(ovn)
        rt = ratio(o, n)
        met = None if rt is None else rt >= target
        rows.append({"key": key, "label": label, "unit": unit, "neutrino": n, "ovn": o, "ratio": rt,
                     "target_ratio": target, "met": met})
    information: list[tuple[str, str, str, Any]] = [
        (spec.ack_key, spec.ack_row, "ms", lambda r, k=spec.key: med(r, k, "ack_ms")) for spec in ops]
    information += [
        ("floor_ofctl", "floor: one ovs-ofctl --bundle, idle switch", "ms",
         lambda r: r.metrics.get("floor_ofctl_bundle_ms") if r else None),
        ("floor_reconfigure", "floor: vswitchd reconfiguration (VIF plug)", "ms",
         lambda r: r.metrics.get("floor_reconfigure_ms") if r else None),
    ]
    for key, label, unit, get in information:
        n, o = get(neu), get(ovn)
        rows.append({"key": key, "label": label, "unit": unit, "neutrino": n, "ovn": o,
                     "ratio": ratio(o, n), "target_ratio": None, "met": None})
    out["rows"] = rows
    return out


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "flows":
        return f"{v:,.0f}"
    return f"{v:,.1f} ms" if v < 1000 else f"{v / 1000:,.2f} s"


def print_table(cmp: dict[str, Any], ovn: SideResult | None, neu: SideResult | None,
                ops: Sequence[OpSpec] = DATAPLANE_OPS, title: str | None = None) -> None:
    if title is None:
        title = (f"data plane, {cmp['size']} ({cmp['ports']} ports, all bound on one host); "
                 f"excluded: {EXCLUDED}")
    lines = ["", "=" * 100, title,
             "ratio = OVN / Neutrino (how many times fewer flows / faster); targets: latency ratio >= 5, "
             "flow ratio >= 3",
             f"{'metric':<48}{'neutrino':>14}{'ovn':>14}{'ratio':>10}  target"]
    for row in cmp["rows"]:
        rt = f"{row['ratio']:.2f}x" if row["ratio"] else "n/a"
        if row["target_ratio"] is None:
            verdict = "(information)"
        elif row["met"] is None:
            verdict = "n/a"
        else:
            verdict = f"{'MET' if row['met'] else 'MISSED'} (>= {row['target_ratio']:.0f}x)"
        lines.append(f"{row['label']:<48}{fmt(row['neutrino'], row['unit']):>14}"
                     f"{fmt(row['ovn'], row['unit']):>14}{rt:>10}  {verdict}")
    for res in (neu, ovn):
        if res is None:
            continue
        for spec in ops:
            samples = res.ops.get(spec.key, [])
            s = summarize(samples)
            if s:
                parts = []
                ack = spec.ack_names[0 if res.system == "neutrino" else 1]
                for attr, what in (("call_ms", "API call returned"), ("published_ms", "on the policy stream"),
                                   ("ack_ms", ack)):
                    x = summarize(samples, attr)
                    if x and not (attr == "ack_ms" and x == summarize(samples, "call_ms")):
                        parts.append(f"{what} {x['median']:.1f}")
                lines.append(f"  {res.system} {spec.label} -> flows: median {s['median']:.1f} ms, "
                             f"min {s['min']:.1f}, max {s['max']:.1f} (n={s['n']}); medians: "
                             + ", ".join(parts))
        m = res.metrics
        if "anatomy_load_intent_ms" in m:
            lines.append("  neutrino, in-process at this size: load_intent "
                         f"{m['anatomy_load_intent_ms']:.1f} ms, "
                         f"compile_chassis {m['anatomy_compile_chassis_ms']:.1f} ms, render_chassis "
                         f"{m['anatomy_render_chassis_ms']:.1f} ms, agent flow diff "
                         f"{m['anatomy_agent_diff_ms']:.1f} ms ({m['anatomy_rendered_flows']} flows, "
                         f"{m['anatomy_policy_items']} policy items): what a from-scratch compile and "
                         "render cost; a change costs only what it touches on both sides")
        lines.append(f"  {res.system} flows by table: "
                     + ", ".join(f"{t}:{n}" for t, n in res.by_table.items()))
        for key, what in (("of_flows_by_item_kind", "policy item"),
                          ("of_flows_by_datapath_kind", "datapath")):
            if key in m:
                lines.append(f"  {res.system} flows by {what}: " + ", ".join(
                    f"{k}={v}" for k, v in sorted(m[key].items())))
        busy = 100 * (m.get("host_cpu_busy_during_ops") or 0)
        lines.append(f"  {res.system} load average start/end: {m.get('loadavg_start')} / "
                     f"{m.get('loadavg_end')}; host CPU busy during the operations: {busy:.0f} %")
    lines.append("=" * 100)
    print("\n".join(f"# {line}".rstrip() for line in lines), flush=True)


# --- prerequisites --------------------------------------------------------------------------------
OVN_BINARIES = ("ovn-northd", "ovn-controller", "ovn-nbctl", "ovn-sbctl", "ovn-appctl")
OVS_BINARIES = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovsdb-client",
                "unshare", "ip")


def ensure_ovn(install: bool) -> None:
    if all(shutil.which(b) for b in OVN_BINARIES):
        return
    if not install:
        raise BenchError("OVN is not installed: apt-get install ovn-central ovn-host (its services "
                         "need not run), or pass --install-ovn")
    policy = Path("/usr/sbin/policy-rc.d")
    created = False
    if not policy.exists():  # no ovn-northd / ovsdb-server services started behind our back
        policy.write_text("#!/bin/sh\n# temporary, written by neutrino bench/dataplane.py\nexit 101\n")
        policy.chmod(0o755)
        created = True
    try:
        log("installing ovn-central ovn-host (apt-get)")
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        try:
            run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "ovn-central", "ovn-host"],
                env=env, timeout=900)
        except BenchError:
            run(["apt-get", "update", "-qq"], env=env, timeout=900)
            run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "ovn-central", "ovn-host"],
                env=env, timeout=900)
    finally:
        if created:
            policy.unlink(missing_ok=True)


def versions() -> dict[str, str]:
    out = {}
    for name, argv in (("ovn", ["ovn-northd", "--version"]), ("ovs", ["ovs-vswitchd", "--version"])):
        with contextlib.suppress(BenchError, OSError):
            out[name] = run(argv).splitlines()[0]
    with contextlib.suppress(BenchError, OSError):
        out["neutrino_git"] = run(["git", "-C", str(Path(__file__).resolve().parent.parent), "rev-parse",
                                   "--short", "HEAD"]).strip()
    return out


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        t, _, p = item.strip().partition("x")
        if not t.isdigit() or not p.isdigit() or int(t) < 1 or int(p) < 1:
            raise argparse.ArgumentTypeError(f"bad size {item!r}: write <tenants>x<ports per network>")
        sizes.append((int(t), int(p)))
    return sizes


def parse_args(argv: Sequence[str] | None, doc: str | None) -> argparse.Namespace:
    """The options every data-plane bench takes (this one and bench/routing.py)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes("10x10,50x20"),
                    help="comma list of <tenants>x<ports per network> (ports = 2*T*P); default "
                         "10x10,50x20 (200 and 2,000 ports), the harness's sizes")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of each latency (default 5)")
    ap.add_argument("--quick", action="store_true", help="development: one size 3x4 (24 ports), 2 reps")
    ap.add_argument("--systems", default="ovn,neutrino", help="which sides to run (default ovn,neutrino)")
    ap.add_argument("--op-timeout", type=float, default=120.0, help="seconds one operation may take")
    ap.add_argument("--harness", type=Path, default=HARNESS_DIR, help="the shared OVN harness directory")
    ap.add_argument("--install-ovn", action="store_true",
                    help="apt-get install ovn-central ovn-host if missing (service starts blocked)")
    ap.add_argument("--output", default=None, help="write every number as JSON to this file")
    ap.add_argument("--vif-links", choices=("down", "up"), default="down",
                    help="leave the VIFs' taps down (the harness's condition, default) or set them "
                         "up (as a VM's tap is), on both sides alike; with 2,000 taps up "
                         "ovs-vswitchd needs ~0.7 s per reconfiguration, against ~0.12 s down")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.reps = [(3, 4)], min(args.reps, 2)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not set(args.systems) <= {"ovn", "neutrino"} or not args.systems:
        ap.error("--systems: ovn and/or neutrino")
    return args


SideFactory = Callable[..., "OvnSide | NeutrinoSide"]  # (harness, tenants, ports, links_up=...)


def run_sizes(args: argparse.Namespace, sides: dict[str, SideFactory], ops: Sequence[OpSpec],
              report: dict[str, Any], name: str = "dataplane",
              title: Callable[[dict[str, Any]], str] | None = None) -> int:
    """Every size of `args`, each system of `args.systems` (`sides[system]` makes its side) one
    after the other: measure, print `name value unit` lines and the table, and write `report`
    (the sizes added) to --output. `title(cmp)` gives the table's title line."""

    # SIGTERM (e.g. from timeout) unwinds like Ctrl-C, through every finally below
    def _term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    if os.geteuid() != 0:
        log(f"bench/{name}.py needs root (network namespaces, Open vSwitch)")
        return 1
    missing = [b for b in OVS_BINARIES if not shutil.which(b)]
    if missing:
        log(f"missing {', '.join(missing)} (make deps installs Open vSwitch)")
        return 1
    try:
        if "ovn" in args.systems:
            ensure_ovn(args.install_ovn)
        harness = load_harness(args.harness)
    except BenchError as error:
        log(f"FAILED: {error}")
        return 1
    report = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "versions": versions(),
              "cpus": os.cpu_count(), "loadavg_start": loadavg(), "reps": args.reps,
              "vif_links": args.vif_links, **report, "sizes": []}
    rc = 0
    t_start = time.monotonic()
    try:
        for tenants, per_net in args.sizes:
            size, nports = f"{tenants}x{per_net}", 2 * tenants * per_net
            prefix = f"{name}.t{tenants}p{per_net}"
            results: dict[str, SideResult] = {}
            for system in args.systems:
                side = sides[system](harness, tenants, per_net, links_up=args.vif_links == "up")
                try:
                    results[system] = measure_side(side, args.reps, args.op_timeout, prefix, ops)
                except (BenchError, httpx.HTTPError, OSError) as error:
                    log(f"{prefix} {system} FAILED: {error}")
                    side.result.notes.append(f"FAILED: {error}")
                    results[system] = side.result
                    rc = 1
                finally:
                    side.stop()
                emit_side(prefix, results[system])
            cmp = compare(size, nports, results.get("ovn"), results.get("neutrino"), ops)
            print_table(cmp, results.get("ovn"), results.get("neutrino"), ops,
                        None if title is None else title(cmp))
            report["sizes"].append({**cmp, "results": {k: v.as_dict() for k, v in results.items()}})
    except KeyboardInterrupt:
        log("interrupted; everything started was stopped")
        rc = 130
    finally:
        report["loadavg_end"] = loadavg()
        report["wall_s"] = time.monotonic() - t_start
        if args.output:
            Path(args.output).write_text(json.dumps(report, indent=1, default=str))
            log(f"wrote {args.output}")
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, __doc__)
    report = {
        "excluded": EXCLUDED,
        "method": {
            "flows": "ovs-ofctl -O OpenFlow15 dump-flows br-int, flow lines (reply headers excluded)",
            "port_add": "API call issued (VIF plugged right after it returns) -> flows with "
                        "in_port=<ofport>, dl_src=<mac>, dl_dst=<mac> seen by ovs-ofctl monitor",
            "rule_add": "API call issued -> a flow with tp_dst=<port> seen by ovs-ofctl monitor",
            "port_ack": "Neutrino: port ACTIVE (reported after its flows are installed); OVN: LSP up=true",
            "rule_ack": "OVN: ovn-nbctl --wait=hv returned"}}
    return run_sizes(args, {"ovn": OvnSide, "neutrino": NeutrinoSide}, DATAPLANE_OPS, report)


if __name__ == "__main__":
    sys.exit(main())
