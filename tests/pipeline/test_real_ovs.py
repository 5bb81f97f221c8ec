"""The rendered pipeline on real Open vSwitch: two lab hosts, a geneve tunnel, one port on each.

Hand-built policy (tests/pipeline/policies.py) -> render_chassis -> FlowTable.apply -> real
packets between instance namespaces.
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
from neutrino.pipeline.flows import Flow
from neutrino.pipeline.render import render_chassis
from neutrino.pipeline.stages import STAGES_BY_TABLE
from pipeline.policies import HOST, IP, MAC, chassis_documents

pytestmark = LAB_MARKS


@dataclass
class Deployment:
    lab: Lab
    hosts: dict[str, LabHost]  # by port id
    vms: dict[str, LabInstance]  # by port id
    tables: dict[str, FlowTable]  # by port id
    tunnels: dict[str, int]  # port id -> ofport of the tunnel towards the other host

    def render(self, port_id: str, **port_changes: object) -> list[Flow]:
        other = "p2" if port_id == "p1" else "p1"
        ofport = self.vms[port_id].ofport()
        assert ofport is not None
        return render_chassis(chassis_documents(port_id, **port_changes), {port_id: ofport},
                              {HOST[other]: self.tunnels[port_id]})


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with lab_in(tmp_path_factory.mktemp("pipeline-lab"), hosts=2) as lab:
        hosts = {"p1": lab.host("host1"), "p2": lab.host("host2")}
        tunnels = {port_id: geneve_tunnel(hosts[port_id], hosts[other])
                   for port_id, other in (("p1", "p2"), ("p2", "p1"))}
        vms = {p: lab.plug(f"vm{p[1]}", HOST[p], port_id=p, mac=MAC[p]) for p in ("p1", "p2")}
        for p, vm in vms.items():
            vm.configure([f"{IP[p]}/24"])
        tables = {p: FlowTable(Ofctl.for_switch(hosts[p].ovs)) for p in ("p1", "p2")}
        deployment = Deployment(lab, hosts, vms, tables, tunnels)
        for p in ("p1", "p2"):
            tables[p].apply(deployment.render(p))
        yield deployment


def test_ping_and_tcp_cross_the_tunnel_through_the_pipeline(deployment: Deployment) -> None:
    vm1, vm2 = deployment.vms["p1"], deployment.vms["p2"]
    wait_for_ping(vm2, IP["p1"], timeout=10)  # vm1 accepts ICMP from group `closed`
    # TCP 5001: vm2 admits it from group `open` (a 3-clause conjunction), vm1 from anyone
    assert tcp_transfer(vm1, vm2, IP["p2"], size=1 << 20, timeout=5)
    assert tcp_transfer(vm2, vm1, IP["p1"], size=1 << 20, port=5001, timeout=5)


def test_a_group_without_icmp_ingress_blocks_pings_but_replies_pass(deployment: Deployment) -> None:
    vm1, vm2 = deployment.vms["p1"], deployment.vms["p2"]
    wait_for_ping(vm2, IP["p1"], timeout=10)  # replies to vm2's own pings: conntrack +est
    assert not ping(vm1, IP["p2"], count=2, wait=0.5)  # new ICMP into `closed`: dropped
    assert not tcp_transfer(vm1, vm2, IP["p2"], size=1024, port=5002, timeout=1.5)  # only 5001


def test_a_spoofed_source_ip_is_dropped(deployment: Deployment) -> None:
    vm2 = deployment.vms["p2"]
    vm2.exec(["ip", "address", "add", "10.0.0.99/32", "dev", "eth0"])
    vm2.exec(["ip", "neigh", "replace", IP["p1"], "lladdr", MAC["p1"], "dev", "eth0", "nud", "permanent"])
    try:
        wait_for_ping(vm2, IP["p1"])  # the real address passes (a busy machine may lose one)
        spoofed = vm2.exec(["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "0.5", "-I", "10.0.0.99",
                            IP["p1"]], check=False)
        assert spoofed.returncode != 0
    finally:
        vm2.exec(["ip", "address", "del", "10.0.0.99/32", "dev", "eth0"], check=False)


def test_a_delta_is_applied_in_one_bundle_and_a_restart_changes_nothing(deployment: Deployment) -> None:
    host2, vm2, table = deployment.hosts["p2"], deployment.vms["p2"], deployment.tables["p2"]
    before = sorted(table.dump())
    # an agent restart: a fresh table converges by diff (replace-flows) and changes nothing
    restarted = FlowTable(Ofctl.for_switch(host2.ovs))
    restarted.apply(deployment.render("p2"))
    assert sorted(restarted.dump()) == before
    # port security off on p2: only that port's flows change, in one bundle
    delta = restarted.apply(deployment.render("p2", port_security_enabled=False))
    assert delta.added and delta.removed and not delta.resynced
    spoofed = (f"in_port={vm2.ofport()},icmp,dl_src={MAC['p2']},dl_dst={MAC['p1']},"
               f"nw_src=10.0.0.99,nw_dst={IP['p1']},nw_ttl=64")
    assert "l2_lookup" in _trace_stages(host2, spoofed)  # nothing checks the source any more
    restarted.apply(deployment.render("p2"))
    assert sorted(restarted.dump()) == before
    assert _trace_stages(host2, spoofed) == ["classify", "port_security_ingress_from_vif"]
    deployment.tables["p2"] = restarted


def _trace_stages(host: LabHost, flow: str) -> list[str]:
    out = host.ovs.appctl("ofproto/trace", "br-int", flow)
    stages: list[str] = []
    for line in out.splitlines():
        found = re.match(r"^\s*(\d+)\. ", line)
        if found:
            name = STAGES_BY_TABLE[int(found.group(1))].name
            if not stages or stages[-1] != name:
                stages.append(name)
    return stages


def test_ofproto_trace_walks_the_declared_stages(deployment: Deployment) -> None:
    host1, vm1 = deployment.hosts["p1"], deployment.vms["p1"]
    packet = (f"in_port={vm1.ofport()},icmp,dl_src={MAC['p1']},dl_dst={MAC['p2']},"
              f"nw_src={IP['p1']},nw_dst={IP['p2']},nw_ttl=64")
    stages = _trace_stages(host1, packet)
    assert stages[:5] == ["classify", "port_security_ingress_from_vif", "arp_nd_responder",
                          "native_dhcp", "acl_egress"]
    assert "l2_lookup" in stages  # after the conntrack recirculation: out into the tunnel
    out = host1.ovs.appctl("ofproto/trace", "br-int", packet)
    assert "set_field:0x3e9->tun_id" in out and f"output:{deployment.tunnels['p1']}" in out
    spoofed = packet.replace(f"nw_src={IP['p1']}", "nw_src=10.0.0.77")
    assert _trace_stages(host1, spoofed) == ["classify", "port_security_ingress_from_vif"]
