"""What the benchmark scripts print: `name value unit` lines for machines, `# ...` lines for
people (both on stdout), and timestamped progress on stderr."""

from __future__ import annotations

import sys
import time


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def emit(name: str, value: float, unit: str) -> None:
    print(f"{name} {value:g} {unit}", flush=True)


def human(line: str = "") -> None:
    print(f"# {line}".rstrip(), flush=True)
