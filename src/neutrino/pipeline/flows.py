"""Flows as values, the builders' action vocabulary, and the generation-time check.

A `Flow` names its stage; its actions are ovs-ofctl action strings, built with the helpers
here (`resubmit`, `ct_recirculate`, ...) so that every jump names a stage.  `check_flow`
rejects a flow that matches a field its stage does not declare, or jumps (resubmit, goto_table,
ct(table=...)) to a stage its stage may not reach: a pipeline mistake fails in a unit test, not
on a switch.  `Flow.ofctl()` is the line ovs-ofctl reads; `Flow.describe()` is the same with
table numbers replaced by stage names (for tests keyed by stage).

Pure: touches nothing.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from neutrino.pipeline.stages import STAGES_BY_TABLE, stage, table


class PipelineError(ValueError):
    """A flow that does not fit the declared pipeline."""


#: what identifies a flow in the switch: (table, priority, match fields sorted)
FlowKey = tuple[int, int, tuple[tuple[str, str], ...]]
MAX_COOKIE = (1 << 63) - 1  # keep clear of all-ones (a wildcard in cookie/mask commands)


def cookie_for(kind: str, item_id: str) -> int:
    """The cookie of every flow produced by policy item `kind`/`item_id` (deterministic, non-zero)."""
    digest = hashlib.sha256(f"{kind}/{item_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") & MAX_COOKIE) or 1


@dataclass(frozen=True, order=True)
class Flow:
    """One OpenFlow flow of br-int, before it is installed."""

    stage: str
    priority: int
    match: tuple[tuple[str, str], ...]  # (field, value) in the order written
    actions: tuple[str, ...]  # ovs-ofctl actions; empty = drop
    cookie: int

    @classmethod
    def make(cls, stage_name: str, priority: int, match: Mapping[str, str | int],
             actions: Iterable[str], cookie: int) -> Flow:
        """A flow, checked against the pipeline declaration (PipelineError if it does not fit)."""
        flow = cls(stage_name, priority, tuple((k, str(v)) for k, v in match.items()),
                   tuple(actions), cookie)
        check_flow(flow)
        return flow

    @property
    def table(self) -> int:
        return table(self.stage)

    @functools.cached_property
    def key(self) -> FlowKey:
        """What identifies the flow in the switch (table, priority, match): the strict-mod key."""
        return self.table, self.priority, tuple(sorted(self.match))

    @functools.cached_property
    def order(self) -> tuple[int, int, tuple[tuple[str, str], ...], tuple[str, ...]]:
        """The rendering order: by table, then highest priority first, then match and actions."""
        return self.table, -self.priority, self.match, self.actions

    def match_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.match)

    def actions_text(self) -> str:
        return ",".join(self.actions) if self.actions else "drop"

    def ofctl(self) -> str:
        """`cookie=...,table=...,priority=...,<match>,actions=...` as ovs-ofctl add-flow reads it."""
        match = self.match_text()
        return (f"cookie={self.cookie:#x},table={self.table},priority={self.priority}"
                + (f",{match}" if match else "") + f",actions={self.actions_text()}")

    def ofctl_key(self) -> str:
        """`table=...,priority=...,<match>` for delete_strict."""
        match = self.match_text()
        return f"table={self.table},priority={self.priority}" + (f",{match}" if match else "")

    def describe(self) -> str:
        """Stage-keyed text with table numbers masked: `stage priority match actions`."""
        return f"{self.stage} {self.priority} {self.match_text() or '*'} {mask_tables(self.actions_text())}"


# --- actions ------------------------------------------------------------------------------------

CT_ZONE = "NXM_NX_REG5[0..15]"


def resubmit(stage_name: str) -> str:
    return f"resubmit(,{table(stage_name)})"


def ct_recirculate(stage_name: str) -> str:
    """Send through conntrack in the network's zone, then continue in `stage_name` with ct_state set."""
    return f"ct(table={table(stage_name)},zone={CT_ZONE})"


def ct_commit() -> str:
    return f"ct(commit,zone={CT_ZONE})"


def ct_nat(zone: int, nat: str, stage_name: str) -> str:
    """Commit to conntrack zone `zone` with NAT `nat` (e.g. `dst=10.0.0.5`; a connection already
    translated keeps its own translation, so replies are translated back), then continue in
    `stage_name` (table= comes first: the jump check reads it before the nat's parentheses)."""
    return f"ct(commit,table={table(stage_name)},zone={zone},nat({nat}))"


def load(value: int, field: str) -> str:
    return f"set_field:{value:#x}->{field}"


def conjunction(conj_id: int, clause: int, n_clauses: int) -> str:
    return f"conjunction({conj_id},{clause}/{n_clauses})"


_JUMPS = re.compile(r"resubmit\(\s*[^,()]*,\s*(\d+)\s*\)|goto_table:(\d+)|ct\([^)]*table=(\d+)")


def jump_targets(actions: Iterable[str]) -> list[int]:
    """Table numbers the actions resubmit / goto / recirculate to."""
    found: list[int] = []
    for action in actions:
        for groups in _JUMPS.findall(action):
            found.append(int(next(g for g in groups if g)))
    return found


def mask_tables(text: str) -> str:
    """Replace table numbers in actions by stage names (`resubmit(,50)` -> `resubmit(,l2_lookup)`)."""
    def name(number: str) -> str:
        found = STAGES_BY_TABLE.get(int(number))
        return found.name if found else f"?{number}"

    text = re.sub(r"resubmit\(\s*,\s*(\d+)\s*\)", lambda m: f"resubmit(,{name(m.group(1))})", text)
    text = re.sub(r"goto_table:(\d+)", lambda m: f"goto_table:{name(m.group(1))}", text)
    return re.sub(r"(ct\([^)]*table=)(\d+)", lambda m: m.group(1) + name(m.group(2)), text)


def check_flow(flow: Flow) -> None:
    """PipelineError unless `flow` matches only its stage's fields and jumps only where it may."""
    try:
        declared = stage(flow.stage)
    except KeyError as error:
        raise PipelineError(str(error.args[0])) from None
    undeclared = sorted({f for f, _ in flow.match} - declared.fields)
    if undeclared:
        raise PipelineError(f"{flow.stage} flow matches undeclared field(s) {', '.join(undeclared)}: "
                            f"{flow.describe()}")
    for number in jump_targets(flow.actions):
        target = STAGES_BY_TABLE.get(number)
        if target is None:
            raise PipelineError(f"{flow.stage} flow jumps to table {number}, which is no stage: "
                                f"{flow.describe()}")
        if target.name not in declared.next:
            raise PipelineError(f"{flow.stage} may not go to {target.name}: {flow.describe()}")
    if not 0 <= flow.priority <= 65535:
        raise PipelineError(f"priority {flow.priority} out of range: {flow.describe()}")
