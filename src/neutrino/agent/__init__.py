"""The per-host agent: renders its chassis's policy into br-int flows and keeps them installed.

So far: `neutrino.agent.flows.FlowTable` (desired vs installed flows, applied atomically with
ovs-ofctl bundles).  Watching the policy store and OVSDB comes later.
"""
