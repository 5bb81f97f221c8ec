"""The br-int pipeline as data: every stage (table) and every register, in one place.

Flow builders name stages, never table numbers; `neutrino.pipeline.flows.check_flow` rejects a
flow that matches a field its stage does not declare or jumps to a stage its stage may not reach.
`docs/pipeline.md` describes each stage flow by flow, and `tests/pipeline/test_pipeline_doc.py`
keeps the doc's two tables equal to `STAGES` and `REGISTERS`.

A packet from a local VIF walks classify -> port_security_ingress_from_vif -> arp_nd_responder ->
acl_egress -> l2_lookup -> acl_ingress -> output (or leaves from l2_lookup into a tunnel or,
VLAN-tagged for a vlan network, into the patch port of a provider bridge); a packet from a
tunnel or from a provider network walks classify -> l2_lookup -> acl_ingress -> output. A packet
from a local VIF to a router's MAC is routed on this chassis (distributed routing): l2_lookup ->
l3_input -> ip_routing -> arp_resolve -> l2_lookup again, now on the destination network.
A routed IPv4 packet for outside the router's subnets (its default route: SNAT) goes from
ip_routing through gateway_redirect into the tunnel to the router's first reachable gateway
chassis, where it enters the router again (l2_lookup -> l3_input -> ip_routing) and leaves
SNATed into the external network.

This module touches nothing: it is constants only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One OpenFlow table of br-int."""

    name: str
    table: int
    fields: frozenset[str]  # match fields a flow of this stage may use
    next: frozenset[str]  # stages a flow of this stage may resubmit / recirculate to
    purpose: str


@dataclass(frozen=True)
class Register:
    """One register (or metadata) and what it carries between stages."""

    field: str  # the OVS field name, as used in matches
    nxm: str  # the NXM name, as used in load/move/ct(zone=...)
    holds: str
    set_in: str  # the stage that sets it


_L3 = frozenset({"dl_type", "nw_proto", "nw_src", "nw_dst", "ipv6_src", "ipv6_dst"})
_L4 = frozenset({"tp_src", "tp_dst", "icmp_type", "icmp_code", "icmpv6_type", "icmpv6_code"})
_ACL = frozenset({"metadata", "reg0", "ct_state", "conj_id"}) | _L3 | _L4

STAGES: tuple[Stage, ...] = (
    Stage("classify", 0,
          frozenset({"in_port", "tun_id", "dl_vlan", "vlan_tci"}),
          frozenset({"port_security_ingress_from_vif", "arp_nd_responder", "native_dhcp", "l2_lookup"}),
          "in_port -> local port (reg6), the agent's DHCP port, tunnel (tun_id) or provider "
          "network (patch port + VLAN id, tag stripped); network key -> metadata, ct zone -> reg5"),
    Stage("port_security_ingress_from_vif", 10,
          frozenset({"reg6", "dl_src", "dl_type", "nw_proto", "nw_src", "ipv6_src",
                     "arp_spa", "arp_sha", "tp_src", "tp_dst", "icmpv6_type", "nd_target"}),
          frozenset({"arp_nd_responder"}),
          "source MAC / IPv4 / IPv6 (fixed IPs + allowed address pairs), ARP and ND anti-spoofing"),
    Stage("arp_nd_responder", 20,
          frozenset({"metadata", "reg0", "reg6", "dl_type", "arp_op", "arp_tpa", "nw_proto",
                     "icmpv6_type", "nd_target", "ipv6_src"}),
          frozenset({"arp_nd_responder", "native_dhcp"}),
          "answer ARP requests and neighbour solicitations for known addresses of the network "
          "(fixed IPs of local and remote ports, DHCP servers)"),
    Stage("native_dhcp", 30,
          frozenset({"reg6", "dl_type", "dl_src", "dl_dst", "nw_proto", "tp_src", "tp_dst",
                     "icmpv6_type", "arp_op"}),
          frozenset({"acl_egress", "output", "l2_lookup"}),
          "DHCPv4 requests and IPv6 router solicitations of ports served natively -> the agent's "
          "DHCP port (UDP source port / Ethernet destination := the VIF's key); its replies -> "
          "output to the port their key names; its ARP requests for an external next hop -> "
          "that external network"),
    Stage("acl_egress", 40,
          _ACL | {"reg6"},
          frozenset({"acl_egress", "l2_lookup"}),
          "security group egress rules of the source port, on conntrack (zone = reg5)"),
    Stage("l2_lookup", 50,
          frozenset({"metadata", "reg0", "reg4", "dl_dst", "dl_type", "arp_op", "arp_tpa"}),
          frozenset({"acl_ingress", "output", "l3_input", "l2_lookup"}),
          "dst MAC -> local port (reg7), remote chassis tunnel or provider network (tagged), or a "
          "router interface or floating IP (-> l3_input, router key in metadata, input network "
          "in xreg1); on a gateway chassis also a router interface from a tunnel (redirected "
          "SNAT traffic) and the router's gateway MAC from the external network; ARP from an "
          "external network for a local floating IP, or for a router's gateway address on its "
          "active gateway chassis, is answered; broadcast/unknown -> flood"),
    Stage("l3_input", 52,
          frozenset({"metadata", "reg0", "dl_type", "nw_proto", "nw_dst", "ipv6_dst", "icmp_type",
                     "icmpv6_type", "tp_dst"}),
          frozenset({"ip_routing"}),
          "a packet to a router (metadata = router key): echo requests to its addresses are "
          "answered, anything else to them dropped; to a local floating IP: DNAT to its fixed "
          "address (router's ct zone); to its gateway address (gateway chassis): un-SNAT; to a "
          "port forwarding's floating IP and port (gateway chassis): DNAT; "
          "redirected by another chassis: on to routing (its TTL was decremented there); "
          "transit IPv4 / IPv6: TTL -1, on to routing"),
    Stage("ip_routing", 54,
          frozenset({"metadata", "reg0", "xreg1", "dl_type", "nw_src", "nw_dst", "ipv6_dst"}),
          frozenset({"ip_routing", "gateway_redirect", "arp_resolve"}),
          "longest prefix match: connected subnets and extra routes -> output network (metadata, "
          "its ct zone in reg5), the interface's MAC as source, next hop in reg1 / xxreg2; from a "
          "local floating IP's fixed address to anywhere else: SNAT to it, out to the external "
          "network's next hop with the floating IP's MAC; any other IPv4 (default route of a "
          "router with SNAT): choose its first live gateway chassis (bundle_load -> reg4), or "
          "SNAT here on a gateway chassis (redirected)"),
    Stage("gateway_redirect", 55,
          frozenset({"metadata", "reg4"}),
          frozenset({"ip_routing"}),
          "the gateway chassis chosen (reg4 = its tunnel's ofport) -> into that tunnel, the frame "
          "as it entered the router (input network's VNI); none reachable before this chassis, "
          "itself a gateway chassis -> SNAT here (back to ip_routing, flagged redirected)"),
    Stage("arp_resolve", 56,
          frozenset({"metadata", "dl_type", "reg1", "xxreg2"}),
          frozenset({"l2_lookup"}),
          "next hop address -> its port's MAC as destination (static: every port address of the "
          "network is known), then L2 on the output network; unknown next hops are dropped"),
    Stage("acl_ingress", 60,
          _ACL | {"reg7"},
          frozenset({"acl_ingress", "output"}),
          "security group ingress rules of the destination port, on conntrack (zone = reg5)"),
    Stage("output", 70,
          frozenset({"reg7"}),
          frozenset(),
          "reg7 -> the local port's ofport"),
)

REGISTERS: tuple[Register, ...] = (
    Register("metadata", "OXM_OF_METADATA[]", "network tunnel_key (this chassis's key of the network); "
             "a router's key while it routes the packet", "classify, l2_lookup, ip_routing"),
    Register("reg0", "NXM_NX_REG0[]", "flags: bit 0 = came from outside (a tunnel or a provider "
             "network: never send it back out), bit 1 = source port has port security disabled, "
             "bit 2 = a neighbour advertisement being built by the responder, bit 3 / bit 4 = "
             "the source / destination port's groups are stateless (no conntrack in acl_egress / "
             "acl_ingress), bit 5 = SNAT traffic redirected to this gateway chassis",
             "classify, arp_nd_responder, acl_egress, acl_ingress, l2_lookup, gateway_redirect"),
    Register("reg1", "NXM_NX_REG1[]", "IPv4 next hop of a routed packet", "ip_routing"),
    Register("xreg1", "OXM_OF_PKT_REG1[]", "the network key a routed packet entered its router "
             "from (reg2-reg3)", "l2_lookup"),
    Register("reg4", "NXM_NX_REG4[]", "the live gateway chassis bundle_load chose: the ofport of "
             "the tunnel to it, 0xffff when none is live", "ip_routing, l2_lookup"),
    Register("reg5", "NXM_NX_REG5[]",
             "conntrack zone of the network on this chassis (allocated by the agent)", "classify"),
    Register("reg6", "NXM_NX_REG6[]", "logical input port key (the VIF's ofport, or the DHCP "
             "port's; 0 from a tunnel or a provider network)", "classify"),
    Register("reg7", "NXM_NX_REG7[]", "logical output port key (the destination VIF's ofport)",
             "l2_lookup, native_dhcp"),
    Register("xxreg2", "NXM_NX_XXREG2[]", "IPv6 next hop of a routed packet (reg8-reg11)",
             "ip_routing"),
)

# reg0 flag bits
FLAG_FROM_OUTSIDE = 0x1  # from a tunnel or a provider network: never send it back out
FLAG_FROM_TUNNEL = FLAG_FROM_OUTSIDE  # the older name of the same bit
FLAG_NO_PORT_SECURITY = 0x2
FLAG_ND_REPLY = 0x4
# the source / destination port's security groups are stateless: no conntrack in that ACL stage
FLAG_STATELESS_EGRESS = 0x8
FLAG_STATELESS_INGRESS = 0x10
FLAG_REDIRECTED = 0x20  # SNAT traffic another chassis (or this one) sent to this gateway chassis

STAGES_BY_NAME: dict[str, Stage] = {stage.name: stage for stage in STAGES}
STAGES_BY_TABLE: dict[int, Stage] = {stage.table: stage for stage in STAGES}


def stage(name: str) -> Stage:
    """The stage called `name` (KeyError naming the known stages if there is none)."""
    try:
        return STAGES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"no pipeline stage {name!r} (stages: {', '.join(STAGES_BY_NAME)})") from None


def table(name: str) -> int:
    """The table number of stage `name`."""
    return stage(name).table


def _check_declaration() -> None:
    tables = [s.table for s in STAGES]
    assert len(set(tables)) == len(tables) == len(STAGES_BY_NAME), "stage names and tables must be unique"
    assert tables == sorted(tables), "stages are declared in table order"
    for s in STAGES:
        assert s.next <= STAGES_BY_NAME.keys(), f"{s.name} goes to an undeclared stage"


_check_declaration()
