"""The per-host agent: renders its chassis's policy into br-int flows and keeps them installed
(`neutrino.agent.service`), answers DHCP, router solicitations and ARP for next hops itself, and
runs BFD on every tunnel."""

# ms between BFD packets on every tunnel (the agent's --bfd-interval): a gateway fails over in
# about 3 intervals + 10 ms (docs/benchmarks.md); 10 ms flaps on a loaded 2-core machine
# (../shared/notes/ovs-userspace-tunnels-bfd.md)
BFD_INTERVAL = 30
