"""Routing between tenant networks on the real data path, distributed (DVR): a packet is routed
on the host of its source port and goes straight to the host of its destination.

The world (the shared two-host lab): router `rt-east-west` with interfaces on the subnets of
networks `rt-a` (10.71.0.0/24, fd71::/64) and `rt-b` (10.72.0.0/24, fd72::/64); instances ra1
(host1) and ra2 (host2) on rt-a, rb1 (host2) on rt-b. Every port is in an "open" group (any
IPv4 and IPv6 in): what is tested is routing, not security groups. Instances get IPv4 by DHCP,
which gives them the subnet's gateway (the router's interface address) as default route, and
IPv6 by SLAAC from the router advertisements the agent sends for the router (ipv6_ra_mode and
ipv6_address_mode slaac), with the router's link-local address as default route.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from e2e.support import E2ELab, neutrino, wait_until

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("e2e-routing")]

CIDR = {"rt-a": "10.71.0.0/24", "rt-b": "10.72.0.0/24"}
CIDR6 = {"rt-a": "fd71::/64", "rt-b": "fd72::/64"}
GATEWAY = {"rt-a": "10.71.0.1", "rt-b": "10.72.0.1"}


@dataclass
class World:
    lab: E2ELab
    router: Any
    subnets: dict[str, Any]  # by network name
    networks: dict[str, Any]
    ip: dict[str, str]  # instance -> its IPv4 address
    ip6: dict[str, str]  # instance -> its IPv6 address (as the API has it)


@pytest.fixture(scope="module")
def world(lab: E2ELab) -> World:
    cloud = lab.cloud
    group = cloud.network.create_security_group(name="rt-open")
    cloud.network.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                             ethertype="IPv4", remote_ip_prefix="0.0.0.0/0")
    cloud.network.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                             ethertype="IPv6", remote_ip_prefix="::/0")
    networks, subnets, subnets6 = {}, {}, {}
    for name, cidr in CIDR.items():
        networks[name] = cloud.network.create_network(name=name)
        subnets[name] = cloud.network.create_subnet(network_id=networks[name].id, ip_version=4,
                                                    cidr=cidr, name=f"{name}-v4")
        subnets6[name] = cloud.network.create_subnet(
            network_id=networks[name].id, ip_version=6, cidr=CIDR6[name], name=f"{name}-v6",
            ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    router = cloud.network.create_router(name="rt-east-west")
    for subnet in [*subnets.values(), *subnets6.values()]:
        cloud.network.add_interface_to_router(router, subnet_id=subnet.id)
    plan = [("ra1", "host1", "rt-a"), ("ra2", "host2", "rt-a"), ("rb1", "host2", "rt-b")]
    ports = {name: cloud.network.create_port(network_id=networks[net].id, name=name,
                                             security_group_ids=[group.id])
             for name, _host, net in plan}
    booted = lab.boot_all([(name, host, ports[name].id) for name, host, _net in plan])
    lab.wait_converged("host1", "host2")
    def address(port: Any, version: int) -> str:
        return next(ip["ip_address"] for ip in port.fixed_ips if (":" in ip["ip_address"]) == (version == 6))

    return World(lab, router, subnets, networks,
                 {name: address(port, 4) for name, port in booted.items()},
                 {name: address(port, 6) for name, port in booted.items()})


def test_instances_on_different_hosts_and_subnets_reach_each_other_through_the_router(
        world: World) -> None:
    lab, ip = world.lab, world.ip
    lab.wait_ping("ra1", ip["rb1"], timeout=15)
    out = lab.exec("ra1", "ping", "-n", "-c", "1", "-W", "2", ip["rb1"]).stdout
    assert "ttl=63" in out  # one router hop
    assert lab.ping("rb1", ip["ra1"], count=2)
    assert lab.tcp("ra1", "rb1", ip["rb1"], 5101)
    assert lab.tcp("rb1", "ra1", ip["ra1"], 5102)
    assert lab.ping("ra2", ip["rb1"], count=2)  # both on host2: routed without leaving it


def test_the_router_answers_pings_to_its_interface_addresses(world: World) -> None:
    lab = world.lab
    assert lab.ping("ra1", GATEWAY["rt-a"], count=2)
    assert lab.ping("rb1", GATEWAY["rt-b"], count=2)


def test_the_source_host_routes_and_sends_straight_to_the_destination_host(world: World) -> None:
    """The trace on host1 of a packet from ra1 to rb1: routed there (l3_input, ip_routing,
    arp_resolve), then into the tunnel with rt-b's VNI, addressed to rb1: no other host (no
    gateway) routes it."""
    lab, ip = world.lab, world.ip
    ra1, rb1 = lab.port("ra1"), lab.port("rb1")
    router_mac = next(p.mac_address for p in lab.cloud.network.ports(
        device_id=world.router.id, network_id=world.networks["rt-a"].id))
    vni = lab.cloud.network.get_network(world.networks["rt-b"].id).provider_segmentation_id
    packet = (f"icmp,dl_src={ra1.mac_address},dl_dst={router_mac},nw_src={ip['ra1']},"
              f"nw_dst={ip['rb1']},nw_ttl=64,icmp_type=8")
    out = neutrino(lab.state_dir, "trace", "--host", "host1", "--port", "ra1", packet,
                   "--state-dir", str(lab.state_dir)).stdout
    stages = [line.split()[0] for line in out.splitlines() if line and not line[0].isspace()]
    routed = stages[stages.index("l3_input"):]
    assert routed[:4] == ["l3_input", "ip_routing", "arp_resolve", "l2_lookup"], out
    assert f"set_field:{vni:#x}->tun_id" in out, out  # on rt-b, into the tunnel
    assert f"set_field:{rb1.mac_address}->eth_dst" in out
    assert "verdict: forwarded" in out and "tnl_push" in out, out


def test_removing_a_router_interface_stops_routing_and_adding_it_back_restores_it(
        world: World) -> None:
    lab, ip, cloud = world.lab, world.ip, world.lab.cloud
    lab.wait_ping("ra1", ip["rb1"], timeout=15)
    cloud.network.remove_interface_from_router(world.router, subnet_id=world.subnets["rt-b"].id)
    try:
        lab.wait_converged("host1", "host2")
        wait_until(lambda: not lab.ping("ra1", ip["rb1"], wait=0.5), timeout=10,
                   message="ra1 no longer reaches rb1")
        assert not lab.ping("rb1", GATEWAY["rt-b"], wait=0.5)  # that address is gone too
    finally:
        cloud.network.add_interface_to_router(world.router, subnet_id=world.subnets["rt-b"].id)
    lab.wait_converged("host1", "host2")
    # the new interface is a new port with a new MAC: the agent of rb1's host announces it
    # (gratuitous ARP), so rb1 replaces the old MAC of its gateway at once (a neighbour entry
    # left to go stale would take tens of seconds)
    (interface,) = [p for p in cloud.network.ports(network_id=world.subnets["rt-b"].network_id)
                    if p.device_owner.startswith("network:router_interface")
                    and any(f["subnet_id"] == world.subnets["rt-b"].id for f in p.fixed_ips)]
    wait_until(lambda: interface.mac_address in lab.exec(
        "rb1", "ip", "neigh", "show", GATEWAY["rt-b"]).stdout, timeout=5,
        message="rb1 learned the new interface's MAC from a gratuitous ARP")
    lab.wait_ping("ra1", ip["rb1"], timeout=5)


def test_instances_configure_ipv6_by_slaac_as_the_api_says_and_route_it(world: World) -> None:
    """Each instance made its IPv6 address from the router's advertisement (lab boot waited for
    it): it is the port's fixed IP in the API, with a default route through the router's
    link-local address; ping6 crosses the router between hosts."""
    lab, ip6 = world.lab, world.ip6
    for name in ("ra1", "ra2", "rb1"):
        shown = lab.exec(name, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "global").stdout
        assert f"{ip6[name]}/64" in shown and "dynamic" in shown, shown  # from an RA, not static
        route = lab.exec(name, "ip", "-6", "route", "show", "default").stdout
        assert "via fe80::" in route and "proto ra" in route, route
    assert lab.ping("ra1", "fd71::1", count=2)  # the router answers on its own address
    lab.wait_ping("ra1", ip6["rb1"], timeout=15)
    out = lab.exec("ra1", "ping", "-6", "-n", "-c", "1", "-W", "2", ip6["rb1"]).stdout
    assert "ttl=63" in out or "hlim=63" in out, out  # one router hop
    assert lab.ping("rb1", ip6["ra1"], count=2)


def test_the_lab_has_an_external_namespace_on_the_public_network(world: World) -> None:
    """`lab up` made the upstream network: the `external` namespace, whose only link is on
    physnet1, holds the gateway address of the external network `public`."""
    lab = world.lab
    status = json.loads(neutrino(lab.state_dir, "lab", "status", "--json").stdout)
    external_ip = status["external_ip"]
    assert status["external"]["exists"] and status["external"]["physical_network"] == "physnet1"
    on_external = ("lab", "exec", "external", "--state-dir", str(lab.state_dir), "--")
    shown = neutrino(lab.state_dir, *on_external, "ip", "-4", "-o", "addr", "show", "dev",
                     "eth0").stdout
    assert f" {external_ip}/" in shown
    public = lab.cloud.network.find_network("public")
    assert public.is_router_external and public.provider_network_type == "flat"
    assert public.provider_physical_network == "physnet1"
    subnet = next(iter(lab.cloud.network.subnets(network_id=public.id)))
    assert subnet.gateway_ip == external_ip and not subnet.is_dhcp_enabled
    # nothing but the provider network leads there: not the underlay of the hosts
    unreachable = neutrino(lab.state_dir, *on_external, "ping", "-c", "1", "-W", "1",
                           "10.250.0.11", check=False)
    assert unreachable.returncode != 0
