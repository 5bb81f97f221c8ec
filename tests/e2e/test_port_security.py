"""Port security on the real data path: an instance can only send as itself (its port's MAC
and fixed IPs), ARP included, unless the port's allowed_address_pairs say otherwise.

One network: vm1, vm2 on host1, vm3, vm4 on host2, all in one group that admits any IPv4, so
that port security is the only thing that drops anything here. Forged traffic is sent two
ways: with the instance's own tools after changing its interface (MAC, extra address), and as
raw frames; the receivers capture everything that arrives on their eth0, and a control frame
(the same, unforged) shows that the capture would have seen it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.support import (
    BROADCAST,
    E2ELab,
    Frame,
    TenantNet,
    arp,
    free_address,
    marker,
    udp,
    wait_until,
)
from neutrino.lab.instance import random_mac

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("e2e-port-security")]

ZERO_MAC = "00:00:00:00:00:00"


class Net(TenantNet):

    def reserve(self, name: str) -> str:
        """An address IPAM gives to a port that nobody binds (the usual way to hold a VIP)."""
        port = self.lab.cloud.network.create_port(network_id=self.network.id, name=name)
        return str(port.fixed_ips[0]["ip_address"])

    def pairs(self, name: str, *addresses: str) -> None:
        self.lab.cloud.network.update_port(self.port[name].id, allowed_address_pairs=[
            {"ip_address": address} for address in addresses])

    def forget(self, *names: str) -> None:
        for name in names:
            self.lab.exec(name, "ip", "neigh", "flush", "dev", "eth0")


@pytest.fixture(scope="module")
def net(lab: E2ELab) -> Net:
    cloud = lab.cloud
    network = cloud.network.create_network(name="ps-net")
    subnet = cloud.network.create_subnet(network_id=network.id, ip_version=4, cidr="10.64.0.0/24")
    group = cloud.network.create_security_group(name="ps-open")
    cloud.network.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                             ethertype="IPv4", remote_ip_prefix="0.0.0.0/0")
    plan = []
    for name, host in (("vm1", "host1"), ("vm2", "host1"), ("vm3", "host2"), ("vm4", "host2")):
        port = cloud.network.create_port(network_id=network.id, name=name, security_group_ids=[group.id])
        plan.append((name, host, port.id))
    ports = lab.boot_all(plan)
    return Net(lab, network, subnet, {n: p.fixed_ips[0]["ip_address"] for n, p in ports.items()},
               {n: p.mac_address for n, p in ports.items()}, ports)


@contextlib.contextmanager
def extra_address(lab: E2ELab, name: str, cidr: str) -> Iterator[None]:
    lab.exec(name, "ip", "address", "add", cidr, "dev", "eth0")
    try:
        yield
    finally:
        lab.exec(name, "ip", "address", "del", cidr, "dev", "eth0")


def ipv4_from(address: str) -> Any:
    return lambda f: (f.ipv4 is not None and f.ipv4[1] == address) or (
        f.arp is not None and f.arp[2] == address)


# --- (d) spoofing --------------------------------------------------------------------------------

def test_frames_with_a_forged_source_mac_are_dropped(net: Net) -> None:
    """vm1's frames with its own IP but another MAC (a made-up one, vm4's) reach nobody, on its
    host or across the tunnel; the same frame with its real MAC arrives. With its eth0 MAC
    changed, vm1 can ping no one; with it changed back, it can again."""
    lab, ip, mac = net.lab, net.ip, net.mac
    forged = random_mac()
    sent = {m: marker() for m in (mac["vm1"], forged, mac["vm4"])}
    frames = [udp(src_mac=m, dst_mac=mac[to], src_ip=ip["vm1"], dst_ip=ip[to], payload=p)
              for m, p in sent.items() for to in ("vm2", "vm3")]
    with lab.capture("vm2", "vm3") as capture:
        lab.send("vm1", frames)
        got = capture.collect(seconds=0.5)
    for name in ("vm2", "vm3"):
        assert any(sent[mac["vm1"]] in f.data for f in got[name]), f"control frame lost to {name}"
        assert not any(sent[forged] in f.data or sent[mac["vm4"]] in f.data for f in got[name])
    try:
        lab.exec("vm1", "ip", "link", "set", "dev", "eth0", "address", forged)
        with lab.capture("vm2", "vm3") as capture:
            assert not lab.ping("vm1", ip["vm2"]) and not lab.ping("vm1", ip["vm3"])
            leaked = capture.matching(lambda f: f.src == forged, seconds=0.3)
        assert leaked == {"vm2": [], "vm3": []}
    finally:
        lab.exec("vm1", "ip", "link", "set", "dev", "eth0", "address", mac["vm1"])
    lab.wait_ping("vm1", ip["vm2"])
    lab.wait_ping("vm1", ip["vm3"])


def test_packets_from_an_address_the_port_does_not_hold_are_dropped(net: Net) -> None:
    """With a free address of the subnet added to its eth0, vm1 pings from it in vain, and no
    packet from that address arrives anywhere; raw frames claiming vm3's or vm4's address
    (vm1's own MAC) are dropped too, while the same frame from vm1's own address arrives."""
    lab, ip, mac = net.lab, net.ip, net.mac
    spare = free_address(lab.cloud, net.subnet.id)
    with extra_address(lab, "vm1", f"{spare}/32"), lab.capture("vm2", "vm3") as capture:
        assert not lab.ping("vm1", ip["vm2"], from_address=spare)
        assert not lab.ping("vm1", ip["vm3"], from_address=spare)
        leaked = capture.matching(ipv4_from(spare), seconds=0.3)
    assert leaked == {"vm2": [], "vm3": []}
    sent = {source: marker() for source in (ip["vm1"], ip["vm3"], ip["vm4"])}
    frames = [udp(src_mac=mac["vm1"], dst_mac=mac[to], src_ip=source, dst_ip=ip[to], payload=p)
              for source, p in sent.items() for to in ("vm2", "vm3")]
    with lab.capture("vm2", "vm3") as capture:
        lab.send("vm1", frames)
        carried = {name: {source for source, p in sent.items() if any(p in f.data for f in frames)}
                   for name, frames in capture.collect(seconds=0.5).items()}
    assert carried == {"vm2": {ip["vm1"]}, "vm3": {ip["vm1"]}}


def test_arp_spoofing_is_dropped_and_poisons_no_neighbour_table(net: Net) -> None:
    """vm2 (vm1's host) and vm3 (the other host) know vm4. vm1 claims vm4's address every way
    it can: gratuitous ARP requests and replies, unicast replies to vm2 and vm3, `arping -U`
    with vm4's address added to its eth0, and an ARP whose sender MAC is not its own. None of it
    arrives, and vm2's and vm3's entries for vm4 still name vm4's MAC; vm1's honest gratuitous
    ARP for its own address does arrive."""
    lab, ip, mac = net.lab, net.ip, net.mac
    victim = ip["vm4"]
    for name in ("vm2", "vm3"):
        lab.wait_ping(name, victim)
        assert lab.neighbour(name, victim) == mac["vm4"]
    forged_mac = random_mac()
    lies = [
        arp(op=1, src_mac=mac["vm1"], src_ip=victim, dst_mac=ZERO_MAC, dst_ip=victim),
        arp(op=2, src_mac=mac["vm1"], src_ip=victim, dst_mac=BROADCAST, dst_ip=victim),
        *(arp(op=2, src_mac=mac["vm1"], src_ip=victim, dst_mac=mac[to], dst_ip=ip[to], eth_dst=mac[to])
          for to in ("vm2", "vm3")),
        arp(op=2, src_mac=forged_mac, src_ip=ip["vm1"], dst_mac=mac["vm2"], dst_ip=ip["vm2"],
            eth_dst=mac["vm2"], eth_src=mac["vm1"]),
    ]
    honest = arp(op=1, src_mac=mac["vm1"], src_ip=ip["vm1"], dst_mac=ZERO_MAC, dst_ip=ip["vm1"])

    def lie(frame: Frame) -> bool:
        return frame.arp is not None and ((frame.arp[2] == victim and frame.arp[1] != mac["vm4"])
                                          or frame.arp[1] == forged_mac)

    with lab.capture("vm2", "vm3") as capture:
        lab.send("vm1", [*lies, honest], repeat=2, gap=1.1)  # past the kernel's ARP locktime
        with extra_address(lab, "vm1", f"{victim}/32"):
            arping = lab.exec("vm1", "busybox", "arping", "-U", "-c", "2", "-I", "eth0", "-s", victim,
                              victim)
            assert arping.returncode == 0, arping.stderr
        got = capture.collect(seconds=0.5)
    for name in ("vm2", "vm3"):
        assert [f.arp for f in got[name] if lie(f)] == [], f"{name} got a forged ARP"
        assert any(f.arp == (1, mac["vm1"], ip["vm1"], ZERO_MAC, ip["vm1"]) for f in got[name])
        assert lab.neighbour(name, victim) == mac["vm4"], f"{name}'s entry for vm4 was poisoned"
    assert lab.ping("vm2", victim) and lab.ping("vm3", victim)


# --- (e) allowed address pairs -------------------------------------------------------------------

def test_an_allowed_address_pair_lets_a_vip_through(net: Net) -> None:
    """A VIP (an address reserved by an unbound port) on vm1's eth0 is unreachable while vm1's
    port does not list it, and vm1 cannot send from it. Once the port's allowed_address_pairs
    name it, vm2 (same host) and vm3 (other host) reach it by ping and TCP, and vm1 sends from
    it. When the pair is removed, the VIP is dead again."""
    lab, ip = net.lab, net.ip
    vip = net.reserve("ps-vip")
    try:
        with extra_address(lab, "vm1", f"{vip}/24"):
            net.forget("vm2", "vm3")
            assert not lab.ping("vm2", vip) and not lab.ping("vm3", vip)
            assert not lab.ping("vm1", ip["vm3"], from_address=vip)
            net.pairs("vm1", vip)
            for name in ("vm2", "vm3"):
                wait_until(lambda n=name: net.forget(n) or lab.ping(n, vip), timeout=10,
                           message=f"{name} reaches the VIP")
                assert lab.tcp(name, "vm1", vip, 7001)
            assert lab.ping("vm1", ip["vm3"], from_address=vip)
            net.pairs("vm1")
            lab.wait_converged("host1", "host2")
            net.forget("vm2", "vm3")
            assert not lab.ping("vm2", vip) and not lab.ping("vm3", vip)
    finally:
        net.pairs("vm1")
        net.forget("vm2", "vm3")


def test_a_vip_follows_the_instance_that_holds_it(net: Net) -> None:
    """VRRP-style: vm1 (host1) and vm3 (host2) both have the VIP as an allowed address pair;
    whichever holds it (and announces it with a gratuitous ARP) gets the clients' traffic. vm2
    (host1) and vm4 (host2) resolve the VIP afresh each time and reach the holder."""
    lab = net.lab
    vip = net.reserve("ps-vrrp-vip")
    holder = "vm1"
    try:
        net.pairs("vm1", vip)
        net.pairs("vm3", vip)
        lab.wait_converged("host1", "host2")
        for holder in ("vm1", "vm3"):
            with extra_address(lab, holder, f"{vip}/24"):
                lab.exec(holder, "busybox", "arping", "-U", "-c", "1", "-I", "eth0", "-s", vip, vip)
                for client in ("vm2", "vm4"):
                    net.forget(client)
                    assert lab.ping(client, vip, count=2), f"{client} cannot reach {holder}'s VIP"
                    assert lab.tcp(client, holder, vip, 7002), f"{client}'s TCP misses {holder}"
    finally:
        net.pairs("vm1")
        net.pairs("vm3")
        net.forget("vm2", "vm4")


def test_two_instances_on_one_host_may_share_a_vip_pair(net: Net) -> None:
    """vm1 and vm2 (both host1) list the same VIP as an allowed address pair, as a VRRP pair on
    one hypervisor does: host1's agent applies it like any change, and the VIP reaches whichever
    of them holds it."""
    lab = net.lab
    vip = net.reserve("ps-shared-vip")
    log_before = len(lab.agent_log("host1"))
    try:
        net.pairs("vm1", vip)
        net.pairs("vm2", vip)
        lab.wait_converged("host1", timeout=10)
        assert "reconcile failed" not in lab.agent_log("host1")[log_before:]
        with extra_address(lab, "vm2", f"{vip}/24"):
            net.forget("vm3")
            assert lab.ping("vm3", vip, count=2)
    finally:
        net.pairs("vm1")
        net.pairs("vm2")
        lab.wait_converged("host1", timeout=30)
