"""What the lab benchmarks (failover, faults, storm) share: running `neutrino lab` commands,
waiting for a quiet machine, and SIGTERM unwinding like Ctrl-C (so a lab is always torn down)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from output import log


class BenchError(RuntimeError):
    pass


def load1() -> float:
    return os.getloadavg()[0]


def neutrino(state_dir: Path, *args: str, timeout: float = 300.0,
             detach: bool = False) -> subprocess.CompletedProcess[str]:
    """`neutrino lab ARGS --state-dir D`; a BenchError with its output if it fails.  `detach`: in
    a session of its own (`lab up` leaves the server running: it must not get our Ctrl-C)."""
    argv = [sys.executable, "-m", "neutrino.cli.main", "lab", *args, "--state-dir", str(state_dir)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL, start_new_session=detach)
    except subprocess.TimeoutExpired:
        raise BenchError(f"neutrino lab {' '.join(args)}: timed out after {timeout:g} s") from None
    if done.returncode != 0:
        raise BenchError(f"neutrino lab {' '.join(args)} failed ({done.returncode}): "
                         f"{(done.stderr or done.stdout).strip()[-2000:]}")
    return done


def wait_for_quiet(max_load: float, max_wait: float) -> tuple[float, float]:
    """Until the 1-minute load average is below `max_load` (at most `max_wait` seconds):
    (the load then, seconds waited)."""
    started = time.monotonic()
    load = load1()
    if load >= max_load:
        log(f"load average {load:.2f} >= {max_load:g}: waiting up to {max_wait:g} s")
    while load >= max_load and time.monotonic() - started < max_wait:
        time.sleep(5)
        load = load1()
    waited = time.monotonic() - started
    if load >= max_load:
        log(f"load average still {load:.2f} after {waited:.0f} s: measuring anyway")
    return load, waited


def interrupt(signum: int, frame: object) -> None:
    """A SIGTERM handler: unwind as Ctrl-C does, through every `finally` (lab down)."""
    raise KeyboardInterrupt
