"""Unit tests and properties of the pure IPAM module (neutrino.ipam)."""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import netaddr
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from neutrino import ipam
from neutrino.api.errors import BadRequest, Conflict, InvalidInput, NeutronError

# --- strategies -----------------------------------------------------------------------------


@st.composite
def ipv4_subnets(draw: st.DrawFn, min_prefix: int = 0, max_prefix: int = 32) -> str:
    prefix = draw(st.integers(min_prefix, max_prefix))
    address = draw(st.integers(0, 2**32 - 1))
    return str(netaddr.IPNetwork(f"{netaddr.IPAddress(address, 4)}/{prefix}").cidr)


@st.composite
def ipv6_subnets(draw: st.DrawFn, min_prefix: int = 0, max_prefix: int = 128) -> str:
    prefix = draw(st.integers(min_prefix, max_prefix))
    address = draw(st.integers(0, 2**128 - 1))
    return str(netaddr.IPNetwork(f"{netaddr.IPAddress(address, 6)}/{prefix}").cidr)


def any_subnets(min4: int = 1, min6: int = 1) -> st.SearchStrategy[str]:
    return st.one_of(ipv4_subnets(min_prefix=min4), ipv6_subnets(min_prefix=min6))


macs = st.integers(0, 2**48 - 1).map(
    lambda n: str(netaddr.EUI(n, dialect=netaddr.mac_unix_expanded))
)


@st.composite
def pools_and_allocations(draw: st.DrawFn) -> tuple[list[tuple[int, int]], set[int]]:
    """A few disjoint pools somewhere in a small space, plus some addresses already taken."""
    bounds = sorted(draw(st.sets(st.integers(0, 200), min_size=2, max_size=8)))
    pools = [(bounds[i], bounds[i + 1]) for i in range(0, len(bounds) - 1, 2)]
    base = draw(st.integers(0, 2**32 - 256))
    pools = [(base + a, base + b) for a, b in pools]
    everything = [a for start, end in pools for a in range(start, end + 1)]
    taken = draw(st.sets(st.sampled_from(everything))) if everything else set()
    outside = draw(st.sets(st.integers(base, base + 255), max_size=10))
    return pools, taken | outside


# --- conversions and small helpers ----------------------------------------------------------


class TestConversions:
    @pytest.mark.parametrize(
        ("ip", "value", "version"),
        [("0.0.0.0", 0, 4), ("10.0.0.1", 167772161, 4), ("255.255.255.255", 2**32 - 1, 4),
         ("::", 0, 6), ("::1", 1, 6), ("2001:db8::1", 0x20010DB8 << 96 | 1, 6)],
    )
    def test_round_trip(self, ip: str, value: int, version: int) -> None:
        assert ipam.ip_to_int(ip) == value
        assert ipam.int_to_ip(value, version) == ip

    def test_int_to_ip_canonical_spelling(self) -> None:
        assert ipam.int_to_ip(ipam.ip_to_int("2001:DB8:0:0::A"), 6) == "2001:db8::a"

    @pytest.mark.parametrize("bad", ["x", "10.0.0.256", ""])
    def test_ip_to_int_rejects_garbage(self, bad: str) -> None:
        with pytest.raises(ValueError):
            ipam.ip_to_int(bad)

    def test_int_to_ip_rejects_out_of_range(self) -> None:
        with pytest.raises(ValueError):
            ipam.int_to_ip(2**32, 4)
        with pytest.raises(ValueError):
            ipam.int_to_ip(1, 5)

    @given(st.integers(0, 2**128 - 1))
    def test_round_trip_property(self, value: int) -> None:
        assert ipam.ip_to_int(ipam.int_to_ip(value, 6)) == value
        if value < 2**32:
            assert ipam.ip_to_int(ipam.int_to_ip(value, 4)) == value

    def test_pool_helpers(self) -> None:
        pools = [(10, 19), (30, 30)]
        assert ipam.pool_size(pools) == 11
        assert ipam.pool_size([]) == 0
        assert ipam.address_in_pools(10, pools) and ipam.address_in_pools(30, pools)
        assert not ipam.address_in_pools(20, pools) and not ipam.address_in_pools(9, pools)

    @pytest.mark.parametrize(
        ("ip", "cidr", "inside"),
        [("10.0.0.5", "10.0.0.0/24", True), ("10.0.1.5", "10.0.0.0/24", False),
         ("2001:db8::5", "2001:db8::/64", True), ("10.0.0.5", "::/0", False),
         ("garbage", "10.0.0.0/24", False)],
    )
    def test_address_in_cidr(self, ip: str, cidr: str, inside: bool) -> None:
        assert ipam.address_in_cidr(ip, cidr) is inside


class TestOverlap:
    @pytest.mark.parametrize(
        ("a", "b", "overlap"),
        [("10.0.0.0/24", "10.0.0.0/24", True), ("10.0.0.0/24", "10.0.0.128/25", True),
         ("10.0.0.0/8", "10.255.255.255/32", True), ("10.0.0.0/24", "10.0.1.0/24", False),
         ("0.0.0.0/0", "192.168.0.0/16", True), ("2001:db8::/32", "2001:db8:1::/48", True),
         ("2001:db8::/64", "2001:db8:0:1::/64", False), ("::/0", "10.0.0.0/8", False)],
    )
    def test_cidrs_overlap(self, a: str, b: str, overlap: bool) -> None:
        assert ipam.cidrs_overlap(a, b) is overlap

    @given(any_subnets(min4=0, min6=0), any_subnets(min4=0, min6=0))
    def test_overlap_is_symmetric_and_matches_set_intersection(self, a: str, b: str) -> None:
        assert ipam.cidrs_overlap(a, b) == ipam.cidrs_overlap(b, a)
        net_a, net_b = netaddr.IPNetwork(a), netaddr.IPNetwork(b)
        expected = net_a.version == net_b.version and (net_a in net_b or net_b in net_a)
        assert ipam.cidrs_overlap(a, b) == expected

    @given(any_subnets(min4=0, min6=0))
    def test_a_cidr_overlaps_itself(self, cidr: str) -> None:
        assert ipam.cidrs_overlap(cidr, cidr)

    def test_check_cidr_overlap(self) -> None:
        ipam.check_cidr_overlap("10.0.1.0/24", "net-1", ["10.0.0.0/24", "2001:db8::/64"])
        with pytest.raises(InvalidInput) as info:
            ipam.check_cidr_overlap("10.0.0.128/25", "net-1", ["10.0.0.0/24"])
        assert info.value.message == (
            "Invalid input for operation: Requested subnet with cidr: 10.0.0.128/25 for network: "
            "net-1 overlaps with another subnet."
        )


# --- plan_subnet ----------------------------------------------------------------------------


def plan_error(*args: Any, **kwargs: Any) -> NeutronError:
    with pytest.raises(NeutronError) as info:
        ipam.plan_subnet(*args, **kwargs)
    return info.value


class TestPlanSubnetDefaults:
    def test_ipv4_defaults(self) -> None:
        plan = ipam.plan_subnet("10.0.0.0/24", 4)
        assert plan == ipam.SubnetPlan(
            cidr="10.0.0.0/24", ip_version=4, gateway_ip="10.0.0.1",
            allocation_pools=[{"start": "10.0.0.2", "end": "10.0.0.254"}],
        )
        assert plan.capacity == 253
        assert plan.pool_ranges == [(ipam.ip_to_int("10.0.0.2"), ipam.ip_to_int("10.0.0.254"))]
        assert plan.gateway_int == ipam.ip_to_int("10.0.0.1")
        assert plan.prefixlen == 24
        assert (plan.first, plan.last) == (ipam.ip_to_int("10.0.0.0"), ipam.ip_to_int("10.0.0.255"))

    def test_host_bits_are_cleared(self) -> None:
        plan = ipam.plan_subnet("10.0.0.77/24", 4)
        assert plan.cidr == "10.0.0.0/24"
        assert plan.gateway_ip == "10.0.0.1"

    def test_ipv6_defaults_keep_the_last_address_and_skip_the_anycast_one(self) -> None:
        plan = ipam.plan_subnet("2001:DB8::/64", 6)
        assert plan.cidr == "2001:db8::/64"
        assert plan.gateway_ip == "2001:db8::1"
        assert plan.allocation_pools == [
            {"start": "2001:db8::2", "end": "2001:db8::ffff:ffff:ffff:ffff"}
        ]

    def test_no_gateway(self) -> None:
        plan = ipam.plan_subnet("10.0.0.0/24", 4, None)
        assert plan.gateway_ip is None
        assert plan.allocation_pools == [{"start": "10.0.0.1", "end": "10.0.0.254"}]

    def test_gateway_in_the_middle_splits_the_pool(self) -> None:
        plan = ipam.plan_subnet("10.0.0.0/24", 4, "10.0.0.100")
        assert plan.allocation_pools == [
            {"start": "10.0.0.1", "end": "10.0.0.99"}, {"start": "10.0.0.101", "end": "10.0.0.254"}
        ]

    def test_gateway_at_the_end(self) -> None:
        plan = ipam.plan_subnet("10.0.0.0/24", 4, "10.0.0.254")
        assert plan.allocation_pools == [{"start": "10.0.0.1", "end": "10.0.0.253"}]

    def test_gateway_outside_the_cidr_is_allowed(self) -> None:
        plan = ipam.plan_subnet("10.0.0.0/24", 4, "10.0.1.1")
        assert plan.gateway_ip == "10.0.1.1"
        assert plan.allocation_pools == [{"start": "10.0.0.1", "end": "10.0.0.254"}]

    def test_gateway_outside_refused_when_forced_on_subnet(self) -> None:
        exc = plan_error("10.0.0.0/24", 4, "10.0.1.1", force_gateway_on_subnet=True)
        assert exc.message == "Invalid input for operation: Gateway is not valid on subnet."

    def test_ipv6_gateway_may_be_the_anycast_address(self) -> None:
        plan = ipam.plan_subnet("2001:db8::/64", 6, "2001:db8::")
        assert plan.gateway_ip == "2001:db8::"
        assert plan.allocation_pools[0]["start"] == "2001:db8::1"

    def test_gateway_is_canonicalised(self) -> None:
        assert ipam.plan_subnet("2001:db8::/64", 6, "2001:DB8::FE").gateway_ip == "2001:db8::fe"

    def test_auto_address_modes(self) -> None:
        plan = ipam.plan_subnet("2001:db8::/64", 6, ipv6_ra_mode="slaac",
                                ipv6_address_mode="slaac")
        assert plan.is_auto_address
        assert ipam.plan_subnet("2001:db8::/64", 6, ipv6_address_mode="dhcpv6-stateless"
                                ).is_auto_address
        assert not ipam.plan_subnet("2001:db8::/64", 6, ipv6_address_mode="dhcpv6-stateful",
                                    ipv6_ra_mode="dhcpv6-stateful").is_auto_address

    def test_contains_and_in_pools(self) -> None:
        plan = ipam.plan_subnet("10.0.0.0/24", 4, "10.0.0.1",
                                [{"start": "10.0.0.10", "end": "10.0.0.20"}])
        assert plan.contains("10.0.0.255") and not plan.contains("10.0.1.0")
        assert not plan.contains("::1") and not plan.contains("garbage")
        assert plan.contains(ipam.ip_to_int("10.0.0.7"))
        assert plan.in_pools("10.0.0.15") and not plan.in_pools("10.0.0.21")
        assert not plan.in_pools("10.0.1.15")

    def test_plan_is_hashable(self) -> None:
        assert hash(ipam.plan_subnet("10.0.0.0/24", 4)) == hash(ipam.plan_subnet("10.0.0.0/24", 4))


class TestPlanSubnetTinyPrefixes:
    """Neutron's behaviour for the smallest subnets (they need enable_dhcp=False)."""

    @pytest.mark.parametrize(
        ("cidr", "version", "gateway", "pools"),
        [
            ("10.0.0.5/32", 4, "10.0.0.6", [{"start": "10.0.0.5", "end": "10.0.0.5"}]),
            ("10.0.0.4/31", 4, "10.0.0.5", []),
            ("10.0.0.4/30", 4, "10.0.0.5", [{"start": "10.0.0.6", "end": "10.0.0.6"}]),
            ("2001:db8::5/128", 6, "2001:db8::6", [{"start": "2001:db8::5", "end": "2001:db8::5"}]),
            ("2001:db8::4/127", 6, "2001:db8::5", []),
            ("2001:db8::4/126", 6, "2001:db8::5", [{"start": "2001:db8::6", "end": "2001:db8::7"}]),
        ],
    )
    def test_layout(self, cidr: str, version: int, gateway: str,
                    pools: list[dict[str, str]]) -> None:
        plan = ipam.plan_subnet(cidr, version, enable_dhcp=False)
        assert (plan.gateway_ip, plan.allocation_pools) == (gateway, pools)

    @pytest.mark.parametrize(("cidr", "version"), [("10.0.0.0/31", 4), ("10.0.0.0/32", 4),
                                                   ("2001:db8::/127", 6), ("2001:db8::/128", 6)])
    def test_dhcp_needs_room(self, cidr: str, version: int) -> None:
        exc = plan_error(cidr, version)
        assert exc.message == ("Invalid input for operation: Subnet has a prefix length that is "
                               "incompatible with DHCP service enabled.")

    def test_last_address_of_the_space(self) -> None:
        plan = ipam.plan_subnet("255.255.255.255/32", 4, enable_dhcp=False)
        assert plan.gateway_ip is None
        assert plan.allocation_pools == [{"start": "255.255.255.255", "end": "255.255.255.255"}]


class TestPlanSubnetGivenPools:
    def test_pools_are_validated_sorted_and_canonicalised(self) -> None:
        plan = ipam.plan_subnet(
            "2001:db8::/64", 6, ipam.UNSET,
            [{"start": "2001:DB8::100", "end": "2001:db8::1ff"},
             {"start": "2001:db8::10", "end": "2001:db8::1f"}],
        )
        assert plan.allocation_pools == [
            {"start": "2001:db8::10", "end": "2001:db8::1f"},
            {"start": "2001:db8::100", "end": "2001:db8::1ff"},
        ]
        assert plan.capacity == 16 + 256

    def test_empty_pool_list_means_no_pool(self) -> None:
        plan = ipam.plan_subnet("10.0.0.0/24", 4, ipam.UNSET, [])
        assert plan.allocation_pools == [] and plan.capacity == 0

    def test_none_means_default_pools(self) -> None:
        assert ipam.plan_subnet("10.0.0.0/24", 4, ipam.UNSET, None).capacity == 253

    def test_single_address_pool(self) -> None:
        plan = ipam.plan_subnet("10.0.0.0/24", 4, None, [{"start": "10.0.0.9", "end": "10.0.0.9"}])
        assert plan.capacity == 1

    def test_ipv6_pool_may_end_on_the_last_address(self) -> None:
        plan = ipam.plan_subnet("2001:db8::/120", 6, ipam.UNSET,
                                [{"start": "2001:db8::f0", "end": "2001:db8::ff"}])
        assert plan.capacity == 16

    @pytest.mark.parametrize(
        ("cidr", "version", "pool", "label"),
        [
            ("10.0.0.0/24", 4, ("10.0.0.0", "10.0.0.10"), "10.0.0.0-10.0.0.10"),
            ("10.0.0.0/24", 4, ("10.0.0.200", "10.0.0.255"), "10.0.0.200-10.0.0.255"),
            ("10.0.0.0/24", 4, ("10.0.1.2", "10.0.1.9"), "10.0.1.2-10.0.1.9"),
            ("2001:db8::/64", 6, ("2001:db8::", "2001:db8::9"), "2001:db8::-2001:db8::9"),
        ],
    )
    def test_pools_must_lie_in_the_usable_range(self, cidr: str, version: int,
                                                pool: tuple[str, str], label: str) -> None:
        exc = plan_error(cidr, version, ipam.UNSET, [{"start": pool[0], "end": pool[1]}])
        assert isinstance(exc, BadRequest)
        assert exc.type == "OutOfBoundsAllocationPool"
        assert exc.message == f"The allocation pool {label} spans beyond the subnet cidr {cidr}."

    def test_start_after_end(self) -> None:
        pool = {"start": "10.0.0.20", "end": "10.0.0.10"}
        exc = plan_error("10.0.0.0/24", 4, ipam.UNSET, [pool])
        assert (exc.status, exc.type) == (400, "InvalidAllocationPool")
        assert exc.message == f"The allocation pool {pool} is not valid."

    @pytest.mark.parametrize("pool", [{"start": "x", "end": "10.0.0.9"}, {"start": "10.0.0.2"},
                                      "10.0.0.2-10.0.0.9"])
    def test_malformed_pool(self, pool: Any) -> None:
        exc = plan_error("10.0.0.0/24", 4, ipam.UNSET, [pool])
        assert exc.type == "InvalidAllocationPool"

    def test_pool_of_the_other_version(self) -> None:
        exc = plan_error("10.0.0.0/24", 4, ipam.UNSET, [{"start": "::2", "end": "::9"}])
        assert exc.type == "InvalidAllocationPool"
        assert exc.message == "The allocation pool ::2-::9 is not valid."

    def test_overlapping_pools(self) -> None:
        exc = plan_error("10.0.0.0/24", 4, ipam.UNSET,
                         [{"start": "10.0.0.50", "end": "10.0.0.60"},
                          {"start": "10.0.0.2", "end": "10.0.0.9"},
                          {"start": "10.0.0.5", "end": "10.0.0.50"}])
        assert isinstance(exc, Conflict)
        assert (exc.status, exc.type) == (409, "OverlappingAllocationPools")
        assert exc.message == ("Found overlapping allocation pools: 10.0.0.50-10.0.0.60 "
                               "10.0.0.5-10.0.0.50 for subnet 10.0.0.0/24.")

    @pytest.mark.parametrize("gateway", [ipam.UNSET, "10.0.0.9"])
    def test_gateway_must_stay_out_of_the_pools(self, gateway: Any) -> None:
        exc = plan_error("10.0.0.0/24", 4, gateway, [{"start": "10.0.0.1", "end": "10.0.0.9"}])
        ip = "10.0.0.1" if gateway is ipam.UNSET else gateway
        assert (exc.status, exc.type) == (409, "GatewayConflictWithAllocationPools")
        assert exc.message == f"Gateway ip {ip} conflicts with allocation pool 10.0.0.1-10.0.0.9."


class TestPlanSubnetRejections:
    def test_version_must_match(self) -> None:
        assert plan_error("10.0.0.0/24", 6).message == (
            "Invalid input for operation: cidr '10.0.0.0/24' does not match the ip_version '6'."
        )

    @pytest.mark.parametrize("version", [5, 0, True])
    def test_version_must_be_4_or_6(self, version: Any) -> None:
        exc = plan_error("10.0.0.0/24", version)
        assert exc.message == f"Invalid input for operation: {version} is not in [4, 6]."

    def test_cidr_must_parse(self) -> None:
        assert plan_error("nope", 4).message == (
            "Invalid input for operation: 'nope' is not a valid IP subnet."
        )

    def test_gateway_version_must_match(self) -> None:
        assert plan_error("10.0.0.0/24", 4, "2001:db8::1").message == (
            "Invalid input for operation: gateway_ip '2001:db8::1' does not match the "
            "ip_version '4'."
        )

    @pytest.mark.parametrize("gateway", ["10.0.0.0", "10.0.0.255"])
    def test_ipv4_gateway_cannot_be_network_or_broadcast(self, gateway: str) -> None:
        assert plan_error("10.0.0.0/24", 4, gateway).message == (
            "Invalid input for operation: Gateway is not valid on subnet."
        )

    @pytest.mark.parametrize(
        ("cidr", "message"),
        [("224.0.0.0/24", "Multicast IP subnet is not supported if enable_dhcp is True."),
         ("ff00::/64", "Multicast IP subnet is not supported if enable_dhcp is True."),
         ("127.0.0.0/8", "Loopback IP subnet is not supported if enable_dhcp is True."),
         ("0.0.0.0/8", "First IP '0.0.0.0' of network is not supported if enable_dhcp is True.")],
    )
    def test_dhcp_refuses_special_ranges(self, cidr: str, message: str) -> None:
        version = 6 if ":" in cidr else 4
        assert plan_error(cidr, version).message == f"Invalid input for operation: {message}"
        ipam.plan_subnet(cidr, version, enable_dhcp=False)

    @pytest.mark.parametrize(("cidr", "version"), [("0.0.0.0/0", 4), ("::/0", 6)])
    def test_zero_prefix(self, cidr: str, version: int) -> None:
        assert plan_error(cidr, version, enable_dhcp=False).message == (
            "Invalid input for operation: 0 is not allowed as CIDR prefix length."
        )

    @pytest.mark.parametrize("mode", ["ipv6_ra_mode", "ipv6_address_mode"])
    def test_ipv6_modes_on_ipv4(self, mode: str) -> None:
        assert plan_error("10.0.0.0/24", 4, **{mode: "slaac"}).message == (
            f"Invalid input for operation: {mode} is not valid when ip_version is 4."
        )

    def test_ipv6_modes_need_dhcp(self) -> None:
        assert plan_error("2001:db8::/64", 6, ipv6_address_mode="slaac",
                          enable_dhcp=False).message == (
            "Invalid input for operation: ipv6_ra_mode or ipv6_address_mode cannot be set when "
            "enable_dhcp is set to False."
        )

    def test_ipv6_modes_must_agree(self) -> None:
        assert "must be the same value" in plan_error(
            "2001:db8::/64", 6, ipv6_ra_mode="slaac", ipv6_address_mode="dhcpv6-stateful"
        ).message

    def test_unknown_ipv6_mode(self) -> None:
        assert plan_error("2001:db8::/64", 6, ipv6_ra_mode="auto").message == (
            "Invalid input for operation: auto is not in "
            "['dhcpv6-stateful', 'dhcpv6-stateless', 'slaac']."
        )

    @pytest.mark.parametrize(
        ("cidr", "modes"),
        [("2001:db8::/48", {"ipv6_address_mode": "slaac"}),
         ("2001:db8::/80", {"ipv6_ra_mode": "dhcpv6-stateless"}),
         ("2001:db8::/96", {"ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"})],
    )
    def test_auto_address_modes_need_a_64(self, cidr: str, modes: dict[str, str]) -> None:
        assert plan_error(cidr, 6, **modes).message == (
            f"Invalid input for operation: Invalid CIDR {cidr} for IPv6 address mode. OpenStack "
            "uses the EUI-64 address format, which requires the prefix to be /64."
        )

    def test_stateful_dhcpv6_takes_any_prefix(self) -> None:
        plan = ipam.plan_subnet("2001:db8::/120", 6, ipv6_ra_mode="dhcpv6-stateful",
                                ipv6_address_mode="dhcpv6-stateful")
        assert plan.capacity == 254


class TestPlanSubnetProperties:
    @given(any_subnets(min4=1, min6=1), st.booleans())
    def test_default_pools_avoid_gateway_network_and_broadcast(self, cidr: str,
                                                               no_gateway: bool) -> None:
        net = netaddr.IPNetwork(cidr)
        plan = ipam.plan_subnet(cidr, net.version, None if no_gateway else ipam.UNSET,
                                enable_dhcp=False)
        ranges = plan.pool_ranges
        for start, end in ranges:
            assert net.first <= start <= end <= net.last
        if net.first != net.last:  # a /32 or /128 pool is its one address
            assert not ipam.address_in_pools(net.first, ranges)
            if net.version == 4:
                assert not ipam.address_in_pools(net.last, ranges)
        if plan.gateway_int is not None:
            assert not ipam.address_in_pools(plan.gateway_int, ranges)
        # pools are sorted and disjoint
        for (_, end_a), (start_b, _) in itertools.pairwise(ranges):
            assert end_a < start_b

    @given(any_subnets(min4=1, min6=1))
    def test_default_capacity(self, cidr: str) -> None:
        net = netaddr.IPNetwork(cidr)
        plan = ipam.plan_subnet(cidr, net.version, enable_dhcp=False)
        size = net.last - net.first + 1
        if size == 1:
            expected = 1
        elif size == 2:
            expected = 0
        else:
            expected = size - 1 - (net.version == 4) - 1  # minus network, broadcast, gateway
        assert plan.capacity == expected

    @given(any_subnets(min4=1, min6=1), st.data())
    def test_explicit_gateway_inside_is_never_pooled(self, cidr: str, data: st.DataObject) -> None:
        net = netaddr.IPNetwork(cidr)
        assume(net.last - net.first >= 3)
        gateway_int = data.draw(st.integers(net.first + 1, net.last - 1))
        gateway = str(netaddr.IPAddress(gateway_int, net.version))
        plan = ipam.plan_subnet(cidr, net.version, gateway, enable_dhcp=False)
        assert plan.gateway_ip == gateway
        assert not ipam.address_in_pools(gateway_int, plan.pool_ranges)
        assert plan.capacity == net.last - net.first - 1 - (net.version == 4)


# --- picking addresses ----------------------------------------------------------------------


class TestPickFreeAddress:
    def test_lowest_free(self) -> None:
        assert ipam.pick_free_address([(10, 20)], set()) == 10
        assert ipam.pick_free_address([(10, 20)], {10, 11, 13}) == 12
        assert ipam.pick_free_address([(30, 40), (10, 20)], {10}) == 11
        assert ipam.pick_free_address([(10, 12), (30, 31)], {10, 11, 12}) == 30
        assert ipam.pick_free_address([(10, 12)], {10, 11, 12}) is None
        assert ipam.pick_free_address([], set()) is None

    @pytest.mark.parametrize(
        "kind", [set, frozenset, list, tuple, ipam.SortedAllocations, lambda s: dict.fromkeys(s)]
    )
    def test_any_collection(self, kind: Any) -> None:
        allocated = kind([5, 6, 7, 9])
        assert ipam.pick_free_address([(5, 9)], allocated) == 8
        assert ipam.pick_free_address([(5, 7), (9, 9)], allocated) is None

    @given(pools_and_allocations(), st.booleans())
    @settings(suppress_health_check=[HealthCheck.too_slow])
    def test_repeated_picks_until_exhausted(
        self, case: tuple[list[tuple[int, int]], set[int]], use_sorted: bool
    ) -> None:
        pools, allocated = case
        gateway = pools[0][0]  # the gateway is handed in as allocated, as callers do
        allocated = allocated | {gateway}
        free_at_start = pool_free(pools, allocated)
        taken: Any = ipam.SortedAllocations(allocated) if use_sorted else set(allocated)
        picked: list[int] = []
        while (address := ipam.pick_free_address(pools, taken)) is not None:
            assert address not in taken
            assert ipam.address_in_pools(address, pools)
            assert address != gateway
            # deterministic: the lowest free address
            assert address == min(a for a in range(pools[0][0], pools[-1][1] + 1)
                                  if ipam.address_in_pools(a, pools) and a not in taken)
            taken.add(address)
            picked.append(address)
        assert len(picked) == len(set(picked)) == free_at_start
        assert len([a for a in taken if ipam.address_in_pools(a, pools)]) == ipam.pool_size(pools)

    @given(pools_and_allocations(), st.data(), st.booleans())
    def test_freed_address_is_pickable_again(
        self, case: tuple[list[tuple[int, int]], set[int]], data: st.DataObject, use_sorted: bool
    ) -> None:
        pools, _ = case
        full = {a for start, end in pools for a in range(start, end + 1)}
        freed = data.draw(st.sampled_from(sorted(full)))
        taken: Any = ipam.SortedAllocations(full) if use_sorted else set(full)
        assert ipam.pick_free_address(pools, taken) is None
        taken.discard(freed)
        assert ipam.pick_free_address(pools, taken) == freed

    @given(pools_and_allocations())
    def test_sorted_and_set_agree(self, case: tuple[list[tuple[int, int]], set[int]]) -> None:
        pools, allocated = case
        assert ipam.pick_free_address(pools, allocated) == ipam.pick_free_address(
            pools, ipam.SortedAllocations(allocated)
        )

    def test_large_allocations_are_fast(self) -> None:
        plan = ipam.plan_subnet("10.20.0.0/16", 4)
        pools = plan.pool_ranges
        start = pools[0][0]
        allocated = set(range(start, start + 60_000))
        sorted_allocated = ipam.SortedAllocations(allocated)
        began = time.perf_counter()
        for _ in range(20):
            assert ipam.pick_free_address(pools, allocated) == start + 60_000
        assert time.perf_counter() - began < 2.0  # ~60k set probes per call, no /16 walk
        began = time.perf_counter()
        for i in range(1000):
            address = ipam.pick_free_address(pools, sorted_allocated)
            assert address == start + 60_000 + i
            sorted_allocated.add(address)
        assert time.perf_counter() - began < 1.0  # a binary search per call


def pool_free(pools: list[tuple[int, int]], allocated: set[int]) -> int:
    return sum(1 for start, end in pools for a in range(start, end + 1) if a not in allocated)


class TestSortedAllocations:
    def test_collection_behaviour(self) -> None:
        s = ipam.SortedAllocations([5, 3, 3, 9])
        assert list(s) == [3, 5, 9] and len(s) == 3
        assert 5 in s and 4 not in s and "5" not in s
        s.add(4)
        s.add(4)
        s.discard(9)
        s.discard(100)
        assert list(s) == [3, 4, 5]

    @pytest.mark.parametrize(
        ("items", "start", "end", "expected"),
        [([], 1, 5, 1), ([1, 2, 3], 1, 5, 4), ([1, 2, 3, 4, 5], 1, 5, None), ([2, 3], 1, 5, 1),
         ([0, 1, 2, 4], 1, 5, 3), ([1, 2, 3, 10], 1, 3, None), ([7], 5, 4, None)],
    )
    def test_lowest_free(self, items: list[int], start: int, end: int,
                         expected: int | None) -> None:
        assert ipam.SortedAllocations(items).lowest_free(start, end) == expected


class TestDefaultAllocationPools:
    def test_gateway_outside_leaves_the_pool_whole(self) -> None:
        assert ipam.default_allocation_pools("10.0.0.0/29", "10.0.1.1") == [
            (ipam.ip_to_int("10.0.0.1"), ipam.ip_to_int("10.0.0.6"))
        ]

    def test_gateway_at_the_start(self) -> None:
        assert ipam.default_allocation_pools("10.0.0.0/29", "10.0.0.1") == [
            (ipam.ip_to_int("10.0.0.2"), ipam.ip_to_int("10.0.0.6"))
        ]


# --- fixed IPs ------------------------------------------------------------------------------


class TestCheckFixedIp:
    @pytest.mark.parametrize(
        ("ip", "cidr"),
        [("10.0.0.1", "10.0.0.0/24"), ("10.0.0.254", "10.0.0.0/24"),
         ("2001:db8::1", "2001:db8::/64"), ("2001:db8::ffff:ffff:ffff:ffff", "2001:db8::/64")],
    )
    def test_valid(self, ip: str, cidr: str) -> None:
        version = 6 if ":" in cidr else 4
        ipam.check_fixed_ip_in_subnet(ip, (cidr, version))
        ipam.check_fixed_ip_in_subnet(ip, cidr, version)
        ipam.check_fixed_ip_in_subnet(ip, cidr)
        ipam.check_fixed_ip_in_subnet(ip, ipam.plan_subnet(cidr, version, None))

    @pytest.mark.parametrize(
        ("ip", "cidr"),
        [("10.0.0.0", "10.0.0.0/24"), ("10.0.0.255", "10.0.0.0/24"), ("10.0.1.1", "10.0.0.0/24"),
         ("2001:db8::1", "10.0.0.0/24"), ("::a00:1", "10.0.0.0/24"),
         ("2001:db9::1", "2001:db8::/64"), ("10.0.0.1", "2001:db8::/64"),
         ("2001:db8::", "2001:db8::/64")],
    )
    def test_invalid(self, ip: str, cidr: str) -> None:
        version = 6 if ":" in cidr else 4
        with pytest.raises(InvalidInput) as info:
            ipam.check_fixed_ip_in_subnet(ip, (cidr, version))
        assert (info.value.status, info.value.type) == (400, "InvalidIpForSubnet")
        assert info.value.message == f"IP address {ip} is not a valid IP for the specified subnet."

    def test_router_ports_may_take_the_ipv6_anycast_address(self) -> None:
        ipam.check_fixed_ip_in_subnet("2001:db8::", ("2001:db8::/64", 6),
                                      device_owner="network:router_interface")

    def test_garbage(self) -> None:
        with pytest.raises(InvalidInput) as info:
            ipam.check_fixed_ip_in_subnet("nope", ("10.0.0.0/24", 4))
        assert info.value.message == "Invalid input for operation: 'nope' is not a valid IP address."


class TestSubnetAttributes:
    def test_fine(self) -> None:
        ipam.check_subnet_attributes(4, dns_nameservers=["8.8.8.8"],
                                     host_routes=[{"destination": "10.1.0.0/16",
                                                   "nexthop": "10.0.0.1"}])

    def test_nameserver_version(self) -> None:
        with pytest.raises(InvalidInput) as info:
            ipam.check_subnet_attributes(6, dns_nameservers=["8.8.8.8"])
        assert info.value.message == ("Invalid input for operation: dns_nameserver '8.8.8.8' does "
                                      "not match the ip_version '6'.")

    def test_route_versions(self) -> None:
        with pytest.raises(InvalidInput) as info:
            ipam.check_subnet_attributes(4, host_routes=[{"destination": "::/0",
                                                          "nexthop": "10.0.0.1"}])
        assert "destination '::/0' does not match the ip_version '4'" in info.value.message
        with pytest.raises(InvalidInput) as info:
            ipam.check_subnet_attributes(4, host_routes=[{"destination": "0.0.0.0/0",
                                                          "nexthop": "::1"}])
        assert "nexthop '::1' does not match the ip_version '4'" in info.value.message

    def test_limits(self) -> None:
        with pytest.raises(BadRequest) as info:
            ipam.check_subnet_attributes(4, dns_nameservers=[f"10.0.0.{i}" for i in range(6)])
        assert info.value.type == "DNSNameServersExhausted"
        assert info.value.message == ("Unable to complete operation for new subnet. The number of "
                                      "DNS nameservers exceeds the limit 5.")
        routes = [{"destination": f"10.{i}.0.0/16", "nexthop": "10.0.0.1"} for i in range(21)]
        with pytest.raises(BadRequest) as info:
            ipam.check_subnet_attributes(4, host_routes=routes, subnet_id="s-1")
        assert info.value.type == "HostRoutesExhausted"
        assert info.value.message == ("Unable to complete operation for s-1. The number of host "
                                      "routes exceeds the limit 20.")


# --- EUI-64 and MACs ------------------------------------------------------------------------


class TestEui64:
    def test_known_value(self) -> None:
        # RFC 4291 appendix A style: 00:1b:21:... with the U/L bit flipped.
        assert ipam.eui64_address("2001:db8::/64", "fa:16:3e:12:34:56") == (
            "2001:db8::f816:3eff:fe12:3456"
        )
        assert ipam.eui64_address("fe80::/64", "00:1b:21:aa:bb:cc") == "fe80::21b:21ff:feaa:bbcc"

    @given(ipv6_subnets(min_prefix=0, max_prefix=64), macs)
    def test_inside_the_prefix_and_matches_netaddr(self, cidr: str, mac: str) -> None:
        address = ipam.eui64_address(cidr, mac)
        net = netaddr.IPNetwork(cidr)
        assert netaddr.IPAddress(address) in net
        assert address == str(netaddr.EUI(mac).ipv6(net.network))
        assert address == str(netaddr.IPAddress(address))  # canonical spelling

    @pytest.mark.parametrize(("cidr", "mac"), [("10.0.0.0/24", "fa:16:3e:00:00:01"),
                                               ("2001:db8::/80", "fa:16:3e:00:00:01"),
                                               ("2001:db8::/64", "nope")])
    def test_refused(self, cidr: str, mac: str) -> None:
        with pytest.raises(ValueError):
            ipam.eui64_address(cidr, mac)


class TestGenerateMac:
    def test_keeps_the_oui(self) -> None:
        mac = ipam.generate_mac("fa:16:3e:00:00:00", random.Random(1))
        assert mac.startswith("fa:16:3e:")
        assert mac == str(netaddr.EUI(mac, dialect=netaddr.mac_unix_expanded))

    def test_keeps_a_non_zero_fourth_octet(self) -> None:
        assert ipam.generate_mac("FA-16-3E-4D-00-00", random.Random(1)).startswith("fa:16:3e:4d:")

    def test_deterministic_with_a_seeded_generator(self) -> None:
        assert ipam.generate_mac(rand=random.Random(7)) == ipam.generate_mac(rand=random.Random(7))

    def test_default_base(self) -> None:
        assert ipam.generate_mac().startswith("fa:16:3e:")

    @given(st.integers(0, 2**32 - 1))
    def test_randomises_the_last_three_octets(self, seed: int) -> None:
        rng = random.Random(seed)
        macs = {ipam.generate_mac("fa:16:3e:00:00:00", rng) for _ in range(20)}
        assert all(m.startswith("fa:16:3e:") and len(m) == 17 for m in macs)
        assert len(macs) > 1
