"""The external next-hop resolver (neutrino.agent.neighbours): its requests and what it learns."""

from __future__ import annotations

import struct

from neutrino.agent.neighbours import NeighbourResolver, Wanted, build_request, parse_reply

FIP_MAC, UPSTREAM_MAC = "fa:16:3e:00:0f:01", "02:00:00:00:00:01"
WANTED = Wanted("public", "172.24.4.1", FIP_MAC, "172.24.4.20")


def reply(sender_ip: str, sender_mac: str, target_mac: str) -> bytes:
    mac = lambda text: bytes(int(b, 16) for b in text.split(":"))  # noqa: E731
    ip = lambda text: bytes(int(b) for b in text.split("."))  # noqa: E731
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac(sender_mac) + ip(sender_ip) \
        + mac(target_mac) + ip("172.24.4.20")
    return mac(target_mac) + mac(sender_mac) + b"\x08\x06" + arp


def test_the_request_asks_as_the_floating_ip() -> None:
    frame = build_request(WANTED)
    assert frame[:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x06"
    assert struct.unpack("!H", frame[20:22])[0] == 1  # a request
    assert frame[22:28].hex(":") == FIP_MAC and frame[28:32] == bytes([172, 24, 4, 20])
    assert frame[38:42] == bytes([172, 24, 4, 1])


def test_a_reply_to_the_floating_ip_teaches_the_next_hop() -> None:
    changed: list[bool] = []
    resolver = NeighbourResolver("unused", lambda: changed.append(True))
    resolver.want([WANTED])
    assert parse_reply(reply("172.24.4.1", UPSTREAM_MAC, FIP_MAC)) == (
        "172.24.4.1", UPSTREAM_MAC, FIP_MAC)
    resolver.handle_frame(reply("172.24.4.9", UPSTREAM_MAC, FIP_MAC))  # not the next hop
    resolver.handle_frame(reply("172.24.4.1", UPSTREAM_MAC, "fa:16:3e:00:0f:99"))  # not to us
    assert resolver.learned == {} and not changed
    resolver.handle_frame(reply("172.24.4.1", UPSTREAM_MAC, FIP_MAC))
    assert resolver.learned == {("public", "172.24.4.1"): UPSTREAM_MAC} and changed == [True]
    resolver.want([])  # no floating IP here any more: forgotten
    assert resolver.learned == {}
