"""Tenant connectivity and isolation on the real data path: what passes inside a network, and
that nothing passes between networks, not even at layer 2.

The world (one lab, two hosts):

    project 1 (admin)   net A: a1, a2 (host1), a3 (host2); x1 (host1, port security off)
                        net B (another subnet): b1 (host1), b2 (host2)
    project 2 (member)  net C (net A's CIDR again): c1 (host1, with a1's MAC), c2 (host2)

Every port but x1 is in its project's "open" group (any IPv4 in, any out), so security groups
never get in the way: what stops packets between networks here is the network alone. Without
routers, instances on different networks cannot reach each other whatever their subnets; the
tests make the strongest attempt at layer 2 anyway: frames sent straight to the victim's MAC
(a pinned neighbour entry and an on-link route), broadcasts, and raw frames with forged
sources from the port without port security, while the victims capture everything that
arrives on their eth0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from e2e.support import BROADCAST, E2ELab, arp, marker, udp
from lab.helpers import tcp_transfer

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("e2e-connectivity")]

CIDR_A, CIDR_B = "10.61.0.0/24", "10.62.0.0/24"


def open_group(cloud: Any, name: str) -> Any:
    """A group admitting any IPv4 from anywhere (it also has the default egress rules)."""
    group = cloud.network.create_security_group(name=name)
    cloud.network.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                             ethertype="IPv4", remote_ip_prefix="0.0.0.0/0")
    return group


@dataclass
class World:
    lab: E2ELab
    ip: dict[str, str]
    mac: dict[str, str]
    net_a: set[str]  # every address held on net A (instances, the DHCP port, ...)


@pytest.fixture(scope="module")
def world(lab: E2ELab) -> World:
    admin = lab.cloud
    other = lab.project_cloud("conn-p2")
    nets = {}
    for cloud, name, cidr in ((admin, "conn-a", CIDR_A), (admin, "conn-b", CIDR_B),
                              (other, "conn-c", CIDR_A)):
        nets[name] = cloud.network.create_network(name=name)
        cloud.network.create_subnet(network_id=nets[name].id, ip_version=4, cidr=cidr)
    groups = {admin: open_group(admin, "conn-open"), other: open_group(other, "conn-open")}
    plan = [("a1", "host1", admin, "conn-a"), ("a2", "host1", admin, "conn-a"),
            ("a3", "host2", admin, "conn-a"), ("b1", "host1", admin, "conn-b"),
            ("b2", "host2", admin, "conn-b"), ("c1", "host1", other, "conn-c"),
            ("c2", "host2", other, "conn-c")]
    ports = {}
    for name, _host, cloud, net in plan:
        extra = {"mac_address": ports["a1"].mac_address} if name == "c1" else {}
        ports[name] = cloud.network.create_port(network_id=nets[net].id, name=name,
                                                security_group_ids=[groups[cloud].id], **extra)
    ports["x1"] = admin.network.create_port(network_id=nets["conn-a"].id, name="x1",
                                            port_security_enabled=False, security_group_ids=[])
    hosts = {name: host for name, host, _cloud, _net in plan} | {"x1": "host1"}
    ports = lab.boot_all([(name, hosts[name], port.id) for name, port in ports.items()])
    assert ports["c1"].mac_address == ports["a1"].mac_address
    net_a = {ip["ip_address"] for port in admin.network.ports(network_id=nets["conn-a"].id)
             for ip in port.fixed_ips}
    return World(lab, {n: p.fixed_ips[0]["ip_address"] for n, p in ports.items()},
                 {n: p.mac_address for n, p in ports.items()}, net_a)


@contextlib.contextmanager
def pinned(lab: E2ELab, name: str, address: str, mac: str) -> Iterator[None]:
    """Make instance `name` send everything for `address` straight to `mac` on eth0: an on-link
    host route and a permanent neighbour entry (as if the victim were its neighbour)."""
    lab.exec(name, "ip", "route", "replace", f"{address}/32", "dev", "eth0")
    lab.exec(name, "ip", "neigh", "replace", address, "lladdr", mac, "dev", "eth0", "nud", "permanent")
    try:
        yield
    finally:
        lab.exec(name, "ip", "neigh", "del", address, "dev", "eth0")
        lab.exec(name, "ip", "route", "del", f"{address}/32", "dev", "eth0")


def from_instance(world: World, name: str) -> Any:
    """Frames that instance `name` sent (its MAC with its IPv4 address, or an ARP of it)."""
    mac, ip = world.mac[name], world.ip[name]
    return lambda f: f.src == mac and ((f.ipv4 is not None and f.ipv4[1] == ip)
                                       or (f.arp is not None and f.arp[2] == ip))


# --- (a) inside one network ----------------------------------------------------------------------

def test_instances_on_one_host_ping_and_talk_tcp(world: World) -> None:
    """a1 and a2 share host1 and net A: ping and a TCP exchange work both ways (the frames never
    leave host1's br-int)."""
    lab, ip = world.lab, world.ip
    assert lab.ping("a1", ip["a2"], count=3) and lab.ping("a2", ip["a1"], count=3)
    assert lab.tcp("a1", "a2", ip["a2"], 5001)
    assert lab.tcp("a2", "a1", ip["a1"], 5002)


def test_instances_on_different_hosts_ping_and_talk_tcp(world: World) -> None:
    """a1 (host1) and a3 (host2) talk through the geneve tunnel: ping and TCP both ways, and a
    large transfer arrives intact (TCP segments of a full MTU cross the tunnel)."""
    lab, ip = world.lab, world.ip
    assert lab.ping("a1", ip["a3"], count=3) and lab.ping("a3", ip["a1"], count=3)
    assert lab.tcp("a1", "a3", ip["a3"], 5003)
    assert lab.tcp("a3", "a1", ip["a1"], 5004)
    assert tcp_transfer(lab.instance("a1"), lab.instance("a3"), ip["a3"], size=1 << 20, port=5005)


# --- (b) between networks ------------------------------------------------------------------------

def attempt(world: World, source: str, victim: str, port: int) -> tuple[bool, bool]:
    """From `source`, ping and open TCP to `victim` with frames sent to the victim's own MAC;
    (ping answered, TCP connected)."""
    lab = world.lab
    with pinned(lab, source, world.ip[victim], world.mac[victim]), ThreadPoolExecutor(2) as pool:
        ping = pool.submit(lab.ping, source, world.ip[victim], count=2, wait=1.0)
        tcp = pool.submit(lab.tcp, source, victim, world.ip[victim], port, timeout=2.0)
        return ping.result(), tcp.result()


def test_networks_of_one_project_do_not_reach_each_other(world: World) -> None:
    """a1 (net A) sends ping and TCP straight to the MACs of b1 (net B, same host) and b2 (net B,
    host2): no answer, and nothing a1 sent arrives at b1 or b2. The same attempt towards a2 and
    a3 (net A) works: the method is sound."""
    lab = world.lab
    with lab.capture("b1", "b2") as capture:
        assert attempt(world, "a1", "b1", 6001) == (False, False)
        assert attempt(world, "a1", "b2", 6002) == (False, False)
        leaked = capture.matching(from_instance(world, "a1"), seconds=0.5)
    assert leaked == {"b1": [], "b2": []}, leaked
    assert attempt(world, "a1", "a2", 6003) == (True, True)
    assert attempt(world, "a1", "a3", 6004) == (True, True)


def test_projects_do_not_reach_each_other_even_with_the_same_cidr_and_mac(world: World) -> None:
    """Net C (project 2) has net A's CIDR, and c1 has a1's MAC on the same host. Traffic for a1
    reaches a1 only, traffic for c1 reaches c1 only, and an instance of net A that sends frames
    straight to c2's MAC gets nothing through."""
    lab, ip = world.lab, world.ip
    with lab.capture("c1", "c2") as capture:
        assert lab.ping("a2", ip["a1"], count=2) and lab.tcp("a2", "a1", ip["a1"], 6011)
        leaked = capture.matching(from_instance(world, "a2"), seconds=0.3)
    assert leaked == {"c1": [], "c2": []}, leaked
    with lab.capture("a1", "a3") as capture:
        assert lab.ping("c2", ip["c1"], count=2) and lab.tcp("c2", "c1", ip["c1"], 6012)
        leaked = capture.matching(lambda f: f.src == world.mac["c2"], seconds=0.3)
    assert leaked == {"a1": [], "a3": []}, leaked
    source = next(n for n in ("a1", "a2", "a3") if ip[n] != ip["c2"])
    with lab.capture("c1", "c2") as capture:
        assert attempt(world, source, "c2", 6013) == (False, False)
        leaked = capture.matching(from_instance(world, source), seconds=0.5)
    assert leaked == {"c1": [], "c2": []}, leaked


def test_broadcasts_and_arp_stay_inside_their_network(world: World) -> None:
    """a1's broadcast frame and its ARP requests for b1's and c2's addresses reach a2 and a3
    (net A: flooded to every port of the network on both hosts) and nobody on net B or C; no
    ARP answer comes back for an address of another network."""
    lab, ip, mac = world.lab, world.ip, world.mac
    payload = marker()
    asks = [t for t in (ip["b1"], ip["b2"], ip["c2"]) if t not in world.net_a]
    frames = [udp(src_mac=mac["a1"], dst_mac=BROADCAST, src_ip=ip["a1"], dst_ip="255.255.255.255",
                  payload=payload)]
    frames += [arp(op=1, src_mac=mac["a1"], src_ip=ip["a1"], dst_mac="00:00:00:00:00:00", dst_ip=t)
               for t in asks]
    with lab.capture("a1", "a2", "a3", "b1", "b2", "c1", "c2") as capture:
        lab.send("a1", frames, repeat=2)
        got = capture.collect(seconds=1.0)
    carrying = {n: sum(payload in f.data for f in frames) for n, frames in got.items()}
    assert carrying == {"a1": 0, "a2": 2, "a3": 2, "b1": 0, "b2": 0, "c1": 0, "c2": 0}
    arps = {n: [f.arp for f in frames if f.arp and f.arp[0] == 1 and f.arp[4] in asks]
            for n, frames in got.items()}
    assert all(arps[n] for n in ("a2", "a3")), arps
    assert arps["b1"] == arps["b2"] == arps["c1"] == arps["c2"] == [], arps
    replies = [f.arp for f in got["a1"] if f.arp and f.arp[0] == 2 and f.arp[2] in asks]
    assert replies == []
    arping = lab.exec("a1", "busybox", "arping", "-c", "2", "-w", "2", "-I", "eth0", ip["b1"])
    assert arping.returncode != 0, arping.stdout


def test_a_port_without_port_security_still_cannot_leave_its_network(world: World) -> None:
    """x1 (net A, port security off) may send anything: frames to the MACs of b1, b2, c2 and c1
    (which is a1's MAC too), forged with their own networks' sources, and broadcasts. Only net A
    sees any of it: the frame to a1's MAC arrives at a1, never at c1."""
    lab, ip, mac = world.lab, world.ip, world.mac
    sent: dict[str, bytes] = {}
    frames = []
    for victim, forged in (("b1", "b2"), ("b2", "b1"), ("c2", "c1"), ("c1", "c2")):
        sent[victim] = marker()
        frames.append(udp(src_mac=mac[forged], dst_mac=mac[victim], src_ip=ip[forged],
                          dst_ip=ip[victim], payload=sent[victim]))
    sent["broadcast"] = marker()
    frames.append(udp(src_mac=mac["c2"], dst_mac=BROADCAST, src_ip=ip["c2"], dst_ip="255.255.255.255",
                      payload=sent["broadcast"]))
    frames.append(arp(op=2, src_mac=mac["x1"], src_ip=ip["b2"], dst_mac=mac["b1"], dst_ip=ip["b1"],
                      eth_dst=mac["b1"]))
    with lab.capture("a1", "a3", "b1", "b2", "c1", "c2") as capture:
        lab.send("x1", frames)
        got = capture.collect(seconds=1.0)
    for name in ("b1", "b2", "c1", "c2"):
        assert not [f for f in got[name] if any(m in f.data for m in sent.values())
                    or f.src == mac["x1"]], f"{name} got frames from x1"
    assert any(sent["c1"] in f.data for f in got["a1"]), "a1 (c1's MAC on net A) gets the frame"
    assert any(sent["broadcast"] in f.data for f in got["a3"]), "net A's broadcast reaches host2"
