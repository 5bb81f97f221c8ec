"""Time helpers: timestamps in Neutron's format ("2026-11-21T07:30:00Z", UTC, second
precision) and retry delays."""

from __future__ import annotations

import time


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (1 -> base, 2 -> 2*base, ...),
    at most `cap`."""
    return float(min(cap, base * 2 ** max(0, min(attempts - 1, 32))))
