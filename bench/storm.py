"""`make bench` (attach storm): when every agent of a cloud reconnects at once, does every agent
converge, and does the API stay responsive (p99 within 2x of idle)?

    uv run python bench/storm.py [--hosts 50] [--ports-per-host 1,20] [--rounds 3] [--output JSON]

1. `neutrino lab up --hosts N --bfd-interval 0 --agent-nice 19 --bridge-mapping ''
   --external-physnet ''` in a private state directory: N hosts, each a namespace with its own
   Open vSwitch and agent. BFD is off (N userspace switches with 30 ms sessions are more than
   two cores can run) and the agents run at nice 19 (--agent-nice): on a real cloud each agent
   has its host's CPUs and the server its own; here 50 agents starting at once would otherwise
   take the server's CPU, and the bench would measure the machine, not the server.
2. `neutrino.lab.storm.populate`: 5 networks, host i on network i mod 5, with P ports bound
   to it (for each P of --ports-per-host, growing: the policy every agent holds grows).
3. For each P, --rounds times each, `neutrino.lab.storm.measure_attach_storm`:
   - `server`: the server is restarted (SIGTERM, 1 s down, started again on the same port,
     socket and database): every agent re-registers and resumes its policy stream;
   - `agents`: every agent is stopped and started again together: each one needs a snapshot.
   An admin client cycles through list networks, list ports, show a port, update a port, one
   request at a time: 5 s before (idle), then from the restart until every agent reports the
   change written right after it realised (and at least 3 s).

Prints `name value unit` lines and lines for people (starting with `#`): per round the
convergence time and the API p50/p99 idle and during the storm, their ratio, and the targets
(every agent converges; no API error; storm p99 <= 2x idle p99) met or missed; writes
everything as JSON to --output. Exit status 1 if something failed (not for a missed target).
The lab is always torn down, also after an error or Ctrl-C.

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
from pathlib import Path
from typing import Any

import httpx
from labrun import BenchError, interrupt, neutrino
from output import emit, human, log

from neutrino.lab.errors import LabError
from neutrino.lab.storm import StormKind, StormResult, measure_attach_storm, populate

NETWORKS = 5
KINDS: tuple[StormKind, ...] = ("server", "agents")
P99_TARGET = 2.0  # storm p99 / idle p99


def report_round(prefix: str, result: StormResult) -> None:
    emit(f"{prefix}.converged", round(result.converged_s, 2), "s")
    emit(f"{prefix}.idle_p99", round(result.idle.p99_ms, 1), "ms")
    emit(f"{prefix}.storm_p99", round(result.storm.p99_ms, 1), "ms")
    emit(f"{prefix}.p99_ratio", round(result.p99_ratio, 2), "x")
    emit(f"{prefix}.errors", result.idle.errors + result.storm.errors, "requests")
    human(f"{prefix}: {result.agents} agents converged {result.converged_s:.1f} s after the "
          f"restart ({result.restart_s:.1f} s); API p50/p99 idle {result.idle.p50_ms:.1f}/"
          f"{result.idle.p99_ms:.1f} ms, storm {result.storm.p50_ms:.1f}/"
          f"{result.storm.p99_ms:.1f} ms (x{result.p99_ratio:.2f} at p99, "
          f"{result.storm.requests} requests), load {os.getloadavg()[0]:.1f}")


def summarise(name: str, results: list[StormResult]) -> dict[str, Any]:
    worst = max(r.p99_ratio for r in results)
    errors = sum(r.idle.errors + r.storm.errors for r in results)
    summary = {"rounds": len(results),
               "converged_median_s": statistics.median(r.converged_s for r in results),
               "converged_worst_s": max(r.converged_s for r in results),
               "p99_ratio_median": statistics.median(r.p99_ratio for r in results),
               "p99_ratio_worst": worst, "errors": errors}
    emit(f"{name}.p99_ratio_worst", round(worst, 2), "x")
    human(f"{name}: converged median {summary['converged_median_s']:.1f} s, worst "
          f"{summary['converged_worst_s']:.1f} s; storm p99 / idle p99 median "
          f"x{summary['p99_ratio_median']:.2f}, worst x{worst:.2f} (target <= x{P99_TARGET:g}: "
          f"{'met' if worst <= P99_TARGET else 'MISSED'}); API errors {errors} (target 0: "
          f"{'met' if errors == 0 else 'MISSED'})")
    return summary


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=50, help="hosts (agents) in the lab")
    parser.add_argument("--ports-per-host", default="1,20",
                        help="comma-separated port counts per host, one series each (growing)")
    parser.add_argument("--rounds", type=int, default=3, help="storms of each kind per series")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle API latencies")
    parser.add_argument("--agent-nice", type=int, default=19,
                        help="niceness of the agents (0: as the server)")
    parser.add_argument("--output", type=Path, default=None, help="write everything as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        log("bench/storm.py needs root (network namespaces, Open vSwitch)")
        return 1
    signal.signal(signal.SIGTERM, interrupt)
    series = sorted({int(n) for n in args.ports_per_host.split(",") if n.strip()})
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["bench/storm.py", *(argv if argv is not None else sys.argv[1:])]),
        "hosts": args.hosts, "networks": NETWORKS, "rounds": [], "summary": {}, "errors": []}
    state_dir = Path(tempfile.mkdtemp(prefix="neutrino-bench-storm-"))
    rc = 0
    try:
        log(f"lab up: {args.hosts} hosts (BFD off), state in {state_dir}")
        neutrino(state_dir, "up", "--hosts", str(args.hosts), "--bfd-interval", "0",
                 "--agent-nice", str(args.agent_nice), "--bridge-mapping", "",
                 "--external-physnet", "", timeout=600)
        for ports in series:
            started = time.monotonic()
            populate(state_dir, networks=NETWORKS, ports_per_host=ports)
            log(f"{ports} port(s) per host ({ports * args.hosts} ports) in "
                f"{time.monotonic() - started:.1f} s")
            for how in KINDS:
                results = []
                for number in range(1, args.rounds + 1):
                    prefix = f"storm.{how}.ports{ports}.round{number}"
                    result = measure_attach_storm(state_dir, how=how, idle=args.idle, log=log)
                    report["rounds"].append({"ports_per_host": ports, **result.as_dict()})
                    report_round(prefix, result)
                    results.append(result)
                report["summary"][f"{how}.ports{ports}"] = summarise(
                    f"storm.{how}.ports{ports}", results)
    except KeyboardInterrupt:
        log("interrupted; tearing the lab down")
        rc = 130
    except (BenchError, LabError, OSError, subprocess.SubprocessError, httpx.HTTPError) as error:
        log(f"FAILED: {error}")
        report["errors"].append(str(error))
        rc = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            neutrino(state_dir, "down", timeout=600)
        except BenchError as error:
            log(f"teardown: {error}")
            rc = rc or 1
        shutil.rmtree(state_dir, ignore_errors=True)
        if args.output is not None:
            args.output.write_text(json.dumps(report, indent=2))
    return rc


if __name__ == "__main__":
    sys.exit(main())
