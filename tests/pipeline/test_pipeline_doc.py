"""docs/pipeline.md's stage and register tables say what the code declares."""

from __future__ import annotations

from pathlib import Path

from neutrino.pipeline.stages import REGISTERS, STAGES

DOC = Path(__file__).resolve().parents[2] / "docs" / "pipeline.md"


def _table(heading: str) -> list[list[str]]:
    """The rows (cells stripped of backticks) of the first table after `## heading`."""
    lines = DOC.read_text().splitlines()
    start = lines.index(f"## {heading}")
    rows: list[list[str]] = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            rows.append([cell.strip().strip("`") for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # without header and separator


def _names(cell: str) -> frozenset[str]:
    return frozenset() if cell in ("", "—") else frozenset(x.strip() for x in cell.split(","))


def test_the_stage_table_equals_the_code() -> None:
    documented = [(name, int(number), _names(fields), _names(nxt), purpose)
                  for name, number, fields, nxt, purpose in _table("Stages")]
    assert documented == [(s.name, s.table, s.fields, s.next, s.purpose) for s in STAGES]


def test_the_register_table_equals_the_code() -> None:
    assert [tuple(row) for row in _table("Registers")] == [
        (r.field, r.nxm, r.holds, r.set_in) for r in REGISTERS]


def test_every_stage_has_its_section() -> None:
    text = DOC.read_text()
    for stage in STAGES:
        assert f"{stage.name} (table {stage.table})" in text
