"""The per-chassis policy documents: the contract between the compiler, the distribution layer
and the agents (see docs/policy-model.md)."""
