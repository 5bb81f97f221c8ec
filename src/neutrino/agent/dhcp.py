"""DHCPv4 for the agent's native DHCP server: leases from policy, and the wire codec.

Pure: no sockets, no clocks, no logging. `dhcp_responder` does the I/O.

What a lease is: one port's first IPv4 fixed IP on a DHCP-enabled subnet of its network, with
the subnet's gateway, DNS servers and host routes, the network's MTU, and the port's IPv4
`extra_dhcp_opts` as raw options (they override the computed option with the same code).
The server is stateless: the answer depends only on the policy, so the lease is the same
whichever agent or restart serves it, and there is nothing to remember between packets.

Wire format choices:

* Requests are parsed from whole Ethernet frames: Ethernet II with at most one 802.1Q tag,
  IPv4 (unfragmented, any header options), UDP to port 67, BOOTP `op`=1 with htype 1 / hlen 6,
  the magic cookie, and an option 53 naming a client message.  Anything else is None.
  Checksums are not verified: a client's kernel may leave the UDP checksum to (virtual) NIC
  offload, and the frame reached us over a link that already dropped corrupted frames.
  Options split into several instances are concatenated (RFC 3396); a truncated option makes
  the message malformed; option overload (52) is ignored.
* The UDP source port of a request is kept (`udp_src_port`): the OVS pipeline overwrites it
  with the VIF's OpenFlow port number, and the reply's UDP destination port carries it back.
* Replies are whole Ethernet frames: eth src = server MAC, eth dst = chaddr (never the
  broadcast MAC, so a reply can only reach the client it is for), the request's 802.1Q tag
  repeated if it had one, IP src = server IP, IP dst = 255.255.255.255 for a NAK or when the
  client set the broadcast flag, else ciaddr if set, else yiaddr; TTL 64, IP and UDP checksums
  computed; UDP 67 -> `udp_dst_port`.  The BOOTP part is padded to 300 bytes (the BOOTP
  minimum some old clients insist on); options longer than 255 bytes are split (RFC 3396).
* OFFER/ACK carry 53, 54, 51/58/59 (lease, T1 = lease/2, T2 = lease*7/8; a negative lease
  time means infinite: 0xffffffff and no T1/T2), 1, 28, 3, 6, 15, 26, 121, the port's extra
  options, and the client identifier (61) echoed as RFC 6842 requires.  When the subnet has
  host routes, option 121 (RFC 3442) also carries the default route via the gateway, because
  a client that gets 121 ignores option 3.  Options are sent whether or not the client asked
  for them (like Neutron's dnsmasq for its computed options); `parameter_list` is kept for
  callers that want to know.
* A REQUEST is ACKed when the address it asks for (option 50, else ciaddr) is the lease's
  and it names no server or this one; NAKed when it asks for anything else; ignored (None)
  when it names another server.  INFORM gets an ACK without an address or lease times.
  DECLINE and RELEASE get nothing.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from neutrino.policy.model import DhcpOption, NetworkPolicy, PortPolicy

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
MESSAGE_NAMES = {DISCOVER: "DHCPDISCOVER", OFFER: "DHCPOFFER", REQUEST: "DHCPREQUEST",
                 DECLINE: "DHCPDECLINE", ACK: "DHCPACK", NAK: "DHCPNAK", RELEASE: "DHCPRELEASE",
                 INFORM: "DHCPINFORM"}
CLIENT_MESSAGES = frozenset({DISCOVER, REQUEST, DECLINE, RELEASE, INFORM})

SERVER_PORT, CLIENT_PORT = 67, 68
BROADCAST_FLAG = 0x8000
DEFAULT_LEASE_TIME = 86400  # Neutron's dhcp_lease_duration
DEFAULT_DOMAIN = "openstacklocal"  # Neutron's dns_domain

ETH_P_IP, ETH_P_8021Q = 0x0800, 0x8100
MAGIC_COOKIE = b"\x63\x82\x53\x63"
BOOTP_FIXED = 236  # op .. file, before the cookie
BOOTP_MIN = 300
IP_ANY = "0.0.0.0"
IP_BROADCAST = "255.255.255.255"

# option codes
OPT_PAD, OPT_END = 0, 255
OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS, OPT_DOMAIN_NAME = 1, 3, 6, 15
OPT_MTU, OPT_BROADCAST, OPT_NTP = 26, 28, 42
OPT_REQUESTED_IP, OPT_LEASE_TIME, OPT_OVERLOAD, OPT_MESSAGE_TYPE, OPT_SERVER_ID = 50, 51, 52, 53, 54
OPT_PARAMETER_LIST, OPT_MESSAGE, OPT_RENEWAL, OPT_REBINDING, OPT_CLIENT_ID = 55, 56, 58, 59, 61
OPT_TFTP_SERVER, OPT_BOOTFILE, OPT_DOMAIN_SEARCH, OPT_CLASSLESS_ROUTES = 66, 67, 119, 121

# Codes an extra option may not set: framing, and the message type and server identifier the
# exchange itself depends on.
RESERVED_CODES = frozenset({OPT_PAD, OPT_END, OPT_OVERLOAD, OPT_MESSAGE_TYPE, OPT_SERVER_ID})


@dataclass(frozen=True)
class Lease:
    """What one port is told: its address and the options of its subnet."""

    mac: str  # lower case
    ip: str
    prefixlen: int
    server_ip: str
    server_mac: str
    gateway: str | None = None
    dns_servers: tuple[str, ...] = ()
    host_routes: tuple[tuple[str, str], ...] = ()  # (destination CIDR, nexthop)
    mtu: int | None = None
    lease_time: int = DEFAULT_LEASE_TIME  # seconds; negative = infinite
    domain_name: str | None = DEFAULT_DOMAIN
    extra_options: tuple[tuple[int, bytes], ...] = ()  # raw, from extra_dhcp_opts
    next_server: str | None = None  # siaddr (extra option server-ip-address); None = server_ip


@dataclass(frozen=True)
class DhcpRequest:
    """A client's message, with the bits of its frame that the reply depends on."""

    message_type: int
    xid: int
    flags: int
    ciaddr: str
    chaddr: str  # lower-case MAC
    requested_ip: str | None = None  # option 50
    server_id: str | None = None  # option 54
    parameter_list: tuple[int, ...] = ()  # option 55
    client_id: bytes | None = None  # option 61
    udp_src_port: int = CLIENT_PORT  # the pipeline's key (the VIF's OpenFlow port)
    vlan_tci: int | None = None  # the 802.1Q tag the request came with, if any


# --- leases from policy -----------------------------------------------------------------------

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def _mac(text: str | None) -> str | None:
    """`text` in lower case if it is a MAC address written aa:bb:cc:dd:ee:ff, else None."""
    return text.lower() if text is not None and _MAC.fullmatch(text.lower()) else None


def _ipv4(text: str | None) -> str | None:
    """`text` normalised if it is an IPv4 address, else None."""
    if text is None:
        return None
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        return None


def lease_for(port: PortPolicy, network: NetworkPolicy,
              lease_time: int = DEFAULT_LEASE_TIME) -> Lease | None:
    """The lease for the port's first IPv4 fixed IP on a subnet of `network` that has DHCP
    enabled and a DHCP server address and MAC; None if there is no such fixed IP."""
    mac = _mac(port.mac_address)
    if port.network_id != network.id or mac is None:
        return None
    subnets = {subnet.id: subnet for subnet in network.subnets}
    for fixed_ip in port.fixed_ips:
        subnet = subnets.get(fixed_ip.subnet_id)
        address = _ipv4(fixed_ip.ip_address)
        if (subnet is None or address is None or subnet.ip_version != 4 or not subnet.enable_dhcp
                or _ipv4(subnet.dhcp_server_ip) is None or _mac(subnet.dhcp_server_mac) is None):
            continue
        try:
            cidr = ipaddress.IPv4Network(subnet.cidr, strict=False)
        except ValueError:
            continue
        routes = []
        for route in subnet.host_routes:
            nexthop = _ipv4(route.nexthop)
            try:
                destination = ipaddress.IPv4Network(route.destination, strict=False)
            except ValueError:
                continue
            if nexthop is not None:
                routes.append((str(destination), nexthop))
        extra, next_server, _ = _convert_extra_options(port.extra_dhcp_opts)
        return Lease(
            mac=mac, ip=address, prefixlen=cidr.prefixlen,
            server_ip=str(_ipv4(subnet.dhcp_server_ip)), server_mac=str(_mac(subnet.dhcp_server_mac)),
            gateway=_ipv4(subnet.gateway_ip),
            dns_servers=tuple(dns for dns in map(_ipv4, subnet.dns_nameservers) if dns is not None),
            host_routes=tuple(routes), mtu=network.mtu, lease_time=lease_time,
            extra_options=extra, next_server=next_server)
    return None


def unknown_extra_options(port: PortPolicy) -> tuple[tuple[DhcpOption, str], ...]:
    """The port's IPv4 extra_dhcp_opts that `lease_for` skips, each with the reason (an unknown
    name, a value that does not fit the option, or a code the server reserves); for the caller
    to log."""
    return _convert_extra_options(port.extra_dhcp_opts)[2]


# --- extra_dhcp_opts: dnsmasq names and values -> raw options ---------------------------------

def _ip_list(value: str) -> bytes:
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts:
        raise ValueError("no address")
    return b"".join(ipaddress.IPv4Address(part).packed for part in parts)


def _u16(value: str) -> bytes:
    return struct.pack("!H", int(value.strip()))


def _text(value: str) -> bytes:
    data = value.strip().encode()
    if not data:
        raise ValueError("empty value")
    return data


def _mtu(value: str) -> bytes:
    mtu = int(value.strip())
    if not 68 <= mtu <= 65535:
        raise ValueError("an MTU is between 68 and 65535")
    return _u16(value)


def _domain_search(value: str) -> bytes:
    """RFC 3397: a list of DNS names in wire format (without compression)."""
    out = bytearray()
    for name in (part.strip().rstrip(".") for part in value.split(",")):
        if not name:
            continue
        for label in name.split("."):
            raw = label.encode("idna")
            if not 0 < len(raw) < 64:
                raise ValueError(f"bad DNS label {label!r}")
            out += bytes([len(raw)]) + raw
        out.append(0)
    if not out:
        raise ValueError("no domain")
    return bytes(out)


def _classless_routes_value(value: str) -> bytes:
    """dnsmasq's form: `dest/len,router[,dest/len,router...]`."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts or len(parts) % 2:
        raise ValueError("expected destination,router pairs")
    return encode_classless_routes(zip(parts[::2], parts[1::2], strict=True))


_HEX = re.compile(r"[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2})+")
_DEC = re.compile(r"[0-9]+")


def _guessed(value: str) -> bytes:
    """dnsmasq's guess for an option it has no type for: IPv4 addresses, hex bytes
    (`01:02:ff`), a decimal number (1, 2 or 4 bytes as it needs), else a string."""
    stripped = value.strip()
    try:
        return _ip_list(stripped)
    except ValueError:
        pass
    if _HEX.fullmatch(stripped):
        return bytes(int(byte, 16) for byte in stripped.split(":"))
    if _DEC.fullmatch(stripped):
        number = int(stripped)
        if number > 0xFFFFFFFF:
            raise ValueError("number too large")
        size = 4 if number > 0xFFFF else 2 if number > 0xFF else 1
        return number.to_bytes(size, "big")
    return _text(value)


# dnsmasq option names Neutron users write -> (code, encoder)
_NAMED: dict[str, tuple[int, Callable[[str], bytes]]] = {
    "netmask": (OPT_SUBNET_MASK, _ip_list),
    "router": (OPT_ROUTER, _ip_list),
    "dns-server": (OPT_DNS, _ip_list),
    "domain-name": (OPT_DOMAIN_NAME, _text),
    "mtu": (OPT_MTU, _mtu),
    "interface-mtu": (OPT_MTU, _mtu),
    "broadcast": (OPT_BROADCAST, _ip_list),
    "ntp-server": (OPT_NTP, _ip_list),
    "tftp-server": (OPT_TFTP_SERVER, _text),
    "bootfile-name": (OPT_BOOTFILE, _text),
    "domain-search": (OPT_DOMAIN_SEARCH, _domain_search),
    "classless-static-route": (OPT_CLASSLESS_ROUTES, _classless_routes_value),
}
_ENCODERS = {code: encoder for code, encoder in _NAMED.values()}
SERVER_IP_ADDRESS = "server-ip-address"  # not an option: the BOOTP siaddr field


def _convert_extra_options(
        options: Iterable[DhcpOption]
) -> tuple[tuple[tuple[int, bytes], ...], str | None, tuple[tuple[DhcpOption, str], ...]]:
    """(raw options, siaddr, skipped with reasons) for the IPv4 ones among `options`.
    A later option with the same code replaces an earlier one."""
    raw: dict[int, bytes] = {}
    next_server: str | None = None
    skipped: list[tuple[DhcpOption, str]] = []
    for option in options:
        if option.ip_version != 4:
            continue
        name = option.opt_name.strip().lower()
        name = name.removeprefix("option:")
        if name == SERVER_IP_ADDRESS:
            next_server = _ipv4(option.opt_value)
            if next_server is None:
                skipped.append((option, "server-ip-address is not an IPv4 address"))
            continue
        if _DEC.fullmatch(name):
            code = int(name)
            encoder = _ENCODERS.get(code, _guessed)
        elif name in _NAMED:
            code, encoder = _NAMED[name]
        else:
            skipped.append((option, "unknown option name"))
            continue
        if not 0 < code < 255 or code in RESERVED_CODES:
            skipped.append((option, f"option {code} cannot be set"))
            continue
        try:
            raw[code] = encoder(option.opt_value)
        except (ValueError, UnicodeError) as error:
            skipped.append((option, f"bad value for option {code}: {error}"))
    return tuple(raw.items()), next_server, tuple(skipped)


def encode_classless_routes(routes: Iterable[tuple[str, str]]) -> bytes:
    """RFC 3442 option 121 data: per route the prefix length, the significant octets of the
    destination (ceil(len/8) of them), then the router."""
    out = bytearray()
    for destination, router in routes:
        network = ipaddress.IPv4Network(destination, strict=False)
        significant = (network.prefixlen + 7) // 8
        out.append(network.prefixlen)
        out += network.network_address.packed[:significant]
        out += ipaddress.IPv4Address(router).packed
    return bytes(out)


# --- parsing requests -------------------------------------------------------------------------

def _options(data: bytes) -> dict[int, bytes] | None:
    """The options after the cookie, same-code instances concatenated; None if truncated."""
    found: dict[int, bytes] = {}
    at = 0
    while at < len(data):
        code = data[at]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            at += 1
            continue
        if at + 2 > len(data) or at + 2 + data[at + 1] > len(data):
            return None
        length = data[at + 1]
        found[code] = found.get(code, b"") + data[at + 2:at + 2 + length]
        at += 2 + length
    return found


def _address(data: bytes | None) -> str | None:
    """An address option: None if absent; ValueError if not 4 bytes."""
    if data is None:
        return None
    if len(data) != 4:
        raise ValueError("address option of the wrong length")
    return str(ipaddress.IPv4Address(data))


def parse_request(frame: bytes) -> DhcpRequest | None:
    """The DHCP client message in an Ethernet frame, or None if it holds none (never raises)."""
    try:
        return _parse(bytes(frame))
    except (ValueError, struct.error, IndexError):  # pragma: no cover - belt and braces
        return None


def _parse(frame: bytes) -> DhcpRequest | None:
    if len(frame) < 14:
        return None
    at = 12
    (ethertype,) = struct.unpack_from("!H", frame, at)
    vlan_tci = None
    if ethertype == ETH_P_8021Q:
        if len(frame) < 18:
            return None
        vlan_tci, ethertype = struct.unpack_from("!HH", frame, 14)
        at = 16
    if ethertype != ETH_P_IP:
        return None
    ip_start = at + 2
    if len(frame) < ip_start + 20:
        return None
    version_ihl, _, total_length, _, fragment, _, protocol = struct.unpack_from("!BBHHHBB", frame,
                                                                               ip_start)
    header_length = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or header_length < 20 or protocol != 17 or fragment & 0x3FFF:
        return None
    ip_end = ip_start + total_length  # Ethernet may pad short frames: trust the IP length
    udp_start = ip_start + header_length
    if total_length < header_length + 8 or ip_end > len(frame):
        return None
    src_port, dst_port, udp_length = struct.unpack_from("!HHH", frame, udp_start)
    if dst_port != SERVER_PORT or udp_length < 8 or udp_start + udp_length > ip_end:
        return None
    bootp = frame[udp_start + 8:udp_start + udp_length]
    if len(bootp) < BOOTP_FIXED + 4 or bootp[BOOTP_FIXED:BOOTP_FIXED + 4] != MAGIC_COOKIE:
        return None
    op, htype, hlen, _, xid, _, flags = struct.unpack_from("!BBBBIHH", bootp, 0)
    if op != 1 or htype != 1 or hlen != 6:
        return None
    options = _options(bootp[BOOTP_FIXED + 4:])
    if options is None:
        return None
    message_type = options.get(OPT_MESSAGE_TYPE, b"")
    if len(message_type) != 1 or message_type[0] not in CLIENT_MESSAGES:
        return None
    try:
        requested_ip = _address(options.get(OPT_REQUESTED_IP))
        server_id = _address(options.get(OPT_SERVER_ID))
    except ValueError:
        return None
    return DhcpRequest(
        message_type=message_type[0], xid=xid, flags=flags,
        ciaddr=str(ipaddress.IPv4Address(bootp[12:16])),
        chaddr=bootp[28:34].hex(":"),
        requested_ip=requested_ip, server_id=server_id,
        parameter_list=tuple(options.get(OPT_PARAMETER_LIST, b"")),
        client_id=options.get(OPT_CLIENT_ID),
        udp_src_port=src_port, vlan_tci=vlan_tci)


# --- building replies -------------------------------------------------------------------------

def reply_type(request: DhcpRequest, lease: Lease) -> int | None:
    """OFFER, ACK or NAK: what `build_reply` answers `request` with; None for no answer."""
    if request.message_type == DISCOVER:
        return OFFER
    if request.message_type == INFORM:
        return ACK
    if request.message_type != REQUEST:
        return None
    if request.server_id is not None and request.server_id != lease.server_ip:
        return None  # the client chose another server's offer
    wanted = request.requested_ip or (request.ciaddr if request.ciaddr != IP_ANY else None)
    return ACK if wanted == lease.ip else NAK


def internet_checksum(data: bytes) -> int:
    """The ones' complement sum of RFC 1071 (IPv4 header, UDP)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _encode_options(options: Iterable[tuple[int, bytes]]) -> Iterator[bytes]:
    for code, data in options:
        for at in range(0, max(len(data), 1), 255):  # RFC 3396: long options split
            chunk = data[at:at + 255]
            yield bytes([code, len(chunk)]) + chunk


def _reply_options(request: DhcpRequest, lease: Lease, message: int) -> list[tuple[int, bytes]]:
    server = ipaddress.IPv4Address(lease.server_ip).packed
    options: dict[int, bytes] = {OPT_MESSAGE_TYPE: bytes([message]), OPT_SERVER_ID: server}
    if message == NAK:
        options[OPT_MESSAGE] = b"requested address is not this client's"
    else:
        if request.message_type != INFORM:
            if lease.lease_time < 0:
                options[OPT_LEASE_TIME] = struct.pack("!I", 0xFFFFFFFF)
            else:
                options[OPT_LEASE_TIME] = struct.pack("!I", lease.lease_time)
                options[OPT_RENEWAL] = struct.pack("!I", lease.lease_time // 2)
                options[OPT_REBINDING] = struct.pack("!I", lease.lease_time * 7 // 8)
        interface = ipaddress.IPv4Interface(f"{lease.ip}/{lease.prefixlen}")
        options[OPT_SUBNET_MASK] = interface.netmask.packed
        if lease.prefixlen < 31:
            options[OPT_BROADCAST] = interface.network.broadcast_address.packed
        if lease.gateway:
            options[OPT_ROUTER] = ipaddress.IPv4Address(lease.gateway).packed
        if lease.dns_servers:
            options[OPT_DNS] = b"".join(ipaddress.IPv4Address(dns).packed for dns in lease.dns_servers)
        if lease.domain_name:
            options[OPT_DOMAIN_NAME] = lease.domain_name.encode()
        if lease.mtu:
            options[OPT_MTU] = struct.pack("!H", lease.mtu)
        if lease.host_routes:
            routes = list(lease.host_routes)
            has_default = any(ipaddress.IPv4Network(dest, strict=False).prefixlen == 0
                              for dest, _ in routes)
            if lease.gateway and not has_default:
                routes.append(("0.0.0.0/0", lease.gateway))
            options[OPT_CLASSLESS_ROUTES] = encode_classless_routes(routes)
        options.update(lease.extra_options)  # an extra option replaces the computed one
    if request.client_id is not None:
        options[OPT_CLIENT_ID] = request.client_id  # RFC 6842
    return list(options.items())


def build_reply(request: DhcpRequest, lease: Lease, *, udp_dst_port: int) -> bytes | None:
    """The Ethernet frame answering `request` with `lease` (see the module docstring), or None
    when the request gets no answer."""
    message = reply_type(request, lease)
    if message is None:
        return None
    options = _reply_options(request, lease, message)
    yiaddr = lease.ip if message == OFFER or (message == ACK and request.message_type == REQUEST) \
        else IP_ANY
    ciaddr = request.ciaddr if message == ACK else IP_ANY
    siaddr = IP_ANY if message == NAK else lease.next_server or lease.server_ip
    extra = dict(options)
    sname = extra.get(OPT_TFTP_SERVER, b"") if message != NAK else b""
    bootfile = extra.get(OPT_BOOTFILE, b"") if message != NAK else b""
    bootp = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 0, request.xid, 0, request.flags,
        ipaddress.IPv4Address(ciaddr).packed, ipaddress.IPv4Address(yiaddr).packed,
        ipaddress.IPv4Address(siaddr).packed, bytes(4), bytes.fromhex(request.chaddr.replace(":", "")),
        sname if len(sname) < 64 else b"", bootfile if len(bootfile) < 128 else b"")
    bootp += MAGIC_COOKIE + b"".join(_encode_options(options)) + bytes([OPT_END])
    bootp = bootp.ljust(BOOTP_MIN, b"\0")

    if message == NAK or request.flags & BROADCAST_FLAG:
        destination = IP_BROADCAST
    elif request.ciaddr != IP_ANY:
        destination = request.ciaddr
    elif yiaddr != IP_ANY:
        destination = yiaddr
    else:
        destination = IP_BROADCAST
    src = ipaddress.IPv4Address(lease.server_ip).packed
    dst = ipaddress.IPv4Address(destination).packed

    udp_length = 8 + len(bootp)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_length)
    udp_header = struct.pack("!HHHH", SERVER_PORT, udp_dst_port, udp_length, 0)
    udp_checksum = internet_checksum(pseudo + udp_header + bootp) or 0xFFFF  # 0 means "none" in UDP
    udp = struct.pack("!HHHH", SERVER_PORT, udp_dst_port, udp_length, udp_checksum) + bootp

    ip_header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)
    ip_header = ip_header[:10] + struct.pack("!H", internet_checksum(ip_header)) + ip_header[12:]

    ethernet = bytes.fromhex(request.chaddr.replace(":", "")) \
        + bytes.fromhex(lease.server_mac.replace(":", ""))
    if request.vlan_tci is not None:
        ethernet += struct.pack("!HH", ETH_P_8021Q, request.vlan_tci)
    return ethernet + struct.pack("!H", ETH_P_IP) + ip_header + udp
