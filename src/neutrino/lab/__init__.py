"""The lab: several "hosts" on one machine, each a network namespace with its own Open vSwitch.

Modules (each says what it may touch):
    errors    LabError and the preflight checks (root, iproute2, Open vSwitch)
    process   running commands; stopping processes by pid, with an ownership check
    netns     namespaces, veths, links, addresses, tx checksum offload (over `ip` and ioctls)
    fabric    the underlay: a Linux bridge in `<prefix>-fabric`
    ovs       one private ovsdb-server + ovs-vswitchd in a namespace, and its CLI clients
    host      a lab host: namespace, fabric link, OVS with br-int/br-phy, optional agent, faults
    instance  an instance namespace plugged into br-int os-vif style
    state     lab.json, the lock, and `teardown`
    lab       `Lab`: the sequence of all of the above for the `neutrino lab` commands
"""

from neutrino.lab.errors import LabError

__all__ = ["LabError"]
