"""The lab's wires: one Linux bridge per segment in its own namespace, each host attached by veths.

The underlay (`fabric`) carries the hosts' tunnels; each physical network (`pn-<physnet>`)
is a shared L2 segment for provider networks (flat / vlan): every host has a veth on it whose
host end is a port of that host's provider bridge.  The physnet bridges do not filter VLANs
(VLAN filtering stays off), so tagged frames pass as they are, and they have no address.

May touch: the fabric namespace (`<prefix>-fabric`) and everything in it, and the host end of
each host's veths (created directly inside the host's namespace).  Nothing is created in the
root namespace, so the underlay subnet cannot clash with the machine's own networks.

Addresses: the bridge itself holds the subnet's first address (handy for `ping` from the fabric
namespace); host number i (host1, host2, ...) gets the address `HOST_OFFSET + i`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass

from neutrino.lab import netns
from neutrino.lab.errors import LabError

DEFAULT_UNDERLAY = ipaddress.IPv4Network("10.250.0.0/24")
HOST_OFFSET = 10
BRIDGE_NAME = "fabric"
FABRIC_PORT_PREFIX = "ul-"  # fabric-side veth of a host: ul-<host name>
PHYSNET_BRIDGE_PREFIX = "pn-"  # the bridge of a physical network: pn-<physnet>
_PLAIN = re.compile(r"^[A-Za-z0-9_-]+$")


def readable_ifname(readable: str, prefix: str, key: str) -> str:
    """`readable` if it is a plain interface name (letters, digits, '_', '-'; at most 15
    characters), else `prefix` + a hash of `key` (stable, so every command finds it again)."""
    if _PLAIN.match(readable) and len(readable) < netns.IFNAMSIZ:
        return readable
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:netns.IFNAMSIZ - 1 - len(prefix)]


def physnet_bridge_name(physnet: str) -> str:
    """The fabric bridge of physical network `physnet`: `pn-<physnet>` (or `pn-<hash>`)."""
    return readable_ifname(PHYSNET_BRIDGE_PREFIX + physnet, PHYSNET_BRIDGE_PREFIX, physnet)


def physnet_port_name(host: str, physnet: str) -> str:
    """The fabric-side veth of `host` on `physnet`: `<host>-<physnet>` (or `pn<hash>`)."""
    return readable_ifname(f"{host}-{physnet}", "pn", f"{host}/{physnet}")


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

    # --- physical networks (provider networks) ----------------------------------------------

    def physnet_bridges(self) -> list[str]:
        """The physnet bridges that exist (by name)."""
        if not self.exists():
            return []
        out = netns.ip("-j", "link", "show", "type", "bridge", namespace=self.namespace).stdout
        names = [link["ifname"] for link in json.loads(out or "[]")]
        return sorted(n for n in names if n != self.bridge)

    def ensure_physnet(self, physnet: str) -> str:
        """The bridge of `physnet` (made if missing: no STP, no VLAN filtering, no address, no
        IPv6, so it forwards tagged frames and sends nothing of its own); its name."""
        bridge = physnet_bridge_name(physnet)
        if netns.link_info(self.namespace, bridge) is None:
            # VLAN filtering is off by default (and some kernels cannot even turn it on)
            netns.ip("link", "add", bridge, "mtu", str(self.mtu), "type", "bridge", "stp_state", "0",
                     namespace=self.namespace)
            disable_ipv6(self.namespace, bridge)
            netns.set_link(self.namespace, bridge, up=True)
        return bridge

    def attach_physnet(self, physnet: str, host: str, host_namespace: str, host_ifname: str) -> None:
        """Connect `host` to `physnet`: a veth `<host>-<physnet>` on the physnet's bridge, whose
        peer `host_ifname` is created in `host_namespace` (for the host's provider bridge), both
        ends up and without IPv6."""
        bridge = self.ensure_physnet(physnet)
        port = physnet_port_name(host, physnet)
        netns.create_veth(port, self.namespace, host_ifname, host_namespace, mtu=self.mtu)
        disable_ipv6(self.namespace, port)
        disable_ipv6(host_namespace, host_ifname)
        netns.set_link(self.namespace, port, master=bridge, up=True)
        netns.set_link(host_namespace, host_ifname, up=True)

    def detach_physnet(self, physnet: str, host: str) -> bool:
        """Remove `host`'s veth on `physnet` (both ends); whether it existed."""
        return self.exists() and netns.delete_link(self.namespace, physnet_port_name(host, physnet))

    def physnet_port_up(self, physnet: str, host: str) -> bool | None:
        """Whether `host`'s port on `physnet` is administratively up (None if it is missing)."""
        info = netns.link_info(self.namespace, physnet_port_name(host, physnet))
        return None if info is None else info.admin_up

    def delete(self) -> bool:
        """Delete the namespace, the bridge and every fabric veth (and so the hosts' ends)."""
        return netns.delete_namespace(self.namespace)


def disable_ipv6(namespace: str, ifname: str) -> None:
    """No IPv6 on `ifname` (no link-local address, so no RS / MLD / DAD of its own on the wire)."""
    netns.run_in(namespace, ["sysctl", "-qw", f"net/ipv6/conf/{ifname}/disable_ipv6=1"])
