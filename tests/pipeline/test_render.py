"""render_chassis, family by family, keyed by stage name (table numbers masked)."""

from __future__ import annotations

from collections import Counter

import pytest

from neutrino.pipeline.flows import Flow, check_flow, cookie_for
from neutrino.pipeline.render import conj_id, port_range_masks, render_chassis
from neutrino.policy.model import (
    AddressPair,
    AddressSetPolicy,
    Document,
    FixedIp,
    NetworkPolicy,
    RemotePort,
    SecurityGroupPolicy,
    SecurityGroupRulePolicy,
    item_key,
)
from pipeline.policies import MAC, NETWORK_ID, chassis_documents, port

VIF, TUNNEL = 10, 1


def render(local: str = "p1", **changes: object) -> list[Flow]:
    tunnels = {"host2": TUNNEL, "host1": TUNNEL}
    return render_chassis(chassis_documents(local, **changes), {local: VIF}, tunnels)


def lines(flows: list[Flow], stage: str) -> list[str]:
    return [f.describe() for f in flows if f.stage == stage]


def test_every_rendered_flow_fits_the_pipeline_and_rendering_is_deterministic() -> None:
    flows = render()
    for flow in flows:
        check_flow(flow)
    assert render() == flows
    assert len({f.key for f in flows}) == len(flows)  # one flow per (table, priority, match)


def test_classify() -> None:
    assert lines(render(), "classify") == [
        "classify 100 in_port=1,tun_id=1001 set_field:0x5->metadata,set_field:0x5->reg5,"
        "set_field:0x1->reg0,resubmit(,l2_lookup)",
        "classify 100 in_port=10 set_field:0x5->metadata,set_field:0x5->reg5,set_field:0xa->reg6,"
        "set_field:0x0->reg0,resubmit(,port_security_ingress_from_vif)",
        "classify 0 * drop",
    ]


def test_port_security_checks_mac_ip_arp_and_nd_including_address_pairs() -> None:
    pair = AddressPair(ip_address="10.0.0.128/25", mac_address="fa:16:3e:00:00:99")
    got = lines(render(allowed_address_pairs=(pair,)), "port_security_ingress_from_vif")
    assert ("port_security_ingress_from_vif 100 reg6=10,dl_src=fa:16:3e:00:00:01,dl_type=0x0800,"
            "nw_src=10.0.0.1 resubmit(,arp_nd_responder)") in got
    assert ("port_security_ingress_from_vif 100 reg6=10,dl_src=fa:16:3e:00:00:01,dl_type=0x0806,"
            "arp_spa=10.0.0.1,arp_sha=fa:16:3e:00:00:01 resubmit(,arp_nd_responder)") in got
    assert ("port_security_ingress_from_vif 100 reg6=10,dl_src=fa:16:3e:00:00:99,dl_type=0x0800,"
            "nw_src=10.0.0.128/25 resubmit(,arp_nd_responder)") in got
    # ND: NAs only for its own addresses, no RAs, link-local + DAD from ::
    assert ("port_security_ingress_from_vif 110 reg6=10,dl_src=fa:16:3e:00:00:01,dl_type=0x86dd,"
            "nw_proto=58,icmpv6_type=136,nd_target=fe80::f816:3eff:fe00:1 resubmit(,arp_nd_responder)") in got
    assert "port_security_ingress_from_vif 105 reg6=10,dl_type=0x86dd,nw_proto=58,icmpv6_type=134 drop" in got
    assert "port_security_ingress_from_vif 105 reg6=10,dl_type=0x86dd,nw_proto=58,icmpv6_type=136 drop" in got
    assert got[-1] == "port_security_ingress_from_vif 0 * drop"


def test_ipv6_fixed_ips_are_allowed_as_source_and_nd_target() -> None:
    ips = (FixedIp(subnet_id="s", ip_address="10.0.0.1"), FixedIp(subnet_id="s6", ip_address="2001:db8::1"))
    got = lines(render(fixed_ips=ips), "port_security_ingress_from_vif")
    assert any("ipv6_src=2001:db8::1 " in line for line in got)
    assert any("nd_target=2001:db8::1 " in line for line in got)


def test_port_security_disabled_skips_checks_and_security_groups() -> None:
    flows = render(port_security_enabled=False)
    assert lines(flows, "port_security_ingress_from_vif") == ["port_security_ingress_from_vif 0 * drop"]
    assert lines(flows, "classify")[1].endswith("set_field:0x2->reg0,resubmit(,arp_nd_responder)")
    assert "acl_ingress 65535 reg7=10 resubmit(,output)" in lines(flows, "acl_ingress")
    assert not any("conjunction" in line and "reg6=10" in line for line in lines(flows, "acl_egress"))


def test_arp_responder_answers_for_local_and_remote_ports_but_not_to_the_owner() -> None:
    got = lines(render(), "arp_nd_responder")
    assert "arp_nd_responder 110 reg6=10,dl_type=0x0806,arp_tpa=10.0.0.1 resubmit(,native_dhcp)" in got
    for ip, mac in (("10.0.0.1", MAC["p1"]), ("10.0.0.2", MAC["p2"])):
        assert (f"arp_nd_responder 100 metadata=5,dl_type=0x0806,arp_op=1,arp_tpa={ip} "
                f"move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:{mac}->eth_src,set_field:2->arp_op,"
                f"move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],set_field:{mac}->arp_sha,"
                f"move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:{ip}->arp_spa,IN_PORT") in got
    assert got[-1] == "arp_nd_responder 0 * resubmit(,native_dhcp)"


def test_l2_lookup_unicast_flood_and_no_hairpin_into_tunnels() -> None:
    assert lines(render(), "l2_lookup") == [
        "l2_lookup 100 metadata=5,dl_dst=fa:16:3e:00:00:01 set_field:0xa->reg7,resubmit(,acl_ingress)",
        "l2_lookup 100 metadata=5,reg0=0/0x1,dl_dst=fa:16:3e:00:00:02 set_field:0x3e9->tun_id,output:1",
        "l2_lookup 20 metadata=5,reg0=0x1/0x1,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 "
        "set_field:0xa->reg7,resubmit(,output)",
        "l2_lookup 15 metadata=5,reg0=0x1/0x1 drop",
        "l2_lookup 10 metadata=5 set_field:0xa->reg7,resubmit(,output),set_field:0x3e9->tun_id,output:1",
        "l2_lookup 0 * drop",
    ]


def test_conntrack_scaffolding_of_the_acl_stages() -> None:
    for stage, after, flag in (("acl_egress", "l2_lookup", "0/0x8"), ("acl_ingress", "output", "0/0x10")):
        got = lines(render(), stage)
        assert (f"{stage} 65000 reg0={flag},dl_type=0x0800,ct_state=-trk "
                f"ct(table={stage},zone=NXM_NX_REG5[0..15])") in got
        assert f"{stage} 64000 reg0={flag},ct_state=+inv+trk drop" in got
        assert f"{stage} 63999 reg0={flag},ct_state=+est-rel-inv+trk resubmit(,{after})" in got
        assert f"{stage} 63999 reg0={flag},ct_state=+rel-inv+trk resubmit(,{after})" in got
        assert f"{stage} 65535 dl_type=0x0806 resubmit(,{after})" in got
        assert got[-1] == f"{stage} 0 * drop"


def test_a_remote_group_rule_is_a_three_clause_conjunction() -> None:
    got = lines(render("p2"), "acl_ingress")  # closed: TCP 5001 from group `open` (10.0.0.1)
    cid = conj_id("closed-tcp")
    assert f"acl_ingress 1000 reg7=10 conjunction({cid},1/3)" in got
    assert f"acl_ingress 1000 dl_type=0x0800,nw_proto=6,tp_dst=5001 conjunction({cid},2/3)" in got
    assert f"acl_ingress 1000 dl_type=0x0800,nw_src=10.0.0.1 conjunction({cid},3/3)" in got
    assert (f"acl_ingress 1000 conj_id={cid},dl_type=0x0800,ct_state=+new-est+trk "
            "ct(commit,zone=NXM_NX_REG5[0..15]),resubmit(,output)") in got


def test_address_set_flows_grow_by_one_per_address_and_miss_means_nothing_matches() -> None:
    docs = chassis_documents("p2")
    before = len(render_chassis(docs, {"p2": VIF}, {"host1": TUNNEL}))
    docs[item_key("host2", "address_set", "open")] = AddressSetPolicy(
        id="open", ipv4=tuple(f"10.0.1.{i}" for i in range(1, 101)))
    assert len(render_chassis(docs, {"p2": VIF}, {"host1": TUNNEL})) == before - 1 + 100
    del docs[item_key("host2", "address_set", "open")]
    flows = render_chassis(docs, {"p2": VIF}, {"host1": TUNNEL})
    assert not any(f"conjunction({conj_id('closed-tcp')},3/3)" in f.describe() for f in flows)


def test_identical_rule_matches_of_two_groups_share_one_flow() -> None:
    docs = chassis_documents("p1")
    twin = SecurityGroupPolicy(id="twin", rules=(
        SecurityGroupRulePolicy(id="twin-tcp", direction="ingress", ethertype="IPv4", protocol=6,
                                port_range_min=5001, port_range_max=5001),))
    docs[item_key("host1", "security_group", "twin")] = twin
    docs[item_key("host1", "port", "p1")] = port("p1", security_group_ids=("open", "twin"))
    flows = render_chassis(docs, {"p1": VIF}, {"host2": TUNNEL})
    shared = [f for f in flows if f.stage == "acl_ingress" and dict(f.match).get("tp_dst") == "5001"]
    assert len(shared) == 1
    assert sorted(shared[0].actions) == sorted([f"conjunction({conj_id('open-tcp')},2/2)",
                                                f"conjunction({conj_id('twin-tcp')},2/2)"])


@pytest.mark.parametrize(("low", "high", "expected"), [
    (22, 22, ["22"]), (1024, 2047, ["0x400/0xfc00"]), (80, 83, ["0x50/0xfffc"]),
    (5, 9, ["5", "0x6/0xfffe", "0x8/0xfffe"]), (0, 65535, ["0x0/0x0"])])
def test_port_ranges_become_few_masks(low: int, high: int, expected: list[str]) -> None:
    assert port_range_masks(low, high) == expected


def test_flow_counts_stay_small_per_local_port_and_per_remote_endpoint() -> None:
    base = len(render())
    static = len(render_chassis({}, {}, {}))
    docs = chassis_documents("p1")
    docs[item_key("host1", "port", "p3")] = port("p1", id="p3", mac_address="fa:16:3e:00:00:03",
                                                 fixed_ips=(FixedIp(subnet_id="s", ip_address="10.0.0.3"),),
                                                 security_group_ids=("open",))
    two_ports = len(render_chassis(docs, {"p1": VIF, "p3": VIF + 1}, {"host2": TUNNEL}))
    per_port = two_ports - base
    assert per_port <= 25, per_port
    network = docs[item_key("host1", "network", NETWORK_ID)]
    assert isinstance(network, NetworkPolicy)
    more = tuple(RemotePort(id=f"r{i}", mac_address=f"fa:16:3e:00:01:{i:02x}",
                            ip_addresses=(f"10.0.2.{i}",), chassis="host2") for i in range(10))
    docs[item_key("host1", "network", NETWORK_ID)] = network.model_copy(
        update={"remote_ports": network.remote_ports + more})
    with_remotes = len(render_chassis(docs, {"p1": VIF, "p3": VIF + 1}, {"host2": TUNNEL}))
    assert with_remotes - two_ports == 2 * len(more)  # one l2_lookup + one ARP reply each
    assert static < 40


def test_each_flow_carries_the_cookie_of_the_item_that_produced_it() -> None:
    flows = render()
    cookies = Counter(f.cookie for f in flows)
    assert set(cookies) <= {cookie_for(k, i) for k, i in (
        ("pipeline", "static"), ("port", "p1"), ("network", NETWORK_ID), ("security_group", "open"),
        ("address_set", "closed"))}
    # dropping the port removes all flows with its cookie; the others that change belong to items
    # that depended on it (its group has no local member left; the network's flood list shrank)
    without = render_chassis({k: v for k, v in chassis_documents("p1").items() if "/port/" not in k},
                             {"p1": VIF}, {"host2": TUNNEL})
    gone = set(flows) - set(without)
    assert {f for f in flows if f.cookie == cookie_for("port", "p1")} <= gone
    assert {f.cookie for f in gone} == {
        cookie_for("port", "p1"), cookie_for("security_group", "open"),
        cookie_for("address_set", "closed"), cookie_for("network", NETWORK_ID)}


def test_unplugged_or_admin_down_ports_render_nothing() -> None:
    docs = chassis_documents("p1")
    assert not any(f.cookie == cookie_for("port", "p1") for f in render_chassis(docs, {}, {"host2": TUNNEL}))
    assert not any(f.cookie == cookie_for("port", "p1") for f in render(admin_state_up=False))


# --- native DHCP ---------------------------------------------------------------------------------

DHCP_PORT = 3


def _with_dhcp_server(enable_dhcp: bool = True) -> dict[str, object]:
    documents = dict(chassis_documents("p1"))
    key = item_key("host1", "network", NETWORK_ID)
    network = documents[key]
    assert isinstance(network, NetworkPolicy)
    subnet = network.subnets[0].model_copy(update={
        "dhcp_server_ip": "10.0.0.250", "dhcp_server_mac": "fa:16:3e:00:00:fa",
        "enable_dhcp": enable_dhcp})
    documents[key] = network.model_copy(update={"subnets": (subnet,)})
    return documents


def test_a_served_port_sends_its_dhcp_requests_tagged_with_its_ofport_to_the_dhcp_port() -> None:
    flows = render_chassis(_with_dhcp_server(), {"p1": VIF}, {"host2": TUNNEL},  # type: ignore[arg-type]
                           dhcp_ofport=DHCP_PORT)
    got = lines(flows, "native_dhcp")
    assert ("native_dhcp 100 reg6=10,dl_type=0x0800,nw_proto=17,tp_src=68,tp_dst=67 "
            "move:NXM_NX_REG6[0..15]->NXM_OF_UDP_SRC[],output:3") in got
    # replies: back to UDP 68, out of the port named by their destination port; nothing else
    assert ("native_dhcp 110 reg6=3,dl_type=0x0800,nw_proto=17,tp_src=67 "
            "move:NXM_OF_UDP_DST[]->NXM_NX_REG7[0..15],set_field:68->udp_dst,resubmit(,output)") in got
    assert "native_dhcp 105 reg6=3 drop" in got
    assert "classify 100 in_port=3 set_field:0x3->reg6,resubmit(,native_dhcp)" in lines(flows, "classify")
    # the server's address is answered by the ARP responder (unicast renewals)
    assert any("arp_tpa=10.0.0.250" in line and "set_field:fa:16:3e:00:00:fa->eth_src" in line
               for line in lines(flows, "arp_nd_responder"))


def test_dhcp_is_not_intercepted_without_a_server_or_without_enable_dhcp() -> None:
    for documents, dhcp_port in ((_with_dhcp_server(enable_dhcp=False), DHCP_PORT),
                                 (chassis_documents("p1"), DHCP_PORT),  # no DHCP port address
                                 (_with_dhcp_server(), None)):  # no native DHCP on the chassis
        flows = render_chassis(documents, {"p1": VIF}, {"host2": TUNNEL},  # type: ignore[arg-type]
                               dhcp_ofport=dhcp_port)
        assert not [line for line in lines(flows, "native_dhcp") if "reg6=10" in line]


# --- provider networks (flat / vlan through a bridge mapping) ------------------------------------

PATCH, VID = 2, 123


def _provider_documents(network_type: str = "vlan", segmentation_id: int | None = VID,
                        physical_network: str = "physnet1") -> dict[str, object]:
    documents = dict(chassis_documents("p1"))
    key = item_key("host1", "network", NETWORK_ID)
    network = documents[key]
    assert isinstance(network, NetworkPolicy)
    documents[key] = network.model_copy(update={
        "network_type": network_type, "segmentation_id": segmentation_id,
        "physical_network": physical_network, "mtu": 1500})
    return documents


def render_provider(network_type: str = "vlan", segmentation_id: int | None = VID,
                    patches: dict[str, int] | None = None, **network: str) -> list[Flow]:
    """p1 local on a flat / vlan network (remote port p2 on host2, which also has a tunnel)."""
    return render_chassis(_provider_documents(network_type, segmentation_id, **network),  # type: ignore[arg-type]
                          {"p1": VIF}, {"host2": TUNNEL},
                          provider_ofports={"physnet1": PATCH} if patches is None else patches)


def test_a_vlan_network_is_classified_by_patch_port_and_vlan_id_and_untagged() -> None:
    assert ("classify 100 in_port=2,dl_vlan=123 pop_vlan,set_field:0x5->metadata,set_field:0x5->reg5,"
            "set_field:0x1->reg0,resubmit(,l2_lookup)") in lines(render_provider(), "classify")
    # a vlan network is never reached through a tunnel
    assert not any("tun_id" in line for line in lines(render_provider(), "classify"))


def test_a_vlan_network_floods_locally_first_then_tagged_to_the_physical_network() -> None:
    assert lines(render_provider(), "l2_lookup") == [
        "l2_lookup 100 metadata=5,dl_dst=fa:16:3e:00:00:01 set_field:0xa->reg7,resubmit(,acl_ingress)",
        # the remote port p2 (bound to host2) is reached through the physical network
        "l2_lookup 100 metadata=5,reg0=0/0x1,dl_dst=fa:16:3e:00:00:02 "
        "push_vlan:0x8100,set_field:4219->vlan_vid,output:2",
        "l2_lookup 20 metadata=5,reg0=0x1/0x1,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 "
        "set_field:0xa->reg7,resubmit(,output)",
        "l2_lookup 15 metadata=5,reg0=0x1/0x1 drop",
        "l2_lookup 10 metadata=5 set_field:0xa->reg7,resubmit(,output),"
        "push_vlan:0x8100,set_field:4219->vlan_vid,output:2",
        "l2_lookup 0 * drop",
    ]


def test_a_remote_port_of_a_vlan_network_goes_to_the_patch_port_never_a_tunnel() -> None:
    flows = render_provider()
    remote = [f for f in flows if f.stage == "l2_lookup" and ("dl_dst", MAC["p2"]) in f.match]
    assert len(remote) == 1
    assert remote[0].actions[-1] == f"output:{PATCH}"
    assert not any("tun_id" in a or a == f"output:{TUNNEL}" for f in flows for a in f.actions)
    # its address is still answered locally (ARP never leaves for the physical network)
    assert any("arp_tpa=10.0.0.2 " in line for line in lines(flows, "arp_nd_responder"))


def test_a_flat_network_is_untagged_both_ways() -> None:
    flows = render_provider("flat", None)
    assert ("classify 100 in_port=2,vlan_tci=0x0000/0x1fff set_field:0x5->metadata,"
            "set_field:0x5->reg5,set_field:0x1->reg0,resubmit(,l2_lookup)") in lines(flows, "classify")
    got = lines(flows, "l2_lookup")
    assert "l2_lookup 100 metadata=5,reg0=0/0x1,dl_dst=fa:16:3e:00:00:02 output:2" in got
    assert "l2_lookup 10 metadata=5 set_field:0xa->reg7,resubmit(,output),output:2" in got
    assert not any("vlan" in a for f in flows for a in f.actions)


@pytest.mark.parametrize("network_type", ["vlan", "flat"])
def test_without_a_patch_port_a_provider_network_only_connects_its_local_ports(network_type: str) -> None:
    segmentation_id = VID if network_type == "vlan" else None
    for flows in (render_provider(network_type, segmentation_id, patches={}),
                  render_provider(network_type, segmentation_id, patches={"public": PATCH}),
                  render_chassis(_provider_documents(network_type, segmentation_id),  # type: ignore[arg-type]
                                 {"p1": VIF}, {"host2": TUNNEL})):
        assert lines(flows, "classify")[:-1] == [line for line in lines(flows, "classify")
                                                 if "in_port=10 " in line]
        assert lines(flows, "l2_lookup") == [
            "l2_lookup 100 metadata=5,dl_dst=fa:16:3e:00:00:01 set_field:0xa->reg7,resubmit(,acl_ingress)",
            "l2_lookup 10 metadata=5 set_field:0xa->reg7,resubmit(,output)",
            "l2_lookup 0 * drop",
        ]
        assert not any(f"output:{PATCH}" in a or "tun_id" in a for f in flows for a in f.actions)


def test_a_vlan_network_without_a_usable_vlan_id_never_leaves_the_chassis() -> None:
    flows = render_provider("vlan", None)
    assert not any(f"output:{PATCH}" in a for f in flows for a in f.actions)
    assert not any(("in_port", str(PATCH)) in f.match for f in flows)


def test_two_vlan_networks_on_one_physnet_are_told_apart_by_their_vlan_id() -> None:
    documents = _provider_documents()
    other = NetworkPolicy(id="net2", network_type="vlan", segmentation_id=124,
                          physical_network="physnet1", tunnel_key=6, mtu=1500)
    documents[item_key("host1", "network", "net2")] = other
    documents[item_key("host1", "port", "p3")] = port("p1", id="p3", network_id="net2",
                                                       mac_address="fa:16:3e:00:00:03",
                                                       fixed_ips=())
    flows = render_chassis(documents, {"p1": VIF, "p3": VIF + 1}, {},  # type: ignore[arg-type]
                           ct_zones={NETWORK_ID: 1, "net2": 2}, provider_ofports={"physnet1": PATCH})
    got = lines(flows, "classify")
    assert any(line.startswith("classify 100 in_port=2,dl_vlan=123 ") and "0x5->metadata" in line
               for line in got)
    assert any(line.startswith("classify 100 in_port=2,dl_vlan=124 ") and "0x6->metadata" in line
               for line in got)
    flood = {dict(f.match)["metadata"]: f.actions for f in flows
             if f.stage == "l2_lookup" and f.priority == 10}
    assert flood["6"] == ("set_field:0xb->reg7", "resubmit(,70)", "push_vlan:0x8100",
                          "set_field:4220->vlan_vid", "output:2")


def test_provider_network_flow_counts() -> None:
    """Per network: 4 with a patch port (classify 1 + l2_lookup 3), 1 without (the local flood);
    per remote port 2 (l2_lookup + ARP reply), as with tunnels."""
    with_patch, without = render_provider(), render_provider(patches={})
    assert len(with_patch) - len(without) == 4 - 1 + 1  # + the l2_lookup flow of remote port p2
    docs = _provider_documents()
    key = item_key("host1", "network", NETWORK_ID)
    network = docs[key]
    assert isinstance(network, NetworkPolicy)
    more = tuple(RemotePort(id=f"r{i}", mac_address=f"fa:16:3e:00:01:{i:02x}",
                            ip_addresses=(f"10.0.2.{i}",), chassis="host2") for i in range(10))
    docs[key] = network.model_copy(update={"remote_ports": network.remote_ports + more})
    grown = render_chassis(docs, {"p1": VIF}, {}, provider_ofports={"physnet1": PATCH})  # type: ignore[arg-type]
    assert len(grown) - len(with_patch) == 2 * len(more)
    for flow in grown:
        check_flow(flow)


# --- neighbour discovery -------------------------------------------------------------------------

def test_the_nd_responder_answers_for_ipv6_fixed_ips_and_never_answers_dad() -> None:
    v6 = FixedIp(subnet_id="sub6", ip_address="fd00::1")
    flows = render(fixed_ips=(FixedIp(subnet_id="sub1", ip_address="10.0.0.1"), v6))
    got = lines(flows, "arp_nd_responder")
    answer = [line for line in got if "nd_target=fd00::1 " in line and line.startswith(
        "arp_nd_responder 100 metadata=5,dl_type=0x86dd,nw_proto=58,icmpv6_type=135")]
    assert len(answer) == 1
    assert ("set_field:fa:16:3e:00:00:01->eth_src" in answer[0]
            and "set_field:fd00::1->ipv6_src" in answer[0]
            and "set_field:136->icmpv6_type" in answer[0]
            and answer[0].endswith("set_field:0x4/0x4->reg0,resubmit(,arp_nd_responder)"))
    assert ("arp_nd_responder 120 reg0=0x4/0x4,dl_type=0x86dd,nw_proto=58,icmpv6_type=136 "
            "move:NXM_OF_ETH_SRC[]->NXM_NX_ND_TLL[],IN_PORT") in got
    assert ("arp_nd_responder 105 dl_type=0x86dd,nw_proto=58,icmpv6_type=135,ipv6_src=:: "
            "resubmit(,native_dhcp)") in got
    # the port's own solicitation for its address is passed on, not answered to it
    assert ("arp_nd_responder 110 reg6=10,dl_type=0x86dd,nw_proto=58,icmpv6_type=135,"
            "nd_target=fd00::1 resubmit(,native_dhcp)") in got


def test_allowed_address_pairs_are_not_answered_by_the_responder() -> None:
    """A VIP (VRRP) moves between ports: whoever holds it answers; two ports with the same VIP
    on one chassis must not make conflicting responder flows."""
    pair = AddressPair(ip_address="10.0.0.100", mac_address=MAC["p1"])
    got = lines(render(allowed_address_pairs=(pair,)), "arp_nd_responder")
    assert not [line for line in got if "arp_tpa=10.0.0.100" in line]


# --- stateless security groups -------------------------------------------------------------------

def _stateless(documents: dict[str, Document]) -> dict[str, Document]:
    return {key: doc.model_copy(update={"stateful": False}) if isinstance(doc, SecurityGroupPolicy)
            else doc for key, doc in documents.items()}


def test_a_port_in_stateless_groups_skips_conntrack_and_its_rules_commit_nothing() -> None:
    flows = render_chassis(_stateless(chassis_documents("p1")), {"p1": VIF}, {"host2": TUNNEL})
    egress, ingress = lines(flows, "acl_egress"), lines(flows, "acl_ingress")
    assert ("acl_egress 65001 reg6=10,reg0=0/0x8 set_field:0x8/0x8->reg0,resubmit(,acl_egress)"
            in egress)
    assert ("acl_ingress 65001 reg7=10,reg0=0/0x10 set_field:0x10/0x10->reg0,resubmit(,acl_ingress)"
            in ingress)
    cid = conj_id("open-tcp")
    assert f"acl_ingress 1000 conj_id={cid},dl_type=0x0800 resubmit(,output)" in ingress
    assert not [line for line in egress + ingress if "ct(commit" in line]


def test_stateful_groups_keep_conntrack() -> None:
    got = lines(render(), "acl_egress") + lines(render(), "acl_ingress")
    assert not [line for line in got if " 65001 " in line]
    assert [line for line in got if "ct(commit" in line]
