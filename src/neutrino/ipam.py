"""Pure IP address management: subnet planning, address picking, EUI-64 and MAC generation.

Nothing here touches a database or does I/O.  `plan_subnet` applies Neutron's subnet rules
(gateway, allocation pools, IPv6 modes) and raises Neutron's errors with Neutron's wording;
`pick_free_address` and friends work on addresses as integers so the caller can feed them
whatever its storage returns.

Neutron behaviours kept on purpose:

* the default gateway is the network address + 1, even for /31, /32 and /128 subnets where
  that address is the last address or lies outside the subnet;
* default pools are every address but the network address, the IPv4 broadcast address and
  the gateway; an IPv6 subnet's last address is usable, its all-zero (subnet-router anycast)
  address is not; a /32 or /128 pool is its single address, a /31 or /127 has no pool;
* an explicit gateway may lie outside the CIDR (unless ``force_gateway_on_subnet``), but an
  IPv4 gateway inside it may not be the network or broadcast address.
"""

from __future__ import annotations

import bisect
import enum
import random
import socket
from collections.abc import Collection, Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Final

import netaddr

from neutrino.api.errors import BadRequest, Conflict, InvalidInput
from neutrino.api.validators import (
    IPV6_MODES,
    AttributeValidationError,
    NamedInvalidInput,
    validate_ipv6_modes,
)

__all__ = [
    "AUTO_ADDRESS_MODES",
    "DEFAULT_BASE_MAC",
    "ROUTER_PORT_OWNERS",
    "UNSET",
    "SortedAllocations",
    "SubnetPlan",
    "Unset",
    "address_in_cidr",
    "address_in_pools",
    "check_cidr_overlap",
    "check_fixed_ip_in_subnet",
    "check_subnet_attributes",
    "cidrs_overlap",
    "default_allocation_pools",
    "eui64_address",
    "generate_mac",
    "int_to_ip",
    "ip_to_int",
    "pick_free_address",
    "plan_subnet",
    "pool_size",
]


class Unset(enum.Enum):
    """Type of `UNSET`: "attribute not given", as opposed to an explicit null."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET

#: IPv6 modes under which hosts configure their own address (EUI-64): they need a /64.
AUTO_ADDRESS_MODES: Final = ("slaac", "dhcpv6-stateless")
DEFAULT_BASE_MAC: Final = "fa:16:3e:00:00:00"
#: Device owners allowed to take an IPv6 subnet's all-zero (subnet-router anycast) address.
ROUTER_PORT_OWNERS: Final = (
    "network:router_interface",
    "network:ha_router_replicated_interface",
    "network:router_interface_distributed",
    "network:router_centralized_snat",
    "network:router_gateway",
)

_MAX_DNS_NAMESERVERS: Final = 5  # Neutron's max_dns_nameservers default
_MAX_HOST_ROUTES: Final = 20  # Neutron's max_subnet_host_routes default

Pool = tuple[int, int]


# --- conversions ----------------------------------------------------------------------------


def ip_to_int(ip: str) -> int:
    """The integer value of an IPv4 or IPv6 address (ValueError if it is not one)."""
    try:  # fast path (the allocator converts many stored, canonical addresses)
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        return int.from_bytes(socket.inet_pton(family, ip), "big")
    except (OSError, TypeError):
        pass
    try:
        return int(netaddr.IPAddress(ip))
    except (netaddr.AddrFormatError, TypeError) as exc:
        raise ValueError(f"{ip!r} is not an IP address") from exc


def int_to_ip(value: int, version: int) -> str:
    """The canonical spelling of the IPv`version` address `value`."""
    if version not in (4, 6):
        raise ValueError(f"IP version must be 4 or 6, not {version!r}")
    try:
        return str(netaddr.IPAddress(value, version))
    except (netaddr.AddrFormatError, TypeError) as exc:
        raise ValueError(f"{value!r} is not an IPv{version} address") from exc


def _net(cidr: str) -> Any:
    try:
        return netaddr.IPNetwork(cidr)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise AttributeValidationError(f"'{cidr}' is not a valid IP subnet") from None


def cidrs_overlap(a: str, b: str) -> bool:
    """Whether two CIDRs share an address (never across IP versions)."""
    net_a, net_b = netaddr.IPNetwork(a), netaddr.IPNetwork(b)
    if net_a.version != net_b.version:
        return False
    return bool(net_a.first <= net_b.last and net_b.first <= net_a.last)


def check_cidr_overlap(cidr: str, network_id: str, existing_cidrs: Iterable[str]) -> None:
    """Refuse a new subnet CIDR overlapping `existing_cidrs`, in Neutron's words."""
    if any(cidrs_overlap(cidr, other) for other in existing_cidrs):
        raise InvalidInput(
            f"Requested subnet with cidr: {cidr} for network: {network_id} overlaps with "
            "another subnet."
        )


# --- pools ----------------------------------------------------------------------------------


def pool_size(pools: Iterable[Pool]) -> int:
    """How many addresses the (non-overlapping, inclusive) ``(start, end)`` pools hold."""
    return sum(end - start + 1 for start, end in pools if end >= start)


def address_in_pools(address: int, pools: Iterable[Pool]) -> bool:
    """Whether `address` lies in one of the inclusive ``(start, end)`` pools."""
    return any(start <= address <= end for start, end in pools)


class SortedAllocations(Collection[int]):
    """A sorted set of allocated addresses that finds the lowest free one in O(log n).

    Hand it to `pick_free_address` instead of a plain set when many addresses are allocated
    and many are picked in a row (bulk port creation): a set costs one probe per allocated
    address at the head of a pool, this costs a binary search.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[int] = ()) -> None:
        self._items: list[int] = sorted(set(items))

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, int):
            return False
        i = bisect.bisect_left(self._items, item)
        return i < len(self._items) and self._items[i] == item

    def __iter__(self) -> Iterator[int]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"SortedAllocations({self._items!r})"

    def add(self, item: int) -> None:
        """Mark `item` allocated."""
        i = bisect.bisect_left(self._items, item)
        if i == len(self._items) or self._items[i] != item:
            self._items.insert(i, item)

    def discard(self, item: int) -> None:
        """Mark `item` free again."""
        i = bisect.bisect_left(self._items, item)
        if i < len(self._items) and self._items[i] == item:
            del self._items[i]

    def lowest_free(self, start: int, end: int) -> int | None:
        """The lowest address of ``[start, end]`` that is not allocated, or None."""
        items = self._items
        first = bisect.bisect_left(items, start)
        if first == len(items) or items[first] != start:
            return start if start <= end else None
        # items[first:] is sorted and unique, so items[first + j] - j never decreases and
        # equals `start` exactly while the run of allocated addresses from `start` lasts.
        lo, hi = 0, len(items) - first - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if items[first + mid] - mid == start:
                lo = mid
            else:
                hi = mid - 1
        candidate = start + lo + 1
        return candidate if candidate <= end else None


def pick_free_address(pools: Iterable[Pool], allocated: Collection[int]) -> int | None:
    """The lowest address of the pools not in `allocated`; None when the pools are full.

    Deterministic.  Cost: with a `SortedAllocations`, a binary search per pool; with a set,
    one membership probe per allocated address at the head of each pool (never a walk over
    the free part of a pool); any other collection is turned into a set first.
    """
    ordered = sorted(pools)
    if isinstance(allocated, SortedAllocations):
        for start, end in ordered:
            found = allocated.lowest_free(start, end)
            if found is not None:
                return found
        return None
    taken: Collection[int] = allocated if isinstance(allocated, AbstractSet) else set(allocated)
    for start, end in ordered:
        candidate = start
        while candidate <= end and candidate in taken:
            candidate += 1
        if candidate <= end:
            return candidate
    return None


def default_allocation_pools(cidr: str, gateway_ip: str | None) -> list[Pool]:
    """Neutron's generate_pools: usable addresses of `cidr` minus the gateway, as ranges."""
    net = netaddr.IPNetwork(cidr)
    first, last = int(net.first), int(net.last)
    if first == last:  # /32, /128: the single address
        return [(first, last)]
    low = first + 1  # not the network (IPv6: subnet-router anycast) address
    high = last - (1 if net.version == 4 else 0)  # not the IPv4 broadcast address
    if low >= high:  # /31, /127
        return []
    if gateway_ip is None:
        return [(low, high)]
    gateway = ip_to_int(gateway_ip)
    pools = [(low, gateway - 1), (gateway + 1, high)] if low <= gateway <= high else [(low, high)]
    return [(start, end) for start, end in pools if start <= end]


# --- subnets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubnetPlan:
    """A subnet's address layout as Neutron would store it."""

    cidr: str
    ip_version: int
    gateway_ip: str | None
    allocation_pools: list[dict[str, str]] = field(default_factory=list, hash=False)
    ipv6_ra_mode: str | None = None
    ipv6_address_mode: str | None = None

    @property
    def prefixlen(self) -> int:
        return int(netaddr.IPNetwork(self.cidr).prefixlen)

    @property
    def first(self) -> int:
        """The network (lowest) address, as an integer."""
        return int(netaddr.IPNetwork(self.cidr).first)

    @property
    def last(self) -> int:
        """The highest address (IPv4: broadcast), as an integer."""
        return int(netaddr.IPNetwork(self.cidr).last)

    @property
    def gateway_int(self) -> int | None:
        return None if self.gateway_ip is None else ip_to_int(self.gateway_ip)

    @property
    def pool_ranges(self) -> list[Pool]:
        """The allocation pools as sorted inclusive ``(start, end)`` integer ranges."""
        return sorted(
            (ip_to_int(pool["start"]), ip_to_int(pool["end"])) for pool in self.allocation_pools
        )

    @property
    def capacity(self) -> int:
        """How many addresses the allocation pools hold."""
        return pool_size(self.pool_ranges)

    @property
    def is_auto_address(self) -> bool:
        """SLAAC or DHCPv6-stateless: ports get EUI-64 addresses instead of pool addresses."""
        return (
            self.ipv6_ra_mode in AUTO_ADDRESS_MODES or self.ipv6_address_mode in AUTO_ADDRESS_MODES
        )

    def contains(self, ip: str | int) -> bool:
        """Whether the address (string or integer of this subnet's version) is in the CIDR."""
        if isinstance(ip, str):
            try:
                address = netaddr.IPAddress(ip)
            except (netaddr.AddrFormatError, ValueError, TypeError):
                return False
            if address.version != self.ip_version:
                return False
            ip = int(address)
        return self.first <= ip <= self.last

    def in_pools(self, ip: str | int) -> bool:
        """Whether the address is in one of the allocation pools."""
        if isinstance(ip, str):
            if not self.contains(ip):
                return False
            ip = ip_to_int(ip)
        return address_in_pools(ip, self.pool_ranges)


def _range_str(start: Any, end: Any) -> str:
    return f"{start}-{end}"


def _check_ip_version(name: str, addr: str, ip_version: int) -> None:
    """Neutron's _validate_ip_version."""
    if netaddr.IPNetwork(addr).version != ip_version:
        raise InvalidInput(f"{name} '{addr}' does not match the ip_version '{ip_version}'.")


def _parse_pools(allocation_pools: list[Any], cidr: str, version: int) -> list[Pool]:
    """Neutron's pools_to_ip_range + validate_allocation_pools."""
    net = netaddr.IPNetwork(cidr)
    lowest = int(net.first) + 1
    highest = int(net.last) - (1 if version == 4 else 0)
    ranges: list[tuple[Pool, str]] = []
    for pool in allocation_pools:
        try:
            ip_range = netaddr.IPRange(pool["start"], pool["end"])
        except (netaddr.AddrFormatError, ValueError, TypeError, KeyError):
            raise BadRequest(
                f"The allocation pool {pool} is not valid.", type="InvalidAllocationPool"
            ) from None
        label = _range_str(netaddr.IPAddress(ip_range.first, ip_range.version),
                           netaddr.IPAddress(ip_range.last, ip_range.version))
        if ip_range.version != version:
            raise BadRequest(
                f"The allocation pool {label} is not valid.", type="InvalidAllocationPool"
            )
        start, end = int(ip_range.first), int(ip_range.last)
        if start < lowest or end > highest:
            raise BadRequest(
                f"The allocation pool {label} spans beyond the subnet cidr {cidr}.",
                type="OutOfBoundsAllocationPool",
            )
        ranges.append(((start, end), label))
    for i, ((start_a, end_a), label_a) in enumerate(ranges):
        for (start_b, end_b), label_b in ranges[i + 1 :]:
            if start_a <= end_b and start_b <= end_a:
                raise Conflict(
                    f"Found overlapping allocation pools: {label_a} {label_b} for subnet {cidr}.",
                    type="OverlappingAllocationPools",
                )
    return [pool for pool, _label in ranges]


def plan_subnet(
    cidr: str,
    ip_version: int,
    gateway_ip: str | Unset | None = UNSET,
    allocation_pools: list[dict[str, str]] | Unset | None = UNSET,
    *,
    ipv6_ra_mode: str | None = None,
    ipv6_address_mode: str | None = None,
    enable_dhcp: bool = True,
    force_gateway_on_subnet: bool = False,
) -> SubnetPlan:
    """Neutron's create-subnet checks and defaults for a subnet with an explicit CIDR.

    `gateway_ip`: UNSET gives the default (network address + 1), None means no gateway.
    `allocation_pools`: UNSET or None give the default pools, a list (even empty) is used
    as given after validation.  Raises InvalidInput / BadRequest / Conflict with the type
    names and messages Neutron uses (OutOfBoundsAllocationPool, OverlappingAllocationPools,
    GatewayConflictWithAllocationPools, ...).  For an update, pass the subnet's current
    values for what the request leaves out.
    """
    if isinstance(ip_version, bool) or ip_version not in (4, 6):
        raise AttributeValidationError(f"{ip_version} is not in [4, 6]")
    for mode in (ipv6_ra_mode, ipv6_address_mode):  # attribute-level checks come first
        if mode is not None and mode not in IPV6_MODES:
            raise AttributeValidationError(f"{mode} is not in {list(IPV6_MODES)}")
    net = _net(cidr)
    normalised = f"{net.network}/{net.prefixlen}"
    _check_ip_version("cidr", normalised, ip_version)

    if enable_dhcp:
        if (ip_version == 4 and net.prefixlen > 30) or (ip_version == 6 and net.prefixlen > 126):
            raise InvalidInput(
                "Subnet has a prefix length that is incompatible with DHCP service enabled."
            )
        if net.is_multicast():
            raise InvalidInput("Multicast IP subnet is not supported if enable_dhcp is True.")
        if net.is_loopback():
            raise InvalidInput("Loopback IP subnet is not supported if enable_dhcp is True.")
        if ip_version == 4 and net.first == 0:
            raise InvalidInput(
                "First IP '0.0.0.0' of network is not supported if enable_dhcp is True."
            )

    gateway: str | None
    if gateway_ip is UNSET:
        try:
            gateway = str(net.network + 1)
        except IndexError:  # the very last address of the address space
            gateway = None
    elif gateway_ip is None:
        gateway = None
    else:
        try:
            gateway_address = netaddr.IPAddress(gateway_ip)
        except (netaddr.AddrFormatError, ValueError, TypeError):
            raise AttributeValidationError(f"'{gateway_ip}' is not a valid IP address") from None
        _check_ip_version("gateway_ip", gateway_ip, ip_version)
        inside = gateway_address in net
        if (inside and ip_version == 4 and gateway_address in (net.network, net[-1])) or (
            force_gateway_on_subnet and not inside
        ):
            raise InvalidInput("Gateway is not valid on subnet.")
        gateway = str(gateway_address)

    if ip_version == 4:
        if ipv6_ra_mode is not None:
            raise InvalidInput("ipv6_ra_mode is not valid when ip_version is 4.")
        if ipv6_address_mode is not None:
            raise InvalidInput("ipv6_address_mode is not valid when ip_version is 4.")
    elif ipv6_ra_mode is not None or ipv6_address_mode is not None:
        if not enable_dhcp:
            raise InvalidInput(
                "ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set "
                "to False."
            )
        validate_ipv6_modes(ipv6_ra_mode, ipv6_address_mode)
        auto = ipv6_ra_mode in AUTO_ADDRESS_MODES or ipv6_address_mode in AUTO_ADDRESS_MODES
        if auto and net.prefixlen != 64:
            raise InvalidInput(
                f"Invalid CIDR {normalised} for IPv6 address mode. OpenStack uses the EUI-64 "
                "address format, which requires the prefix to be /64."
            )

    if allocation_pools is UNSET or allocation_pools is None:
        ranges = default_allocation_pools(normalised, gateway)
    else:
        ranges = sorted(_parse_pools(allocation_pools, normalised, ip_version))
        if gateway is not None:
            gateway_int = ip_to_int(gateway)
            for start, end in ranges:
                if start <= gateway_int <= end:
                    raise Conflict(
                        f"Gateway ip {gateway} conflicts with allocation pool "
                        f"{_range_str(int_to_ip(start, ip_version), int_to_ip(end, ip_version))}.",
                        type="GatewayConflictWithAllocationPools",
                    )

    if net.prefixlen == 0:
        raise InvalidInput("0 is not allowed as CIDR prefix length.")

    return SubnetPlan(
        cidr=normalised,
        ip_version=ip_version,
        gateway_ip=gateway,
        allocation_pools=[
            {"start": int_to_ip(start, ip_version), "end": int_to_ip(end, ip_version)}
            for start, end in ranges
        ],
        ipv6_ra_mode=ipv6_ra_mode,
        ipv6_address_mode=ipv6_address_mode,
    )


def check_subnet_attributes(
    ip_version: int,
    *,
    dns_nameservers: list[str] | None = None,
    host_routes: list[dict[str, str]] | None = None,
    subnet_id: str | None = None,
    max_dns_nameservers: int = _MAX_DNS_NAMESERVERS,
    max_host_routes: int = _MAX_HOST_ROUTES,
) -> None:
    """Neutron's per-subnet checks of (already validated) nameservers and host routes.

    Limits (DNSNameServersExhausted, HostRoutesExhausted) and IP version agreement.
    """
    label = subnet_id or "new subnet"
    if dns_nameservers is not None:
        if len(dns_nameservers) > max_dns_nameservers:
            raise BadRequest(
                f"Unable to complete operation for {label}. The number of DNS nameservers "
                f"exceeds the limit {max_dns_nameservers}.",
                type="DNSNameServersExhausted",
            )
        for dns in dns_nameservers:
            _check_ip_version("dns_nameserver", dns, ip_version)
    if host_routes is not None:
        if len(host_routes) > max_host_routes:
            raise BadRequest(
                f"Unable to complete operation for {label}. The number of host routes "
                f"exceeds the limit {max_host_routes}.",
                type="HostRoutesExhausted",
            )
        for route in host_routes:
            _check_ip_version("nexthop", route["nexthop"], ip_version)
            _check_ip_version("destination", route["destination"], ip_version)


def check_fixed_ip_in_subnet(
    ip: str,
    subnet: SubnetPlan | tuple[str, int] | str,
    ip_version: int | None = None,
    *,
    device_owner: str = "",
) -> None:
    """Refuse an address the subnet cannot give a port (Neutron's check_subnet_ip).

    `subnet` is a SubnetPlan, a ``(cidr, ip_version)`` pair, or a CIDR with `ip_version`
    given separately.  Outside the CIDR, of the other IP version, or (IPv4) the network or
    broadcast address: InvalidIpForSubnet.  An IPv6 subnet's all-zero (subnet-router anycast)
    address is only for router ports (`device_owner` in ROUTER_PORT_OWNERS).
    """
    if isinstance(subnet, SubnetPlan):
        cidr, version = subnet.cidr, subnet.ip_version
    elif isinstance(subnet, tuple):
        cidr, version = subnet
    else:
        cidr = subnet
        version = ip_version if ip_version is not None else netaddr.IPNetwork(cidr).version
    invalid = NamedInvalidInput(
        "InvalidIpForSubnet", f"IP address {ip} is not a valid IP for the specified subnet."
    )
    try:
        address = netaddr.IPAddress(ip)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise AttributeValidationError(f"'{ip}' is not a valid IP address") from None
    net = netaddr.IPNetwork(cidr)
    if address.version != version or address.version != net.version or address not in net:
        raise invalid
    if net.version == 4 and address in (net.network, net[-1]):
        raise invalid
    if net.version == 6 and address == net.network and device_owner not in ROUTER_PORT_OWNERS:
        raise invalid


def address_in_cidr(ip: str, cidr: str) -> bool:
    """Whether the address `ip` lies in `cidr` (False across IP versions or for garbage)."""
    try:
        address = netaddr.IPAddress(ip)
        net = netaddr.IPNetwork(cidr)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return False
    return bool(address.version == net.version and address in net)


# --- EUI-64 and MAC generation --------------------------------------------------------------


def eui64_address(cidr: str, mac: str) -> str:
    """The modified EUI-64 (SLAAC) address of `mac` in the IPv6 prefix `cidr` (at most /64).

    Same result as Neutron's get_ipv6_addr_by_EUI64 and netaddr's ``EUI(mac).ipv6(prefix)``.
    """
    net = netaddr.IPNetwork(cidr)
    if net.version != 6:
        raise ValueError("Unable to generate IP address by EUI64 for IPv4 prefix")
    if net.prefixlen > 64:
        raise ValueError(f"EUI-64 needs a prefix of at most 64 bits, not /{net.prefixlen}")
    try:
        value = int(netaddr.EUI(mac))
    except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
        raise ValueError(f"{mac!r} is not a MAC address") from exc
    # 48-bit MAC -> 64-bit EUI-64 (ff:fe in the middle), universal/local bit inverted.
    eui64 = ((value >> 24) << 40) | (0xFFFE << 24) | (value & 0xFFFFFF)
    eui64 ^= 1 << 57
    return str(netaddr.IPAddress(int(net.first) | eui64, 6))


def generate_mac(base_mac: str = DEFAULT_BASE_MAC, rand: random.Random | None = None) -> str:
    """A random MAC address in Neutron's scheme (neutron-lib get_random_mac).

    The first three octets of `base_mac` are kept, the fourth too when it is not 00, and the
    rest is random: 'fa:16:3e:00:00:00' gives 'fa:16:3e:xx:xx:xx'.
    """
    octets = netaddr.EUI(base_mac, dialect=netaddr.mac_unix_expanded).words
    getrandbits = rand.getrandbits if rand is not None else random.getrandbits
    mac = [octets[0], octets[1], octets[2], getrandbits(8), getrandbits(8), getrandbits(8)]
    if octets[3] != 0:
        mac[3] = octets[3]
    return ":".join(f"{octet:02x}" for octet in mac)
