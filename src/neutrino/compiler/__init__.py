"""The compiler: pure functions from the intent snapshot to per-chassis policy documents.

`load_intent` reads the snapshot, `compile_chassis` gives the complete document set of one
chassis, `affected_chassis` says which chassis a list of outbox changes may touch.
The incremental pass: `update_intent` makes the next snapshot from the previous one and the
rows the changes name, `recompile_chassis` compiles only the items the changes can alter.
"""

from neutrino.compiler.compile import (
    affected_chassis,
    compile_chassis,
    recompile_chassis,
    tunnel_key,
)
from neutrino.compiler.intent import Intent, load_intent, update_intent

__all__ = [
    "Intent",
    "affected_chassis",
    "compile_chassis",
    "load_intent",
    "recompile_chassis",
    "tunnel_key",
    "update_intent",
]
