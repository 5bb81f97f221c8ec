"""`make bench`: the Neutron API workload against a fresh Neutrino server, compared with the real
neutron-server 29.0.0 measured on this machine (/work/shared/bench/neutron).

What it does:
  1. starts `neutrino server --state-dir <tmp> --port <free> --auth noauth` (or `--auth keystone`
     with a generated admin password and a token from POST /v3/auth/tokens) as a subprocess,
     waits for `GET /` and stops it by its pid at the end (SIGTERM, then SIGKILL);
  2. workload: 1 network + a /16 subnet; 20 warm-up ports; 1,000 ports created sequentially;
     GET /v2.0/ports and GET /v2.0/ports?network_id= with 1,000 ports; the 1,000 ports deleted
     by 8 clients; 1,000 ports created by 8 concurrent clients (deleted again); 1 security group
     + 20 rules + GET of the group;
  3. per phase: rate, p50/p99 latency and the server's CPU ms per request (utime+stime of the
     server pid from /proc/<pid>/stat before and after the phase, divided by the requests);
  4. unless --no-peer-script, also runs the shared neutron_api_bench.py (the exact workload that
     was run against neutron-server) against a second fresh server, so both are measured by the
     same script. That script has no option to skip its router/floating-IP phase; it runs last,
     so it fails there (POST /v2.0/routers -> 404) after all its port, list and security-group
     metrics, cleans up and exits 1; this is reported, not treated as a failure.

Every metric is printed as one `name value unit` line on stdout (as the shared script does),
followed by a short summary with the ratios against neutron-server and the targets. Progress
goes to stderr. Clients are httpx with keep-alive, one client per thread.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

SHARED = Path("/work/shared/bench/neutron")
PEER_SCRIPT = SHARED / "neutron_api_bench.py"
NEUTRON_RESULTS = SHARED / "results"
NEUTRON_RUNS = ("neutron-29.0.0_p1t1_run1.txt", "neutron-29.0.0_p1t1_run2.txt")

# neutron-server 29.0.0 (1 uWSGI process x 1 thread, MariaDB), from the shared README/results;
# used when the result files cannot be read. Rates/latencies: the better of run 1 and run 2
# (so ratios are conservative); CPU: run 2 (the only run with CPU accounting).
NEUTRON_FALLBACK = {
    "port_create_seq_n1000_rate": 6.668,
    "port_create_seq_n1000_p50": 128.847,
    "port_create_seq_n1000_p99": 422.357,
    "port_create_seq_n1000_api_cpu_per_op": 138.950,
    "port_create_c8_n1000_rate": 5.893,
    "port_create_c8_n1000_p50": 1269.013,
    "port_create_c8_n1000_p99": 2416.191,
    "port_create_c8_n1000_api_cpu_per_op": 138.320,
    "port_delete_c8_n1000_after_seq_rate": 9.206,
    "port_delete_c8_n1000_after_seq_api_cpu_per_op": 86.310,
    "port_list_all_n1000_p50": 720.449,
    "port_list_all_n1000_api_cpu_per_op": 658.0,
    "port_list_net_n1000_p50": 743.434,
    "port_list_net_n1000_api_cpu_per_op": 658.0,
    "sg_create": 41.293,
    "sg_rule_create_x20_p50": 47.645,
    "sg_rule_create_x20_p99": 166.713,
    "sg_show": 45.358,
    "sg_scenario_api_cpu_per_op": 40.0,
    "server_rss_end": 227.895,
}
HIGHER_IS_BETTER = ("_rate",)

TARGET_SEQ_RATE = 300.0  # ports/s, one worker, SQLite
TARGET_LIST_MS = 40.0  # GET /v2.0/ports with 1,000 ports, p50
TARGET_RATIO = 50.0  # x neutron-server's throughput

TICK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def percentile(sorted_vals: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (same definition as the shared script)."""
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * pct / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


# --- /proc ----------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float | None:
    """utime+stime of one process (children not included)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class DbProcesses:
    """Which processes are the database: a pid and its children (PostgreSQL's postmaster and
    its backends; the CPU of children that exited is in the parent's cutime/cstime), or every
    process with a given name."""

    pid: int | None = None
    comm: str | None = None

    def cpu_seconds(self) -> float:
        total = 0.0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    raw = f.read()
            except OSError:
                continue
            name = raw[raw.find("(") + 1 : raw.rfind(")")]
            fields = raw.rsplit(")", 1)[1].split()
            ppid = int(fields[1])
            if self.pid is not None:
                if self.pid not in (int(entry.name), ppid):
                    continue
            elif name != self.comm:
                continue
            ticks = int(fields[11]) + int(fields[12])
            if self.pid is not None and int(entry.name) == self.pid:
                ticks += int(fields[13]) + int(fields[14])  # children it has reaped
            total += ticks / TICK
        return total


def rss_mib(pid: int) -> tuple[float | None, float | None]:
    """(VmRSS, VmHWM) in MiB."""
    rss = hwm = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024.0
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return rss, hwm


def involuntary_switches(pid: int) -> int | None:
    """How often the kernel preempted the process (a sign of other load on the box)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("nonvoluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def host_busy() -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


# --- the server under test ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def neutrino_command() -> list[str]:
    """The `neutrino` entry point of this venv (so the pid we get is the server's, not uv's)."""
    script = Path(sys.executable).with_name("neutrino")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "neutrino.cli.main"]


class ServerProcess:
    def __init__(self, auth: str, database: str | None, log_level: str) -> None:
        self.state_dir = Path(tempfile.mkdtemp(prefix="neutrino-bench-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(16) if auth == "keystone" else None
        argv = [*neutrino_command(), "server", "--state-dir", str(self.state_dir),
                "--port", str(self.port), "--auth", auth, "--log-level", log_level]
        if database:
            argv += ["--database", database]
        env = dict(os.environ)
        if self.password:
            argv += ["--admin-password", self.password]
        self.logfile = self.state_dir / "server.log"
        with self.logfile.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 90.0) -> float:
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/", timeout=2.0).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not answer GET / within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def token(self) -> str:
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"}, "password": self.password}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
        }}
        r = httpx.post(self.url + "/v3/auth/tokens", json=body, timeout=30.0)
        if r.status_code != 201 or "x-subject-token" not in r.headers:
            raise RuntimeError(f"POST /v3/auth/tokens -> {r.status_code}: {r.text[:300]}")
        return r.headers["x-subject-token"]

    def stop(self, keep: bool = False) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if keep:
            log(f"kept state dir {self.state_dir}")
        else:
            shutil.rmtree(self.state_dir, ignore_errors=True)


# --- the client -----------------------------------------------------------------------------------
class BenchError(Exception):
    pass


class Api:
    """Keep-alive httpx clients, one per thread."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        self.base = base_url.rstrip("/") + "/v2.0"
        self.headers = {"Accept": "application/json", **headers}
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def client(self) -> httpx.Client:
        c = getattr(self._local, "client", None)
        if c is None:
            c = httpx.Client(base_url=self.base, headers=self.headers, timeout=120.0)
            self._local.client = c
            with self._lock:
                self._clients.append(c)
        return c

    def call(self, method: str, path: str, body: Any = None,
             ok: Iterable[int] = (200, 201, 204)) -> tuple[Any, float, int]:
        """(parsed JSON or None, elapsed ms, response bytes)."""
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        t0 = time.perf_counter()
        r = self.client().request(method, path, content=content, headers=headers)
        raw = r.content
        ms = (time.perf_counter() - t0) * 1000.0
        if r.status_code not in ok:
            raise BenchError(f"{method} {path} -> {r.status_code}: {raw[:300]!r}")
        return (json.loads(raw) if raw else None), ms, len(raw)

    def close(self) -> None:
        for c in self._clients:
            c.close()


@dataclass
class Bench:
    api: Api
    server_pid: int
    db: DbProcesses | None
    metrics: list[tuple[str, Any, str]] = field(default_factory=list)
    pool: ThreadPoolExecutor | None = None  # the concurrent clients, kept for the whole run

    def emit(self, name: str, value: Any, unit: str) -> None:
        self.metrics.append((name, value, unit))
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{name} {text} {unit}".rstrip(), flush=True)

    def value(self, name: str) -> Any:
        for n, v, _ in reversed(self.metrics):
            if n == name:
                return v
        return None

    def emit_latencies(self, prefix: str, lats: Sequence[float]) -> None:
        s = sorted(lats)
        self.emit(f"{prefix}_p50", percentile(s, 50), "ms")
        self.emit(f"{prefix}_p99", percentile(s, 99), "ms")
        self.emit(f"{prefix}_mean", statistics.fmean(s) if s else float("nan"), "ms")
        self.emit(f"{prefix}_max", s[-1] if s else float("nan"), "ms")

    # --- phases ------------------------------------------------------------------------------
    def phase(self, name: str, nops: int = 0) -> _Phase:
        """`with b.phase(name) as ph: ...; ph.nops = requests_done`."""
        return _Phase(self, name, nops)

    def run_batch(self, fn: Callable[[int], float], n: int, concurrency: int
                  ) -> tuple[list[float], list[str], float]:
        lats: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def one(i: int) -> None:
            try:
                ms = fn(i)
            except Exception as exc:  # count and go on, as the shared script does
                with lock:
                    errors.append(str(exc))
                return
            with lock:
                lats.append(ms)

        if concurrency > 1:
            if self.pool is None:  # one concurrency per run: threads (and their clients) are reused
                self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="client")
            t0 = time.perf_counter()
            list(self.pool.map(one, range(n)))
            wall = time.perf_counter() - t0
        else:
            self.api.client()
            t0 = time.perf_counter()
            for i in range(n):
                one(i)
            wall = time.perf_counter() - t0
        if errors:
            log(f"  {len(errors)} errors, first: {errors[0]}")
        return lats, errors, wall

    def create_ports(self, network_id: str, n: int, concurrency: int, label: str
                     ) -> tuple[list[str], list[float], list[str], float]:
        ids: list[str] = []
        lock = threading.Lock()

        def mk(i: int) -> float:
            js, ms, _ = self.api.call("POST", "/ports", {"port": {
                "network_id": network_id, "name": f"bench-{label}-{i}"}})
            with lock:
                ids.append(js["port"]["id"])
            return ms

        lats, errors, wall = self.run_batch(mk, n, concurrency)
        return ids, lats, errors, wall

    def delete_ports(self, ids: list[str], concurrency: int) -> tuple[list[float], list[str], float]:
        return self.run_batch(lambda i: self.api.call("DELETE", f"/ports/{ids[i]}")[1],
                              len(ids), concurrency)

    def run(self, n: int, concurrency: int, list_repeats: int, sg_rules: int, warmup: int) -> None:
        self.rss("start")
        t_all = time.perf_counter()
        js, ms, _ = self.api.call("POST", "/networks", {"network": {"name": "bench-net"}})
        net_id = js["network"]["id"]
        self.emit("setup_network_create", ms, "ms")
        js, ms, _ = self.api.call("POST", "/subnets", {"subnet": {
            "name": "bench-sub", "network_id": net_id, "ip_version": 4, "cidr": "10.96.0.0/16"}})
        self.emit("setup_subnet_create", ms, "ms")

        if warmup:
            log(f"warm-up: {warmup} ports")
            ids, _, errs, _ = self.create_ports(net_id, warmup, 1, "warm")
            if errs:
                raise BenchError(f"warm-up failed: {errs[0]}")
            self.delete_ports(ids, 1)

        for conc in (1, concurrency):
            mode = "seq" if conc == 1 else f"c{conc}"
            name = f"port_create_{mode}_n{n}"
            log(f"{name}: {n} ports, {conc} client(s)")
            with self.phase(name) as ph:
                ids, lats, errs, wall = self.create_ports(net_id, n, conc, mode)
                ph.nops = len(lats)
            self.emit(f"{name}_rate", len(lats) / wall, "ports/s")
            self.emit(f"{name}_wall", wall, "s")
            self.emit_latencies(name, lats)
            self.emit(f"{name}_errors", len(errs), "count")
            if conc == 1:
                self.list_ports(net_id, n, list_repeats)
            dname = f"port_delete_c{concurrency}_n{n}_after_{mode}"
            log(f"{dname}: {len(ids)} ports, {concurrency} clients")
            with self.phase(dname) as ph:
                dl, derr, dwall = self.delete_ports(ids, concurrency)
                ph.nops = len(dl)
            self.emit(f"{dname}_rate", len(dl) / dwall, "ports/s")
            self.emit(f"{dname}_p50", percentile(sorted(dl), 50), "ms")
            self.emit(f"{dname}_p99", percentile(sorted(dl), 99), "ms")
            self.emit(f"{dname}_errors", len(derr), "count")

        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
        self.sg_scenario(sg_rules)
        self.rss("end")
        self.emit("bench_total", time.perf_counter() - t_all, "s")

    def list_ports(self, net_id: str, n: int, repeats: int) -> None:
        for label, path in (("all", "/ports"), ("net", f"/ports?network_id={net_id}")):
            base = f"port_list_{label}_n{n}"
            log(f"{base}: {repeats} x GET /v2.0{path.split('=')[0]}")
            lats: list[float] = []
            count = nbytes = 0
            with self.phase(base, repeats):
                for _ in range(repeats):
                    js, ms, nbytes = self.api.call("GET", path)
                    lats.append(ms)
                    # the network's DHCP port (device_owner network:dhcp) is listed too
                    count = sum(1 for p in js["ports"]
                                if p.get("device_owner", "") != "network:dhcp")
            s = sorted(lats)
            self.emit(f"{base}_p50", percentile(s, 50), "ms")
            self.emit(f"{base}_p99", percentile(s, 99), "ms")
            self.emit(f"{base}_min", s[0], "ms")
            self.emit(f"{base}_max", s[-1], "ms")
            self.emit(f"{base}_count", count, "ports")
            self.emit(f"{base}_bytes", nbytes, "bytes")
            if count != n:
                raise BenchError(f"GET /v2.0{path} returned {count} ports, expected {n}")

    def sg_scenario(self, rules: int) -> None:
        log(f"sg_scenario: 1 security group + {rules} rules + GET")
        t0 = time.perf_counter()
        with self.phase("sg_scenario", 2 + rules):
            js, ms, _ = self.api.call("POST", "/security-groups", {"security_group": {
                "name": "bench-sg", "description": "bench"}})
            sg_id = js["security_group"]["id"]
            self.emit("sg_create", ms, "ms")
            lats = []
            for i in range(rules):
                _, ms, _ = self.api.call("POST", "/security-group-rules", {"security_group_rule": {
                    "security_group_id": sg_id, "direction": "ingress", "ethertype": "IPv4",
                    "protocol": "tcp", "port_range_min": 10000 + i, "port_range_max": 10000 + i,
                    "remote_ip_prefix": "0.0.0.0/0"}})
                lats.append(ms)
            js, ms, _ = self.api.call("GET", f"/security-groups/{sg_id}")
        self.emit_latencies(f"sg_rule_create_x{rules}", lats)
        self.emit("sg_show", ms, "ms")
        self.emit("sg_show_rule_count", len(js["security_group"]["security_group_rules"]), "rules")
        self.emit("sg_scenario_total", (time.perf_counter() - t0) * 1000.0, "ms")

    def rss(self, label: str) -> None:
        rss, hwm = rss_mib(self.server_pid)
        if rss is not None:
            self.emit(f"server_rss_{label}", rss, "MiB")
        if label == "end" and hwm is not None:
            self.emit("server_rss_peak_hwm", hwm, "MiB")


class _Phase:
    """Server CPU (and DB CPU, client CPU, host load) over one measured phase."""

    def __init__(self, bench: Bench, name: str, nops: int) -> None:
        self.b, self.name, self.nops = bench, name, nops

    def __enter__(self) -> _Phase:
        self.server = cpu_seconds(self.b.server_pid)
        self.preempted = involuntary_switches(self.b.server_pid)
        self.db = self.b.db.cpu_seconds() if self.b.db else None
        self.client = time.process_time()
        self.host = host_busy()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            return
        wall = time.perf_counter() - self.t0
        nops = self.nops
        server = cpu_seconds(self.b.server_pid)
        if not nops:
            return
        name = self.name
        if server is not None and self.server is not None:
            used = server - self.server
            self.b.emit(f"{name}_api_cpu_per_op", used * 1000.0 / nops, "ms")
            self.b.emit(f"{name}_api_cpu_util", 100.0 * used / wall, "%")
        preempted = involuntary_switches(self.b.server_pid)
        if preempted is not None and self.preempted is not None:
            self.b.emit(f"{name}_server_preempted_per_op", (preempted - self.preempted) / nops, "")
        if self.db is not None and self.b.db:
            db = self.b.db.cpu_seconds() - self.db
            self.b.emit(f"{name}_db_cpu_per_op", db * 1000.0 / nops, "ms")
        self.b.emit(f"{name}_client_cpu_per_op",
                    (time.process_time() - self.client) * 1000.0 / nops, "ms")
        h0, h1 = self.host, host_busy()
        if h0 and h1 and h1[1] > h0[1]:
            self.b.emit(f"{name}_host_cpu_busy", 100.0 * (h1[0] - h0[0]) / (h1[1] - h0[1]), "%")


# --- neutron-server's numbers ---------------------------------------------------------------------
def read_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return out


def neutron_reference() -> tuple[dict[str, float], str]:
    """Best of run 1 and run 2 per metric (higher rate, lower time; CPU from run 2)."""
    runs = []
    for name in NEUTRON_RUNS:
        path = NEUTRON_RESULTS / name
        if path.exists():
            runs.append(read_metrics(path.read_text()))
    if not runs:
        return dict(NEUTRON_FALLBACK), "built-in copy of the shared results"
    best: dict[str, float] = {}
    for run in runs:
        for key, value in run.items():
            if key not in best:
                best[key] = value
            elif key.endswith(HIGHER_IS_BETTER):
                best[key] = max(best[key], value)
            else:
                best[key] = min(best[key], value)
    return best, f"{NEUTRON_RESULTS}/{{{','.join(NEUTRON_RUNS)}}}"


# --- the shared script ----------------------------------------------------------------------------
def run_peer_script(args: argparse.Namespace) -> tuple[dict[str, float], int]:
    """Run the shared script against a fresh server; its `name value unit` lines come back
    prefixed with `peer_`."""
    server = ServerProcess(args.auth, args.peer_database or args.database, args.log_level)
    try:
        server.wait_ready()
        argv = [sys.executable, str(PEER_SCRIPT), "--base-url", server.url,
                "--rss-pid", str(server.pid), "--ext-physnet", "public"]
        if server.password:
            argv += ["--header", f"X-Auth-Token: {server.token()}"]
        argv += args.peer_args
        log(f"peer script: {' '.join(argv)}")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.peer_timeout)
        except subprocess.TimeoutExpired:
            log(f"peer script: no result within {args.peer_timeout:.0f} s")
            return {}, 1
        log(f"peer script: exit {proc.returncode} after {time.perf_counter() - t0:.1f} s")
        for line in proc.stderr.splitlines():
            log(f"  peer: {line}")
        metrics = read_metrics(proc.stdout)
        for line in proc.stdout.splitlines():
            print(f"peer_{line}", flush=True)
        return metrics, proc.returncode
    finally:
        server.stop(keep=args.keep_state)


# --- profiling with py-spy ------------------------------------------------------------------------
def py_spy_command() -> list[str] | None:
    found = shutil.which("py-spy")
    if found:
        return [found]
    if shutil.which("uvx"):
        return ["uvx", "py-spy"]
    return None


class PySpy:
    """`py-spy record` attached to the server for the whole workload (raw collapsed stacks)."""

    def __init__(self, pid: int, output: str, rate: int) -> None:
        cmd = py_spy_command()
        if cmd is None:
            raise RuntimeError("--py-spy: neither py-spy nor uvx found")
        self.output = output
        argv = [*cmd, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                "--output", output, "--nonblocking"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(2.0)  # uvx may have to fetch py-spy; let it attach before the clock starts
        if self.proc.poll() is not None:
            output = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
            raise RuntimeError(f"py-spy exited: {output}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


PROFILE_VIEWS = (("all requests", None), ("port create (POST /v2.0/ports)", "create_item"),
                 ("port list (GET /v2.0/ports)", "list_items"),
                 ("port delete (DELETE /v2.0/ports/ID)", "delete_item"))
# self time by the package of the leaf frame (C calls count for the Python frame calling them)
PROFILE_PACKAGES = (("sqlalchemy+sqlite3", ("sqlalchemy/",)), ("neutrino", ("neutrino/",)),
                    ("netaddr", ("netaddr/",)),
                    ("http (uvicorn, starlette, fastapi, asyncio)",
                     ("uvicorn/", "starlette/", "fastapi/", "asyncio/", "anyio/")),
                    ("json", ("json/",)))
# leaf frames where py-spy sees the thread "active" although it mostly waits: the socket write
# that wakes the client (on a busy 2-core box the server is then often preempted) and the loop
OFF_CPU_LEAVES = ("RequestResponseCycle.send (uvicorn/", "Runner.run (asyncio/")


def _frame_name(frame: str) -> str:
    return frame.partition(" (")[0].rsplit(".", 1)[-1]


def summarise_profile(path: str, top: int = 12) -> str:
    """Self/inclusive sample shares per function and endpoint, from py-spy's raw output.

    Samples whose leaf is the socket write or the event loop are counted apart ("waiting"):
    py-spy samples wall time, so a server preempted by other load shows up there."""
    stacks: list[tuple[list[str], int]] = []
    with open(path) as f:
        for line in f:
            stack, _, samples = line.rstrip("\n").rpartition(" ")
            if stack and samples.isdigit():
                stacks.append((stack.split(";"), int(samples)))

    def key(frame: str) -> str:  # "func (path/file.py:123)" -> "func (path/file.py)"
        name, _, where = frame.partition(" (")
        return f"{name} ({where.rsplit(':', 1)[0]})" if where else name

    out: list[str] = []
    for label, marker in PROFILE_VIEWS:
        chosen = [(st, c) for st, c in stacks if marker is None or any(
            _frame_name(fr) == marker for fr in st)]
        waiting = sum(c for st, c in chosen if st[-1].startswith(OFF_CPU_LEAVES))
        chosen = [(st, c) for st, c in chosen if not st[-1].startswith(OFF_CPU_LEAVES)]
        total = sum(c for _, c in chosen)
        if not total:
            continue
        incl: dict[str, int] = {}
        own: dict[str, int] = {}
        groups: dict[str, int] = {}
        for frames, count in chosen:
            for k in {key(fr) for fr in frames}:
                incl[k] = incl.get(k, 0) + count
            leaf = key(frames[-1])
            own[leaf] = own.get(leaf, 0) + count
            package = next((name for name, patterns in PROFILE_PACKAGES
                            if any(pat in frames[-1] for pat in patterns)), "other")
            groups[package] = groups.get(package, 0) + count
        out.append(f"--- {label}: {total} samples on CPU (+{waiting} in socket write / event loop)")
        out.append("  self by package: " + ", ".join(
            f"{g} {100.0 * n / total:.0f}%" for g, n in sorted(groups.items(), key=lambda x: -x[1])))
        out.append("  self:")
        for k, n in sorted(own.items(), key=lambda x: -x[1])[:top]:
            out.append(f"    {100.0 * n / total:5.1f}%  {k}")
        out.append("  inclusive, neutrino functions:")
        mine = [(k, n) for k, n in incl.items() if "neutrino/" in k and "cli/main.py" not in k]
        for k, n in sorted(mine, key=lambda x: -x[1])[:top]:
            out.append(f"    {100.0 * n / total:5.1f}%  {k}")
    return "\n".join(out)


# --- summary --------------------------------------------------------------------------------------
def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        text = f"{v:,.0f}"
    elif abs(v) >= 10:
        text = f"{v:.1f}"
    else:
        text = f"{v:.2f}"
    return f"{text} {unit}".rstrip()


def ratio(ours: float | None, theirs: float | None, higher_better: bool) -> float | None:
    if not ours or not theirs:
        return None
    return ours / theirs if higher_better else theirs / ours


def summary(b: Bench, n: int, conc: int, ref: dict[str, float], ref_source: str,
            database: str) -> None:
    rows = [
        # (label, our metric, neutron metric, unit, higher is better)
        (f"port create, sequential, N={n}", f"port_create_seq_n{n}_rate",
         "port_create_seq_n1000_rate", "ports/s", True),
        ("  p50 latency", f"port_create_seq_n{n}_p50", "port_create_seq_n1000_p50", "ms", False),
        ("  p99 latency", f"port_create_seq_n{n}_p99", "port_create_seq_n1000_p99", "ms", False),
        ("  server CPU per port", f"port_create_seq_n{n}_api_cpu_per_op",
         "port_create_seq_n1000_api_cpu_per_op", "ms", False),
        ("  = ports/s per fully used core", f"port_create_seq_n{n}_cpu_capacity",
         "port_create_seq_n1000_cpu_capacity", "ports/s", True),
        (f"port create, {conc} clients, N={n}", f"port_create_c{conc}_n{n}_rate",
         "port_create_c8_n1000_rate", "ports/s", True),
        ("  p50 latency", f"port_create_c{conc}_n{n}_p50", "port_create_c8_n1000_p50", "ms", False),
        ("  p99 latency", f"port_create_c{conc}_n{n}_p99", "port_create_c8_n1000_p99", "ms", False),
        ("  server CPU per port", f"port_create_c{conc}_n{n}_api_cpu_per_op",
         "port_create_c8_n1000_api_cpu_per_op", "ms", False),
        (f"port delete, {conc} clients", f"port_delete_c{conc}_n{n}_after_seq_rate",
         "port_delete_c8_n1000_after_seq_rate", "ports/s", True),
        ("  server CPU per port", f"port_delete_c{conc}_n{n}_after_seq_api_cpu_per_op",
         "port_delete_c8_n1000_after_seq_api_cpu_per_op", "ms", False),
        (f"GET /v2.0/ports ({n} ports), p50", f"port_list_all_n{n}_p50",
         "port_list_all_n1000_p50", "ms", False),
        ("  server CPU per list", f"port_list_all_n{n}_api_cpu_per_op",
         "port_list_all_n1000_api_cpu_per_op", "ms", False),
        ("GET /v2.0/ports?network_id=, p50", f"port_list_net_n{n}_p50",
         "port_list_net_n1000_p50", "ms", False),
        ("  server CPU per list", f"port_list_net_n{n}_api_cpu_per_op",
         "port_list_net_n1000_api_cpu_per_op", "ms", False),
        ("security group create", "sg_create", "sg_create", "ms", False),
        ("SG rule create x20, p50", "sg_rule_create_x20_p50", "sg_rule_create_x20_p50", "ms", False),
        ("SG show (22 rules)", "sg_show", "sg_show", "ms", False),
        ("  server CPU per SG request", "sg_scenario_api_cpu_per_op", "sg_scenario_api_cpu_per_op",
         "ms", False),
        ("server RSS at the end", "server_rss_end", "server_rss_end", "MiB", False),
    ]
    for mode in ("seq", f"c{conc}"):
        cpu = b.value(f"port_create_{mode}_n{n}_api_cpu_per_op")
        if cpu:
            b.emit(f"port_create_{mode}_n{n}_cpu_capacity", 1000.0 / cpu, "ports/s")
    for mode in ("seq", "c8"):
        cpu = ref.get(f"port_create_{mode}_n1000_api_cpu_per_op")
        if cpu:
            ref[f"port_create_{mode}_n1000_cpu_capacity"] = 1000.0 / cpu
    out = [
        "",
        "=" * 96,
        "Neutrino vs neutron-server 29.0.0 (1 uWSGI process x 1 thread, MariaDB; best of its runs 1-2,",
        f"CPU from run 2; source: {ref_source})",
        "ratio = how many times better Neutrino is (rates: ours/theirs; times: theirs/ours)",
        "-" * 96,
        f"{'metric':<40}{'neutrino':>16}{'neutron':>16}{'ratio':>12}",
    ]
    for label, ours_key, ref_key, unit, hib in rows:
        ours, theirs = b.value(ours_key), ref.get(ref_key)
        r = ratio(ours, theirs, hib)
        out.append(f"{label:<40}{fmt(ours, unit):>16}{fmt(theirs, unit):>16}"
                   f"{(f'{r:,.1f}x' if r else 'n/a'):>12}")
    out.append("-" * 96)
    seq = b.value(f"port_create_seq_n{n}_rate")
    c8 = b.value(f"port_create_c{conc}_n{n}_rate")
    lst = b.value(f"port_list_all_n{n}_p50")
    r_seq = ratio(seq, ref.get("port_create_seq_n1000_rate"), True)
    r_c8 = ratio(c8, ref.get("port_create_c8_n1000_rate"), True)
    out.append("targets:")
    out.append(_target(f">= {TARGET_SEQ_RATE:.0f} ports/s sequential (one worker, {database})",
                       seq is not None and seq >= TARGET_SEQ_RATE, fmt(seq, "ports/s")))
    out.append(_target(f"GET /v2.0/ports with {n} ports < {TARGET_LIST_MS:.0f} ms (p50)",
                       lst is not None and lst < TARGET_LIST_MS, fmt(lst, "ms")))
    out.append(_target(f">= {TARGET_RATIO:.0f}x neutron-server's throughput (sequential)",
                       r_seq is not None and r_seq >= TARGET_RATIO, f"{fmt(r_seq)}x"))
    out.append(_target(f">= {TARGET_RATIO:.0f}x neutron-server's throughput ({conc} clients)",
                       r_c8 is not None and r_c8 >= TARGET_RATIO, f"{fmt(r_c8)}x"))
    cap = b.value(f"port_create_seq_n{n}_cpu_capacity")
    r_cpu = ratio(b.value(f"port_create_seq_n{n}_api_cpu_per_op"),
                  ref.get("port_create_seq_n1000_api_cpu_per_op"), False)
    busy = b.value(f"port_create_seq_n{n}_host_cpu_busy")
    out.append("  noise-free view (server CPU per request; the box is shared, see *_host_cpu_busy):")
    out.append(_target(f"   server CPU allows >= {TARGET_SEQ_RATE:.0f} ports/s on one core",
                       cap is not None and cap >= TARGET_SEQ_RATE, fmt(cap, "ports/s")))
    out.append(_target(f"   >= {TARGET_RATIO:.0f}x less server CPU per port than neutron-server",
                       r_cpu is not None and r_cpu >= TARGET_RATIO, f"{fmt(r_cpu)}x"))
    if busy is not None:
        out.append(f"  host CPU busy during the sequential phase: {busy:.0f}% "
                   f"(server preempted {fmt(b.value(f'port_create_seq_n{n}_server_preempted_per_op'))}"
                   " times per request)")
    if n != 1000:
        out.append(f"(note: N={n}; neutron's numbers are for N=1000)")
    out.append("=" * 96)
    print_human(out)


def peer_summary(peer: dict[str, float], ref: dict[str, float]) -> None:
    out = ["", "=" * 96,
           "the shared neutron_api_bench.py against Neutrino (peer_* lines) vs against neutron-server",
           f"{'metric':<48}{'neutrino':>14}{'neutron':>14}{'ratio':>10}"]
    for key in PEER_KEYS:
        hib = key.endswith("_rate")
        r = ratio(peer.get(key), ref.get(key), hib)
        unit = "ports/s" if hib else "MiB" if "_rss_" in key else "ms"
        out.append(f"{key:<48}{fmt(peer.get(key), unit):>14}{fmt(ref.get(key), unit):>14}"
                   f"{(f'{r:,.1f}x' if r else 'n/a'):>10}")
    out.append("=" * 96)
    print_human(out)


PEER_KEYS = (
    "port_create_seq_n200_rate", "port_create_seq_n200_api_cpu_per_op",
    "port_create_c8_n200_rate", "port_create_c8_n200_api_cpu_per_op",
    "port_create_seq_n1000_rate", "port_create_seq_n1000_p50", "port_create_seq_n1000_p99",
    "port_create_seq_n1000_api_cpu_per_op",
    "port_create_c8_n1000_rate", "port_create_c8_n1000_p50", "port_create_c8_n1000_p99",
    "port_create_c8_n1000_api_cpu_per_op",
    "port_delete_c8_n1000_after_seq_rate", "port_delete_c8_n1000_after_seq_api_cpu_per_op",
    "port_list_all_n1000_p50", "port_list_all_n1000_api_cpu_per_op",
    "port_list_net_n1000_p50", "port_list_net_n1000_api_cpu_per_op",
    "sg_create", "sg_rule_create_x20_p50", "sg_show", "sg_scenario_api_cpu_per_op",
    "server_rss_end",
)


def print_human(lines: list[str]) -> None:
    """Human-readable lines start with '#' so that `name value unit` lines stay unambiguous."""
    print("\n".join(f"# {line}".rstrip() for line in lines), flush=True)


def _target(text: str, ok: bool, got: str) -> str:
    return f"  [{'MET ' if ok else 'MISS'}] {text:<62} got {got}"


# --- main -----------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--auth", choices=("noauth", "keystone"), default="noauth",
                   help="noauth (default), or keystone: start the server with a generated admin "
                        "password and send a token from POST /v3/auth/tokens")
    p.add_argument("--database", default=None,
                   help="SQLAlchemy URL passed to `neutrino server --database` (default: SQLite "
                        "under the temporary state dir); e.g. postgresql+psycopg://...")
    p.add_argument("--db-pid", type=int, default=None,
                   help="also report DB CPU per request: this pid and its children (PostgreSQL: "
                        "the postmaster). SQLite runs inside the server process")
    p.add_argument("--db-process", default=None, metavar="COMM",
                   help="DB CPU summed over every process with this name (the default for "
                        "PostgreSQL URLs without --db-pid: 'postgres')")
    p.add_argument("--ports", type=int, default=1000, help="ports per batch (default 1000)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--list-repeats", type=int, default=20)
    p.add_argument("--sg-rules", type=int, default=20)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--log-level", default="warning", help="server log level")
    p.add_argument("--peer-script", action=argparse.BooleanOptionalAction, default=True,
                   help=f"also run {PEER_SCRIPT} (the workload measured against neutron-server) "
                        "against a second fresh server; on by default when the script exists "
                        "(about 20-30 s)")
    p.add_argument("--peer-only", action="store_true", help="only run the shared script")
    p.add_argument("--peer-database", default=None,
                   help="--database for the peer-script server (default: --database; SQLite: a "
                        "fresh file)")
    p.add_argument("--peer-args", nargs=argparse.REMAINDER, default=[],
                   help="extra arguments for the shared script (must come last)")
    p.add_argument("--peer-timeout", type=float, default=900.0)
    p.add_argument("--py-spy", default=None, metavar="FILE",
                   help="record the server with py-spy (raw collapsed stacks to FILE) during the "
                        "workload and print the hotspots (py-spy or uvx needed)")
    p.add_argument("--py-spy-rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--json", default=None, help="also write the metrics to this file")
    p.add_argument("--keep-state", action="store_true", help="keep the server's temporary state dir")
    args = p.parse_args(argv)
    db: DbProcesses | None = None
    if args.db_pid:
        db = DbProcesses(pid=args.db_pid)
    elif args.db_process:
        db = DbProcesses(comm=args.db_process)
    elif args.database and args.database.startswith("postgres"):
        db = DbProcesses(comm="postgres")
        log("note: DB CPU is summed over every process named 'postgres' on this host (other "
            "clusters included); pass --db-pid <postmaster pid> to count only this database")

    ref, ref_source = neutron_reference()
    bench: Bench | None = None
    peer: dict[str, float] | None = None
    rc = 0
    if not args.peer_only:
        server = ServerProcess(args.auth, args.database, args.log_level)
        api: Api | None = None
        spy: PySpy | None = None
        try:
            startup = server.wait_ready()
            log(f"server pid {server.pid} on {server.url} (auth {args.auth}, database "
                f"{args.database or 'SQLite in ' + str(server.state_dir)}), ready in {startup:.1f} s")
            headers = {"X-Auth-Token": server.token()} if args.auth == "keystone" else {}
            api = Api(server.url, headers)
            bench = Bench(api, server.pid, db)
            bench.emit("server_startup", startup, "s")
            if args.py_spy:
                spy = PySpy(server.pid, args.py_spy, args.py_spy_rate)
            bench.run(args.ports, args.concurrency, args.list_repeats, args.sg_rules, args.warmup)
        except (BenchError, RuntimeError, httpx.HTTPError) as exc:
            log(f"FAILED: {exc}")
            if server.proc.poll() is not None:
                log(server.log_tail())
            rc = 1
        finally:
            if spy is not None:
                spy.stop()
            if api is not None:
                api.close()
            server.stop(keep=args.keep_state)
    if args.peer_script or args.peer_only:
        if not PEER_SCRIPT.exists():
            log(f"peer script {PEER_SCRIPT} not found: skipped")
            rc = 1 if args.peer_only else rc
        else:
            peer, peer_rc = run_peer_script(args)
            if peer_rc and "sg_show" in peer:
                log(f"peer script exit status {peer_rc}: expected while routers and floating IPs "
                    "do not exist (its router phase runs last, after every port/list/SG metric)")
            elif peer_rc:
                log(f"peer script failed (exit status {peer_rc}) before its router phase")
                rc = 1
    if bench is not None:
        database = "SQLite" if not args.database else args.database.split(":", 1)[0].split("+")[0]
        summary(bench, args.ports, args.concurrency, ref, ref_source, database)
    if peer:
        peer_summary(peer, ref)
    if args.py_spy and Path(args.py_spy).exists():
        print_human(["", f"server profile (py-spy, {args.py_spy}):",
                     *summarise_profile(args.py_spy).splitlines()])
    if args.json:
        data: dict[str, Any] = {"auth": args.auth, "database": args.database or "sqlite"}
        if bench is not None:
            data["metrics"] = [{"name": n, "value": v, "unit": u} for n, v, u in bench.metrics]
        if peer is not None:
            data["peer_metrics"] = peer
        Path(args.json).write_text(json.dumps(data, indent=1))
    return rc


if __name__ == "__main__":
    sys.exit(main())
