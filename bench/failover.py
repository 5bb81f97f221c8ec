"""`make bench` (gateway failover): how long SNAT traffic stops when the active gateway host of a
router fails, whether its return loses anything, and whether BFD stays quiet on an idle lab.

    uv run python bench/failover.py [--kills 5] [--idle SECONDS] [--output JSON]

1. `neutrino lab up --hosts 3 --gateways 2` in a private state directory: host1 (priority 2,
   the preferred gateway) and host2 (priority 1) are gateway hosts, host3 a compute host.
2. Through the REST API (admin): a network (10.74.0.0/24), router `failover-router` with its
   gateway on `public` and an interface on the network, a port; `neutrino lab boot` plugs
   instance `fa` into it on host3.  fa has no floating IP: its traffic to the external host is
   translated (SNAT) on the router's active gateway host, host1.
3. --kills rounds of one failure of each kind (vswitchd: ovs-vswitchd of host1 SIGKILLed;
   link: host1's underlay link cut), each measured by `neutrino.lab.failover.measure_failover`
   (fa pings the external host every 10 ms; host1 fails; the gap between replies; host1 is
   healed; the requests lost while the traffic returns to it).  Before each failure the bench
   waits (at most --load-wait seconds, default 180) until the 1-minute load average is below
   --max-load (default 1.5), so that other work on the machine does not pollute the numbers;
   the load is printed with each sample.
4. --idle seconds without any change (default 600; 0 skips it): the BFD flap count
   (`bfd_status:flap_count` of every Geneve tunnel of every host, read with `ovs-vsctl
   --db=unix:<run dir>/db.sock find interface type=geneve`) before and after; target 0 flaps.

Prints `name value unit` lines, lines for people (starting with `#`): each sample, the targets
(failover gap median < 150 ms and worst < 500 ms per kind at the shipped BFD interval, 0 packets
lost on return, 0 flaps when idle) with met/missed, and the peers' documented failover times
(not measured here); writes everything as JSON to --output.  Exit status 1 if something failed
(not for a missed target).  The lab is always torn down (`neutrino lab down`), also after an
error, Ctrl-C or SIGTERM, and the state directory removed.

Needs root and Open vSwitch (`make deps`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from labrun import BenchError, interrupt, load1, neutrino, wait_for_quiet
from output import emit, human, log

from neutrino.agent import BFD_INTERVAL
from neutrino.lab import netns
from neutrino.lab.cli import api_client
from neutrino.lab.errors import LabError
from neutrino.lab.failover import FailoverError, FailoverResult, measure_failover
from neutrino.lab.host import FailureMode
from neutrino.lab.state import LabState, lab_prefix

HOSTS, GATEWAYS = 3, 2
ACTIVE, STANDBY, COMPUTE = "host1", "host2", "host3"
INSTANCE = "fa"
CIDR = "10.74.0.0/24"
KINDS: tuple[FailureMode, ...] = ("vswitchd", "link")
TARGET_MEDIAN_MS = 150.0
TARGET_WORST_MS = 500.0
TARGET_RETURN_LOST = 0
TARGET_FLAPS = 0
# what the peers document (not measured here)
REFERENCES = (
    ("Neutron L3 HA routers (VRRP, keepalived)",
     "ha_vrrp_advert_int defaults to 2 s and a backup takes over after 3 missed advertisements "
     "(~6 s), then configures the router's addresses (neutron's l3 agent allows ~2 s): seconds"),
    ("OVN gateway chassis (BFD on the tunnels)",
     "ovn-controller enables BFD with Open vSwitch's defaults unless options:bfd-min-rx/-min-tx/"
     "-mult are set: min_rx 1000 ms x mult 3, ~3 s to detect a dead gateway chassis"),
)


# --- the lab and the world ------------------------------------------------------------------------

@dataclass
class World:
    state_dir: Path
    router_id: str = ""
    gateway_ip: str = ""
    external_ip: str = ""


def build_world(state_dir: Path) -> World:
    """The router with its gateway on `public`, a network behind it, instance fa on host3."""
    world = World(state_dir)
    with api_client(state_dir) as client:
        def call(method: str, path: str, body: dict[str, Any] | None = None,
                 **params: str) -> dict[str, Any]:
            response = client.request(method, path, json=body, params=params)
            if response.status_code >= 400:
                raise BenchError(f"{method} {path}: {response.status_code} {response.text[:300]}")
            data: dict[str, Any] = response.json()
            return data

        public = call("GET", "/v2.0/networks", name="public")["networks"]
        if not public:
            raise BenchError("the lab has no `public` network")
        net = call("POST", "/v2.0/networks", {"network": {"name": "failover-net"}})["network"]
        subnet = call("POST", "/v2.0/subnets", {"subnet": {
            "network_id": net["id"], "name": "failover-subnet", "ip_version": 4,
            "cidr": CIDR}})["subnet"]
        router = call("POST", "/v2.0/routers", {"router": {
            "name": "failover-router",
            "external_gateway_info": {"network_id": public[0]["id"]}}})["router"]
        call("PUT", f"/v2.0/routers/{router['id']}/add_router_interface",
             {"subnet_id": subnet["id"]})
        port = call("POST", "/v2.0/ports", {"port": {"network_id": net["id"],
                                                      "name": INSTANCE}})["port"]
        world.router_id = router["id"]
        world.gateway_ip = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    neutrino(state_dir, "boot", INSTANCE, "--host", COMPUTE, "--port", port["id"])
    state = LabState.load(state_dir)
    if state.external_address is None:
        raise BenchError("the lab has no external host")
    world.external_ip = state.external_address.split("/")[0]
    namespace = state.instances[INSTANCE].namespace
    deadline = time.monotonic() + 60
    while True:  # the instance reaches the external host through SNAT on host1
        done = netns.run_in(namespace, ["ping", "-n", "-q", "-c", "1", "-W", "1",
                                        world.external_ip], check=False, timeout=10)
        if done.returncode == 0:
            return world
        if time.monotonic() > deadline:
            raise BenchError(f"{INSTANCE} does not reach {world.external_ip} after 60 s")
        time.sleep(0.5)


def tunnels(state_dir: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(host, tunnel interface) -> its bfd_status and bfd settings (`bfd:<key>`), for every
    Geneve tunnel of every host."""
    state = LabState.load(state_dir)
    out: dict[tuple[str, str], dict[str, str]] = {}
    for host in state.hosts.values():
        socket = Path(host.run_dir) / "db.sock"
        done = subprocess.run(["ovs-vsctl", f"--db=unix:{socket}", "--format=json",
                               "--columns=name,bfd,bfd_status", "find", "interface",
                               "type=geneve"], capture_output=True, text=True, timeout=30,
                              check=False)
        if done.returncode != 0:
            raise BenchError(f"ovs-vsctl on {host.name}: {done.stderr.strip()}")
        table = json.loads(done.stdout)
        for name, bfd, status in table["data"]:
            values = dict(_ovs_map(status))
            values |= {f"bfd:{key}": value for key, value in _ovs_map(bfd)}
            out[(host.name, str(name))] = values
    return out


def _ovs_map(cell: Any) -> list[tuple[str, str]]:
    """An OVSDB JSON map cell (["map", [[k, v], ...]]) as pairs."""
    if isinstance(cell, list) and len(cell) == 2 and cell[0] == "map":
        return [(str(k), str(v)) for k, v in cell[1]]
    return []


def bfd_interval(state_dir: Path) -> int:
    """The BFD interval (bfd:min_tx, ms) the agents set on the tunnels (one value expected)."""
    values = {int(t["bfd:min_tx"]) for t in tunnels(state_dir).values() if "bfd:min_tx" in t}
    if len(values) != 1:
        raise BenchError(f"expected one BFD interval on the tunnels, found {sorted(values)}")
    return values.pop()


# --- measuring ------------------------------------------------------------------------------------

@dataclass
class Sample:
    kind: str
    round: int
    load: float  # 1-minute load average just before the failure
    waited_s: float  # waiting for the load to drop
    result: FailoverResult

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "round": self.round, "load1": self.load,
                "load_wait_s": self.waited_s, **self.result.as_dict()}


@dataclass
class Report:
    started: str
    command: str
    max_load: float
    load_wait: float
    bfd_interval_ms: int = 0
    samples: list[Sample] = field(default_factory=list)
    idle_s: float = 0.0
    idle_flaps: dict[str, int] = field(default_factory=dict)  # "host/tunnel" -> flaps
    idle_load: list[float] = field(default_factory=list)  # load at the start and the end
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"started": self.started, "command": self.command, "max_load": self.max_load,
                "load_wait_s": self.load_wait,
                "bfd_interval_ms": self.bfd_interval_ms,
                "bfd_interval_default_ms": BFD_INTERVAL,
                "samples": [s.as_dict() for s in self.samples], "idle_s": self.idle_s,
                "idle_flaps": self.idle_flaps, "idle_load1": self.idle_load,
                "summary": summary(self), "errors": self.errors}


def run_kills(state_dir: Path, world: World, kills: int, report: Report) -> None:
    """`kills` rounds of one failure of each kind.  A failure that does not recover in time is
    recorded as an error and the next one is tried (the host was healed); two in a row stop."""
    failed_in_a_row = 0
    for number in range(1, kills + 1):
        for kind in KINDS:
            load, waited = wait_for_quiet(report.max_load, report.load_wait)
            try:
                result = measure_failover(state_dir, INSTANCE, ACTIVE, kind,
                                          router_id=world.router_id, target=world.external_ip)
            except FailoverError as error:
                failed_in_a_row += 1
                report.errors.append(f"{kind} {number}: {error}")
                log(f"{kind} {number}/{kills} FAILED: {error}")
                human(f"{kind} {number}/{kills}: FAILED ({error}); load {load:.2f}")
                if failed_in_a_row >= 2:
                    raise BenchError("two failures in a row did not recover: stopping") from None
                continue
            failed_in_a_row = 0
            sample = Sample(kind, number, load, waited, result)
            report.samples.append(sample)
            prefix = f"failover.{kind}.{number}"
            out, back = result.failover, result.back
            emit(f"{prefix}.gap", round(out.gap_ms, 1), "ms")
            emit(f"{prefix}.lost", out.lost, "packets")
            emit(f"{prefix}.return_lost", back.lost, "packets")
            emit(f"{prefix}.return_gap", round(back.gap_ms, 1), "ms")
            emit(f"{prefix}.load1", round(load, 2), "load")
            human(f"{kind} {number}/{kills}: gap {out.gap_ms:.0f} ms, {out.lost} of "
                  f"{out.transmitted} lost; API: {STANDBY} active after "
                  f"{out.standby_active_s or 0:.1f} s; return: {back.lost} of "
                  f"{back.transmitted} lost, longest gap {back.gap_ms:.0f} ms, "
                  f"{ACTIVE} active again {back.seconds:.1f} s after the heal; load "
                  f"{load:.2f}" + (f" (waited {waited:.0f} s)" if waited >= 1 else ""))


def run_idle(state_dir: Path, seconds: float, report: Report) -> None:
    before = tunnels(state_dir)
    report.idle_load.append(load1())
    log(f"idle for {seconds:g} s ({len(before)} tunnels)")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(60.0, left))
        if left > 60:
            log(f"idle: {max(0.0, deadline - time.monotonic()):.0f} s left")
    after = tunnels(state_dir)
    report.idle_load.append(load1())
    report.idle_s = seconds
    for key, status in sorted(after.items()):
        if key not in before:
            raise BenchError(f"tunnel {key[1]} of {key[0]} appeared while idle")
        flaps = int(status.get("flap_count", 0)) - int(before[key].get("flap_count", 0))
        report.idle_flaps[f"{key[0]}/{key[1]}"] = flaps
        emit(f"idle.{key[0]}.{key[1]}.bfd_flaps", flaps, "count")
    if set(before) - set(after):
        raise BenchError(f"tunnels gone while idle: {sorted(set(before) - set(after))}")


# --- the summary ----------------------------------------------------------------------------------

def summary(report: Report) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS:
        outs = [s.result.failover for s in report.samples if s.kind == kind]
        backs = [s.result.back for s in report.samples if s.kind == kind]
        if not outs:
            continue
        gaps = [r.gap_ms for r in outs]
        out[kind] = {"n": len(outs), "gap_median_ms": statistics.median(gaps),
                     "gap_worst_ms": max(gaps), "gap_best_ms": min(gaps),
                     "lost_median": statistics.median(r.lost for r in outs),
                     "return_lost_total": sum(r.lost for r in backs),
                     "return_gap_worst_ms": max(r.gap_ms for r in backs),
                     "standby_active_median_s": statistics.median(
                         r.standby_active_s or 0.0 for r in outs),
                     "return_median_s": statistics.median(r.seconds for r in backs),
                     "load1_max": max(s.load for s in report.samples if s.kind == kind)}
    if report.idle_s:
        out["idle_flaps_total"] = sum(report.idle_flaps.values())
    return out


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_summary(report: Report) -> None:
    stats = summary(report)
    default = report.bfd_interval_ms == BFD_INTERVAL
    for kind in KINDS:
        if kind not in stats:
            continue
        s = stats[kind]
        emit(f"failover.{kind}.gap_median", round(s["gap_median_ms"], 1), "ms")
        emit(f"failover.{kind}.gap_worst", round(s["gap_worst_ms"], 1), "ms")
        emit(f"failover.{kind}.lost_median", s["lost_median"], "packets")
        emit(f"failover.{kind}.return_lost_total", s["return_lost_total"], "packets")
        emit(f"failover.{kind}.return_gap_worst", round(s["return_gap_worst_ms"], 1), "ms")
        emit(f"failover.{kind}.load1_max", round(s["load1_max"], 2), "load")
    emit("failover.bfd_interval", report.bfd_interval_ms, "ms")
    if "idle_flaps_total" in stats:
        emit("idle.bfd_flaps_total", stats["idle_flaps_total"], "count")
        emit("idle.seconds", report.idle_s, "s")

    human()
    human(f"Gateway failover (HA SNAT): {INSTANCE} on {COMPUTE} pings the external host every "
          f"10 ms through {ACTIVE}; BFD {report.bfd_interval_ms} ms x 3 on every tunnel"
          + (" (the shipped default)" if default else f" (the shipped default is {BFD_INTERVAL} ms)"))
    rows: list[tuple[str, ...]] = [("", *KINDS, "target", "")]
    if all(kind in stats for kind in KINDS):
        def cells(key: str, fmt: str) -> list[str]:
            return [fmt.format(stats[kind][key]) for kind in KINDS]

        medians = [stats[k]["gap_median_ms"] for k in KINDS]
        worsts = [stats[k]["gap_worst_ms"] for k in KINDS]
        lost = [stats[k]["return_lost_total"] for k in KINDS]
        rows += [
            ("samples", *cells("n", "{}"), "", ""),
            ("failover gap, median", *cells("gap_median_ms", "{:.0f} ms"),
             f"< {TARGET_MEDIAN_MS:.0f} ms", met(max(medians) < TARGET_MEDIAN_MS)),
            ("failover gap, worst", *cells("gap_worst_ms", "{:.0f} ms"),
             f"< {TARGET_WORST_MS:.0f} ms", met(max(worsts) < TARGET_WORST_MS)),
            ("requests lost in the failover, median", *cells("lost_median", "{:g}"), "", ""),
            ("API shows the standby active after, median", *cells("standby_active_median_s",
                                                                  "{:.1f} s"), "", ""),
            ("packets lost on return, total", *cells("return_lost_total", "{}"),
             str(TARGET_RETURN_LOST), met(max(lost) <= TARGET_RETURN_LOST)),
            ("longest gap on return, worst", *cells("return_gap_worst_ms", "{:.0f} ms"), "", ""),
            ("heal -> active again in the API, median", *cells("return_median_s", "{:.1f} s"),
             "", ""),
            ("1-minute load before a kill, max", *cells("load1_max", "{:.2f}"), "", ""),
        ]
    if "idle_flaps_total" in stats:
        flaps = stats["idle_flaps_total"]
        rows.append((f"BFD flaps in {report.idle_s:g} s idle, {len(report.idle_flaps)} tunnels",
                     str(flaps), "", str(TARGET_FLAPS), met(flaps <= TARGET_FLAPS)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        human("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    human(f"(before each kill the bench waits up to {report.load_wait:g} s for a 1-minute load "
          f"below {report.max_load:g})")
    if not default:
        human(f"(the targets hold at the shipped BFD interval, {BFD_INTERVAL} ms)")
    human()
    human("For comparison, documented values of the peers (NOT measured here):")
    for name, text in REFERENCES:
        human(f"  {name}: {text}")


# --- main -----------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5,
                        help="failures of each kind (vswitchd, link) of the active gateway (default 5)")
    parser.add_argument("--idle", type=float, default=600.0,
                        help="seconds of idle lab for the BFD flap count (default 600; 0 skips it)")
    parser.add_argument("--output", type=Path, default=None, help="write everything as JSON here")
    parser.add_argument("--max-load", type=float, default=1.5,
                        help="wait before each failure until the 1-minute load average is below "
                             "this (default 1.5)")
    parser.add_argument("--load-wait", type=float, default=180.0,
                        help="wait at most this many seconds for the load to drop (default 180)")
    args = parser.parse_args(argv)
    if args.kills < 0 or args.idle < 0:
        parser.error("--kills and --idle must not be negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        log("bench/failover.py needs root (network namespaces, Open vSwitch)")
        return 1
    signal.signal(signal.SIGTERM, interrupt)  # unwinds through the finally below
    report = Report(started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    command=" ".join(["bench/failover.py", *(argv if argv is not None
                                                             else sys.argv[1:])]),
                    max_load=args.max_load, load_wait=args.load_wait)
    state_dir = Path(tempfile.mkdtemp(prefix="neutrino-bench-failover-"))
    rc = 0
    try:
        log(f"lab up: {HOSTS} hosts, {GATEWAYS} gateways, state in {state_dir}")
        neutrino(state_dir, "up", "--hosts", str(HOSTS), "--gateways", str(GATEWAYS),
                 detach=True)
        world = build_world(state_dir)
        report.bfd_interval_ms = bfd_interval(state_dir)
        log(f"{INSTANCE} on {COMPUTE} reaches {world.external_ip} through router "
            f"{world.router_id} (gateway {world.gateway_ip}); BFD {report.bfd_interval_ms} ms")
        run_kills(state_dir, world, args.kills, report)
        if args.idle > 0:
            run_idle(state_dir, args.idle, report)
    except KeyboardInterrupt:
        log("interrupted; tearing the lab down")
        rc = 130
    except (BenchError, LabError, OSError, subprocess.SubprocessError, httpx.HTTPError) as error:
        log(f"FAILED: {error}")
        report.errors.append(str(error))
        rc = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the teardown finish
        try:
            neutrino(state_dir, "down", timeout=180)
        except BenchError as error:
            log(f"teardown: {error}")
            rc = rc or 1
        left = netns.list_namespaces(lab_prefix(state_dir) + "-")
        if left:
            log(f"namespaces left behind: {', '.join(left)}")
            rc = rc or 1
        else:
            shutil.rmtree(state_dir, ignore_errors=True)
    if report.samples or report.idle_flaps:
        print_summary(report)
    if report.errors:
        rc = rc or 1
        for message in report.errors:
            human(f"error: {message}")
    if args.output:
        args.output.write_text(json.dumps(report.as_dict(), indent=1))
        log(f"wrote {args.output}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
