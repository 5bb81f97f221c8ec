"""The OpenFlow pipeline of br-int: stages as data, flows as values, and pure rendering.

- `stages`: the one table of stages (name, table, match fields, next stages) and registers.
- `flows`: the `Flow` value, the action helpers, and the generation-time check.
- `render`: `render_chassis(documents, local_ofports, tunnel_ofports) -> list[Flow]`.

Pure: nothing here touches a switch; `neutrino.agent.flows` installs what this renders.
"""

from neutrino.pipeline.flows import Flow, PipelineError, check_flow, cookie_for
from neutrino.pipeline.render import render_chassis
from neutrino.pipeline.stages import REGISTERS, STAGES, Register, Stage

__all__ = ["REGISTERS", "STAGES", "Flow", "PipelineError", "Register", "Stage", "check_flow",
           "cookie_for", "render_chassis"]
