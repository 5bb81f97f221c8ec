"""IPv6 router advertisements, answered by the agent: the codec (PURE) and the responder.

A VIF's router solicitation reaches the agent's DHCP port with its Ethernet destination
overwritten by the pipeline with the port's *key* (`key_mac(ofport)`: 0a:00:00:00 + the VIF's
OpenFlow port in the last two bytes), which says which port asked. The agent answers with the
advertisement of that port's router interface (`advert_for`): from the interface's MAC and
EUI-64 link-local address, to the soliciting address (or all nodes when it came from ::), with
the Ethernet destination set to the same key MAC; the pipeline turns that back into the VIF's
MAC and outputs the advertisement to that VIF only (docs/pipeline.md, native_dhcp).

What an advertisement carries, by the subnet's `ipv6_ra_mode` (as Neutron's radvd does):

| mode | M (managed) | O (other) | prefix option, A (autonomous) |
|---|---|---|---|
| slaac | 0 | 0 | 1: the instance makes its address from the prefix (EUI-64) |
| dhcpv6-stateless | 0 | 1 | 1 |
| dhcpv6-stateful | 1 | 1 | 0: addresses come from DHCPv6 |

plus the router lifetime (the instance's default route), the source link-layer address and the
network's MTU.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from neutrino.agent.dhcp import internet_checksum
from neutrino.agent.dhcp_responder import PacketResponder, mac_bytes, mac_text
from neutrino.pipeline.render import eui64_link_local, key_mac
from neutrino.policy.model import NetworkPolicy, PortPolicy, RouterPolicy

log = logging.getLogger("neutrino.agent.ra")

ETH_P_IPV6 = 0x86DD
ICMPV6 = 58
ROUTER_SOLICITATION, ROUTER_ADVERTISEMENT = 133, 134
RA_MODES = ("slaac", "dhcpv6-stateless", "dhcpv6-stateful")
ROUTER_LIFETIME = 1800  # seconds (the default route's)
VALID_LIFETIME, PREFERRED_LIFETIME = 2592000, 604800  # seconds (a prefix's, radvd's defaults)
ALL_NODES = "ff02::1"
KEY_PREFIX = key_mac(0)[:11]  # "0a:00:00:00"


@dataclass(frozen=True)
class Prefix:
    network: ipaddress.IPv6Network
    autonomous: bool  # the A flag: SLAAC from this prefix


@dataclass(frozen=True)
class RouterAdvert:
    """What one port is told by its router."""

    router_mac: str
    prefixes: tuple[Prefix, ...]
    managed: bool  # M: addresses by DHCPv6
    other: bool  # O: other configuration by DHCPv6
    mtu: int

    @property
    def router_ip(self) -> str:
        return eui64_link_local(self.router_mac)


def advert_for(port: PortPolicy, network: NetworkPolicy,
               routers: Iterable[RouterPolicy]) -> RouterAdvert | None:
    """The advertisement for `port`: from the first router (by id) with an interface on one of
    the port's IPv6 subnets that has an `ipv6_ra_mode`; the prefixes of all such subnets the
    port has an address on and that router serves. None when there is none."""
    subnets = {s.id: s for s in network.subnets
               if s.ip_version == 6 and s.ipv6_ra_mode in RA_MODES}
    wanted = [f.subnet_id for f in port.fixed_ips if f.subnet_id in subnets]
    for router in sorted(routers, key=lambda r: r.id):
        if not router.admin_state_up:
            continue
        for interface in router.interfaces:
            if interface.network_id != network.id:
                continue
            served = [s for s in wanted if any(a.subnet_id == s for a in interface.fixed_ips)]
            if not served:
                continue
            modes = [subnets[s].ipv6_ra_mode for s in served]
            return RouterAdvert(
                router_mac=interface.mac_address.lower(),
                prefixes=tuple(Prefix(ipaddress.IPv6Network(subnets[s].cidr, strict=False),
                                      subnets[s].ipv6_ra_mode != "dhcpv6-stateful") for s in served),
                managed="dhcpv6-stateful" in modes,
                other=any(m in ("dhcpv6-stateful", "dhcpv6-stateless") for m in modes),
                mtu=network.mtu)
    return None


@dataclass(frozen=True)
class Solicitation:
    key: int  # the soliciting VIF's ofport (from the key MAC)
    src_mac: str
    src_ip: str


def parse_solicitation(frame: bytes) -> Solicitation | None:
    """A router solicitation sent to a key MAC, or None for anything else."""
    if len(frame) < 14 + 40 + 8 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IPV6:
        return None
    dst = mac_text(frame[0:6])
    if not dst.startswith(KEY_PREFIX):
        return None
    if frame[14 + 6] != ICMPV6 or frame[14 + 40] != ROUTER_SOLICITATION:
        return None
    key = frame[4] << 8 | frame[5]
    return Solicitation(key, mac_text(frame[6:12]),
                        str(ipaddress.IPv6Address(frame[14 + 8:14 + 24])))


def build_advertisement(advert: RouterAdvert, key: int, dst_ip: str) -> bytes:
    """The Ethernet frame of the advertisement to the port with `key`, to `dst_ip`."""
    flags = (0x80 if advert.managed else 0) | (0x40 if advert.other else 0)
    body = struct.pack("!BBHBBHII", ROUTER_ADVERTISEMENT, 0, 0, 64, flags, ROUTER_LIFETIME, 0, 0)
    mac = mac_bytes(advert.router_mac)
    body += struct.pack("!BB", 1, 1) + mac  # source link-layer address
    body += struct.pack("!BBHI", 5, 1, 0, advert.mtu)  # MTU
    for prefix in advert.prefixes:
        prefix_flags = 0x80 | (0x40 if prefix.autonomous else 0)  # on-link (L), autonomous (A)
        body += struct.pack("!BBBBIII", 3, 4, prefix.network.prefixlen, prefix_flags,
                            VALID_LIFETIME, PREFERRED_LIFETIME, 0)
        body += prefix.network.network_address.packed
    src = ipaddress.IPv6Address(advert.router_ip).packed
    dst = ipaddress.IPv6Address(dst_ip).packed
    pseudo = src + dst + struct.pack("!IxxxB", len(body), ICMPV6)
    checksum = internet_checksum(pseudo + body)
    body = body[:2] + struct.pack("!H", checksum) + body[4:]
    ipv6 = struct.pack("!IHBB", 6 << 28, len(body), ICMPV6, 255) + src + dst
    ethernet = mac_bytes(key_mac(key)) + mac + struct.pack("!H", ETH_P_IPV6)
    return ethernet + ipv6 + body


class RaResponder(PacketResponder):
    """Answers router solicitations on `ifname` from `lookup(key) -> RouterAdvert | None`."""

    ethertype = ETH_P_IPV6
    kind = "RA"

    def __init__(self, ifname: str, lookup: Callable[[int], RouterAdvert | None]) -> None:
        super().__init__(ifname)
        self.lookup = lookup

    def handle_frame(self, frame: bytes) -> bytes | None:
        solicitation = parse_solicitation(frame)
        if solicitation is None:
            return None
        advert = self.lookup(solicitation.key)
        if advert is None:
            self.ignored += 1
            log.info("router solicitation from %s (key %d): no router advertises to this port",
                     solicitation.src_mac, solicitation.key)
            return None
        dst = ALL_NODES if solicitation.src_ip == "::" else solicitation.src_ip
        log.info("router advertisement to %s (key %d): %s", solicitation.src_mac, solicitation.key,
                 ", ".join(str(p.network) for p in advert.prefixes))
        return build_advertisement(advert, solicitation.key, dst)
