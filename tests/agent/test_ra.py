"""Router advertisements (neutrino.agent.ra): what a port is told, and the frames on the wire."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from neutrino.agent.dhcp import internet_checksum
from neutrino.agent.ra import (
    ROUTER_ADVERTISEMENT,
    RouterAdvert,
    advert_for,
    build_advertisement,
    parse_solicitation,
)
from neutrino.pipeline.render import eui64_link_local, key_mac
from neutrino.policy.model import (
    FixedIp,
    NetworkPolicy,
    PortPolicy,
    RouterAddress,
    RouterInterface,
    RouterPolicy,
    SubnetPolicy,
)

ROUTER_MAC = "fa:16:3e:00:01:01"


def world(ra_mode: str | None, router_up: bool = True) -> tuple[PortPolicy, NetworkPolicy, RouterPolicy]:
    subnet = SubnetPolicy(id="s6", cidr="fd00:1::/64", ip_version=6, gateway_ip="fd00:1::1",
                          ipv6_ra_mode=ra_mode, ipv6_address_mode=ra_mode)
    network = NetworkPolicy(id="n1", network_type="geneve", segmentation_id=5, tunnel_key=1 << 32 | 5,
                            mtu=1442, subnets=(subnet,))
    port = PortPolicy(id="p1", network_id="n1", mac_address="fa:16:3e:00:00:01",
                      fixed_ips=(FixedIp(subnet_id="s6", ip_address="fd00:1::f816:3eff:fe00:1"),))
    router = RouterPolicy(id="r1", tunnel_key=5 << 32 | 1, admin_state_up=router_up, interfaces=(
        RouterInterface(port_id="rp", network_id="n1", mac_address=ROUTER_MAC, fixed_ips=(
            RouterAddress(subnet_id="s6", ip_address="fd00:1::1", cidr="fd00:1::/64"),)),))
    return port, network, router


@pytest.mark.parametrize(("mode", "managed", "other", "autonomous"), [
    ("slaac", False, False, True),
    ("dhcpv6-stateless", False, True, True),
    ("dhcpv6-stateful", True, True, False),
])
def test_the_advert_follows_the_subnets_ra_mode(mode: str, managed: bool, other: bool,
                                                autonomous: bool) -> None:
    advert = advert_for(*world(mode)[:2], [world(mode)[2]])
    assert advert is not None
    assert (advert.managed, advert.other) == (managed, other)
    assert [(str(p.network), p.autonomous) for p in advert.prefixes] == [("fd00:1::/64", autonomous)]
    assert advert.router_ip == "fe80::f816:3eff:fe00:101" == eui64_link_local(ROUTER_MAC)
    assert advert.mtu == 1442


def test_no_advert_without_ra_mode_or_without_a_live_router() -> None:
    port, network, router = world(None)
    assert advert_for(port, network, [router]) is None
    port, network, router = world("slaac", router_up=False)
    assert advert_for(port, network, [router]) is None
    assert advert_for(port, network, []) is None


def test_the_frame_is_an_advertisement_with_a_valid_checksum() -> None:
    advert = advert_for(*world("slaac")[:2], [world("slaac")[2]])
    assert isinstance(advert, RouterAdvert)
    frame = build_advertisement(advert, key=10, dst_ip="fe80::f816:3eff:fe00:1")
    assert frame[0:6] == bytes.fromhex(key_mac(10).replace(":", ""))
    assert frame[6:12] == bytes.fromhex(ROUTER_MAC.replace(":", ""))
    ipv6, icmp = frame[14:54], frame[54:]
    src, dst = ipv6[8:24], ipv6[24:40]
    router_ip = ipaddress.IPv6Address(eui64_link_local(ROUTER_MAC))
    assert ipv6[7] == 255 and ipaddress.IPv6Address(src) == router_ip
    assert struct.unpack("!H", ipv6[4:6])[0] == len(icmp)
    pseudo = src + dst + struct.pack("!IxxxB", len(icmp), 58)
    assert internet_checksum(pseudo + icmp) == 0  # the checksum field makes it sum to zero
    assert icmp[0] == ROUTER_ADVERTISEMENT and struct.unpack("!H", icmp[6:8])[0] == 1800
    # options: source link-layer address, MTU, one prefix (on-link, autonomous)
    assert icmp[16:18] == b"\x01\x01" and icmp[24:26] == b"\x05\x01"
    assert icmp[32] == 3 and icmp[34] == 64 and icmp[35] == 0xC0
    assert ipaddress.IPv6Address(icmp[48:64]) == ipaddress.IPv6Address("fd00:1::")


def test_a_solicitation_names_its_port_by_the_key_mac() -> None:
    src_ip = ipaddress.IPv6Address("fe80::f816:3eff:fe00:1").packed
    icmp = struct.pack("!BBHI", 133, 0, 0, 0)
    ipv6 = struct.pack("!IHBB", 6 << 28, len(icmp), 58, 255) + src_ip + \
        ipaddress.IPv6Address("ff02::2").packed
    frame = bytes.fromhex(key_mac(0x1234).replace(":", "")) + bytes(6) + b"\x86\xdd" + ipv6 + icmp
    found = parse_solicitation(frame)
    assert found is not None and found.key == 0x1234 and found.src_ip == "fe80::f816:3eff:fe00:1"
    plain = bytes.fromhex("333300000002") + frame[6:]  # not addressed to a key: not ours
    assert parse_solicitation(plain) is None
