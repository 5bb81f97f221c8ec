"""Next hops outside Neutron, found by ARP: the upstream router of an external network.

A floating IP's traffic leaves for the external network's `gateway_ip`, whose MAC no policy
holds (it is not a Neutron port). The agent asks for it the way a host would: an ARP request
sent *as the floating IP* (its MAC and address as sender, so the upstream router learns
nothing wrong), from the agent's DHCP port; the pipeline floods it into the external network
(native_dhcp 111) and brings the replies addressed to the floating IP's MAC back to the DHCP
port (l2_lookup 105). What it learns becomes arp_resolve flows (the renderer's `neighbours`).
Unanswered requests are repeated every second, answered ones every `REFRESH` seconds, so a
changed MAC is followed. A gateway chassis asks as itself instead (`probe_mac`, sender IP
0.0.0.0: an ARP probe), so that a standby never moves the router's MAC upstream.

The same socket sends the gratuitous ARPs of router interfaces that appear or change their
MAC on this chassis (`announce`; native_dhcp 112 delivers them to the local ports only).
"""

from __future__ import annotations

import ipaddress
import logging
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from neutrino.agent.dhcp_responder import PacketResponder, mac_bytes, mac_text

log = logging.getLogger("neutrino.agent.neighbours")

ETH_P_ARP = 0x0806
REFRESH = 20.0  # seconds between requests for a next hop already known
RETRY = 1.0  # seconds between requests for one not known yet


@dataclass(frozen=True)
class Wanted:
    network_id: str
    ip: str  # the next hop
    as_mac: str  # asked as: a floating IP's MAC on that network ...
    as_ip: str  # ... and its address

    @property
    def key(self) -> tuple[str, str]:
        return self.network_id, self.ip


def build_request(wanted: Wanted) -> bytes:
    """The broadcast ARP request for `wanted.ip`, from `as_mac` / `as_ip`."""
    sender = mac_bytes(wanted.as_mac)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + sender \
        + ipaddress.IPv4Address(wanted.as_ip).packed + bytes(6) \
        + ipaddress.IPv4Address(wanted.ip).packed
    return b"\xff" * 6 + sender + struct.pack("!H", ETH_P_ARP) + arp


def parse_reply(frame: bytes) -> tuple[str, str, str] | None:
    """(sender IP, sender MAC, target MAC) of an ARP reply, or None."""
    if len(frame) < 42 or struct.unpack("!H", frame[12:14])[0] != ETH_P_ARP:
        return None
    if struct.unpack("!H", frame[20:22])[0] != 2:
        return None
    return (str(ipaddress.IPv4Address(frame[28:32])), mac_text(frame[22:28]),
            mac_text(frame[32:38]))


class NeighbourResolver(PacketResponder):
    """Learns the MACs of `want`ed next hops from the ARP replies received on `ifname`;
    `on_change()` is called (from its thread) when `learned` changes."""

    ethertype = ETH_P_ARP
    kind = "ARP"

    def __init__(self, ifname: str, on_change: Callable[[], None]) -> None:
        super().__init__(ifname)
        self.on_change = on_change
        self.wanted: dict[tuple[str, str], Wanted] = {}
        self.learned: dict[tuple[str, str], str] = {}  # (network, IP) -> MAC; replaced whole
        self._asked: dict[tuple[str, str], float] = {}  # when each was last asked for

    def want(self, wanted: Iterable[Wanted]) -> None:
        """Resolve exactly these next hops from now on (what is no longer wanted is forgotten)."""
        self.wanted = {w.key: w for w in wanted}
        kept = {k: mac for k, mac in self.learned.items() if k in self.wanted}
        if kept != self.learned:
            self.learned = kept

    def solicit(self, now: float | None = None) -> int:
        """Send the requests that are due; how many were sent."""
        now = time.monotonic() if now is None else now
        sock = self._sock
        if sock is None:
            return 0
        sent = 0
        for key, wanted in list(self.wanted.items()):
            every = REFRESH if key in self.learned else RETRY
            if now - self._asked.get(key, -every) < every:
                continue
            try:
                sock.send(build_request(wanted))
                sent += 1
            except OSError as error:
                self._failed(f"ARP request on {self.ifname}: {error}")
            self._asked[key] = now
        return sent

    def announce(self, addresses: Iterable[tuple[str, str]]) -> int:
        """Send a gratuitous ARP (a request for its own address) for each (IP, MAC): a router
        interface that came or changed its MAC, so the instances' neighbour entries follow at
        once. How many were sent."""
        sock = self._sock
        if sock is None:
            return 0
        sent = 0
        for ip, mac in addresses:
            try:
                sock.send(build_request(Wanted("", ip, mac, ip)))
                sent += 1
            except OSError as error:
                self._failed(f"gratuitous ARP on {self.ifname}: {error}")
        return sent

    def handle_frame(self, frame: bytes) -> bytes | None:
        reply = parse_reply(frame)
        if reply is None:
            return None
        sender_ip, sender_mac, target_mac = reply
        learned = dict(self.learned)
        for key, wanted in self.wanted.items():
            if wanted.ip == sender_ip and wanted.as_mac == target_mac:
                learned[key] = sender_mac
        if learned != self.learned:
            log.info("next hop %s is at %s", sender_ip, sender_mac)
            self.learned = learned
            self.on_change()
        return None
