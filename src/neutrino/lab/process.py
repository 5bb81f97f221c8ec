"""Running the lab's commands, and stopping the lab's processes by pid.

May touch: the commands it is asked to run, and processes it is given the pid of (signals,
/proc/<pid>).  It never looks a process up by name: a pid comes from a pidfile the lab wrote or
asked a daemon to write, or from `ip netns pids` of a namespace the lab created, and before a
signal is sent the caller's ownership check (`owned`) must agree that the pid is still ours
(pids are reused).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from neutrino.lab.errors import LabError

OwnershipCheck = Callable[[int], bool]


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30.0,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` to completion with captured text output.

    With `check`, a non-zero exit becomes a LabError that shows the command and its stderr.
    A missing program or a timeout is always a LabError.
    """
    full_env = None if env is None else {**os.environ, **env}
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                                input=input, env=full_env, stdin=None if input is not None
                                else subprocess.DEVNULL)
    except FileNotFoundError as error:
        raise LabError(f"cannot run {argv[0]}: {error.strerror}") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"timed out after {timeout:g} s: {_show(argv)}") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise LabError(f"command failed (exit {result.returncode}): {_show(argv)}"
                       + (f"\n{detail}" if detail else ""))
    return result


def _show(argv: Sequence[str]) -> str:
    return " ".join(argv)


def read_pidfile(path: Path) -> int | None:
    """The pid in `path`, or None when the file is missing or does not hold a pid."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie counts as gone; our own zombies are reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # the state letter follows the parenthesised command name, which may contain spaces
    state = stat.rsplit(")", 1)[-1].split()[0]
    if state in ("Z", "X"):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def cmdline(pid: int) -> list[str] | None:
    """The argv of `pid`, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def cmdline_contains(text: str) -> OwnershipCheck:
    """An ownership check: the process's command line mentions `text` (e.g. its pidfile path)."""
    def check(pid: int) -> bool:
        args = cmdline(pid)
        return args is not None and any(text in arg for arg in args)
    return check


def in_namespace(namespace: str) -> OwnershipCheck:
    """An ownership check: the process lives in the named network namespace."""
    def check(pid: int) -> bool:
        try:
            return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{namespace}").st_ino
        except OSError:
            return False
    return check


def wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """Wait up to `timeout` seconds for `pids` to exit; the pids still alive afterwards."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if pid_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [pid for pid in alive if pid_alive(pid)]
    return alive


def stop_pids(pids: Sequence[int], owned: OwnershipCheck, *, timeout: float = 5.0) -> list[int]:
    """SIGTERM the owned, living `pids`, wait up to `timeout`, then SIGKILL what is left.

    Returns the pids that were signalled.  Pids that fail the ownership check are left alone.
    """
    targets = [pid for pid in pids if pid > 1 and pid_alive(pid) and owned(pid)]
    for pid in targets:
        _signal(pid, signal.SIGTERM)
    stubborn = wait_gone(targets, timeout)
    for pid in stubborn:
        _signal(pid, signal.SIGKILL)
    left = wait_gone(stubborn, timeout)
    if left:
        raise LabError(f"processes did not exit after SIGKILL: {', '.join(map(str, left))}")
    return targets


def stop_pid(pid: int | None, owned: OwnershipCheck, *, timeout: float = 5.0) -> bool:
    """Stop one process as `stop_pids` does; whether it was running (and ours)."""
    return pid is not None and bool(stop_pids([pid], owned, timeout=timeout))


def kill_pid(pid: int | None, owned: OwnershipCheck, *, timeout: float = 5.0) -> bool:
    """SIGKILL one owned process at once (a crash, for fault injection) and wait until it is gone."""
    if pid is None or pid <= 1 or not pid_alive(pid) or not owned(pid):
        return False
    _signal(pid, signal.SIGKILL)
    if wait_gone([pid], timeout):
        raise LabError(f"process {pid} did not exit after SIGKILL")
    return True


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
