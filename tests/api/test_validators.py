"""Specification of the attribute validators: what they accept, how they normalise it, and
how they refuse the rest (type names and messages as Neutron words them)."""

from __future__ import annotations

from typing import Any

import pytest

from neutrino.api import validators as v
from neutrino.api.errors import BadRequest, InvalidInput, NeutronError

PREFIX = "Invalid input for operation: "
SUBNET_ID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"


def rejected(call: Any, *args: Any, **kwargs: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        call(*args, **kwargs)
    assert info.value.status == 400
    return info.value


def reason(call: Any, *args: Any, **kwargs: Any) -> str:
    """The neutron-lib reason of an attribute validator's rejection."""
    exc = rejected(call, *args, **kwargs)
    assert isinstance(exc, v.AttributeValidationError)
    assert exc.type == "InvalidInput"
    assert exc.message == PREFIX + exc.reason.rstrip(".") + "."
    return exc.reason


def named(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    """(type, message) of a Neutron exception raised under its own name."""
    exc = rejected(call, *args, **kwargs)
    assert isinstance(exc, v.NamedInvalidInput)
    return exc.type, exc.message


# --- the error shapes -----------------------------------------------------------------------


class TestErrorShapes:
    def test_validator_rejection_reads_as_invalid_input(self) -> None:
        exc = rejected(v.validate_ip_address, "abc")
        assert exc.message == "Invalid input for operation: 'abc' is not a valid IP address."
        assert exc.body() == {
            "NeutronError": {"type": "InvalidInput", "message": exc.message, "detail": ""}
        }

    def test_for_attribute_gives_the_attribute_map_wording(self) -> None:
        exc = rejected(v.validate_cidr, "abc")
        assert isinstance(exc, v.AttributeValidationError)
        wrapped = exc.for_attribute("cidr")
        assert isinstance(wrapped, BadRequest)
        assert wrapped.type == "HTTPBadRequest"
        assert wrapped.message == "Invalid input for cidr. Reason: 'abc' is not a valid IP subnet."

    def test_validate_attribute_wraps_rejections_and_passes_values(self) -> None:
        assert v.validate_attribute("gateway_ip", v.validate_ip_address, "10.0.0.1") == "10.0.0.1"
        with pytest.raises(BadRequest) as info:
            v.validate_attribute("gateway_ip", v.validate_ip_address, "10.0.0.256")
        assert info.value.message == (
            "Invalid input for gateway_ip. Reason: '10.0.0.256' is not a valid IP address."
        )

    def test_validate_attribute_leaves_named_errors_alone(self) -> None:
        with pytest.raises(v.NamedInvalidInput) as info:
            v.validate_attribute("protocol", v.validate_protocol, "bogus")
        assert info.value.type == "SecurityGroupRuleInvalidProtocol"

    def test_validate_attribute_passes_extra_arguments(self) -> None:
        assert v.validate_attribute("remote_ip_prefix", v.validate_ip_prefix, "10.0.0.1",
                                    "IPv4") == "10.0.0.1/32"

    def test_named_errors_keep_neutrons_message_without_prefix(self) -> None:
        exc = v.NamedInvalidInput("SomethingWrong", "Exactly this.")
        assert isinstance(exc, InvalidInput)
        assert exc.status == 400
        assert exc.body()["NeutronError"] == {
            "type": "SomethingWrong", "message": "Exactly this.", "detail": ""
        }


# --- IP and MAC addresses -------------------------------------------------------------------


class TestIpAddress:
    @pytest.mark.parametrize(
        ("given", "normalised"),
        [
            ("10.0.0.1", "10.0.0.1"),
            ("0.0.0.0", "0.0.0.0"),
            ("255.255.255.255", "255.255.255.255"),
            ("::", "::"),
            ("::1", "::1"),
            ("2001:DB8::1", "2001:db8::1"),
            ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("fe80::1:2:3:4", "fe80::1:2:3:4"),
            ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),
        ],
    )
    def test_accepts_and_normalises(self, given: str, normalised: str) -> None:
        assert v.validate_ip_address(given) == normalised

    @pytest.mark.parametrize(
        "given",
        ["abc", "1", "10.1", "1.2.3", "10.0.0.256", "1.2.3.4.5", "", " 10.0.0.1", "10.0.0.1 ",
         "10.0.0.1/24", "0x1.2.3.4", "2001:db8::g", "1::2::3", None, 10, 167772161, ["10.0.0.1"]],
    )
    def test_rejects(self, given: Any) -> None:
        assert reason(v.validate_ip_address, given) == f"'{given}' is not a valid IP address"

    @pytest.mark.parametrize(("given", "spelled"), [("010.0.0.1", "10.0.0.1"),
                                                    ("1.2.3.04", "1.2.3.4")])
    def test_leading_zeros_are_refused_with_a_recommendation(self, given: str,
                                                             spelled: str) -> None:
        assert reason(v.validate_ip_address, given) == (
            f"'{given}' is not an accepted IP address, '{spelled}' is recommended"
        )

    def test_or_none(self) -> None:
        assert v.validate_ip_address_or_none(None) is None
        assert v.validate_ip_address_or_none("2001:DB8::5") == "2001:db8::5"
        rejected(v.validate_ip_address_or_none, "nope")


class TestMacAddress:
    @pytest.mark.parametrize(
        ("given", "normalised"),
        [
            ("fa:16:3e:00:00:01", "fa:16:3e:00:00:01"),
            ("FA:16:3E:AB:CD:EF", "fa:16:3e:ab:cd:ef"),
            ("fa-16-3e-ab-cd-ef", "fa:16:3e:ab:cd:ef"),
            ("fa16.3eab.cdef", "fa:16:3e:ab:cd:ef"),
            ("fa163eabcdef", "fa:16:3e:ab:cd:ef"),
            ("02:00:00:00:00:00", "02:00:00:00:00:00"),
        ],
    )
    def test_accepts_and_normalises(self, given: str, normalised: str) -> None:
        assert v.validate_mac_address(given) == normalised

    @pytest.mark.parametrize(
        "given",
        [
            "00:00:00:00:00:00",  # all zero
            "ff:ff:ff:ff:ff:ff",  # broadcast
            "01:00:5e:00:00:01",  # IPv4 multicast
            "33:33:00:00:00:01",  # IPv6 multicast
            "fb:16:3e:00:00:01",  # I/G bit set
            "fa:16:3e:00:00",
            "fa:16:3e:00:00:00:01",
            "fa:16:3e:00:00:0g",
            " fa:16:3e:00:00:01",
            "",
            None,
            42,
        ],
    )
    def test_rejects(self, given: Any) -> None:
        assert reason(v.validate_mac_address, given) == f"'{given}' is not a valid MAC address"

    def test_or_none(self) -> None:
        assert v.validate_mac_address_or_none(None) is None
        assert v.validate_mac_address_or_none("FA:16:3E:00:00:01") == "fa:16:3e:00:00:01"


# --- CIDRs ----------------------------------------------------------------------------------


class TestCidr:
    @pytest.mark.parametrize(
        ("given", "normalised"),
        [
            ("10.0.0.0/24", "10.0.0.0/24"),
            ("10.0.0.1/24", "10.0.0.0/24"),  # Neutron stores the network, not the host
            ("192.168.1.77/32", "192.168.1.77/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("2001:DB8::/64", "2001:db8::/64"),
            ("2001:db8::1/64", "2001:db8::/64"),
            ("2001:db8:0:0::/48", "2001:db8::/48"),
        ],
    )
    def test_accepts_and_normalises(self, given: str, normalised: str) -> None:
        assert v.validate_cidr(given) == normalised

    @pytest.mark.parametrize(
        "given",
        ["abc", "10.0.0.0", "10.0.0.0/33", "10.0.0.0/-1", "10/8", "010.0.0.0/8", "10.0.0.0/08",
         "10.0.0.0/255.255.255.0", "2001:db8::/129", " 10.0.0.0/24", "", None, 24],
    )
    def test_rejects(self, given: Any) -> None:
        assert reason(v.validate_cidr, given) == f"'{given}' is not a valid IP subnet"


class TestRouteCidr:
    @pytest.mark.parametrize(
        ("given", "normalised"),
        [("10.0.0.0/8", "10.0.0.0/8"), ("0.0.0.0/0", "0.0.0.0/0"),
         ("2001:DB8::/32", "2001:db8::/32"), ("192.168.0.7/32", "192.168.0.7/32")],
    )
    def test_accepts(self, given: str, normalised: str) -> None:
        assert v.validate_route_cidr(given) == normalised

    @pytest.mark.parametrize("given", ["10.0.0.1/8", "2001:db8::1/64", "10.0.0.1", "x", None])
    def test_rejects_host_bits_and_garbage(self, given: Any) -> None:
        assert reason(v.validate_route_cidr, given) == f"'{given}' is not a valid CIDR"

    @pytest.mark.parametrize("given", ["127.0.0.0/8", "::1/128"])
    def test_rejects_loopback(self, given: str) -> None:
        assert reason(v.validate_route_cidr, given) == f"'{given}' is not a routable CIDR"


class TestIpPrefix:
    @pytest.mark.parametrize(
        ("given", "ethertype", "normalised"),
        [
            ("192.168.1.10", "IPv4", "192.168.1.10/32"),
            ("10.0.0.1/24", "IPv4", "10.0.0.0/24"),
            ("0.0.0.0/0", "IPv4", "0.0.0.0/0"),
            ("2001:DB8::1/64", "IPv6", "2001:db8::/64"),
            ("::/0", "IPv6", "::/0"),
            ("2001:db8::5", None, "2001:db8::5/128"),
            ("10.0.0.0/8", "ipv4", "10.0.0.0/8"),  # ethertype matched case-insensitively
        ],
    )
    def test_normalises_host_bits_away(self, given: str, ethertype: str | None,
                                       normalised: str) -> None:
        assert v.validate_ip_prefix(given, ethertype) == normalised

    @pytest.mark.parametrize("given", [None, ""])
    def test_empty_means_any(self, given: Any) -> None:
        assert v.validate_ip_prefix(given, "IPv4") is None

    @pytest.mark.parametrize("given", ["bogus", "10.0.0.0/33", "10.0.0.256", 42])
    def test_invalid_cidr(self, given: Any) -> None:
        assert named(v.validate_ip_prefix, given) == (
            "InvalidCIDR", f"Invalid CIDR {given} given as IP prefix."
        )

    @pytest.mark.parametrize(
        ("given", "ethertype", "cidr"),
        [("10.0.0.0/24", "IPv6", "10.0.0.0/24"), ("2001:db8::/64", "IPv4", "2001:db8::/64"),
         ("10.0.0.9", "IPv6", "10.0.0.9/32")],
    )
    def test_version_must_match_ethertype(self, given: str, ethertype: str, cidr: str) -> None:
        assert named(v.validate_ip_prefix, given, ethertype) == (
            "SecurityGroupRuleParameterConflict",
            f"Conflicting value ethertype {ethertype} for CIDR {cidr}",
        )


# --- subnet attributes ----------------------------------------------------------------------


class TestAllocationPools:
    def test_accepts_and_normalises(self) -> None:
        assert v.validate_allocation_pools(
            [{"start": "10.0.0.2", "end": "10.0.0.9"}, {"end": "2001:DB8::9", "start": "2001:DB8::2"}]
        ) == [{"start": "10.0.0.2", "end": "10.0.0.9"}, {"start": "2001:db8::2", "end": "2001:db8::9"}]

    def test_empty_list_is_valid(self) -> None:
        assert v.validate_allocation_pools([]) == []

    @pytest.mark.parametrize("given", [None, "10.0.0.2-10.0.0.9", {"start": "10.0.0.2"}])
    def test_must_be_a_list(self, given: Any) -> None:
        assert reason(v.validate_allocation_pools, given) == (
            f"Invalid data format for IP pool: '{given}'"
        )

    def test_items_must_be_dicts(self) -> None:
        assert reason(v.validate_allocation_pools, ["10.0.0.2"]) == (
            "Invalid input. '10.0.0.2' must be a dictionary with keys: ['start', 'end']"
        )

    @pytest.mark.parametrize(
        ("pool", "provided"),
        [({"start": "10.0.0.2"}, "{'start'}"),
         ({"start": "10.0.0.2", "end": "10.0.0.3", "step": 1}, "{'end', 'start', 'step'}"),
         ({}, "set()")],
    )
    def test_keys_must_be_start_and_end(self, pool: dict[str, Any], provided: str) -> None:
        assert reason(v.validate_allocation_pools, [pool]) == (
            "Validation of dictionary's keys failed. Expected keys: {'end', 'start'} "
            f"Provided keys: {provided}"
        )

    def test_addresses_must_be_valid(self) -> None:
        assert reason(v.validate_allocation_pools, [{"start": "10.0.0.2", "end": "x"}]) == (
            "'x' is not a valid IP address"
        )


class TestHostRoutes:
    def test_accepts_and_normalises(self) -> None:
        assert v.validate_host_routes(
            [{"destination": "10.1.0.0/16", "nexthop": "10.0.0.1"},
             {"destination": "2001:DB8:1::/48", "nexthop": "2001:DB8::1"}]
        ) == [{"destination": "10.1.0.0/16", "nexthop": "10.0.0.1"},
              {"destination": "2001:db8:1::/48", "nexthop": "2001:db8::1"}]

    def test_must_be_a_list(self) -> None:
        assert reason(v.validate_host_routes, "x") == "Invalid data format for hostroute: 'x'"

    def test_keys_are_destination_and_nexthop(self) -> None:
        assert reason(v.validate_host_routes, [{"destination": "10.1.0.0/16"}]) == (
            "Validation of dictionary's keys failed. Expected keys: {'destination', 'nexthop'} "
            "Provided keys: {'destination'}"
        )

    def test_destination_is_a_route_cidr(self) -> None:
        assert reason(v.validate_host_routes,
                      [{"destination": "10.1.0.1/16", "nexthop": "10.0.0.1"}]) == (
            "'10.1.0.1/16' is not a valid CIDR"
        )

    def test_nexthop_is_an_address(self) -> None:
        assert reason(v.validate_host_routes,
                      [{"destination": "10.1.0.0/16", "nexthop": "10.0.0.0/24"}]) == (
            "'10.0.0.0/24' is not a valid IP address"
        )

    def test_duplicates_are_refused_even_when_spelled_differently(self) -> None:
        routes = [{"destination": "2001:db8:1::/48", "nexthop": "2001:db8::1"},
                  {"destination": "2001:DB8:1::/48", "nexthop": "2001:DB8::1"}]
        assert reason(v.validate_host_routes, routes) == f"Duplicate hostroute '{routes[1]}'"


class TestDnsNameservers:
    def test_accepts_in_order(self) -> None:
        assert v.validate_dns_nameservers(["8.8.8.8", "2001:4860:4860::8888", "1.1.1.1"]) == [
            "8.8.8.8", "2001:4860:4860::8888", "1.1.1.1"
        ]

    def test_empty(self) -> None:
        assert v.validate_dns_nameservers([]) == []

    @pytest.mark.parametrize("given", ["8.8.8.8", None, {"a": 1}])
    def test_must_be_a_list(self, given: Any) -> None:
        assert reason(v.validate_dns_nameservers, given) == (
            f"Invalid data format for nameserver: '{given}'"
        )

    def test_entries_are_addresses(self) -> None:
        assert reason(v.validate_dns_nameservers, ["8.8.8.8", "dns.example"]) == (
            "'dns.example' is not a valid nameserver. 'dns.example' is not a valid IP address."
        )

    @pytest.mark.parametrize("second", ["8.8.8.8", "2001:DB8::53"])
    def test_duplicates_are_refused(self, second: str) -> None:
        first = "8.8.8.8" if second == "8.8.8.8" else "2001:db8::53"
        assert reason(v.validate_dns_nameservers, [first, second]) == (
            f"Duplicate nameserver '{second}'"
        )


class TestIpv6Modes:
    @pytest.mark.parametrize(
        ("ra", "address"),
        [(None, None), ("slaac", "slaac"), ("dhcpv6-stateful", "dhcpv6-stateful"),
         ("dhcpv6-stateless", "dhcpv6-stateless"), ("slaac", None), (None, "slaac"),
         (None, "dhcpv6-stateful"), ("dhcpv6-stateless", None)],
    )
    def test_accepted_combinations(self, ra: str | None, address: str | None) -> None:
        assert v.validate_ipv6_modes(ra, address) == (ra, address)

    @pytest.mark.parametrize(
        ("ra", "address"),
        [("slaac", "dhcpv6-stateful"), ("dhcpv6-stateful", "slaac"),
         ("dhcpv6-stateless", "slaac"), ("slaac", "dhcpv6-stateless")],
    )
    def test_both_set_must_agree(self, ra: str, address: str) -> None:
        exc = rejected(v.validate_ipv6_modes, ra, address)
        assert exc.message == (
            f"{PREFIX}ipv6_ra_mode set to '{ra}' with ipv6_address_mode set to '{address}' is "
            "not valid. If both attributes are set, they must be the same value."
        )

    @pytest.mark.parametrize(("ra", "address"), [("SLAAC", None), (None, "dhcp"), ("", None)])
    def test_unknown_modes(self, ra: Any, address: Any) -> None:
        bad = ra if ra is not None else address
        assert reason(v.validate_ipv6_modes, ra, address) == (
            f"{bad} is not in ['dhcpv6-stateful', 'dhcpv6-stateless', 'slaac']"
        )


# --- port attributes ------------------------------------------------------------------------


class TestFixedIps:
    def test_accepts_subnet_and_or_address(self) -> None:
        assert v.validate_fixed_ips(
            [{"subnet_id": SUBNET_ID.upper()}, {"ip_address": "2001:DB8::5"},
             {"subnet_id": SUBNET_ID, "ip_address": "10.0.0.5"}]
        ) == [{"subnet_id": SUBNET_ID}, {"ip_address": "2001:db8::5"},
              {"subnet_id": SUBNET_ID, "ip_address": "10.0.0.5"}]

    def test_same_subnet_twice_is_fine(self) -> None:
        assert len(v.validate_fixed_ips([{"subnet_id": SUBNET_ID}] * 2)) == 2

    def test_empty(self) -> None:
        assert v.validate_fixed_ips([]) == []

    @pytest.mark.parametrize("given", ["10.0.0.5", None, {"ip_address": "10.0.0.5"}])
    def test_must_be_a_list(self, given: Any) -> None:
        assert reason(v.validate_fixed_ips, given) == f"Invalid data format for fixed IP: '{given}'"

    def test_items_must_be_dicts(self) -> None:
        assert reason(v.validate_fixed_ips, ["10.0.0.5"]) == (
            "Invalid data format for fixed IP: '10.0.0.5'"
        )

    def test_unknown_keys_are_refused(self) -> None:
        assert reason(v.validate_fixed_ips, [{"ip_address": "10.0.0.5", "subnet": "x",
                                              "mask": 24}]) == (
            "Unrecognized attribute(s) 'mask, subnet'"
        )

    def test_needs_subnet_or_address(self) -> None:
        assert reason(v.validate_fixed_ips, [{}]) == (
            "IP allocation requires subnet_id or ip_address"
        )

    def test_address_must_be_valid(self) -> None:
        assert reason(v.validate_fixed_ips, [{"ip_address": "10.0.0.300"}]) == (
            "'10.0.0.300' is not a valid IP address"
        )

    def test_subnet_id_must_be_a_uuid(self) -> None:
        assert reason(v.validate_fixed_ips, [{"subnet_id": "subnet-1"}]) == (
            "'subnet-1' is not a valid UUID"
        )

    def test_duplicate_addresses_are_refused(self) -> None:
        assert reason(v.validate_fixed_ips, [{"ip_address": "2001:db8::5"},
                                             {"ip_address": "2001:DB8::5"}]) == (
            "Duplicate IP address '2001:DB8::5'"
        )


class TestAllowedAddressPairs:
    def test_accepts_and_normalises(self) -> None:
        assert v.validate_allowed_address_pairs(
            [{"ip_address": "10.0.0.7"}, {"ip_address": "10.1.0.0/16", "mac_address": "FA:16:3E:00:00:07"},
             {"ip_address": "2001:DB8::/64"}, {"ip_address": "10.0.0.7", "mac_address": "fa:16:3e:00:00:08"}]
        ) == [{"ip_address": "10.0.0.7"},
              {"ip_address": "10.1.0.0/16", "mac_address": "fa:16:3e:00:00:07"},
              {"ip_address": "2001:db8::/64"},
              {"ip_address": "10.0.0.7", "mac_address": "fa:16:3e:00:00:08"}]

    def test_empty(self) -> None:
        assert v.validate_allowed_address_pairs([]) == []

    def test_must_be_a_list(self) -> None:
        assert named(v.validate_allowed_address_pairs, {"ip_address": "10.0.0.7"}) == (
            "HTTPBadRequest", "Allowed address pairs must be a list."
        )

    def test_items_must_be_dicts(self) -> None:
        assert reason(v.validate_allowed_address_pairs, ["10.0.0.7"]) == (
            "'10.0.0.7' is not a dictionary"
        )

    def test_ip_address_is_required(self) -> None:
        assert named(v.validate_allowed_address_pairs, [{"mac_address": "fa:16:3e:00:00:07"}]) == (
            "AllowedAddressPairsMissingIP", "AllowedAddressPair must contain ip_address"
        )

    def test_unknown_keys(self) -> None:
        assert named(v.validate_allowed_address_pairs, [{"ip_address": "10.0.0.7", "vlan": 3}]) == (
            "HTTPBadRequest", "Unrecognized attribute(s) 'vlan'"
        )

    @pytest.mark.parametrize(
        ("address", "message"),
        [("10.0.0.300", "'10.0.0.300' is not a valid IP address"),
         ("10.0.0.0/33", "'10.0.0.0/33' is not a valid IP subnet"),
         (None, "'None' is not a valid IP address")],
    )
    def test_ip_address_must_be_an_address_or_cidr(self, address: Any, message: str) -> None:
        assert named(v.validate_allowed_address_pairs, [{"ip_address": address}]) == (
            "HTTPBadRequest", message
        )

    def test_mac_address_must_be_valid(self) -> None:
        assert named(v.validate_allowed_address_pairs,
                     [{"ip_address": "10.0.0.7", "mac_address": "01:00:5e:00:00:01"}]) == (
            "HTTPBadRequest", "'01:00:5e:00:00:01' is not a valid MAC address"
        )

    @pytest.mark.parametrize(
        ("pairs", "mac", "ip"),
        [([{"ip_address": "10.0.0.7"}, {"ip_address": "10.0.0.7"}], "None", "10.0.0.7"),
         ([{"ip_address": "10.0.0.7", "mac_address": "fa:16:3e:00:00:07"},
           {"ip_address": "10.0.0.7", "mac_address": "FA:16:3E:00:00:07"}],
          "FA:16:3E:00:00:07", "10.0.0.7")],
    )
    def test_duplicates_are_refused(self, pairs: list[dict[str, str]], mac: str, ip: str) -> None:
        assert named(v.validate_allowed_address_pairs, pairs) == (
            "DuplicateAddressPairInRequest",
            f"Request contains duplicate address pair: mac_address {mac} ip_address {ip}.",
        )

    def test_count_is_limited(self) -> None:
        pairs = [{"ip_address": f"10.0.0.{i}"} for i in range(1, 12)]
        assert named(v.validate_allowed_address_pairs, pairs) == (
            "AllowedAddressPairExhausted",
            "The number of allowed address pair exceeds the maximum 10.",
        )
        assert len(v.validate_allowed_address_pairs(pairs, max_pairs=11)) == 11


class TestExtraDhcpOpts:
    def test_accepts_and_defaults_ip_version_to_4(self) -> None:
        assert v.validate_extra_dhcp_opts(
            [{"opt_name": "tftp-server", "opt_value": "192.0.2.10"},
             {"opt_name": "bootfile-name", "opt_value": "pxelinux.0", "ip_version": 6},
             {"opt_name": "server-ip-address", "opt_value": "192.0.2.10", "ip_version": "4"}]
        ) == [{"opt_name": "tftp-server", "opt_value": "192.0.2.10", "ip_version": 4},
              {"opt_name": "bootfile-name", "opt_value": "pxelinux.0", "ip_version": 6},
              {"opt_name": "server-ip-address", "opt_value": "192.0.2.10", "ip_version": 4}]

    @pytest.mark.parametrize("name", ["router", "classless-static-route"])
    def test_blankable_options_take_an_empty_value(self, name: str) -> None:
        assert v.validate_extra_dhcp_opts([{"opt_name": name, "opt_value": ""}]) == [
            {"opt_name": name, "opt_value": "", "ip_version": 4}
        ]

    def test_none_value_deletes_an_option(self) -> None:
        assert v.validate_extra_dhcp_opts([{"opt_name": "tftp-server", "opt_value": None}]) == [
            {"opt_name": "tftp-server", "opt_value": None, "ip_version": 4}
        ]

    def test_none_means_no_options(self) -> None:
        assert v.validate_extra_dhcp_opts(None) == []

    @pytest.mark.parametrize(
        "opt",
        [
            {"opt_name": "tftp-server", "opt_value": ""},  # only router & co may be blank
            {"opt_name": "tftp-server", "opt_value": "   "},
            {"opt_name": "", "opt_value": "x"},
            {"opt_name": "x" * 65, "opt_value": "x"},
            {"opt_name": "tftp-server", "opt_value": "x" * 256},
            {"opt_name": "tftp-server"},
            {"opt_value": "x"},
            {"opt_name": "tftp-server", "opt_value": "x", "ip_version": 5},
            {"opt_name": "tftp-server", "opt_value": "x", "other": 1},
            {"opt_name": 7, "opt_value": "x"},
            "tftp-server=x",
        ],
    )
    def test_items_must_match_a_key_spec(self, opt: Any) -> None:
        exc = rejected(v.validate_extra_dhcp_opts, [opt])
        assert not isinstance(exc, v.AttributeValidationError)  # Neutron raises these directly
        assert exc.message == f"{PREFIX}No valid key specs matched for: {opt}."

    def test_ip_version_must_be_an_integer(self) -> None:
        exc = rejected(v.validate_extra_dhcp_opts,
                       [{"opt_name": "tftp-server", "opt_value": "x", "ip_version": "four"}])
        assert exc.message == f"{PREFIX}'four' is not an integer."

    def test_must_be_a_list(self) -> None:
        assert rejected(v.validate_extra_dhcp_opts, "x").message == f"{PREFIX}'x' is not a list."

    def test_duplicates_are_refused(self) -> None:
        opt = {"opt_name": "tftp-server", "opt_value": "x"}
        assert rejected(v.validate_extra_dhcp_opts, [opt, dict(opt)]).message == (
            f"{PREFIX}Duplicate items in the list: '{opt}'."
        )


class TestVnicType:
    @pytest.mark.parametrize(
        "given",
        ["normal", "direct", "macvtap", "direct-physical", "virtio-forwarder", "baremetal",
         "smart-nic", "vdpa", "remote-managed", "accelerator-direct",
         "accelerator-direct-physical"],
    )
    def test_accepts(self, given: str) -> None:
        assert v.validate_vnic_type(given) == given

    @pytest.mark.parametrize("given", ["Normal", "sriov", "", None])
    def test_rejects(self, given: Any) -> None:
        assert reason(v.validate_vnic_type, given).startswith(f"{given} is not in ['normal', ")


class TestUuid:
    @pytest.mark.parametrize(
        "given",
        [SUBNET_ID, SUBNET_ID.upper(), SUBNET_ID.replace("-", ""), "{" + SUBNET_ID + "}",
         "urn:uuid:" + SUBNET_ID],
    )
    def test_accepts_oslo_uuid_like_values_and_canonicalises(self, given: str) -> None:
        assert v.validate_uuid(given) == SUBNET_ID

    @pytest.mark.parametrize(
        "given", ["", "abc", SUBNET_ID[:-1], SUBNET_ID + "0", SUBNET_ID.replace("-", "_"), None,
                  12, "6ba7b810-9dad-11d1-80b4-00c04fd430cg"],
    )
    def test_rejects(self, given: Any) -> None:
        assert reason(v.validate_uuid, given) == f"'{given}' is not a valid UUID"


class TestTags:
    def test_tag(self) -> None:
        assert v.validate_tag("red,green blue") == "red,green blue"  # Neutron allows commas
        assert v.validate_tag("x" * 255) == "x" * 255
        assert v.validate_tag("") == ""

    def test_tag_too_long(self) -> None:
        long = "x" * 256
        assert reason(v.validate_tag, long) == f"'{long}' exceeds maximum length of 255"

    @pytest.mark.parametrize("given", [None, 5, ["a"]])
    def test_tag_must_be_a_string(self, given: Any) -> None:
        assert reason(v.validate_tag, given) == f"'{given}' is not a valid string"

    def test_tag_without_nul_characters(self) -> None:
        assert reason(v.validate_tag, "a\x00b") == "A tag must not contain NUL characters"

    def test_tags(self) -> None:
        assert v.validate_tags(["a", "b", "A"]) == ["a", "b", "A"]
        assert v.validate_tags([]) == []

    def test_tags_unique(self) -> None:
        assert reason(v.validate_tags, ["a", "b", "a", "b"]) == "Duplicate items in the list: 'a, b'"

    def test_tags_list(self) -> None:
        assert reason(v.validate_tags, "a") == "'a' is not a list"
        assert reason(v.validate_tags, ["a", 3]) == "'3' is not a valid string"

    def test_tags_body(self) -> None:
        assert v.validate_tags_body({"tags": ["a"]}) == ["a"]
        assert rejected(v.validate_tags_body, ["a"]).message == f"{PREFIX}Invalid tags body."
        assert rejected(v.validate_tags_body, {"tag": ["a"]}).message == f"{PREFIX}Invalid tags body."

    def test_tags_limit(self) -> None:
        v.validate_tags_limit("networks", [str(i) for i in range(50)])
        with pytest.raises(NeutronError) as info:
            v.validate_tags_limit("networks", [str(i) for i in range(51)])
        assert info.value.status == 400
        assert info.value.message == (
            "Bad networks request: The number of tags exceed the per-resource limit of 50."
        )


# --- security group rules -------------------------------------------------------------------


class TestProtocol:
    @pytest.mark.parametrize(
        ("given", "normalised"),
        [("tcp", "tcp"), ("TCP", "tcp"), ("udp", "udp"), ("icmp", "icmp"), ("icmpv6", "icmpv6"),
         ("ipv6-icmp", "ipv6-icmp"), ("sctp", "sctp"), ("ah", "ah"), ("esp", "esp"),
         ("gre", "gre"), ("vrrp", "vrrp"), ("6", "6"), (6, "6"), ("0", "0"), (255, "255"),
         ("017", "17"), (None, None), ("any", None), ("ANY", None), ("", None)],
    )
    def test_accepts(self, given: Any, normalised: str | None) -> None:
        assert v.validate_protocol(given) == normalised

    @pytest.mark.parametrize("given", ["bogus", "256", -1, 256, True, 6.0, ["tcp"]])
    def test_rejects(self, given: Any) -> None:
        kind, message = named(v.validate_protocol, given)
        assert kind == "SecurityGroupRuleInvalidProtocol"
        assert message == (
            f"Security group rule protocol {given} not supported. Only protocol values "
            "[None, 'ah', 'dccp', 'egp', 'esp', 'gre', 'hopopt', 'icmp', 'igmp', 'ip', 'ipip', "
            "'ipv6-encap', 'ipv6-frag', 'ipv6-icmp', 'icmpv6', 'ipv6-nonxt', 'ipv6-opts', "
            "'ipv6-route', 'ospf', 'pgm', 'rsvp', 'sctp', 'tcp', 'udp', 'udplite', 'vrrp'] and "
            "integer representations [0 to 255] are supported."
        )

    @pytest.mark.parametrize(
        ("given", "stored"),
        [("icmp", "ipv6-icmp"), ("icmpv6", "ipv6-icmp"), ("1", "58"), ("tcp", "tcp"),
         ("58", "58")],
    )
    def test_ipv6_legacy_icmp_spellings_are_canonicalised(self, given: str, stored: str) -> None:
        assert v.validate_protocol(given, ethertype="IPv6") == stored

    @pytest.mark.parametrize("given", ["ipv6-icmp", "icmpv6", "ipv6-frag", "58", "43"])
    def test_ipv6_only_protocols_conflict_with_ipv4(self, given: str) -> None:
        assert named(v.validate_protocol, given, ethertype="IPv4") == (
            "SecurityGroupEthertypeConflictWithProtocol",
            f"Invalid ethertype IPv4 for protocol {given}.",
        )

    def test_protocol_number(self) -> None:
        assert v.protocol_number("tcp") == 6
        assert v.protocol_number("icmpv6") == 58
        assert v.protocol_number("47") == 47


class TestPortValue:
    @pytest.mark.parametrize(("given", "expected"), [(None, None), (0, 0), ("22", 22), (65535, 65535)])
    def test_accepts(self, given: Any, expected: int | None) -> None:
        assert v.validate_port_value(given) == expected

    @pytest.mark.parametrize("given", [-1, 65536, "http", True])
    def test_rejects_as_neutron_does(self, given: Any) -> None:
        assert named(v.validate_port_value, given) == (
            "SecurityGroupInvalidPortValue", f"Invalid value for port {given}")


class TestPortRange:
    @pytest.mark.parametrize(
        ("protocol", "low", "high", "expected"),
        [
            ("tcp", 22, 22, (22, 22)),
            ("tcp", 1, 65535, (1, 65535)),
            ("udp", "53", "53", (53, 53)),
            ("sctp", 100, 200, (100, 200)),
            ("6", 80, 81, (80, 81)),
            ("dccp", 5, 6, (5, 6)),
            ("udplite", 5, 6, (5, 6)),
            ("icmp", 8, 0, (8, 0)),
            ("icmp", 8, None, (8, None)),
            ("icmp", 0, 255, (0, 255)),
            ("ipv6-icmp", 128, None, (128, None)),
            ("58", 135, 0, (135, 0)),
            ("tcp", None, None, (None, None)),
            (None, None, None, (None, None)),
            ("gre", None, None, (None, None)),
        ],
    )
    def test_accepts(self, protocol: Any, low: Any, high: Any,
                     expected: tuple[int | None, int | None]) -> None:
        assert v.validate_port_range(protocol, low, high) == expected

    @pytest.mark.parametrize("port", [-1, 65536, "http", 1.5, True, [80]])
    def test_port_values_are_integers_0_to_65535(self, port: Any) -> None:
        assert named(v.validate_port_range, "tcp", port, 80) == (
            "SecurityGroupInvalidPortValue", f"Invalid value for port {port}"
        )

    @pytest.mark.parametrize(("low", "high"), [(None, 80), (80, None)])
    def test_ports_need_a_protocol(self, low: Any, high: Any) -> None:
        assert named(v.validate_port_range, None, low, high) == (
            "SecurityGroupProtocolRequiredWithPorts",
            "Must also specify protocol if port range is given.",
        )

    @pytest.mark.parametrize(("low", "high"), [(0, 80), (80, 0), (0, 0)])
    def test_port_zero_is_refused_for_port_protocols(self, low: int, high: int) -> None:
        assert named(v.validate_port_range, "tcp", low, high) == (
            "SecurityGroupInvalidPortValue", "Invalid value for port 0"
        )

    @pytest.mark.parametrize(("low", "high"), [(81, 80), (80, None), (None, 80)])
    def test_port_protocols_need_min_le_max(self, low: Any, high: Any) -> None:
        assert named(v.validate_port_range, "udp", low, high) == (
            "SecurityGroupInvalidPortRange",
            "For TCP/UDP protocols, port_range_min must be <= port_range_max",
        )

    @pytest.mark.parametrize(
        ("low", "high", "field", "attr", "value"),
        [(256, None, "type", "port_range_min", 256), (8, 300, "code", "port_range_max", 300)],
    )
    def test_icmp_type_and_code_are_0_to_255(self, low: Any, high: Any, field: str, attr: str,
                                             value: int) -> None:
        assert named(v.validate_port_range, "icmp", low, high) == (
            "SecurityGroupInvalidIcmpValue",
            f"Invalid value for ICMP {field} ({attr}) {value}. It must be 0 to 255.",
        )

    def test_icmp_code_needs_a_type(self) -> None:
        assert named(v.validate_port_range, "icmp", None, 0) == (
            "SecurityGroupMissingIcmpType",
            "ICMP code (port-range-max) 0 is provided but ICMP type (port-range-min) is missing.",
        )

    @pytest.mark.parametrize(("protocol", "number"), [("gre", 47), ("esp", 50), ("112", 112)])
    def test_other_protocols_take_no_ports(self, protocol: str, number: int) -> None:
        assert named(v.validate_port_range, protocol, 1, None) == (
            "SecurityGroupInvalidProtocolForPort",
            f"Invalid protocol {number} for port range, only supported for "
            "DCCP, SCTP, TCP, UDP, UDPLITE protocols.",
        )


class TestEthertypeAndDirection:
    @pytest.mark.parametrize(("given", "normalised"),
                             [("IPv4", "IPv4"), ("ipv4", "IPv4"), ("IPV6", "IPv6")])
    def test_ethertype(self, given: str, normalised: str) -> None:
        assert v.validate_ethertype(given) == normalised

    @pytest.mark.parametrize("given", ["IPv5", "ip", "", None, 4])
    def test_ethertype_rejects(self, given: Any) -> None:
        assert named(v.validate_ethertype, given) == (
            "SecurityGroupRuleInvalidEtherType",
            f"Security group rule for ethertype '{given}' not supported. "
            "Allowed values are ['IPv4', 'IPv6'].",
        )

    @pytest.mark.parametrize("given", ["ingress", "egress"])
    def test_direction(self, given: str) -> None:
        assert v.validate_direction(given) == given

    @pytest.mark.parametrize("given", ["Ingress", "in", "", None])
    def test_direction_rejects(self, given: Any) -> None:
        assert reason(v.validate_direction, given) == f"{given} is not in ['ingress', 'egress']"
