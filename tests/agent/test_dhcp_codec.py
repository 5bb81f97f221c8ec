"""The DHCPv4 codec: leases from policy, request parsing, replies byte by byte (no root)."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neutrino.agent.dhcp import (
    ACK,
    DECLINE,
    DISCOVER,
    INFORM,
    NAK,
    OFFER,
    RELEASE,
    REQUEST,
    DhcpRequest,
    Lease,
    build_reply,
    encode_classless_routes,
    lease_for,
    parse_request,
    unknown_extra_options,
)
from neutrino.policy.model import DhcpOption, FixedIp, HostRoute, NetworkPolicy, PortPolicy, SubnetPolicy

CLIENT_MAC = "fa:16:3e:12:34:56"
SERVER_MAC = "fa:16:3e:00:00:02"


# --- an independent encoder for client messages and decoder for replies ---------------------

def checksum(data: bytes) -> int:
    """RFC 1071, written out the long way."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def client_frame(message_type: int | None = DISCOVER, *, mac: str = CLIENT_MAC, xid: int = 0x11223344,
                 flags: int = 0, ciaddr: str = "0.0.0.0", options: list[tuple[int, bytes]] | None = None,
                 src_port: int = 68, dst_port: int = 67, vlan: int | None = None, op: int = 1,
                 cookie: bytes = b"\x63\x82\x53\x63", raw_options: bytes | None = None,
                 trailer: bytes = b"", fragment: int = 0) -> bytes:
    """A client's DHCP message in a full Ethernet frame (as udhcpc or dhclient would send it)."""
    chaddr = bytes.fromhex(mac.replace(":", ""))
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, 6, 0, xid, 0, flags,
                        ipaddress.IPv4Address(ciaddr).packed, bytes(4), bytes(4), bytes(4), chaddr,
                        b"", b"") + cookie
    if raw_options is None:
        opts = ([(53, bytes([message_type]))] if message_type is not None else []) + (options or [])
        raw_options = b"".join(bytes([code, len(data)]) + data for code, data in opts) + b"\xff"
    bootp += raw_options
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(bootp), 0) + bootp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, fragment, 64, 17, 0,
                     bytes(4), b"\xff" * 4)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    eth = b"\xff" * 6 + chaddr
    if vlan is not None:
        eth += struct.pack("!HH", 0x8100, vlan)
    return eth + b"\x08\x00" + ip + udp + trailer


@dataclass
class Reply:
    eth_dst: str
    eth_src: str
    vlan: int | None
    ip_src: str
    ip_dst: str
    ttl: int
    udp_src: int
    udp_dst: int
    op: int
    xid: int
    flags: int
    ciaddr: str
    yiaddr: str
    siaddr: str
    giaddr: str
    chaddr: str
    sname: bytes
    file: bytes
    options: dict[int, bytes] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)

    @property
    def message_type(self) -> int:
        return self.options[53][0]


def decode_reply(frame: bytes) -> Reply:
    """Decode a server reply, checking every length and both checksums on the way."""
    eth_dst, eth_src = frame[0:6].hex(":"), frame[6:12].hex(":")
    at, vlan = 12, None
    if frame[at:at + 2] == b"\x81\x00":
        vlan = struct.unpack_from("!H", frame, at + 2)[0]
        at += 4
    assert frame[at:at + 2] == b"\x08\x00"
    ip = frame[at + 2:]
    assert ip[0] == 0x45
    total_length = struct.unpack_from("!H", ip, 2)[0]
    assert total_length == len(ip)
    assert checksum(ip[:20]) == 0, "bad IPv4 header checksum"
    assert ip[9] == 17
    assert struct.unpack_from("!H", ip, 6)[0] & 0x3FFF == 0
    src, dst = ip[12:16], ip[16:20]
    udp = ip[20:]
    udp_src, udp_dst, udp_length, udp_sum = struct.unpack_from("!HHHH", udp)
    assert udp_length == len(udp)
    assert udp_sum != 0
    pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_length)
    assert checksum(pseudo + udp) == 0, "bad UDP checksum"
    bootp = udp[8:]
    assert len(bootp) >= 300
    op, htype, hlen, hops, xid, secs, flags = struct.unpack_from("!BBBBIHH", bootp)
    assert (htype, hlen, hops, secs) == (1, 6, 0, 0)
    assert bootp[236:240] == b"\x63\x82\x53\x63"
    options: dict[int, bytes] = {}
    order: list[int] = []
    i = 240
    while bootp[i] != 255:
        code, length = bootp[i], bootp[i + 1]
        options[code] = options.get(code, b"") + bootp[i + 2:i + 2 + length]
        if code not in order:
            order.append(code)
        i += 2 + length
    assert not any(bootp[i + 1:]), "only padding after the end option"

    def addr(data: bytes) -> str:
        return str(ipaddress.IPv4Address(data))

    return Reply(eth_dst, eth_src, vlan, addr(src), addr(dst), ip[8], udp_src, udp_dst, op, xid, flags,
                 addr(bootp[12:16]), addr(bootp[16:20]), addr(bootp[20:24]), addr(bootp[24:28]),
                 bootp[28:34].hex(":"), bootp[44:108].rstrip(b"\0"), bootp[108:236].rstrip(b"\0"),
                 options, order)


def u32(value: int) -> bytes:
    return struct.pack("!I", value)


def ip4(*addresses: str) -> bytes:
    return b"".join(ipaddress.IPv4Address(a).packed for a in addresses)


LEASE = Lease(mac=CLIENT_MAC, ip="10.0.0.5", prefixlen=24, server_ip="10.0.0.2", server_mac=SERVER_MAC,
              gateway="10.0.0.1", dns_servers=("8.8.8.8", "1.1.1.1"), mtu=1450)


def reply_to(frame: bytes, lease: Lease = LEASE, port: int = 7) -> Reply | None:
    request = parse_request(frame)
    assert request is not None
    built = build_reply(request, lease, udp_dst_port=port)
    return None if built is None else decode_reply(built)


# --- leases from policy ------------------------------------------------------------------------

def subnet4(**changes: object) -> SubnetPolicy:
    base = SubnetPolicy(id="s4", cidr="10.0.0.0/24", ip_version=4, gateway_ip="10.0.0.1",
                        dns_nameservers=("8.8.8.8",),
                        host_routes=(HostRoute(destination="172.16.0.0/12", nexthop="10.0.0.254"),),
                        dhcp_server_ip="10.0.0.2", dhcp_server_mac="FA:16:3E:00:00:02")
    return base.model_copy(update=changes)


SUBNET6 = SubnetPolicy(id="s6", cidr="fd00::/64", ip_version=6, dhcp_server_ip="fd00::2",
                       dhcp_server_mac="fa:16:3e:00:00:02")


def network(*subnets: SubnetPolicy, mtu: int = 1442) -> NetworkPolicy:
    return NetworkPolicy(id="net", network_type="geneve", segmentation_id=5, mtu=mtu, tunnel_key=3,
                         subnets=subnets)


def port(*fixed: tuple[str, str], opts: tuple[DhcpOption, ...] = ()) -> PortPolicy:
    return PortPolicy(id="p", network_id="net", mac_address="FA:16:3E:12:34:56",
                      fixed_ips=tuple(FixedIp(subnet_id=s, ip_address=a) for s, a in fixed),
                      extra_dhcp_opts=opts)


def test_lease_for_a_dhcp_subnet() -> None:
    lease = lease_for(port(("s6", "fd00::5"), ("s4", "10.0.0.5")), network(SUBNET6, subnet4()))
    assert lease == Lease(mac=CLIENT_MAC, ip="10.0.0.5", prefixlen=24, server_ip="10.0.0.2",
                          server_mac=SERVER_MAC, gateway="10.0.0.1", dns_servers=("8.8.8.8",),
                          host_routes=(("172.16.0.0/12", "10.0.0.254"),), mtu=1442, lease_time=86400,
                          domain_name="openstacklocal")
    short = lease_for(port(("s4", "10.0.0.5")), network(subnet4()), lease_time=600)
    assert short is not None and short.lease_time == 600


@pytest.mark.parametrize("subnet", [
    subnet4(enable_dhcp=False),
    subnet4(dhcp_server_ip=None),
    subnet4(dhcp_server_mac=None),
    subnet4(dhcp_server_mac="not-a-mac"),
], ids=["dhcp-disabled", "no-server-ip", "no-server-mac", "bad-server-mac"])
def test_no_lease_without_a_dhcp_server(subnet: SubnetPolicy) -> None:
    assert lease_for(port(("s4", "10.0.0.5")), network(subnet)) is None


def test_no_lease_for_ipv6_only_ports_or_other_networks() -> None:
    assert lease_for(port(("s6", "fd00::5")), network(SUBNET6, subnet4())) is None
    assert lease_for(port(), network(subnet4())) is None
    other = network(subnet4()).model_copy(update={"id": "other"})
    assert lease_for(port(("s4", "10.0.0.5")), other) is None
    assert lease_for(port(("missing", "10.0.0.5")), network(subnet4())) is None


def test_first_ipv4_address_on_a_dhcp_subnet_wins() -> None:
    off = subnet4(id="off", cidr="10.9.0.0/24", enable_dhcp=False)
    lease = lease_for(port(("off", "10.9.0.5"), ("s4", "10.0.0.5"), ("s4", "10.0.0.6")),
                      network(off, subnet4()))
    assert lease is not None and lease.ip == "10.0.0.5"


def test_lease_without_gateway_dns_or_routes() -> None:
    lease = lease_for(port(("s4", "10.0.0.5")),
                      network(subnet4(gateway_ip=None, dns_nameservers=(), host_routes=())))
    assert lease is not None
    assert (lease.gateway, lease.dns_servers, lease.host_routes) == (None, (), ())
    reply = reply_to(client_frame(DISCOVER), lease)
    assert reply is not None
    assert not {3, 6, 121} & set(reply.options)


def opt(name: str, value: str, version: int = 4) -> DhcpOption:
    return DhcpOption(opt_name=name, opt_value=value, ip_version=version)


def test_extra_dhcp_opts_become_raw_options() -> None:
    opts = (
        opt("router", "10.0.0.254"),
        opt("dns-server", "9.9.9.9, 149.112.112.112"),
        opt("domain-name", "example.org"),
        opt("interface-mtu", "1400"),
        opt("ntp-server", "10.0.0.3"),
        opt("classless-static-route", "10.0.0.0/8,10.1.0.1,0.0.0.0/0,10.0.0.1"),
        opt("tftp-server", "tftp.example.org"),
        opt("bootfile-name", "pxelinux.0"),
        opt("domain-search", "a.example.org,example.org"),
        opt("server-ip-address", "10.0.0.9"),
        opt("option:150", "10.0.0.9"),  # no type known: looks like an address
        opt("252", "http://wpad/wpad.dat"),  # a string
        opt("option:223", "01:02:ff"),  # hex bytes
        opt("224", "1000"),  # decimal, as small as it fits
        opt("mtu", "9000", version=6),  # not IPv4: not ours
    )
    lease = lease_for(port(("s4", "10.0.0.5"), opts=opts), network(subnet4()))
    assert lease is not None
    assert dict(lease.extra_options) == {
        3: ip4("10.0.0.254"),
        6: ip4("9.9.9.9", "149.112.112.112"),
        15: b"example.org",
        26: struct.pack("!H", 1400),
        42: ip4("10.0.0.3"),
        121: bytes([8, 10, 10, 1, 0, 1, 0, 10, 0, 0, 1]),
        66: b"tftp.example.org",
        67: b"pxelinux.0",
        119: b"\x01a\x07example\x03org\x00\x07example\x03org\x00",
        150: ip4("10.0.0.9"),
        252: b"http://wpad/wpad.dat",
        223: b"\x01\x02\xff",
        224: struct.pack("!H", 1000),
    }
    assert lease.next_server == "10.0.0.9"
    assert unknown_extra_options(port(("s4", "10.0.0.5"), opts=opts)) == ()


def test_unknown_and_unusable_extra_options_are_reported() -> None:
    bad = (opt("no-such-option", "x"), opt("router", "not-an-address"), opt("mtu", "12"),
           opt("53", "5"), opt("option:255", "1"), opt("server-ip-address", "fd00::1"),
           opt("classless-static-route", "10.0.0.0/8"))
    good = opt("mtu", "1400")
    the_port = port(("s4", "10.0.0.5"), opts=(*bad, good))
    reported = unknown_extra_options(the_port)
    assert [option for option, _ in reported] == list(bad)
    assert all(reason for _, reason in reported)
    lease = lease_for(the_port, network(subnet4()))
    assert lease is not None
    assert lease.extra_options == ((26, struct.pack("!H", 1400)),)
    assert lease.next_server is None


# --- replies ------------------------------------------------------------------------------------

def test_offer() -> None:
    reply = reply_to(client_frame(DISCOVER, options=[(55, bytes([1, 3, 6, 15, 26, 28, 121]))]))
    assert reply is not None
    assert reply.message_type == OFFER
    assert (reply.eth_src, reply.eth_dst, reply.vlan) == (SERVER_MAC, CLIENT_MAC, None)
    assert (reply.ip_src, reply.ip_dst, reply.ttl) == ("10.0.0.2", "10.0.0.5", 64)
    assert (reply.udp_src, reply.udp_dst) == (67, 7)
    assert (reply.op, reply.xid, reply.flags, reply.chaddr) == (2, 0x11223344, 0, CLIENT_MAC)
    assert (reply.ciaddr, reply.yiaddr, reply.siaddr, reply.giaddr) == ("0.0.0.0", "10.0.0.5",
                                                                        "10.0.0.2", "0.0.0.0")
    assert reply.options == {
        53: bytes([OFFER]), 54: ip4("10.0.0.2"), 51: u32(86400), 58: u32(43200), 59: u32(75600),
        1: ip4("255.255.255.0"), 28: ip4("10.0.0.255"), 3: ip4("10.0.0.1"),
        6: ip4("8.8.8.8", "1.1.1.1"), 15: b"openstacklocal", 26: struct.pack("!H", 1450)}
    assert reply.order[:2] == [53, 54]


def test_ack_in_each_client_state() -> None:
    selecting = reply_to(client_frame(REQUEST, options=[(50, ip4("10.0.0.5")), (54, ip4("10.0.0.2"))]))
    init_reboot = reply_to(client_frame(REQUEST, options=[(50, ip4("10.0.0.5"))]))
    renewing = reply_to(client_frame(REQUEST, ciaddr="10.0.0.5"))
    for reply in (selecting, init_reboot, renewing):
        assert reply is not None
        assert reply.message_type == ACK
        assert reply.yiaddr == "10.0.0.5"
        assert reply.ip_dst == "10.0.0.5"
        assert reply.options[51] == u32(86400)
    assert selecting is not None and renewing is not None
    assert (selecting.ciaddr, renewing.ciaddr) == ("0.0.0.0", "10.0.0.5")


def test_nak_for_an_address_we_do_not_give() -> None:
    for frame in (client_frame(REQUEST, options=[(50, ip4("10.0.0.99"))]),
                  client_frame(REQUEST, ciaddr="192.168.0.7"),
                  client_frame(REQUEST, options=[(50, ip4("10.0.0.99")), (54, ip4("10.0.0.2"))]),
                  client_frame(REQUEST)):
        reply = reply_to(frame)
        assert reply is not None
        assert reply.message_type == NAK
        assert (reply.ip_src, reply.ip_dst, reply.eth_dst) == ("10.0.0.2", "255.255.255.255", CLIENT_MAC)
        assert (reply.ciaddr, reply.yiaddr, reply.siaddr) == ("0.0.0.0", "0.0.0.0", "0.0.0.0")
        assert set(reply.options) == {53, 54, 56}


def test_no_answer_when_the_client_chose_another_server() -> None:
    assert reply_to(client_frame(REQUEST, options=[(50, ip4("10.0.0.5")), (54, ip4("10.0.0.3"))])) is None
    assert reply_to(client_frame(REQUEST, options=[(50, ip4("10.0.0.9")), (54, ip4("10.0.0.3"))])) is None


def test_inform() -> None:
    reply = reply_to(client_frame(INFORM, ciaddr="10.0.0.5"))
    assert reply is not None
    assert reply.message_type == ACK
    assert (reply.ciaddr, reply.yiaddr, reply.ip_dst) == ("10.0.0.5", "0.0.0.0", "10.0.0.5")
    assert not {51, 58, 59} & set(reply.options)
    assert {1, 3, 6, 15, 26} <= set(reply.options)
    no_ciaddr = reply_to(client_frame(INFORM))
    assert no_ciaddr is not None and no_ciaddr.ip_dst == "255.255.255.255"


@pytest.mark.parametrize("message", [DECLINE, RELEASE])
def test_no_answer_to_decline_or_release(message: int) -> None:
    assert reply_to(client_frame(message, ciaddr="10.0.0.5",
                                 options=[(50, ip4("10.0.0.5")), (54, ip4("10.0.0.2"))])) is None


def test_broadcast_flag() -> None:
    for frame in (client_frame(DISCOVER, flags=0x8000),
                  client_frame(REQUEST, flags=0x8000, ciaddr="10.0.0.5")):
        reply = reply_to(frame)
        assert reply is not None
        assert (reply.ip_dst, reply.eth_dst, reply.flags) == ("255.255.255.255", CLIENT_MAC, 0x8000)


def test_vlan_tag_and_client_id_are_echoed_and_padding_ignored() -> None:
    client_id = b"\x01" + bytes.fromhex(CLIENT_MAC.replace(":", ""))
    frame = client_frame(DISCOVER, vlan=0x2064, options=[(61, client_id)], trailer=b"\0" * 30)
    request = parse_request(frame)
    assert request is not None and request.vlan_tci == 0x2064 and request.client_id == client_id
    reply = reply_to(frame)
    assert reply is not None
    assert reply.vlan == 0x2064 and reply.options[61] == client_id


def test_infinite_lease_and_no_domain() -> None:
    reply = reply_to(client_frame(DISCOVER), replace(LEASE, lease_time=-1, domain_name=None))
    assert reply is not None
    assert reply.options[51] == b"\xff\xff\xff\xff"
    assert not {15, 58, 59} & set(reply.options)


# --- option 121 ----------------------------------------------------------------------------------

def test_classless_static_route_encoding() -> None:
    assert encode_classless_routes([("10.0.0.0/8", "10.1.0.1")]) == bytes([8, 10, 10, 1, 0, 1])
    assert encode_classless_routes([("0.0.0.0/0", "10.0.0.1")]) == bytes([0, 10, 0, 0, 1])
    assert encode_classless_routes([("192.168.1.5/32", "10.0.0.254")]) == bytes(
        [32, 192, 168, 1, 5, 10, 0, 0, 254])
    assert encode_classless_routes([("172.16.0.0/12", "10.0.0.254")]) == bytes(
        [12, 172, 16, 10, 0, 0, 254])
    assert encode_classless_routes([("10.11.12.128/25", "0.0.0.0")]) == bytes(
        [25, 10, 11, 12, 128, 0, 0, 0, 0])
    assert encode_classless_routes([("10.11.12.0/24", "10.0.0.1")]) == bytes([24, 10, 11, 12, 10, 0, 0, 1])


def test_host_routes_bring_the_default_route_into_option_121() -> None:
    lease = replace(LEASE, host_routes=(("10.0.0.0/8", "10.1.0.1"), ("192.168.1.5/32", "10.0.0.254")))
    reply = reply_to(client_frame(DISCOVER), lease)
    assert reply is not None
    assert reply.options[121] == bytes([8, 10, 10, 1, 0, 1, 32, 192, 168, 1, 5, 10, 0, 0, 254,
                                        0, 10, 0, 0, 1])
    assert reply.options[3] == ip4("10.0.0.1")
    # a default route among the host routes is the one sent, not a second one
    own_default = replace(LEASE, host_routes=(("0.0.0.0/0", "10.0.0.254"),))
    reply = reply_to(client_frame(DISCOVER), own_default)
    assert reply is not None and reply.options[121] == bytes([0, 10, 0, 0, 254])
    # without a gateway there is no default route to add
    no_gateway = replace(LEASE, gateway=None, host_routes=(("10.0.0.0/8", "10.1.0.1"),))
    reply = reply_to(client_frame(DISCOVER), no_gateway)
    assert reply is not None and reply.options[121] == bytes([8, 10, 10, 1, 0, 1]) and 3 not in reply.options


# --- extra options in replies ----------------------------------------------------------------------

def test_extra_options_override_computed_ones_and_are_added() -> None:
    lease = replace(LEASE, host_routes=(("10.0.0.0/8", "10.1.0.1"),), next_server="10.0.0.9",
                    extra_options=((3, ip4("10.0.0.254")), (26, struct.pack("!H", 1400)),
                                   (121, bytes([0, 10, 0, 0, 254])), (67, b"pxelinux.0"),
                                   (66, b"tftp.example.org"), (224, bytes(300))))
    reply = reply_to(client_frame(REQUEST, options=[(50, ip4("10.0.0.5"))]), lease)
    assert reply is not None
    assert reply.options[3] == ip4("10.0.0.254")
    assert reply.options[26] == struct.pack("!H", 1400)
    assert reply.options[121] == bytes([0, 10, 0, 0, 254])
    assert reply.options[224] == bytes(300)  # split in two, joined again (RFC 3396)
    assert (reply.siaddr, reply.file, reply.sname) == ("10.0.0.9", b"pxelinux.0", b"tftp.example.org")
    assert reply.options[6] == ip4("8.8.8.8", "1.1.1.1")


# --- parsing ------------------------------------------------------------------------------------------

def test_parse_request_fields() -> None:
    client_id = b"\x01\x02\x03"
    frame = client_frame(REQUEST, flags=0x8000, ciaddr="10.0.0.5", src_port=7, mac="FA:16:3E:AB:CD:EF",
                         options=[(50, ip4("10.0.0.5")), (54, ip4("10.0.0.2")), (55, bytes([1, 3, 121])),
                                  (61, client_id), (0, b"")])
    assert parse_request(frame) == DhcpRequest(
        message_type=REQUEST, xid=0x11223344, flags=0x8000, ciaddr="10.0.0.5",
        chaddr="fa:16:3e:ab:cd:ef", requested_ip="10.0.0.5", server_id="10.0.0.2",
        parameter_list=(1, 3, 121), client_id=client_id, udp_src_port=7, vlan_tci=None)


@pytest.mark.parametrize("frame", [
    client_frame(DISCOVER, op=2),
    client_frame(DISCOVER, dst_port=68),
    client_frame(DISCOVER, cookie=b"\0\0\0\0"),
    client_frame(None),
    client_frame(OFFER),
    client_frame(ACK),
    client_frame(DISCOVER, fragment=0x2000),
    client_frame(DISCOVER, raw_options=b"\x35\x01\x01\x32\x04\x0a"),  # truncated option 50
    client_frame(REQUEST, options=[(50, b"\x0a\x00\x00")]),  # a 3-byte address
    client_frame(DISCOVER)[:-60],
    client_frame(DISCOVER)[:14],
    b"",
], ids=["bootreply", "to-port-68", "no-cookie", "no-message-type", "offer", "ack", "fragment",
        "truncated-option", "short-address", "truncated-frame", "ethernet-only", "empty"])
def test_parse_rejects_what_is_not_a_client_message(frame: bytes) -> None:
    assert parse_request(frame) is None


def test_parse_accepts_padding_and_a_missing_end_option() -> None:
    request = parse_request(client_frame(raw_options=b"\0\0\x35\x01\x03\0"))
    assert request is not None and request.message_type == REQUEST


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_parse_never_raises_on_arbitrary_bytes(frame: bytes) -> None:
    assert parse_request(frame) is None or isinstance(parse_request(frame), DhcpRequest)


VALID_FRAMES = [
    client_frame(DISCOVER, options=[(55, bytes([1, 3, 6])), (61, b"\x01abc")]),
    client_frame(REQUEST, vlan=5, options=[(50, ip4("10.0.0.5")), (54, ip4("10.0.0.2"))]),
    client_frame(INFORM, ciaddr="10.0.0.5"),
]


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID_FRAMES),
       st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=8),
       st.integers(0, 400), st.binary(max_size=40))
def test_parse_never_raises_on_mutated_frames(frame: bytes, flips: list[tuple[int, int]], cut: int,
                                              tail: bytes) -> None:
    data = bytearray(frame)
    for position, value in flips:
        if position < len(data):
            data[position] = value
    mutated = bytes(data[:len(data) - cut]) + tail
    request = parse_request(mutated)
    if request is not None:  # whatever parses must be answerable without raising
        built = build_reply(request, LEASE, udp_dst_port=request.udp_src_port)
        if built is not None:
            decode_reply(built)


@settings(max_examples=200)
@given(st.sampled_from([DISCOVER, REQUEST, INFORM]), st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF),
       st.integers(1, 0xFFFF), st.binary(min_size=1, max_size=255),
       st.lists(st.integers(0, 255), max_size=20))
def test_round_trip(message: int, xid: int, flags: int, port_number: int, client_id: bytes,
                    params: list[int]) -> None:
    frame = client_frame(message, xid=xid, flags=flags, src_port=port_number,
                         options=[(61, client_id), (55, bytes(params))])
    request = parse_request(frame)
    assert request is not None
    assert (request.message_type, request.xid, request.flags, request.udp_src_port, request.client_id,
            request.parameter_list) == (message, xid, flags, port_number, client_id, tuple(params))
    built = build_reply(request, LEASE, udp_dst_port=port_number)
    assert built is not None
    reply = decode_reply(built)
    assert (reply.xid, reply.flags, reply.udp_dst, reply.options[61]) == (xid, flags, port_number, client_id)
