"""The lab's underlay: one Linux bridge in its own namespace, each host attached by a veth.

May touch: the fabric namespace (`<prefix>-fabric`) and everything in it, and the host end of
each host's underlay veth (created directly inside the host's namespace).  Nothing is created
in the root namespace, so the underlay subnet cannot clash with the machine's own networks.

Addresses: the bridge itself holds the subnet's first address (handy for `ping` from the fabric
namespace); host number i (host1, host2, ...) gets the address `HOST_OFFSET + i`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from neutrino.lab import netns
from neutrino.lab.errors import LabError

DEFAULT_UNDERLAY = ipaddress.IPv4Network("10.250.0.0/24")
HOST_OFFSET = 10
BRIDGE_NAME = "fabric"
FABRIC_PORT_PREFIX = "ul-"  # fabric-side veth of a host: ul-<host name>


@dataclass(frozen=True)
class Fabric:
    """The underlay bridge of one lab: where it lives and which subnet it carries."""

    namespace: str
    subnet: ipaddress.IPv4Network = DEFAULT_UNDERLAY
    mtu: int = 1500
    bridge: str = BRIDGE_NAME

    @property
    def gateway(self) -> ipaddress.IPv4Interface:
        """The bridge's own address: the subnet's first host address."""
        return ipaddress.IPv4Interface(f"{self.subnet.network_address + 1}/{self.subnet.prefixlen}")

    def host_address(self, index: int) -> ipaddress.IPv4Interface:
        """The underlay address of host number `index` (1-based)."""
        address = self.subnet.network_address + HOST_OFFSET + index
        if index < 1 or address >= self.subnet.broadcast_address:
            raise LabError(f"host number {index} does not fit the underlay subnet {self.subnet}")
        return ipaddress.IPv4Interface(f"{address}/{self.subnet.prefixlen}")

    @staticmethod
    def port_name(host: str) -> str:
        """The fabric-side veth name of `host`."""
        return netns.check_ifname(FABRIC_PORT_PREFIX + host)

    def exists(self) -> bool:
        return netns.namespace_exists(self.namespace)

    def create(self) -> None:
        """Create the namespace and the bridge, with the gateway address on the bridge."""
        netns.create_namespace(self.namespace)
        # no STP: ports forward at once; the bridge is the only path between hosts
        netns.ip("link", "add", self.bridge, "mtu", str(self.mtu), "type", "bridge", "stp_state", "0",
                 namespace=self.namespace)
        netns.add_address(self.namespace, self.bridge, str(self.gateway))
        netns.set_link(self.namespace, self.bridge, up=True)

    def attach(self, host: str, host_namespace: str, host_ifname: str) -> None:
        """Connect `host`: a veth `ul-<host>` on the bridge, whose peer `host_ifname` is created in
        `host_namespace`, both ends up."""
        port = self.port_name(host)
        netns.create_veth(port, self.namespace, host_ifname, host_namespace, mtu=self.mtu)
        netns.set_link(self.namespace, port, master=self.bridge, up=True)
        netns.set_link(host_namespace, host_ifname, up=True)

    def detach(self, host: str) -> bool:
        """Remove `host`'s veth (both ends); whether it existed."""
        return self.exists() and netns.delete_link(self.namespace, self.port_name(host))

    def set_port_up(self, host: str, up: bool) -> None:
        """Cut (`up=False`) or restore `host`'s underlay link at the fabric side."""
        netns.set_link(self.namespace, self.port_name(host), up=up)

    def port_up(self, host: str) -> bool | None:
        """Whether `host`'s fabric port is administratively up (None if it is missing)."""
        info = netns.link_info(self.namespace, self.port_name(host))
        return None if info is None else info.admin_up

    def delete(self) -> bool:
        """Delete the namespace, the bridge and every fabric veth (and so the hosts' ends)."""
        return netns.delete_namespace(self.namespace)
