"""Attribute validators for the Neutron v2.0 API, with neutron-lib's semantics and wording.

Every ``validate_*`` function takes a raw (JSON-decoded) value and returns it normalised
(canonical IP/MAC/CIDR spelling, canonical UUID, ...) or raises an `InvalidInput` subclass.
They are pure: no database, no configuration, no I/O.

Neutron reports a bad attribute in one of two ways, and the exceptions here keep that
distinction so the API layer can reproduce either envelope exactly:

* `AttributeValidationError` -- a neutron-lib *validator* rejected the value (it returned a
  reason string).  Its own message is ``"Invalid input for operation: <reason>."``;
  `AttributeValidationError.for_attribute` (or `validate_attribute`) gives the attribute-map
  wording Neutron uses for request bodies: an ``HTTPBadRequest`` saying
  ``"Invalid input for <attr>. Reason: <reason>."``.
* `NamedInvalidInput` -- a Neutron exception *raised* by a converter, an extension validator or
  the plugin (``SecurityGroupInvalidPortRange``, ``AllowedAddressPairsMissingIP``, ...).  It
  carries Neutron's exception name as the error type and its exact message (no
  ``"Invalid input for operation:"`` prefix).  A few checks raise a plain `InvalidInput`, as
  Neutron does.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

import netaddr

from neutrino.api.errors import BadRequest, InvalidInput, NeutronError

__all__ = [
    "DHCP_OPT_NAME_MAX_LEN",
    "DHCP_OPT_VALUE_MAX_LEN",
    "DIRECTIONS",
    "ETHERTYPES",
    "IPV6_MODES",
    "IP_PROTOCOL_MAP",
    "MAX_ALLOWED_ADDRESS_PAIRS",
    "MAX_TAGS_PER_RESOURCE",
    "MAX_TAG_LEN",
    "SG_PORT_PROTOCOL_NUMBERS",
    "VALID_BLANK_EXTRA_DHCP_OPTS",
    "VNIC_TYPES",
    "AttributeValidationError",
    "NamedInvalidInput",
    "protocol_number",
    "validate_allocation_pools",
    "validate_allowed_address_pairs",
    "validate_attribute",
    "validate_cidr",
    "validate_direction",
    "validate_dns_nameservers",
    "validate_ethertype",
    "validate_extra_dhcp_opts",
    "validate_fixed_ips",
    "validate_host_routes",
    "validate_ip_address",
    "validate_ip_address_or_none",
    "validate_ip_prefix",
    "validate_ipv6_modes",
    "validate_mac_address",
    "validate_mac_address_or_none",
    "validate_port_range",
    "validate_protocol",
    "validate_route_cidr",
    "validate_tag",
    "validate_tags",
    "validate_tags_body",
    "validate_tags_limit",
    "validate_uuid",
    "validate_vnic_type",
]

T = TypeVar("T")

# --- constants (neutron-lib's values) -------------------------------------------------------

ETHERTYPES: Final = ("IPv4", "IPv6")
DIRECTIONS: Final = ("ingress", "egress")
IPV6_MODES: Final = ("dhcpv6-stateful", "dhcpv6-stateless", "slaac")
VNIC_TYPES: Final = (
    "normal",
    "direct",
    "macvtap",
    "baremetal",
    "direct-physical",
    "virtio-forwarder",
    "smart-nic",
    "vdpa",
    "accelerator-direct",
    "accelerator-direct-physical",
    "remote-managed",
)

#: neutron_lib.constants.IP_PROTOCOL_MAP, in its order (``icmpv6`` is the legacy alias of 58).
IP_PROTOCOL_MAP: Final[dict[str, int]] = {
    "ah": 51,
    "dccp": 33,
    "egp": 8,
    "esp": 50,
    "gre": 47,
    "hopopt": 0,
    "icmp": 1,
    "igmp": 2,
    "ip": 0,
    "ipip": 4,
    "ipv6-encap": 41,
    "ipv6-frag": 44,
    "ipv6-icmp": 58,
    "icmpv6": 58,
    "ipv6-nonxt": 59,
    "ipv6-opts": 60,
    "ipv6-route": 43,
    "ospf": 89,
    "pgm": 113,
    "rsvp": 46,
    "sctp": 132,
    "tcp": 6,
    "udp": 17,
    "udplite": 136,
    "vrrp": 112,
}
#: Protocols whose rules may carry a port range (Neutron's SG_PORT_PROTO_NUMS / _NAMES).
SG_PORT_PROTOCOL_NUMBERS: Final = (33, 132, 6, 17, 136)
_SG_PORT_PROTOCOL_NAMES: Final = ("dccp", "sctp", "tcp", "udp", "udplite")
_ICMP_NUMBERS: Final = (1, 58)
#: Protocols (names and numbers) that only make sense with the IPv6 ethertype.
_IPV6_ONLY_PROTOCOLS: Final = frozenset(
    {"ipv6-encap", "ipv6-frag", "ipv6-icmp", "icmpv6", "ipv6-nonxt", "ipv6-opts", "ipv6-route"}
    | {"41", "44", "58", "59", "60", "43"}
)

MAX_TAG_LEN: Final = 255
MAX_TAGS_PER_RESOURCE: Final = 50
MAX_ALLOWED_ADDRESS_PAIRS: Final = 10  # Neutron's max_allowed_address_pair default
DHCP_OPT_NAME_MAX_LEN: Final = 64
DHCP_OPT_VALUE_MAX_LEN: Final = 255
VALID_BLANK_EXTRA_DHCP_OPTS: Final = ("router", "classless-static-route")

_WHITESPACE = re.compile(r"\s")
_MAC_MULTICAST_BIT: Final = 1 << 40  # I/G bit of the first octet of a 48-bit MAC


# --- exceptions -----------------------------------------------------------------------------


def _sentence(text: str) -> str:
    """`text` ending with exactly one period, as Neutron's message templates produce."""
    return text if text.endswith(".") else f"{text}."


class AttributeValidationError(InvalidInput):
    """A neutron-lib validator rejected a value; `reason` is its (period-less) message."""

    def __init__(self, reason: str) -> None:
        super().__init__(_sentence(reason))
        self.reason = reason

    def for_attribute(self, attr: str) -> BadRequest:
        """Neutron's attribute-map error: ``Invalid input for <attr>. Reason: <reason>.``"""
        return BadRequest(f"Invalid input for {attr}. Reason: {_sentence(self.reason)}")


class NamedInvalidInput(InvalidInput):
    """A 400 raised under one of Neutron's specific exception names, with its exact message."""

    def __init__(self, type_name: str, message: str) -> None:
        NeutronError.__init__(self, message, type=type_name)


def validate_attribute(
    attr: str, validator: Callable[..., T], value: Any, *args: Any, **kwargs: Any
) -> T:
    """Run `validator` on a request-body attribute the way Neutron's attribute map does.

    A rejected value (`AttributeValidationError`) becomes ``HTTPBadRequest: Invalid input for
    <attr>. Reason: <reason>.``; exceptions Neutron raises directly pass through unchanged.
    """
    try:
        return validator(value, *args, **kwargs)
    except AttributeValidationError as exc:
        raise exc.for_attribute(attr) from exc


# --- small helpers --------------------------------------------------------------------------


def _values_reason(value: Any, valid: Iterable[str | int]) -> str:
    return f"{value} is not in {list(valid)}"


def _format_key_set(keys: Iterable[str]) -> str:
    """A set display with a stable order (Python's own set order varies between runs)."""
    items = sorted(str(k) for k in keys)
    return "{" + ", ".join(repr(k) for k in items) + "}" if items else "set()"


def _verify_dict_keys(expected: tuple[str, ...], target: Any) -> dict[str, Any]:
    if not isinstance(target, dict):
        raise AttributeValidationError(
            f"Invalid input. '{target}' must be a dictionary with keys: {list(expected)}"
        )
    if set(target) != set(expected):
        raise AttributeValidationError(
            "Validation of dictionary's keys failed. "
            f"Expected keys: {_format_key_set(expected)} "
            f"Provided keys: {_format_key_set(target)}"
        )
    return target


def _string_reason(value: Any, max_len: int | None) -> str | None:
    if not isinstance(value, str):
        return f"'{value}' is not a valid string"
    if max_len is not None and len(value) > max_len:
        return f"'{value}' exceeds maximum length of {max_len}"
    return None


def _not_empty_string_reason(value: Any, max_len: int | None) -> str | None:
    reason = _string_reason(value, max_len)
    if reason is None and not value.strip():
        reason = f"'{value}' Blank strings are not permitted"
    return reason


def _list_duplicates(items: list[Any]) -> list[Any]:
    seen: list[Any] = []
    dups: list[Any] = []
    for item in items:
        if item in seen:
            if item not in dups:
                dups.append(item)
        else:
            seen.append(item)
    return dups


def _duplicates_reason(items: list[Any]) -> str | None:
    dups = _list_duplicates(items)
    if dups:
        return "Duplicate items in the list: '{}'".format(", ".join(str(d) for d in dups))
    return None


# --- addresses ------------------------------------------------------------------------------


def _parse_ip(value: Any) -> netaddr.IPAddress:
    invalid = f"'{value}' is not a valid IP address"
    if not isinstance(value, str) or _WHITESPACE.search(value):
        raise AttributeValidationError(invalid)
    try:
        try:
            # ZEROFILL strips leading zeros from IPv4 octets, so '010.0.0.1' parses and can be
            # reported with the recommended spelling below.
            ip = netaddr.IPAddress(value, flags=netaddr.ZEROFILL)
        except ValueError:
            ip = netaddr.IPAddress(value)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise AttributeValidationError(invalid) from None
    # Reject the loose forms some inet_aton implementations accept ('1', '10.1', ...).
    if ":" not in value and value.count(".") != 3:
        raise AttributeValidationError(invalid)
    if ip.version == 4 and str(ip) != value:
        raise AttributeValidationError(
            f"'{value}' is not an accepted IP address, '{ip}' is recommended"
        )
    return ip


def validate_ip_address(value: Any) -> str:
    """An IPv4 or IPv6 address; returns its canonical (compressed, lower-case) spelling."""
    return str(_parse_ip(value))


def validate_ip_address_or_none(value: Any) -> str | None:
    """`validate_ip_address`, letting None through."""
    return None if value is None else validate_ip_address(value)


def validate_mac_address(value: Any) -> str:
    """A unicast, non-zero MAC address; returns lower-case colon form (``fa:16:3e:00:00:01``).

    neutron-lib only refuses 00:00:00:00:00:00 and the broadcast address; Neutrino refuses
    every multicast address (I/G bit set), broadcast included.
    """
    invalid = f"'{value}' is not a valid MAC address"
    if not isinstance(value, str) or _WHITESPACE.search(value) or not netaddr.valid_mac(value):
        raise AttributeValidationError(invalid)
    mac = netaddr.EUI(value, dialect=netaddr.mac_unix_expanded)
    if int(mac) == 0 or int(mac) & _MAC_MULTICAST_BIT:
        raise AttributeValidationError(invalid)
    return str(mac)


def validate_mac_address_or_none(value: Any) -> str | None:
    """`validate_mac_address`, letting None through."""
    return None if value is None else validate_mac_address(value)


def _parse_subnet(value: Any) -> netaddr.IPNetwork:
    """neutron-lib's ``type:subnet``: 'a.b.c.d/n' (IPv4 spelled canonically) or an IPv6 CIDR."""
    invalid = f"'{value}' is not a valid IP subnet"
    if not isinstance(value, str) or _WHITESPACE.search(value) or "/" not in value:
        raise AttributeValidationError(invalid)
    try:
        net = netaddr.IPNetwork(value)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise AttributeValidationError(invalid) from None
    if net.version == 4 and str(net) != value:
        raise AttributeValidationError(invalid)
    return net


def validate_cidr(value: Any) -> str:
    """A subnet CIDR; returns the network CIDR with host bits cleared.

    Like Neutron: the ``type:subnet`` validator accepts '10.0.0.1/24' and subnet creation
    stores it as '10.0.0.0/24' (create_subnet "turns the CIDR into a proper subnet").  Use
    `validate_route_cidr` where host bits must be zero.
    """
    return str(_parse_subnet(value).cidr)


def validate_route_cidr(value: Any) -> str:
    """A route destination (neutron-lib ``validate_route_cidr``): no host bits, not loopback."""
    if not isinstance(value, str) or _WHITESPACE.search(value) or "/" not in value:
        raise AttributeValidationError(f"'{value}' is not a valid CIDR")
    try:
        net = netaddr.IPNetwork(value)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise AttributeValidationError(f"'{value}' is not a valid CIDR") from None
    if net.ip != net.network:
        raise AttributeValidationError(f"'{value}' is not a valid CIDR")
    if net.is_loopback():
        raise AttributeValidationError(f"'{value}' is not a routable CIDR")
    return str(net)


def validate_ip_prefix(value: Any, ethertype: str | None = None) -> str | None:
    """A security-group ``remote_ip_prefix``: an address or CIDR, host bits cleared.

    '192.168.1.10' becomes '192.168.1.10/32' and '10.0.0.1/24' becomes '10.0.0.0/24'.  None or
    '' mean "any" and give None.  When `ethertype` is given it must match the prefix's version.
    """
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str):
            raise TypeError(value)
        cidr = str(netaddr.IPNetwork(value).cidr)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise NamedInvalidInput("InvalidCIDR", f"Invalid CIDR {value} given as IP prefix.") from None
    if ethertype is not None:
        ethertype = validate_ethertype(ethertype)
        if ethertype != f"IPv{netaddr.IPNetwork(cidr).version}":
            raise NamedInvalidInput(
                "SecurityGroupRuleParameterConflict",
                f"Conflicting value ethertype {ethertype} for CIDR {cidr}",
            )
    return cidr


def validate_allocation_pools(value: Any) -> list[dict[str, str]]:
    """A list of ``{"start": ip, "end": ip}`` (shape and addresses only; see ipam.plan_subnet)."""
    if not isinstance(value, list):
        raise AttributeValidationError(f"Invalid data format for IP pool: '{value}'")
    pools: list[dict[str, str]] = []
    for pool in value:
        pool = _verify_dict_keys(("start", "end"), pool)
        pools.append(
            {"start": validate_ip_address(pool["start"]), "end": validate_ip_address(pool["end"])}
        )
    return pools


def validate_host_routes(value: Any) -> list[dict[str, str]]:
    """A list of unique ``{"destination": cidr, "nexthop": ip}``."""
    if not isinstance(value, list):
        raise AttributeValidationError(f"Invalid data format for hostroute: '{value}'")
    routes: list[dict[str, str]] = []
    for route in value:
        route = _verify_dict_keys(("destination", "nexthop"), route)
        normalised = {
            "destination": validate_route_cidr(route["destination"]),
            "nexthop": validate_ip_address(route["nexthop"]),
        }
        if normalised in routes:
            raise AttributeValidationError(f"Duplicate hostroute '{route}'")
        routes.append(normalised)
    return routes


def validate_dns_nameservers(value: Any) -> list[str]:
    """A list of unique IP addresses (order kept: it is the resolver order)."""
    if not isinstance(value, list):
        raise AttributeValidationError(f"Invalid data format for nameserver: '{value}'")
    hosts: list[str] = []
    for host in value:
        try:
            address = validate_ip_address(host)
        except AttributeValidationError as exc:
            raise AttributeValidationError(
                f"'{host}' is not a valid nameserver. {_sentence(exc.reason)}"
            ) from None
        if address in hosts:
            raise AttributeValidationError(f"Duplicate nameserver '{host}'")
        hosts.append(address)
    return hosts


def validate_fixed_ips(value: Any) -> list[dict[str, str]]:
    """A port's ``fixed_ips``: dicts with ``subnet_id`` and/or ``ip_address`` (shape only).

    Whether the address belongs to the subnet is checked by ipam.check_fixed_ip_in_subnet.
    """
    if not isinstance(value, list):
        raise AttributeValidationError(f"Invalid data format for fixed IP: '{value}'")
    result: list[dict[str, str]] = []
    addresses: list[str] = []
    for fixed_ip in value:
        if not isinstance(fixed_ip, dict):
            raise AttributeValidationError(f"Invalid data format for fixed IP: '{fixed_ip}'")
        unknown = set(fixed_ip) - {"ip_address", "subnet_id"}
        if unknown:
            raise AttributeValidationError(
                "Unrecognized attribute(s) '{}'".format(", ".join(sorted(unknown)))
            )
        entry: dict[str, str] = {}
        address: str | None = None
        if "ip_address" in fixed_ip:
            raw = fixed_ip["ip_address"]
            address = validate_ip_address(raw)
            if address in addresses:
                raise AttributeValidationError(f"Duplicate IP address '{raw}'")
            addresses.append(address)
        if "subnet_id" in fixed_ip:
            entry["subnet_id"] = validate_uuid(fixed_ip["subnet_id"])
        if address is not None:
            entry["ip_address"] = address
        if not entry:
            raise AttributeValidationError("IP allocation requires subnet_id or ip_address")
        result.append(entry)
    return result


def validate_allowed_address_pairs(
    value: Any, *, max_pairs: int = MAX_ALLOWED_ADDRESS_PAIRS
) -> list[dict[str, str]]:
    """A port's ``allowed_address_pairs``: ``{"ip_address": ip-or-cidr[, "mac_address"]}``.

    Errors are Neutron's: HTTPBadRequest for shape problems, AllowedAddressPairsMissingIP,
    DuplicateAddressPairInRequest and AllowedAddressPairExhausted (more than `max_pairs`).
    """
    if not isinstance(value, list):
        raise NamedInvalidInput("HTTPBadRequest", "Allowed address pairs must be a list.")
    if len(value) > max_pairs:
        raise NamedInvalidInput(
            "AllowedAddressPairExhausted",
            f"The number of allowed address pair exceeds the maximum {max_pairs}.",
        )
    pairs: list[dict[str, str]] = []
    seen: set[tuple[str | None, str]] = set()
    for pair in value:
        if not isinstance(pair, dict):
            raise AttributeValidationError(f"'{pair}' is not a dictionary")
        normalised: dict[str, str] = {}
        mac: str | None = None
        if "mac_address" in pair:
            try:
                mac = validate_mac_address(pair["mac_address"])
            except AttributeValidationError as exc:
                raise NamedInvalidInput("HTTPBadRequest", exc.reason) from None
        if "ip_address" not in pair:
            raise NamedInvalidInput(
                "AllowedAddressPairsMissingIP", "AllowedAddressPair must contain ip_address"
            )
        unknown = set(pair) - {"mac_address", "ip_address"}
        if unknown:
            raise NamedInvalidInput(
                "HTTPBadRequest",
                "Unrecognized attribute(s) '{}'".format(", ".join(sorted(unknown))),
            )
        raw_ip = pair["ip_address"]
        try:
            if isinstance(raw_ip, str) and "/" in raw_ip:
                ip_address = str(_parse_subnet(raw_ip))
            else:
                ip_address = validate_ip_address(raw_ip)
        except AttributeValidationError as exc:
            raise NamedInvalidInput("HTTPBadRequest", exc.reason) from None
        if (mac, ip_address) in seen:
            raise NamedInvalidInput(
                "DuplicateAddressPairInRequest",
                "Request contains duplicate address pair: "
                f"mac_address {pair.get('mac_address')} ip_address {raw_ip}.",
            )
        seen.add((mac, ip_address))
        normalised["ip_address"] = ip_address
        if mac is not None:
            normalised["mac_address"] = mac
        pairs.append(normalised)
    return pairs


# --- extra DHCP options ---------------------------------------------------------------------


def _convert_to_int(value: Any) -> int:
    """neutron-lib's converters.convert_to_int (it raises, it does not return a reason)."""
    try:
        return int(value)
    except (ValueError, TypeError):
        raise InvalidInput(f"'{value}' is not an integer.") from None


def _match_dhcp_opt(opt: dict[str, Any], blank_allowed: bool) -> dict[str, Any] | None:
    """One of neutron-lib's EXTRA_DHCP_OPT_KEY_SPECS; None when `opt` does not match it."""
    if not {"opt_name", "opt_value"} <= set(opt) or set(opt) - {
        "opt_name",
        "opt_value",
        "ip_version",
    }:
        return None
    name, value = opt["opt_name"], opt["opt_value"]
    if blank_allowed:
        if name not in VALID_BLANK_EXTRA_DHCP_OPTS:
            return None
        if value is not None and _string_reason(value, DHCP_OPT_VALUE_MAX_LEN):
            return None
    else:
        if _not_empty_string_reason(name, DHCP_OPT_NAME_MAX_LEN):
            return None
        if value is not None and _not_empty_string_reason(value, DHCP_OPT_VALUE_MAX_LEN):
            return None
    ip_version = 4
    if "ip_version" in opt:
        ip_version = _convert_to_int(opt["ip_version"])
        if ip_version not in (4, 6):
            return None
    return {"opt_name": name, "opt_value": value, "ip_version": ip_version}


def validate_extra_dhcp_opts(value: Any) -> list[dict[str, Any]]:
    """A port's ``extra_dhcp_opts``: ``{"opt_name", "opt_value"[, "ip_version"]}`` dicts.

    ``opt_value`` may be None (Neutron deletes the option on update) and may be '' only for
    the blank-able options 'router' and 'classless-static-route'.  ``ip_version`` (4 or 6)
    defaults to 4, the value Neutron stores.  None means no options.
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"'{value}' is not a list.")
    duplicates = _duplicates_reason(value)
    if duplicates:
        raise InvalidInput(_sentence(duplicates))
    opts: list[dict[str, Any]] = []
    for opt in value:
        matched = None
        if isinstance(opt, dict):
            matched = _match_dhcp_opt(opt, blank_allowed=True) or _match_dhcp_opt(
                opt, blank_allowed=False
            )
        if matched is None:
            raise InvalidInput(f"No valid key specs matched for: {opt}.")
        opts.append(matched)
    return opts


# --- security group rules -------------------------------------------------------------------

_SG_SUPPORTED_PROTOCOLS: Final = [None, *IP_PROTOCOL_MAP]


def _invalid_protocol(value: Any) -> NamedInvalidInput:
    return NamedInvalidInput(
        "SecurityGroupRuleInvalidProtocol",
        f"Security group rule protocol {value} not supported. Only protocol values "
        f"{_SG_SUPPORTED_PROTOCOLS} and integer representations [0 to 255] are supported.",
    )


def validate_protocol(value: Any, ethertype: str | None = None) -> str | None:
    """A security-group rule protocol: a name of IP_PROTOCOL_MAP or a number 0-255.

    Names are lower-cased, numbers become decimal strings ('6'); None, '' and 'any' mean any
    protocol and give None.  With ``ethertype='IPv6'`` the legacy ICMP spellings ('icmp',
    'icmpv6', '1') become 'ipv6-icmp' / '58' as Neutron stores them; with 'IPv4' the
    IPv6-only protocols are refused (SecurityGroupEthertypeConflictWithProtocol).
    """
    if value is None or (isinstance(value, str) and value.lower() in ("", "any")):
        return None
    if isinstance(value, bool):
        raise _invalid_protocol(value)
    protocol: str
    if isinstance(value, int):
        if not 0 <= value <= 255:
            raise _invalid_protocol(value)
        protocol = str(value)
    elif isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            if value.lower() not in IP_PROTOCOL_MAP:
                raise _invalid_protocol(value) from None
            protocol = value.lower()
        else:
            if not 0 <= number <= 255:
                raise _invalid_protocol(value)
            protocol = str(number)
    else:
        raise _invalid_protocol(value)
    if ethertype is not None:
        ethertype = validate_ethertype(ethertype)
        if ethertype == "IPv6":
            if protocol in ("icmp", "icmpv6"):
                protocol = "ipv6-icmp"
            elif protocol == "1":
                protocol = "58"
        elif protocol in _IPV6_ONLY_PROTOCOLS:
            raise NamedInvalidInput(
                "SecurityGroupEthertypeConflictWithProtocol",
                f"Invalid ethertype {ethertype} for protocol {protocol}.",
            )
    return protocol


def protocol_number(protocol: str) -> int:
    """The IP protocol number of a protocol as `validate_protocol` returns it."""
    return IP_PROTOCOL_MAP[protocol] if protocol in IP_PROTOCOL_MAP else int(protocol)


def _port_value(port: Any) -> int | None:
    """Neutron's convert_validate_port_value: None, or an integer 0-65535."""
    if port is None:
        return None
    try:
        if isinstance(port, bool) or (isinstance(port, float) and not port.is_integer()):
            raise ValueError(port)
        number = int(port)
    except (ValueError, TypeError):
        number = -1
    if not 0 <= number <= 65535:
        raise NamedInvalidInput("SecurityGroupInvalidPortValue", f"Invalid value for port {port}")
    return number


def validate_port_value(value: Any) -> int | None:
    """One bound of a security-group rule's port range: None or 0-65535, as an integer."""
    return _port_value(value)


def validate_port_range(
    protocol: Any, port_range_min: Any, port_range_max: Any
) -> tuple[int | None, int | None]:
    """A security-group rule's port range, checked against its protocol as Neutron does.

    Port protocols (tcp, udp, sctp, dccp, udplite) need both bounds, 1-65535, min <= max.
    ICMP (1, 58): min is the type and max the code, each 0-255; a code needs a type.  Other
    protocols take no ports, and ports need a protocol.
    """
    low, high = _port_value(port_range_min), _port_value(port_range_max)
    if low is None and high is None:
        return None, None
    normalised = validate_protocol(protocol)
    if normalised is None:
        raise NamedInvalidInput(
            "SecurityGroupProtocolRequiredWithPorts",
            "Must also specify protocol if port range is given.",
        )
    number = protocol_number(normalised)
    if number in SG_PORT_PROTOCOL_NUMBERS:
        if low == 0 or high == 0:
            raise NamedInvalidInput("SecurityGroupInvalidPortValue", "Invalid value for port 0")
        if low is None or high is None or low > high:
            raise NamedInvalidInput(
                "SecurityGroupInvalidPortRange",
                "For TCP/UDP protocols, port_range_min must be <= port_range_max",
            )
    elif number in _ICMP_NUMBERS:
        for attr, field, bound in (("port_range_min", "type", low), ("port_range_max", "code", high)):
            if bound is not None and not 0 <= bound <= 255:
                raise NamedInvalidInput(
                    "SecurityGroupInvalidIcmpValue",
                    f"Invalid value for ICMP {field} ({attr}) {bound}. It must be 0 to 255.",
                )
        if low is None and high is not None:
            raise NamedInvalidInput(
                "SecurityGroupMissingIcmpType",
                f"ICMP code (port-range-max) {high} is provided but ICMP type "
                "(port-range-min) is missing.",
            )
    else:
        protocols = ", ".join(name.upper() for name in _SG_PORT_PROTOCOL_NAMES)
        raise NamedInvalidInput(
            "SecurityGroupInvalidProtocolForPort",
            f"Invalid protocol {number} for port range, only supported for "
            f"{protocols} protocols.",
        )
    return low, high


def validate_ethertype(value: Any) -> str:
    """'IPv4' or 'IPv6', matched case-insensitively (Neutron's converter)."""
    if isinstance(value, str):
        for ethertype in ETHERTYPES:
            if ethertype.lower() == value.lower():
                return ethertype
    raise NamedInvalidInput(
        "SecurityGroupRuleInvalidEtherType",
        f"Security group rule for ethertype '{value}' not supported. "
        f"Allowed values are {list(ETHERTYPES)}.",
    )


def validate_direction(value: Any) -> str:
    """'ingress' or 'egress'."""
    if value not in DIRECTIONS:
        raise AttributeValidationError(_values_reason(value, DIRECTIONS))
    return str(value)


# --- ports and subnets ----------------------------------------------------------------------


def validate_vnic_type(value: Any) -> str:
    """A ``binding:vnic_type`` of neutron-lib's VNIC_TYPES."""
    if value not in VNIC_TYPES:
        raise AttributeValidationError(_values_reason(value, VNIC_TYPES))
    return str(value)


def validate_ipv6_modes(ra_mode: Any, address_mode: Any) -> tuple[str | None, str | None]:
    """``ipv6_ra_mode`` / ``ipv6_address_mode``: each None or one of IPV6_MODES; when both are
    set they must be equal (the only combinations Neutron accepts).

    The checks needing the rest of the subnet (IPv4, enable_dhcp, the /64 prefix for SLAAC and
    DHCPv6-stateless) are in ipam.plan_subnet.
    """
    for mode in (ra_mode, address_mode):
        if mode is not None and mode not in IPV6_MODES:
            raise AttributeValidationError(_values_reason(mode, IPV6_MODES))
    if ra_mode is not None and address_mode is not None and ra_mode != address_mode:
        raise InvalidInput(
            f"ipv6_ra_mode set to '{ra_mode}' with ipv6_address_mode set to "
            f"'{address_mode}' is not valid. If both attributes are set, they must be the "
            "same value."
        )
    return ra_mode, address_mode


def validate_uuid(value: Any) -> str:
    """A UUID (oslo's is_uuid_like: any case, hyphens, braces or 'urn:uuid:' optional).

    Returns the canonical lower-case hyphenated form.
    """
    try:
        parsed = uuid.UUID(value)
        bare = (
            value.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "").lower()
        )
        if parsed.hex != bare:
            raise ValueError(value)
    except (TypeError, ValueError, AttributeError):
        raise AttributeValidationError(f"'{value}' is not a valid UUID") from None
    return str(parsed)


# --- tags -----------------------------------------------------------------------------------


def validate_tag(value: Any) -> str:
    """One tag: a string of at most 255 characters (Neutron allows anything else, commas too)."""
    reason = _string_reason(value, MAX_TAG_LEN)
    if reason is None and "\x00" in value:
        reason = "A tag must not contain NUL characters"
    if reason:
        raise AttributeValidationError(reason)
    return str(value)


def validate_tags(value: Any) -> list[str]:
    """A list of unique tags (``type:list_of_unique_strings`` with MAX_TAG_LEN)."""
    if not isinstance(value, list):
        raise AttributeValidationError(f"'{value}' is not a list")
    duplicates = _duplicates_reason(value)
    if duplicates:
        raise AttributeValidationError(duplicates)
    return [validate_tag(tag) for tag in value]


def validate_tags_body(body: Any) -> list[str]:
    """The body of ``PUT /<resources>/<id>/tags``: ``{"tags": [...]}``."""
    if not isinstance(body, dict) or "tags" not in body:
        raise InvalidInput("Invalid tags body.")
    return validate_tags(body["tags"])


def validate_tags_limit(resource: str, tags: Iterable[str]) -> None:
    """At most MAX_TAGS_PER_RESOURCE distinct tags on one resource (Neutron's BadRequest)."""
    if len(set(tags)) > MAX_TAGS_PER_RESOURCE:
        raise BadRequest(
            f"Bad {resource} request: The number of tags exceed the per-resource limit of "
            f"{MAX_TAGS_PER_RESOURCE}.",
            type="BadRequest",
        )
