"""Reading `ovs-appctl ofproto/trace` output in terms of the pipeline's stages. PURE.

`annotate_trace` turns the raw trace into the path a packet took, stage by stage (table
numbers replaced by stage names, `resubmit(,50)` by `resubmit(,l2_lookup)`), and a verdict:
where the packet was sent (`output:5`, a tunnel) or that it was dropped, and in which stage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from neutrino.pipeline.flows import mask_tables
from neutrino.pipeline.stages import STAGES_BY_TABLE

_STEP = re.compile(r"^\s*(\d+)\.\s+(.*)$")


@dataclass
class TraceStep:
    stage: str
    flow: str  # the matching flow, with table numbers masked
    actions: list[str] = field(default_factory=list)


@dataclass
class Trace:
    steps: list[TraceStep]
    datapath_actions: str  # what the datapath does with the packet ("drop" when nothing)

    @property
    def stages(self) -> list[str]:
        path: list[str] = []
        for step in self.steps:
            if not path or path[-1] != step.stage:
                path.append(step.stage)
        return path

    @property
    def verdict(self) -> str:
        if self.datapath_actions in ("", "drop"):
            last = self.steps[-1].stage if self.steps else "classify"
            return f"dropped in {last}"
        return f"forwarded: {self.datapath_actions}"

    def render(self) -> str:
        lines = []
        for step in self.steps:
            lines.append(f"{step.stage:<32} {step.flow}")
            lines.extend(f"{'':<34}{action}" for action in step.actions)
        lines.append(f"verdict: {self.verdict}")
        return "\n".join(lines)


def annotate_trace(raw: str) -> Trace:
    steps: list[TraceStep] = []
    datapath = ""
    for line in raw.splitlines():
        found = _STEP.match(line)
        if found:
            stage = STAGES_BY_TABLE.get(int(found.group(1)))
            steps.append(TraceStep(stage.name if stage else f"table {found.group(1)}",
                                   mask_tables(found.group(2).strip())))
        elif line.startswith("Datapath actions:"):
            datapath = line.split(":", 1)[1].strip()
        elif steps and line.startswith(" ") and line.strip() and not line.strip().startswith(
            ("->", "Resubmitted", "bridge(")
        ):
            steps[-1].actions.append(mask_tables(line.strip()))
    return Trace(steps=steps, datapath_actions=datapath)
