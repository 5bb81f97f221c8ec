"""A continuous ping from inside a lab namespace, for measuring how long a failover interrupts
traffic: `ping -D -O` at a short interval, every echo reply timestamped by ping itself.

    with ContinuousPing(namespace, "172.24.4.1", interval=0.005) as pinger:
        ...  # inject the failure, wait for recovery
    record = pinger.record
    record.gap()   # longest time between two consecutive replies (seconds)
    record.lost    # requests never answered

The record fills while ping runs (a thread reads ping's output line by line), so a caller can
watch it, e.g. wait until replies have resumed after a failure (`record.snapshot()`).

The gap is what an application sees: from the last reply before the failure to the first one
after it, so it includes the failure detection and the switchover (and at most one interval
of ping's own granularity).

May touch: one `ping` process in the given namespace, stopped (SIGINT, then SIGKILL) on exit.
"""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from types import TracebackType

from neutrino.lab import netns

_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)")
_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")


@dataclass
class PingRecord:
    """What a continuous ping saw: (icmp_seq, reply time) of every reply, in arrival order."""

    replies: list[tuple[int, float]] = field(default_factory=list)
    transmitted: int = 0
    received: int = 0

    @property
    def lost(self) -> int:
        """Requests that got no reply (ping's own count: late replies count as received)."""
        return self.transmitted - self.received

    def gap(self, after: float = 0.0) -> float:
        """The longest time (seconds) between two consecutive replies, both after `after`
        (a time.time() value) if given; 0.0 with fewer than two replies."""
        times = [t for _seq, t in self.replies if t >= after]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def replies_between(self, start: float, end: float) -> int:
        return sum(1 for _seq, t in self.replies if start <= t <= end)

    def snapshot(self) -> list[tuple[int, float]]:
        """The replies so far (a copy: the reader thread may append while ping runs)."""
        return list(self.replies)

    def missing(self, after: float = 0.0) -> int:
        """Requests without a reply among those sent between the first and the last answered
        request after `after` (a time.time() value): unlike `lost`, never counts the request
        ping had in flight when it was stopped.  icmp_seq wraps at 65536 (11 minutes at 10 ms
        intervals): keep a record shorter than that."""
        seqs = {seq for seq, t in self.replies if t >= after}
        if not seqs:
            return 0
        return max(seqs) - min(seqs) + 1 - len(seqs)


class ContinuousPing:
    """`ping -D -O -i interval address` in `namespace` for the duration of the block."""

    def __init__(self, namespace: str, address: str, *, interval: float = 0.01) -> None:
        self.argv = netns.exec_argv(namespace, ["ping", "-n", "-D", "-O", "-W", "1",
                                                "-i", f"{interval:g}", address])
        self.record = PingRecord()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> ContinuousPing:
        process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        self._process = process
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True,
                                        name="continuous-ping")
        self._reader.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> PingRecord:
        """Stop ping (SIGINT: it prints its summary) and wait until its output is parsed."""
        process, reader = self._process, self._reader
        if process is None:
            return self.record
        self._process = self._reader = None
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if reader is not None:
            reader.join(timeout=5)
        return self.record

    def _read(self, process: subprocess.Popen[str]) -> None:
        """Parse ping's output as it comes (until it exits and the pipe is closed)."""
        assert process.stdout is not None
        with process.stdout:
            for line in process.stdout:
                reply = _REPLY.match(line)
                if reply is not None:
                    self.record.replies.append((int(reply.group(2)), float(reply.group(1))))
                    continue
                summary = _SUMMARY.search(line)
                if summary is not None:
                    self.record.transmitted = int(summary.group(1))
                    self.record.received = int(summary.group(2))
