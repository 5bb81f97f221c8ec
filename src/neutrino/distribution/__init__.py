"""Distribution: the policy store (compiled per-chassis items with revisions) and the compiler
loop that fills it from the outbox."""
