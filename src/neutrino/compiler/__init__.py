"""The compiler: pure functions from the intent snapshot to per-chassis policy documents.

`load_intent` reads the snapshot, `compile_chassis` gives the complete document set of one
chassis, `affected_chassis` says which chassis a list of outbox changes may touch.
"""

from neutrino.compiler.compile import affected_chassis, compile_chassis, tunnel_key
from neutrino.compiler.intent import Intent, load_intent

__all__ = ["Intent", "affected_chassis", "compile_chassis", "load_intent", "tunnel_key"]
