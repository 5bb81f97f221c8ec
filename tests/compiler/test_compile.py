"""Golden tests of compile_chassis, one per item kind, on a small hand-built intent."""

from __future__ import annotations

from typing import Any

import pytest

from compiler.builder import IntentBuilder
from neutrino.compiler import Intent, compile_chassis, tunnel_key
from neutrino.policy.model import item_key, parse_key

WEB, DB = "sg-web", "sg-db"


@pytest.fixture
def intent() -> Intent:
    b = IntentBuilder()
    b.chassis("hv1", "192.0.2.1", physnet1="br-ex").chassis("hv2", "192.0.2.2")
    b.chassis("hv3", "192.0.2.3")  # hv4 has ports but no chassis row (agent not registered)
    b.network("net-a", "geneve", 1001).network("net-b", "vxlan", 2002)
    b.network("net-c", "vlan", 100, "physnet1", mtu=1500).network("net-d", "geneve", 3003)
    b.subnet("sub-a4", "net-a", "10.0.0.0/24", gateway_ip="10.0.0.1",
             dns_nameservers=("192.0.2.53",), host_routes=(("10.9.0.0/16", "10.0.0.254"),))
    b.subnet("sub-a6", "net-a", "fd00::/64", gateway_ip="fd00::1", ipv6_ra_mode="slaac",
             ipv6_address_mode="slaac")
    b.subnet("sub-b", "net-b", "10.1.0.0/24", enable_dhcp=False)
    b.port("p1", "net-a", ("sub-a4", "10.0.0.5"), ("sub-a6", "fd00::5"), host="hv1",
           groups=(WEB,), mac="fa:16:3e:00:00:01",
           allowed_address_pairs=(("10.0.0.100", "fa:16:3e:00:00:01"),),
           extra_dhcp_opts=(("mtu", "1400", 4), ("bootfile-name", "pxe", 4)),
           device_owner="compute:nova", device_id="vm-1", revision_number=3)
    b.port("p2", "net-a", ("sub-a4", "10.0.0.6"), host="hv2", groups=(DB,), mac="fa:16:3e:00:00:02")
    b.port("dhcp-a", "net-a", ("sub-a4", "10.0.0.2"), ("sub-a6", "fd00::2"),  # unbound: not remote
           device_owner="network:dhcp", device_id="dhcp-net-a", mac="fa:16:3e:00:00:0d")
    b.port("p3", "net-b", ("sub-b", "10.1.0.5"), host="hv1", port_security_enabled=False,
           groups=(DB,))  # port security off: its groups are not enforced here
    b.port("p4", "net-b", ("sub-b", "10.1.0.6"), host="hv3", mac="fa:16:3e:00:00:04")
    b.port("p5", "net-c", host="hv1", groups=(WEB,))
    b.port("p6", "net-c", host="hv2")  # vlan network: no tunnel needed to hv2 for it
    b.port("p7", "net-d", host="hv4")
    b.port("p8", "net-d", host="hv3", groups=(DB,))
    b.group(WEB).group(DB, stateful=False)
    b.rule("r1", WEB, protocol="tcp", port_range_min=80, port_range_max=80, remote_group_id=DB)
    b.rule("r2", WEB, "egress")
    b.rule("r3", WEB, "ingress", "IPv6", protocol="ipv6-icmp")
    b.rule("r4", WEB, protocol="17", remote_ip_prefix="198.51.100.0/24")
    b.rule("r5", WEB, remote_address_group_id="ag-1")  # not supported: left out (fails closed)
    b.rule("r6", DB, protocol="tcp", port_range_min=5432, port_range_max=5432, remote_group_id=WEB)
    return b.build()


def dump(docs: dict[str, Any], kind: str) -> dict[str, Any]:
    return {parse_key(k)[2]: v.model_dump(mode="json") for k, v in docs.items()
            if parse_key(k)[1] == kind}


def test_keys_of_hv1(intent: Intent) -> None:
    assert sorted(compile_chassis(intent, "hv1")) == sorted([
        item_key("hv1", "port", "p1"), item_key("hv1", "port", "p3"), item_key("hv1", "port", "p5"),
        item_key("hv1", "network", "net-a"), item_key("hv1", "network", "net-b"),
        item_key("hv1", "network", "net-c"),
        item_key("hv1", "security_group", WEB), item_key("hv1", "address_set", DB),
        item_key("hv1", "tunnel", "hv2"), item_key("hv1", "tunnel", "hv3"),
    ])


def test_port_items(intent: Intent) -> None:
    ports = dump(compile_chassis(intent, "hv1"), "port")
    assert ports["p1"] == {
        "id": "p1", "network_id": "net-a", "mac_address": "fa:16:3e:00:00:01",
        "fixed_ips": [{"subnet_id": "sub-a4", "ip_address": "10.0.0.5"},
                      {"subnet_id": "sub-a6", "ip_address": "fd00::5"}],
        "admin_state_up": True, "port_security_enabled": True,
        "allowed_address_pairs": [{"ip_address": "10.0.0.100", "mac_address": "fa:16:3e:00:00:01"}],
        "security_group_ids": [WEB], "device_owner": "compute:nova", "device_id": "vm-1",
        "extra_dhcp_opts": [{"opt_name": "bootfile-name", "opt_value": "pxe", "ip_version": 4},
                            {"opt_name": "mtu", "opt_value": "1400", "ip_version": 4}],
    }
    assert ports["p3"]["port_security_enabled"] is False
    assert ports["p3"]["security_group_ids"] == []


def test_unbound_and_unknown_chassis(intent: Intent) -> None:
    assert compile_chassis(intent, "nowhere") == {}
    # a host without a chassis row still gets its ports and networks, and tunnels to known peers
    assert sorted(parse_key(k)[1:] for k in compile_chassis(intent, "hv4")) == [
        ("network", "net-d"), ("port", "p7"), ("tunnel", "hv3")]


def test_network_items(intent: Intent) -> None:
    networks = dump(compile_chassis(intent, "hv1"), "network")
    assert networks["net-a"] == {
        "id": "net-a", "network_type": "geneve", "segmentation_id": 1001,
        "physical_network": None, "mtu": 1442, "tunnel_key": 1 << 32 | 1001,
        "subnets": [
            {"id": "sub-a4", "cidr": "10.0.0.0/24", "ip_version": 4, "gateway_ip": "10.0.0.1",
             "enable_dhcp": True, "dns_nameservers": ["192.0.2.53"],
             "host_routes": [{"destination": "10.9.0.0/16", "nexthop": "10.0.0.254"}],
             "ipv6_ra_mode": None, "ipv6_address_mode": None,
             "dhcp_server_ip": "10.0.0.2", "dhcp_server_mac": "fa:16:3e:00:00:0d"},
            {"id": "sub-a6", "cidr": "fd00::/64", "ip_version": 6, "gateway_ip": "fd00::1",
             "enable_dhcp": True, "dns_nameservers": [], "host_routes": [],
             "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac",
             "dhcp_server_ip": "fd00::2", "dhcp_server_mac": "fa:16:3e:00:00:0d"},
        ],
        "remote_ports": [{"id": "p2", "mac_address": "fa:16:3e:00:00:02",
                          "ip_addresses": ["10.0.0.6"], "chassis": "hv2"}],
        "flood_chassis": ["hv2"],
    }
    assert networks["net-b"]["tunnel_key"] == 2 << 32 | 2002
    assert networks["net-b"]["subnets"][0]["dhcp_server_ip"] is None  # no DHCP port
    assert networks["net-b"]["flood_chassis"] == ["hv3"]
    assert networks["net-c"]["tunnel_key"] == 3 << 32 | 1 << 12 | 100
    assert networks["net-c"]["physical_network"] == "physnet1"


def test_tunnel_keys_distinct() -> None:
    b = IntentBuilder().chassis("hv1", "192.0.2.1", physnet1="br-a", physnet2="br-b")
    b.network("g", "geneve", 7).network("x", "vxlan", 7).network("v1", "vlan", 7, "physnet1")
    b.network("v2", "vlan", 7, "physnet2").network("f1", "flat", None, "physnet1")
    b.network("f2", "flat", None, "physnet2")
    intent = b.build()
    keys = [tunnel_key(intent, n) for n in intent.networks.values()]
    assert len(set(keys)) == len(keys)
    assert all(0 < k < 1 << 64 for k in keys)


def test_security_group_items(intent: Intent) -> None:
    groups = dump(compile_chassis(intent, "hv1"), "security_group")
    assert groups == {WEB: {"id": WEB, "stateful": True, "rules": [
        {"id": "r1", "direction": "ingress", "ethertype": "IPv4", "protocol": 6,
         "port_range_min": 80, "port_range_max": 80, "remote_ip_prefix": None,
         "remote_group_id": DB},
        {"id": "r2", "direction": "egress", "ethertype": "IPv4", "protocol": None,
         "port_range_min": None, "port_range_max": None, "remote_ip_prefix": None,
         "remote_group_id": None},
        {"id": "r3", "direction": "ingress", "ethertype": "IPv6", "protocol": 58,
         "port_range_min": None, "port_range_max": None, "remote_ip_prefix": None,
         "remote_group_id": None},
        {"id": "r4", "direction": "ingress", "ethertype": "IPv4", "protocol": 17,
         "port_range_min": None, "port_range_max": None, "remote_ip_prefix": "198.51.100.0/24",
         "remote_group_id": None},
    ]}}
    # hv2's port is in sg-db only; it needs sg-web's addresses for r6
    hv2 = compile_chassis(intent, "hv2")
    assert dump(hv2, "security_group")[DB]["stateful"] is False
    assert set(dump(hv2, "address_set")) == {WEB}


def test_address_set_items(intent: Intent) -> None:
    # members of sg-db on every chassis, port security on or off, bound or not
    assert dump(compile_chassis(intent, "hv1"), "address_set") == {
        DB: {"id": DB, "ipv4": ["10.0.0.6", "10.1.0.5"], "ipv6": []}}
    # sg-web: fixed IPs and allowed address pairs, split by family
    assert dump(compile_chassis(intent, "hv2"), "address_set") == {
        WEB: {"id": WEB, "ipv4": ["10.0.0.100", "10.0.0.5"], "ipv6": ["fd00::5"]}}


def test_tunnel_items(intent: Intent) -> None:
    hv1 = dump(compile_chassis(intent, "hv1"), "tunnel")
    assert hv1 == {"hv2": {"id": "hv2", "ip": "192.0.2.2", "encap": "geneve"},
                   "hv3": {"id": "hv3", "ip": "192.0.2.3", "encap": "vxlan"}}
    # hv3 shares vxlan net-b with hv1, and geneve net-d with hv4 (no chassis row: no tunnel)
    assert dump(compile_chassis(intent, "hv3"), "tunnel") == {
        "hv1": {"id": "hv1", "ip": "192.0.2.1", "encap": "vxlan"}}


def test_geneve_wins_when_both_encaps_are_shared() -> None:
    b = IntentBuilder().chassis("hv1", "192.0.2.1").chassis("hv2", "192.0.2.2")
    b.network("x", "vxlan").network("g", "geneve")
    for net in ("x", "g"):
        b.port(f"{net}1", net, host="hv1").port(f"{net}2", net, host="hv2")
    assert dump(compile_chassis(b.build(), "hv1"), "tunnel")["hv2"]["encap"] == "geneve"


def test_deterministic(intent: Intent) -> None:
    rebuilt = Intent(networks=dict(list(intent.networks.items())[::-1]),
                     subnets=dict(list(intent.subnets.items())[::-1]),
                     ports=dict(list(intent.ports.items())[::-1]),
                     security_groups=dict(list(intent.security_groups.items())[::-1]),
                     rules=dict(list(intent.rules.items())[::-1]),
                     chassis=dict(list(intent.chassis.items())[::-1]))
    for host in ("hv1", "hv2", "hv3", "hv4"):
        assert compile_chassis(rebuilt, host) == compile_chassis(intent, host)
