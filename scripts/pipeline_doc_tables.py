"""Rewrite the Stages and Registers tables of docs/pipeline.md from neutrino.pipeline.stages
(tests/pipeline/test_pipeline_doc.py checks they agree): `uv run python scripts/pipeline_doc_tables.py`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from neutrino.pipeline.stages import REGISTERS, STAGES

DOC = Path(__file__).resolve().parents[1] / "docs" / "pipeline.md"


def _names(fields: Iterable[str]) -> str:
    return ", ".join(sorted(fields)) or "—"


def _replace_table(lines: list[str], heading: str, rows: list[str]) -> None:
    """Replace the body rows of the first table after `## heading`."""
    start = lines.index(f"## {heading}")
    first = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("|"))
    end = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), len(lines))
    lines[first + 2:end] = rows


def main() -> None:
    lines = DOC.read_text().splitlines()
    _replace_table(lines, "Stages", [
        f"| `{s.name}` | {s.table} | {_names(s.fields)} | {_names(s.next)} | {s.purpose} |"
        for s in STAGES])
    _replace_table(lines, "Registers", [
        f"| `{r.field}` | `{r.nxm}` | {r.holds} | {r.set_in} |" for r in REGISTERS])
    DOC.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
