"""Timestamps in Neutron's format ("2026-11-21T07:30:00Z", UTC, second precision)."""

from __future__ import annotations

import time


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
