"""Distributed routing on real Open vSwitch: two lab hosts, two geneve networks joined by one
router, a port of each network on a different host.

Hand-built policy (as the compiler makes it: each chassis holds the router, both networks and
its own port) -> render_chassis -> FlowTable.apply -> real packets between instance namespaces.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lab.helpers import LAB_MARKS, geneve_tunnel, lab_in, ping, tcp_transfer, wait_for_ping
from neutrino.agent.flows import FlowTable, Ofctl
from neutrino.lab.host import LabHost
from neutrino.lab.instance import LabInstance
from neutrino.lab.lab import Lab
from neutrino.pipeline.render import render_chassis
from neutrino.pipeline.stages import STAGES_BY_TABLE
from neutrino.policy.model import (
    AddressPair,
    Document,
    FixedIp,
    NetworkPolicy,
    PortPolicy,
    RemotePort,
    RouterAddress,
    RouterInterface,
    RouterPolicy,
    RouterRoute,
    SecurityGroupPolicy,
    SecurityGroupRulePolicy,
    SubnetPolicy,
    item_key,
)

pytestmark = LAB_MARKS

HOST = {"p1": "host1", "p2": "host2"}
NET = {"p1": "net1", "p2": "net2"}
VNI = {"net1": 1001, "net2": 1002}
KEY = {"net1": 1 << 32 | 1001, "net2": 1 << 32 | 1002}
CIDR = {"net1": "10.1.0.0/24", "net2": "10.2.0.0/24"}
GATEWAY = {"net1": "10.1.0.1", "net2": "10.2.0.1"}
ROUTER_MAC = {"net1": "fa:16:3e:00:01:01", "net2": "fa:16:3e:00:02:01"}
IP = {"p1": "10.1.0.10", "p2": "10.2.0.10"}
MAC = {"p1": "fa:16:3e:00:00:01", "p2": "fa:16:3e:00:00:02"}
ROUTER_KEY = 5 << 32 | 0xA1

OPEN = SecurityGroupPolicy(id="open", rules=(
    SecurityGroupRulePolicy(id="open-eg", direction="egress", ethertype="IPv4"),
    SecurityGroupRulePolicy(id="open-in", direction="ingress", ethertype="IPv4"),
))


def router(*routes: RouterRoute) -> RouterPolicy:
    return RouterPolicy(id="r1", tunnel_key=ROUTER_KEY, routes=routes, interfaces=tuple(
        RouterInterface(port_id=f"rp-{net}", network_id=net, mac_address=ROUTER_MAC[net],
                        fixed_ips=(RouterAddress(subnet_id=f"sub-{net}", ip_address=GATEWAY[net],
                                                 cidr=CIDR[net]),))
        for net in ("net1", "net2")))


def documents(local: str, the_router: RouterPolicy) -> dict[str, Document]:
    """What chassis HOST[local] holds: its port, both networks (the other one only through the
    router: every port of it is remote), the router and the group."""
    remote = "p2" if local == "p1" else "p1"
    chassis = HOST[local]
    docs: dict[str, Document] = {
        item_key(chassis, "port", local): PortPolicy(
            id=local, network_id=NET[local], mac_address=MAC[local],
            fixed_ips=(FixedIp(subnet_id=f"sub-{NET[local]}", ip_address=IP[local]),),
            # vm2 routes 192.168.7.0/24 (the extra route's test): it may send from there
            allowed_address_pairs=(AddressPair(ip_address="192.168.7.0/24", mac_address=MAC[local]),)
            if local == "p2" else (),
            security_group_ids=("open",)),
        item_key(chassis, "security_group", "open"): OPEN,
        item_key(chassis, "router", "r1"): the_router,
    }
    for net in ("net1", "net2"):
        remote_ports = (RemotePort(id=remote, mac_address=MAC[remote], ip_addresses=(IP[remote],),
                                   chassis=HOST[remote]),) if NET[remote] == net else ()
        docs[item_key(chassis, "network", net)] = NetworkPolicy(
            id=net, network_type="geneve", segmentation_id=VNI[net], mtu=1450, tunnel_key=KEY[net],
            subnets=(SubnetPolicy(id=f"sub-{net}", cidr=CIDR[net], ip_version=4,
                                  gateway_ip=GATEWAY[net], enable_dhcp=False),),
            remote_ports=remote_ports, flood_chassis=(HOST[remote],) if remote_ports else ())
    return docs


@dataclass
class Routed:
    lab: Lab
    hosts: dict[str, LabHost]  # by port id
    vms: dict[str, LabInstance]
    tables: dict[str, FlowTable]
    tunnels: dict[str, int]  # port id -> ofport of the tunnel to the other host

    def install(self, port_id: str, the_router: RouterPolicy) -> None:
        other = "p2" if port_id == "p1" else "p1"
        ofport = self.vms[port_id].ofport()
        assert ofport is not None
        zones = {"net1": 1, "net2": 2}
        self.tables[port_id].apply(render_chassis(
            documents(port_id, the_router), {port_id: ofport}, {HOST[other]: self.tunnels[port_id]},
            zones))


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    with lab_in(tmp_path_factory.mktemp("routing-lab"), hosts=2) as lab:
        hosts = {"p1": lab.host("host1"), "p2": lab.host("host2")}
        tunnels = {port_id: geneve_tunnel(hosts[port_id], hosts[other])
                   for port_id, other in (("p1", "p2"), ("p2", "p1"))}
        vms = {p: lab.plug(f"vm{p[1]}", HOST[p], port_id=p, mac=MAC[p]) for p in ("p1", "p2")}
        for p, vm in vms.items():
            vm.configure([f"{IP[p]}/24"], gateway=GATEWAY[NET[p]])
        tables = {p: FlowTable(Ofctl.for_switch(hosts[p].ovs)) for p in ("p1", "p2")}
        deployment = Routed(lab, hosts, vms, tables, tunnels)
        for p in ("p1", "p2"):
            deployment.install(p, router())
        yield deployment


def test_ping_and_tcp_are_routed_between_networks_on_different_hosts(routed: Routed) -> None:
    vm1, vm2 = routed.vms["p1"], routed.vms["p2"]
    wait_for_ping(vm1, IP["p2"], timeout=10)
    out = vm1.exec(["ping", "-c", "1", "-W", "2", IP["p2"]]).stdout
    assert "ttl=63" in out  # one router hop: the TTL went down by one
    assert tcp_transfer(vm1, vm2, IP["p2"], size=1 << 20, timeout=5)
    assert tcp_transfer(vm2, vm1, IP["p1"], size=1 << 20, timeout=5)


def test_the_router_answers_pings_to_its_own_address(routed: Routed) -> None:
    vm1 = routed.vms["p1"]
    wait_for_ping(vm1, GATEWAY["net1"], timeout=10)
    assert ping(vm1, GATEWAY["net2"])  # its other interface's address, through itself
    neighbours = vm1.exec(["ip", "neigh", "show", GATEWAY["net1"]]).stdout
    assert ROUTER_MAC["net1"] in neighbours  # answered by the ARP responder


def test_a_routed_packet_leaves_the_source_host_already_on_the_destination_network(
        routed: Routed) -> None:
    host1 = routed.hosts["p1"]
    ofport = routed.vms["p1"].ofport()
    flow = (f"in_port={ofport},dl_src={MAC['p1']},dl_dst={ROUTER_MAC['net1']},dl_type=0x0800,"
            f"nw_src={IP['p1']},nw_dst={IP['p2']},nw_ttl=64,nw_proto=6,tp_src=40000,tp_dst=5201")
    out = host1.ovs.appctl("ofproto/trace", "br-int", flow)
    tables = [int(t) for t in re.findall(r"^\s*(\d+)\. ", out, re.MULTILINE)]
    stages = [STAGES_BY_TABLE[t].name for t in tables if t in STAGES_BY_TABLE]
    assert stages[stages.index("l3_input"):stages.index("arp_resolve") + 1] == [
        "l3_input", "ip_routing", "arp_resolve"]
    final = out.split("Final flow:")[-1].splitlines()[0]  # after conntrack's recirculation
    assert f"dl_src={ROUTER_MAC['net2']}" in final and f"dl_dst={MAC['p2']}" in final
    assert "nw_ttl=63" in final
    assert re.search(rf"set\(tunnel\(tun_id=0x{VNI['net2']:x},", out) or \
        f"tun_id=0x{VNI['net2']:x}" in out  # into the tunnel with net2's VNI


def test_an_extra_route_sends_its_prefix_to_the_next_hop(routed: Routed) -> None:
    # 192.168.7.0/24 via vm2: vm2 holds 192.168.7.1 on lo; vm1 reaches it through the router
    vm1, vm2 = routed.vms["p1"], routed.vms["p2"]
    vm2.exec(["ip", "addr", "add", "192.168.7.1/32", "dev", "lo"])
    try:
        assert not ping(vm1, "192.168.7.1", wait=0.5)  # no route yet: dropped in ip_routing
        with_route = router(RouterRoute(destination="192.168.7.0/24", nexthop=IP["p2"]))
        for p in ("p1", "p2"):
            routed.install(p, with_route)
        wait_for_ping(vm1, "192.168.7.1", timeout=10)
    finally:
        for p in ("p1", "p2"):
            routed.install(p, router())
        vm2.exec(["ip", "addr", "del", "192.168.7.1/32", "dev", "lo"], check=False)


def test_without_the_router_nothing_crosses_between_the_networks(routed: Routed) -> None:
    vm1 = routed.vms["p1"]
    wait_for_ping(vm1, IP["p2"], timeout=10)
    down = router().model_copy(update={"admin_state_up": False})
    try:
        for p in ("p1", "p2"):
            routed.install(p, down)
        assert not ping(vm1, IP["p2"], count=2, wait=0.5)
    finally:
        for p in ("p1", "p2"):
            routed.install(p, router())
    wait_for_ping(vm1, IP["p2"], timeout=10)
