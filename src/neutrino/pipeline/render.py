"""Render one chassis's policy documents into br-int flows.  PURE: documents in, flows out.

`render_chassis(documents, local_ofports, tunnel_ofports, ..., provider_ofports=...)` is all
there is.  Every flow's cookie
comes from the policy item that produced it (`cookie_for(kind, id)`; chassis-wide flows use
`cookie_for("pipeline", "static")`), so the agent can find one item's flows.  A flow built from
several items (a conjunction clause shared by two rules) takes the cookie of the first item in
sorted order.

Keys inside the pipeline: a network is its `tunnel_key` (metadata) and a ct zone (reg5), a local
port is its ofport on br-int (reg6 / reg7); on the wire a network is its segmentation_id (VNI,
tun_id; for a vlan network the VLAN id of its tag on the physical network, a flat network is
untagged).  A port is rendered only when it is in `local_ofports` (its VIF is plugged) and
admin_state_up; a remote port / flood chassis of an overlay network only when its chassis is in
`tunnel_ofports`; the provider side of a flat / vlan network only when its physical network has
a patch port on br-int (`provider_ofports`).

Security groups (stateful): conjunctions, so the flow count grows with ports + rules +
addresses, not their product.  Per rule: clause 1 = "the port is in the group" (one flow per
local port and direction carrying every rule of its groups), clause 2 = the rule's match (one
flow per masked port range), clause 3 (remote_group_id only) = "the peer address is in the
group" (one flow per address).  The conjunction flow commits the connection.

See docs/pipeline.md for every stage, flow by flow.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import operator
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from neutrino.pipeline.flows import (
    Flow,
    FlowKey,
    PipelineError,
    conjunction,
    cookie_for,
    ct_commit,
    ct_nat,
    ct_recirculate,
    load,
    resubmit,
)
from neutrino.pipeline.stages import (
    FLAG_FROM_OUTSIDE,
    FLAG_ND_REPLY,
    FLAG_NO_PORT_SECURITY,
    FLAG_REDIRECTED,
    FLAG_STATELESS_EGRESS,
    FLAG_STATELESS_INGRESS,
    table,
)
from neutrino.policy.model import (
    AddressSetPolicy,
    Document,
    FloatingIpPolicy,
    NetworkPolicy,
    PortPolicy,
    RouterGateway,
    RouterPolicy,
    SecurityGroupPolicy,
    SecurityGroupRulePolicy,
)

STATIC = cookie_for("pipeline", "static")
# memoised pieces (per port, per group, ...) kept between renders; documents are frozen values
RENDER_CACHE_SIZE = 1 << 16
IPV4, IPV6, ARP = "0x0800", "0x86dd", "0x0806"
BROADCAST_MASK = "01:00:00:00:00:00/01:00:00:00:00:00"

# priorities in the ACL stages
P_ACL_BYPASS = 65535  # port security off, ARP, ND, DHCP
P_ACL_CT = 65000  # untracked IP -> conntrack
P_ACL_STATE = 64000  # +inv drop, +est / +rel pass
P_ACL_RULE = 1000  # conjunction clauses and conjunction flows

# ICMPv6 types allowed without a rule (as Neutron's OVS firewall does)
ICMPV6_EGRESS_ALLOWED = (130, 131, 132, 133, 135, 136, 143)  # MLD, RS, NS, NA
ICMPV6_INGRESS_ALLOWED = (130, 134, 135, 136)  # MLD query, RA, NS, NA
ICMPV6_RS, ICMPV6_NS, ICMPV6_NA, ICMPV6_RA, ICMPV6_MLD2 = 133, 135, 136, 134, 143

_L4_PROTOCOLS = {6: "tcp", 17: "udp", 132: "sctp"}


def render_chassis(documents: Mapping[str, Document], local_ofports: Mapping[str, int],
                   tunnel_ofports: Mapping[str, int],
                   ct_zones: Mapping[str, int] | None = None,
                   dhcp_ofport: int | None = None,
                   provider_ofports: Mapping[str, int] | None = None,
                   neighbours: Mapping[tuple[str, str], str] | None = None,
                   chassis: str = "") -> list[Flow]:
    """All br-int flows for one chassis, sorted by (stage, priority, match): what a fresh
    `ChassisRenderer` makes of these inputs (see `ChassisRenderer.update` for the arguments)."""
    renderer = ChassisRenderer()
    renderer.update(documents, local_ofports, tunnel_ofports, ct_zones, dhcp_ofport,
                    provider_ofports, neighbours, chassis)
    return sorted(renderer.flows.values(), key=operator.attrgetter("order"))


# --- incremental rendering -----------------------------------------------------------------------
#
# A chassis's flows are the union of the flows of its *units*, each a pure function of a few
# inputs (its signature):
#
#   unit                     signature                                          flows
#   ("static", "")           DHCP port's ofport                                 _static_flows, DHCP port
#   ("network", id)          network doc, local members' ofports, tunnel ofports, _network_flows,
#                            ct zone, provider ofports, native DHCP on/off      DHCP server ARP
#   ("port", id)             port doc, network doc, ofport, zone, DHCP ofport,  _port_flows, DHCP request,
#                            its groups' docs                                   clause 1 (its groups' rules)
#   ("group", id)            group doc (groups with a local member only)        clause 2 + conjunction flows
#   ("address_set", id)      address set doc, the local rules naming it         clause 3
#   ("router", id)           router doc, (network, key, zone) of the interface  router MACs, answers for
#                            networks held here                                 its addresses, l3_input,
#                                                                               ip_routing
#
# A network a router routes into here is *routed*: its network unit and the units of its local
# ports also carry arp_resolve flows (the MAC of every port address on it).
#
# ChassisRenderer keeps each unit's signature and flows; an update rebuilds only the units whose
# signature changed (documents are frozen values, so an unchanged item is the same object and the
# comparison is cheap), and merges per flow key only the keys those units touched. Flows of
# several units with one key are conjunction clauses with the same match (OVS keeps one flow
# per match): they merge into one flow with every conjunction action (`merge_flows`).

UnitId = tuple[str, str]


@dataclass(frozen=True)
class _Unit:
    signature: tuple[object, ...]
    flows: tuple[Flow, ...]


class ChassisRenderer:
    """The flows of one chassis, kept up to date by rebuilding only what its inputs changed.

    `flows` is the whole table (key -> flow); `update` returns what changed in it. A renderer
    that has seen any sequence of inputs holds exactly what a fresh one makes of the last
    inputs (tests/pipeline/test_incremental.py); if an update fails (a PipelineError), the
    renderer starts afresh and `update` reports `None` (= rebuilt, diff against the switch)
    the next time it succeeds.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._units: dict[UnitId, _Unit] = {}
        self._owners: dict[FlowKey, dict[UnitId, Flow]] = {}  # who contributes to each key
        self.flows: dict[FlowKey, Flow] = {}
        self._fresh = True  # nothing rendered yet since start or a failure

    def update(self, documents: Mapping[str, Document], local_ofports: Mapping[str, int],
               tunnel_ofports: Mapping[str, int], ct_zones: Mapping[str, int] | None = None,
               dhcp_ofport: int | None = None,
               provider_ofports: Mapping[str, int] | None = None,
               neighbours: Mapping[tuple[str, str], str] | None = None,
               chassis: str = "") -> dict[FlowKey, Flow | None] | None:
        """Bring `flows` up to date with these inputs; return {key: new flow, or None if the
        key is gone} for what changed, or None when everything was rebuilt (the first update,
        or the first after a failure: diff the whole table against the switch then).

        `documents`: the chassis's policy items (any keys; kinds are told by type; TunnelPolicy
        items are not needed: `tunnel_ofports` says which peers have a tunnel port and its ofport).
        `local_ofports`: port id -> ofport of its plugged VIF (a port is rendered only when
        plugged and admin_state_up).  `tunnel_ofports`: peer chassis -> ofport.
        `ct_zones`: network id (and router id, for a router translating floating IPs here: its
        NAT zone) -> conntrack zone (1..65535) on this chassis; the agent allocates them and
        keeps them in OVSDB so they survive restarts. Without it a network's zone is its
        tunnel_key, which must then fit 16 bits, and no floating IP is translated.
        `dhcp_ofport`: the ofport of the agent's DHCP port (an internal port where
        `neutrino.agent.dhcp_responder` listens); None = no native DHCP on this chassis.
        `provider_ofports`: physical network -> ofport of the patch port on br-int that leads to
        its provider bridge (one per bridge mapping); flat / vlan networks reach other chassis
        through it. None = no bridge mappings here.
        `neighbours`: (network id, IP) -> MAC of next hops outside Neutron the agent learned
        (the upstream router of an external network).
        `chassis`: this chassis's name: where it stands in a router's gateway chassis (SNAT).
        """
        try:
            signatures = _signatures(documents, local_ofports, tunnel_ofports, ct_zones,
                                     dhcp_ofport, provider_ofports or {}, neighbours, chassis)
            rebuilt = {uid: _Unit(sig, _one_per_key(_build(uid[0], sig)))
                       for uid, sig in signatures.items()
                       if (old := self._units.get(uid)) is None or old.signature != sig}
            gone = [uid for uid in self._units if uid not in signatures]
            touched: set[FlowKey] = set()
            for uid in gone:
                self._retract(uid, self._units.pop(uid).flows, touched)
            for uid, unit in rebuilt.items():
                old_unit = self._units.get(uid)
                self._units[uid] = unit
                old_flows = {f.key: f for f in old_unit.flows} if old_unit is not None else {}
                for flow in unit.flows:
                    old_flow = old_flows.pop(flow.key, None)
                    if old_flow is flow or old_flow == flow:
                        continue  # (most of a rebuilt unit's flows come from caches)
                    self._owners.setdefault(flow.key, {})[uid] = flow
                    touched.add(flow.key)
                self._retract(uid, old_flows.values(), touched)  # the keys it no longer has
            changes: dict[FlowKey, Flow | None] = {}
            for key in touched:
                owners = self._owners.get(key)
                merged = merge_flows(owners.values()) if owners else None
                if merged != self.flows.get(key):
                    changes[key] = merged
                    if merged is None:
                        del self.flows[key]
                    else:
                        self.flows[key] = merged
        except Exception:
            self._reset()  # start afresh: the state may be half-updated
            raise
        if self._fresh:
            self._fresh = False
            return None
        return changes

    def _retract(self, uid: UnitId, flows: Iterable[Flow], touched: set[FlowKey]) -> None:
        for flow in flows:
            owners = self._owners.get(flow.key)
            if owners is not None:
                owners.pop(uid, None)
                if not owners:
                    del self._owners[flow.key]
            touched.add(flow.key)


def _signatures(documents: Mapping[str, Document], local_ofports: Mapping[str, int],
                tunnel_ofports: Mapping[str, int], ct_zones: Mapping[str, int] | None,
                dhcp_ofport: int | None, provider_ofports: Mapping[str, int],
                neighbours: Mapping[tuple[str, str], str] | None = None,
                chassis: str = "") -> dict[UnitId, tuple[object, ...]]:
    """Every unit of the chassis with the inputs its flows are made from (the table above)."""
    ports: list[PortPolicy] = []
    networks: dict[str, NetworkPolicy] = {}
    groups: dict[str, SecurityGroupPolicy] = {}
    address_sets: dict[str, AddressSetPolicy] = {}
    routers: list[RouterPolicy] = []
    for document in documents.values():
        if isinstance(document, PortPolicy):
            ports.append(document)
        elif isinstance(document, RouterPolicy):
            routers.append(document)
        elif isinstance(document, NetworkPolicy):
            networks[document.id] = document
        elif isinstance(document, SecurityGroupPolicy):
            groups[document.id] = document
        elif isinstance(document, AddressSetPolicy):
            address_sets[document.id] = document
    local = sorted((p for p in ports
                    if p.admin_state_up and p.id in local_ofports and p.network_id in networks),
                   key=lambda p: p.id)
    out: dict[UnitId, tuple[object, ...]] = {("static", ""): (dhcp_ofport,)}
    zones = {n.id: _zone(n, ct_zones) for n in networks.values()}
    members: dict[str, list[int]] = defaultdict(list)
    for port in local:
        members[port.network_id].append(local_ofports[port.id])
    tunnels = tuple(sorted(tunnel_ofports.items()))
    providers = tuple(sorted(provider_ofports.items()))
    routed: set[str] = set()  # networks a router routes into on this chassis
    for router in routers:
        attached = tuple(sorted({(i.network_id, networks[i.network_id].tunnel_key, zones[i.network_id])
                                 for i in router.interfaces if i.network_id in networks}))
        if router.admin_state_up and attached:
            out["router", router.id] = (router, attached, *_floating_side(
                router, networks, zones, ct_zones, local_ofports, dhcp_ofport),
                _snat_side(router, networks, zones, tunnel_ofports, ct_zones, dhcp_ofport,
                           chassis), dhcp_ofport)
            routed.update(network_id for network_id, _key, _zone in attached)
    learned = neighbours or {}
    for network in networks.values():
        out["network", network.id] = (network, tuple(members.get(network.id, ())), tunnels,
                                      zones[network.id], providers, dhcp_ofport is not None,
                                      network.id in routed, tuple(sorted(
                                          (ip, mac) for (net, ip), mac in learned.items()
                                          if net == network.id)))
    # IPv6 subnets whose router (one with an interface on them here) advertises them
    advertised = {a.subnet_id for r in routers if r.admin_state_up for i in r.interfaces
                  for a in i.fixed_ips} & {s.id for n in networks.values() for s in n.subnets
                                           if s.ip_version == 6 and s.ipv6_ra_mode}
    used: set[str] = set()
    for port in local:
        port_groups: tuple[SecurityGroupPolicy, ...] = ()
        if port.port_security_enabled:
            port_groups = tuple(groups[g] for g in port.security_group_ids if g in groups)
            used.update(g.id for g in port_groups)
        out["port", port.id] = (port, networks[port.network_id], local_ofports[port.id],
                                zones[port.network_id], dhcp_ofport, port_groups,
                                port.network_id in routed,
                                any(f.subnet_id in advertised for f in port.fixed_ips))
    # clause 2 for each group with a local member; clause 3 for each remote group they name
    seen: dict[int, str] = {}
    remote_rules: dict[str, list[SecurityGroupRulePolicy]] = defaultdict(list)
    for group_id in sorted(used):
        group = groups[group_id]
        out["group", group_id] = (group,)
        for rule in group.rules:
            cid = conj_id(rule.id)
            if seen.setdefault(cid, rule.id) != rule.id:
                raise PipelineError(f"rules {seen[cid]} and {rule.id} share conjunction id {cid}")
            if rule.remote_group_id:
                remote_rules[rule.remote_group_id].append(rule)
    for group_id, rules in remote_rules.items():
        address_set = address_sets.get(group_id)
        if address_set is not None:  # else fail closed: the rule matches nothing until it comes
            out["address_set", group_id] = (address_set, tuple(rules))
    return out


def _build(kind: str, signature: tuple[object, ...]) -> tuple[Flow, ...]:
    """The flows of one unit from its signature (see `_signatures`)."""
    if kind == "static":
        (dhcp_ofport,) = signature
        return _static_unit(dhcp_ofport)  # type: ignore[arg-type]
    if kind == "network":
        return _network_unit(*signature)  # type: ignore[arg-type]
    if kind == "port":
        return _port_unit(*signature)  # type: ignore[arg-type]
    if kind == "group":
        return _group_rule_flows(*signature)
    if kind == "address_set":
        return _address_set_flows(*signature)
    if kind == "router":
        return _router_flows(*signature)
    raise ValueError(f"no such unit kind: {kind}")


def _static_unit(dhcp_ofport: int | None) -> tuple[Flow, ...]:
    flows = list(_static_flows())
    if dhcp_ofport is not None:
        flows += _dhcp_port_flows(dhcp_ofport)
    return tuple(flows)


def _network_unit(network: NetworkPolicy, member_ofports: tuple[int, ...],
                  tunnels: tuple[tuple[str, int], ...], zone: int,
                  providers: tuple[tuple[str, int], ...], native_dhcp: bool,
                  routed: bool, learned: tuple[tuple[str, str], ...]) -> tuple[Flow, ...]:
    flows = _network_flows(network, member_ofports, dict(tunnels), zone, dict(providers))
    if native_dhcp:
        flows += _dhcp_server_arp_flows(network)
    cookie = cookie_for("network", network.id)
    if routed:  # a router here routes into it: the MACs of its remote ports' addresses
        flows += [next_hop_flow(network.tunnel_key, ip, remote.mac_address, cookie)
                  for remote in network.remote_ports for ip in remote.ip_addresses]
    # next hops outside Neutron (an external network's upstream router), as the agent learned
    # them by ARP (neutrino.agent.neighbours)
    flows += [next_hop_flow(network.tunnel_key, ip, mac, cookie) for ip, mac in learned]
    return tuple(flows)


def _port_unit(port: PortPolicy, network: NetworkPolicy, ofport: int, zone: int,
               dhcp_ofport: int | None, groups: tuple[SecurityGroupPolicy, ...],
               routed: bool, advertised: bool) -> tuple[Flow, ...]:
    flows = _port_flows(port, network.tunnel_key, ofport, zone)
    if dhcp_ofport is not None and dhcp_served(port, network):
        flows += (_dhcp_request_flow(port, ofport, dhcp_ofport),)
    if dhcp_ofport is not None and advertised:  # its router's advertisements, from the agent
        flows += _router_solicitation_flows(port, ofport, dhcp_ofport)
    if port.port_security_enabled:
        flows += _port_clause_flows(port.id, ofport, groups)
    if routed:  # a router here routes into its network: the MAC of each of its addresses
        cookie = cookie_for("port", port.id)
        flows += tuple(next_hop_flow(network.tunnel_key, f.ip_address, port.mac_address, cookie)
                       for f in port.fixed_ips)
    return flows


# --- routers (distributed: a packet is routed on the chassis of its source port) -----------------

P_ROUTE_SNAT = 99  # ip_routing: redirected SNAT traffic, translated on this gateway chassis
P_ROUTE_REDIRECT = 98  # ip_routing: the default route of a router with SNAT (below any prefix)


def _route_priority(prefixlen: int, connected: bool) -> int:
    """Longest prefix first; a connected subnet before an extra route of the same length."""
    return 100 + 2 * prefixlen + (1 if connected else 0)


def _next_hop_match(network_key: int, ip: str) -> dict[str, str | int]:
    address = ipaddress.ip_address(ip)
    if address.version == 4:
        return {"metadata": network_key, "dl_type": IPV4, "reg1": f"{int(address):#x}"}
    return {"metadata": network_key, "dl_type": IPV6, "xxreg2": f"{int(address):#x}"}


def next_hop_flow(network_key: int, ip: str, mac: str, cookie: int) -> Flow:
    """arp_resolve: a routed packet whose next hop is `ip` on the network goes to `mac`."""
    return Flow.make("arp_resolve", 100, _next_hop_match(network_key, ip),
                     [f"set_field:{mac}->eth_dst", resubmit("l2_lookup")], cookie)


_ECHO_REPLY = ("push:NXM_OF_ETH_SRC[]", "push:NXM_OF_ETH_DST[]", "pop:NXM_OF_ETH_SRC[]",
               "pop:NXM_OF_ETH_DST[]", "push:NXM_OF_IP_SRC[]", "push:NXM_OF_IP_DST[]",
               "pop:NXM_OF_IP_SRC[]", "pop:NXM_OF_IP_DST[]", "set_field:0->icmp_type",
               "set_field:255->nw_ttl", "IN_PORT")
_ECHO6_REPLY = ("push:NXM_OF_ETH_SRC[]", "push:NXM_OF_ETH_DST[]", "pop:NXM_OF_ETH_SRC[]",
                "pop:NXM_OF_ETH_DST[]", "push:NXM_NX_IPV6_SRC[]", "push:NXM_NX_IPV6_DST[]",
                "pop:NXM_NX_IPV6_SRC[]", "pop:NXM_NX_IPV6_DST[]", "set_field:129->icmpv6_type",
                "set_field:255->nw_ttl", "IN_PORT")  # (OVS fixes the ICMPv6 checksum)


def _floating_side(router: RouterPolicy, networks: Mapping[str, NetworkPolicy],
                   zones: Mapping[str, int], ct_zones: Mapping[str, int] | None,
                   local_ofports: Mapping[str, int], dhcp_ofport: int | None) -> tuple[object, ...]:
    """The rest of a router's signature: its floating IPs whose port is plugged here, the
    external network (key, zone), the router's own conntrack zone (for NAT), the DHCP port
    (where ARP replies for the external next hop go). Nothing when it has no gateway on an
    external network held here, or no zone of its own."""
    gateway = router.gateway
    zone = (ct_zones or {}).get(router.id, 0)
    if gateway is None or gateway.network_id not in networks or not 0 < zone < 1 << 16:
        return ((), None, 0, None)
    fips = tuple(f for f in router.floating_ips if f.port_id in local_ofports)
    external = (networks[gateway.network_id].tunnel_key, zones[gateway.network_id])
    return (fips, external, zone, dhcp_ofport) if fips else ((), None, 0, None)


@dataclass(frozen=True)
class SnatSide:
    """What a router's SNAT (default route) needs on one chassis: see `_snat_side`."""

    # (key, VNI, interface MAC) of its interfaces on overlay networks held here
    redirects: tuple[tuple[int, int, str], ...]
    members: tuple[int, ...]  # tunnel ofports of the gateway chassis to try, preferred first
    here: bool  # this chassis is one of its gateway chassis (after every member)
    external: tuple[int, int] = (0, 0)  # (key, ct zone) of the external network, when `here`
    zone: int = 0  # the router's own conntrack zone (NAT), when `here`
    probe_mac: str = ""  # this chassis's MAC for resolving the next hop, when `here`
    dhcp_ofport: int | None = None


def probe_mac(chassis: str) -> str:
    """The MAC a gateway chassis resolves external next hops with (ARP probes, sender IP
    0.0.0.0): its own, unique per chassis (locally administered), never a router's, so that
    a standby gateway never moves a router's MAC on the external network's switches."""
    digest = hashlib.sha256(chassis.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x0e, *digest[:5]))


def _snat_side(router: RouterPolicy, networks: Mapping[str, NetworkPolicy],
               zones: Mapping[str, int], tunnel_ofports: Mapping[str, int],
               ct_zones: Mapping[str, int] | None, dhcp_ofport: int | None,
               chassis: str) -> SnatSide | None:
    """The router's SNAT on this chassis (None: none here). A router with a gateway that does
    SNAT (an IPv4 address, an IPv4 next hop) and gateway chassis sends IPv4 for outside its
    subnets from ports without a floating IP to the first of its gateway chassis that BFD says
    is reachable (`members`, the tunnels to those before this chassis in the list, or to all
    of them); a gateway chassis translates it itself when it reaches none before itself
    (`here`: it holds the external network and has a zone for the router)."""
    gateway = router.gateway
    if gateway is None or not gateway.enable_snat or not gateway.chassis \
            or _gateway_v4(gateway) is None:
        return None
    rank = gateway.chassis.index(chassis) if chassis in gateway.chassis else None
    before = gateway.chassis if rank is None else gateway.chassis[:rank]
    members = tuple(tunnel_ofports[c] for c in before if c in tunnel_ofports)
    redirects = tuple(sorted({(networks[i.network_id].tunnel_key, _vni(networks[i.network_id]),
                               i.mac_address)
                              for i in router.interfaces if i.network_id in networks
                              and networks[i.network_id].network_type in ("geneve", "vxlan")}))
    zone = (ct_zones or {}).get(router.id, 0)
    if rank is not None and gateway.network_id in networks and 0 < zone < 1 << 16:
        return SnatSide(redirects, members, True,
                        (networks[gateway.network_id].tunnel_key, zones[gateway.network_id]),
                        zone, probe_mac(chassis), dhcp_ofport)
    return SnatSide(redirects, members, False) if members and redirects else None


def _gateway_v4(gateway: RouterGateway) -> tuple[str, ipaddress.IPv4Address] | None:
    """(the gateway's first IPv4 address, its first IPv4 next hop), or None."""
    address = next((a.ip_address for a in gateway.fixed_ips
                    if ipaddress.ip_address(a.ip_address).version == 4), None)
    hop = next((ipaddress.IPv4Address(h) for h in gateway.next_hops
                if ipaddress.ip_address(h).version == 4), None)
    return (address, hop) if address is not None and hop is not None else None


NO_GATEWAY = 0xffff  # what bundle_load writes when no member is live (OFPP_NONE)


def _choose_gateway(members: tuple[int, ...]) -> str:
    """bundle_load: the first live (BFD up) tunnel of `members` -> reg4 (NO_GATEWAY if none)."""
    return ("bundle_load(eth_src,0,active_backup,ofport,NXM_NX_REG4[],members:"
            + ",".join(str(m) for m in members) + ")")


def _active_arp_reply(ext_key: int, address: str, mac: str, members: tuple[int, ...],
                      cookie: int) -> list[Flow]:
    """ARP for `address` on the external network answered from `mac` only while this chassis
    is the active gateway: the first of the list it reaches (bundle_load over the tunnels to
    the gateway chassis before it: none live = itself; no members = it is the preferred one)."""
    answer = _arp_reply(ext_key, address, mac, cookie, stage_name="l2_lookup")
    if not members:
        return [answer]
    asked: dict[str, str | int] = dict(answer.match)
    return [Flow.make("l2_lookup", answer.priority, {**asked, "reg4": 0},
                      [_choose_gateway(members), resubmit("l2_lookup")], cookie),
            Flow.make("l2_lookup", answer.priority + 1, {**asked, "reg4": NO_GATEWAY},
                      answer.actions, cookie)]


def _snat_flows(router: RouterPolicy, snat: SnatSide, cookie: int) -> list[Flow]:
    """A router's SNAT on this chassis (`_snat_side`): the default route into the gateway
    chassis's tunnel (or to SNAT here); on a gateway chassis, the translation itself, the way
    back in, and the answers for the gateway address while it is the active one."""
    assert router.gateway is not None
    gateway = router.gateway
    found = _gateway_v4(gateway)
    assert found is not None
    address, next_hop = found
    key = router.tunnel_key
    redirected = f"{FLAG_REDIRECTED:#x}/{FLAG_REDIRECTED:#x}"
    snat_here = [load(FLAG_REDIRECTED, "reg0"), resubmit("ip_routing")]
    flows: list[Flow] = []
    for net_key, vni, _mac in snat.redirects:  # the default route (below every prefix route)
        if snat.members:
            actions = [load(vni, "tun_id"), _choose_gateway(snat.members),
                       resubmit("gateway_redirect")]
        else:  # the preferred gateway chassis: nobody to ask first
            actions = snat_here
        flows.append(Flow.make("ip_routing", P_ROUTE_REDIRECT,
                               {"metadata": key, "dl_type": IPV4, "xreg1": net_key},
                               actions, cookie))
    for member in snat.members:
        flows.append(Flow.make("gateway_redirect", 100, {"metadata": key, "reg4": member},
                               [f"output:{member}"], cookie))
    if not snat.here:
        return flows
    ext_key, ext_zone = snat.external
    mac = gateway.mac_address
    if snat.members:
        flows.append(Flow.make("gateway_redirect", 100, {"metadata": key, "reg4": NO_GATEWAY},
                               snat_here, cookie))
    outside = f"{FLAG_FROM_OUTSIDE:#x}/{FLAG_FROM_OUTSIDE:#x}"
    for net_key, _vni, interface_mac in snat.redirects:  # from another chassis, into the router
        flows.append(Flow.make(
            "l2_lookup", 100, {"metadata": net_key, "reg0": outside, "dl_dst": interface_mac},
            [load(FLAG_REDIRECTED, "reg0"), load(net_key, "xreg1"), load(key, "metadata"),
             resubmit("l3_input")], cookie))
    flows.append(Flow.make("l3_input", 60, {"metadata": key, "reg0": redirected, "dl_type": IPV4},
                           [resubmit("ip_routing")], cookie))  # (TTL -1 where it was routed)
    flows.append(Flow.make(
        "ip_routing", P_ROUTE_SNAT, {"metadata": key, "reg0": redirected, "dl_type": IPV4},
        [load(0, "reg0"), load(ext_key, "metadata"), load(ext_zone, "reg5"),
         f"set_field:{mac}->eth_src", f"set_field:{int(next_hop):#x}->reg1",
         ct_nat(snat.zone, f"src={address}", "arp_resolve")], cookie))
    # the way back: to the gateway MAC from the external network; un-SNAT; echo replies
    flows.append(Flow.make("l2_lookup", 100, {"metadata": ext_key, "dl_dst": mac},
                           [load(0, "reg0"), load(key, "metadata"), resubmit("l3_input")], cookie))
    to_gateway: dict[str, str | int] = {"metadata": key, "dl_type": IPV4, "nw_dst": address}
    flows.append(Flow.make("l3_input", 100, {**to_gateway, "nw_proto": 1, "icmp_type": 8},
                           _ECHO_REPLY, cookie))
    flows.append(Flow.make("l3_input", 94, to_gateway,
                           ["dec_ttl", f"ct(table={table('ip_routing')},zone={snat.zone},nat)"],
                           cookie))
    # ARP for the gateway address and the port forwardings' floating IPs: answered (with the
    # gateway MAC) by the active gateway chassis only
    for answered in sorted({address, *(pf.floating_ip_address for pf in router.port_forwardings)}):
        flows += _active_arp_reply(ext_key, answered, mac, snat.members, cookie)
    # port forwardings: DNAT in the router's zone (replies go back through SNAT at 99, where
    # conntrack turns them back into the floating IP's)
    for pf in router.port_forwardings:
        flows.append(Flow.make(
            "l3_input", 96, {"metadata": key, "dl_type": IPV4, "nw_dst": pf.floating_ip_address,
                             "nw_proto": 6 if pf.protocol == "tcp" else 17,
                             "tp_dst": pf.external_port},
            ["dec_ttl", ct_nat(snat.zone, f"dst={pf.internal_ip_address}:{pf.internal_port}",
                               "ip_routing")], cookie))
    if snat.dhcp_ofport is not None:  # the agent resolves the next hop, as this chassis
        flows.append(Flow.make("l2_lookup", 105, {"metadata": ext_key, "dl_dst": snat.probe_mac,
                                                  "dl_type": ARP},
                               [f"output:{snat.dhcp_ofport}"], cookie))
        flows.append(Flow.make("native_dhcp", 111, {"reg6": snat.dhcp_ofport, "dl_type": ARP,
                                                    "arp_op": 1, "dl_src": snat.probe_mac},
                               [load(ext_key, "metadata"), resubmit("l2_lookup")], cookie))
    return flows


def _floating_ip_flows(router: RouterPolicy, fips: tuple[FloatingIpPolicy, ...],
                       external: tuple[int, int], zone: int, dhcp_ofport: int | None,
                       cookie: int) -> list[Flow]:
    """Distributed floating IPs, on the chassis of their ports: answer ARP for them on the
    external network, take their traffic into the router and DNAT it, SNAT their ports'
    traffic to anywhere not connected to the router, out to the external next hop."""
    assert router.gateway is not None
    ext_key, ext_zone = external
    next_hop = next((ipaddress.IPv4Address(h) for h in router.gateway.next_hops
                     if ipaddress.ip_address(h).version == 4), None)
    flows: list[Flow] = []
    for fip in fips:
        mac, address, fixed = fip.mac_address, fip.floating_ip_address, fip.fixed_ip_address
        flows.append(_arp_reply(ext_key, address, mac, cookie, stage_name="l2_lookup"))
        flows.append(Flow.make("l2_lookup", 100, {"metadata": ext_key, "dl_dst": mac},
                               [load(router.tunnel_key, "metadata"), resubmit("l3_input")], cookie))
        flows.append(Flow.make("l3_input", 95, {"metadata": router.tunnel_key, "dl_type": IPV4,
                                                "nw_dst": address},
                               ["dec_ttl", ct_nat(zone, f"dst={fixed}", "ip_routing")], cookie))
        if next_hop is None:
            continue
        flows.append(Flow.make(
            "ip_routing", _route_priority(0, True),
            {"metadata": router.tunnel_key, "dl_type": IPV4, "nw_src": fixed},
            [load(ext_key, "metadata"), load(ext_zone, "reg5"), f"set_field:{mac}->eth_src",
             f"set_field:{int(next_hop):#x}->reg1", ct_nat(zone, f"src={address}", "arp_resolve")],
            cookie))
        if dhcp_ofport is not None:  # the agent finds the next hop's MAC by ARP, as this FIP
            flows.append(Flow.make("l2_lookup", 105, {"metadata": ext_key, "dl_dst": mac,
                                                      "dl_type": ARP},
                                   [f"output:{dhcp_ofport}"], cookie))
            flows.append(Flow.make("native_dhcp", 111, {"reg6": dhcp_ofport, "dl_type": ARP,
                                                        "arp_op": 1, "dl_src": mac},
                                   [load(ext_key, "metadata"), resubmit("l2_lookup")], cookie))
    return flows


@functools.lru_cache(maxsize=RENDER_CACHE_SIZE)
def _router_flows(router: RouterPolicy, networks: tuple[tuple[str, int, int], ...],
                  fips: tuple[FloatingIpPolicy, ...] = (), external: tuple[int, int] | None = None,
                  nat_zone: int = 0, dhcp_ofport: int | None = None,
                  snat: SnatSide | None = None,
                  announcer: int | None = None) -> tuple[Flow, ...]:
    """A router's flows on a chassis holding some of its networks ((id, key, zone) each): its
    interface MACs lead local ports' packets into it, the responder answers for its addresses,
    echo requests to them are answered, transit packets are routed to a connected subnet or by
    an extra route. Interfaces on networks this chassis does not hold are left out."""
    cookie = cookie_for("router", router.id)
    key = router.tunnel_key
    held = {network_id: (net_key, zone) for network_id, net_key, zone in networks}
    flows: list[Flow] = []
    connected: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int, int, str]] = []
    local_only = f"0/{FLAG_FROM_OUTSIDE:#x}"  # never route what came from another chassis
    for interface in router.interfaces:
        if interface.network_id not in held:
            continue
        net_key, zone = held[interface.network_id]
        mac = interface.mac_address
        if announcer is not None:  # the agent's gratuitous ARPs for it: to the local ports only
            flows.append(Flow.make("native_dhcp", 112, {"reg6": announcer, "dl_type": ARP,
                                                        "dl_src": mac},
                                   [load(net_key, "metadata"), load(FLAG_FROM_OUTSIDE, "reg0"),
                                    resubmit("l2_lookup")], cookie))
        flows.append(Flow.make("l2_lookup", 100, {"metadata": net_key, "reg0": local_only, "dl_dst": mac},
                               [load(net_key, "xreg1"), load(key, "metadata"), resubmit("l3_input")],
                               cookie))
        if any(ipaddress.ip_address(a.ip_address).version == 6 for a in interface.fixed_ips):
            # its link-local address: the source of its advertisements, the instances' next hop
            flows.append(neighbour_reply(net_key, eui64_link_local(mac), mac, cookie, router=True))
        for address in interface.fixed_ips:
            ip = address.ip_address
            v6 = ipaddress.ip_address(ip).version == 6
            flows.append(neighbour_reply(net_key, ip, mac, cookie, router=True))
            to_router: dict[str, str | int] = {"metadata": key, "dl_type": IPV6 if v6 else IPV4,
                                               "ipv6_dst" if v6 else "nw_dst": ip}
            if v6:
                flows.append(Flow.make("l3_input", 100, {**to_router, "nw_proto": 58,
                                                         "icmpv6_type": 128}, _ECHO6_REPLY, cookie))
            else:
                flows.append(Flow.make("l3_input", 100, {**to_router, "nw_proto": 1, "icmp_type": 8},
                                       _ECHO_REPLY, cookie))
            flows.append(Flow.make("l3_input", 90, to_router, (), cookie))
            subnet = ipaddress.ip_network(address.cidr, strict=False)
            connected.append((subnet, net_key, zone, mac))
            dst = "ipv6_dst" if v6 else "nw_dst"
            next_hop = "->NXM_NX_XXREG2[]" if v6 else "->NXM_NX_REG1[]"
            flows.append(Flow.make(
                "ip_routing", _route_priority(subnet.prefixlen, True),
                {"metadata": key, "dl_type": IPV6 if v6 else IPV4, dst: str(subnet)},
                [load(net_key, "metadata"), load(zone, "reg5"), f"set_field:{mac}->eth_src",
                 ("move:NXM_NX_IPV6_DST[]" if v6 else "move:NXM_OF_IP_DST[]") + next_hop,
                 resubmit("arp_resolve")], cookie))
    for route in router.routes:
        nexthop = ipaddress.ip_address(route.nexthop)
        via = next(((n, z, m) for subnet, n, z, m in connected
                    if subnet.version == nexthop.version and nexthop in subnet), None)
        if via is None:
            continue  # the next hop is on no connected subnet held here: nothing to send it to
        net_key, zone, mac = via
        destination = ipaddress.ip_network(route.destination, strict=False)
        v6 = destination.version == 6
        flows.append(Flow.make(
            "ip_routing", _route_priority(destination.prefixlen, False),
            {"metadata": key, "dl_type": IPV6 if v6 else IPV4,
             "ipv6_dst" if v6 else "nw_dst": str(destination)},
            [load(net_key, "metadata"), load(zone, "reg5"), f"set_field:{mac}->eth_src",
             f"set_field:{int(nexthop):#x}->{'xxreg2' if v6 else 'reg1'}", resubmit("arp_resolve")],
            cookie))
    for eth in (IPV4, IPV6):
        flows.append(Flow.make("l3_input", 50, {"metadata": key, "dl_type": eth},
                               ["dec_ttl", resubmit("ip_routing")], cookie))
    if fips and external is not None:
        flows += _floating_ip_flows(router, fips, external, nat_zone, dhcp_ofport, cookie)
    if snat is not None:
        flows += _snat_flows(router, snat, cookie)
    return tuple(flows)


def _one_per_key(flows: tuple[Flow, ...]) -> tuple[Flow, ...]:
    """A unit's flows with those sharing a key merged (two rules of one group with the same
    match, two rules naming one remote group: their clauses share a match)."""
    by_key: dict[FlowKey, list[Flow]] = {}
    for flow in flows:
        by_key.setdefault(flow.key, []).append(flow)
    if len(by_key) == len(flows):
        return flows
    return tuple(merge_flows(same) for same in by_key.values())


def merge_flows(flows: Iterable[Flow]) -> Flow:
    """The one flow OVS can hold for flows with one key (stage, priority, match): identical
    actions keep the lowest cookie; conjunction clauses merge into one flow with every
    conjunction action (sorted), the lowest cookie and the lowest match order. Any other
    duplicate is a rendering bug (PipelineError). Independent of the order of `flows`."""
    merged: Flow | None = None
    for flow in flows:
        if merged is None:
            merged = flow
        elif merged.actions == flow.actions:
            merged = min(merged, flow, key=lambda f: (f.cookie, f.match))
        elif all(a.startswith("conjunction(") for a in merged.actions + flow.actions):
            merged = Flow(flow.stage, flow.priority, min(merged.match, flow.match),
                          tuple(dict.fromkeys(sorted(merged.actions + flow.actions))),
                          min(merged.cookie, flow.cookie))
        else:
            raise PipelineError(f"two flows with one match: {merged.describe()} / {flow.describe()}")
    if merged is None:
        raise ValueError("no flows to merge")
    return merged


# --- chassis-wide --------------------------------------------------------------------------------

def _static_flows() -> Iterable[Flow]:
    """Table-miss drops and the conntrack / neighbour-discovery scaffolding of the ACL stages."""
    for name in ("classify", "port_security_ingress_from_vif", "l2_lookup", "acl_egress",
                 "acl_ingress", "output", "l3_input", "ip_routing", "arp_resolve"):
        yield Flow.make(name, 0, {}, (), STATIC)
    yield Flow.make("arp_nd_responder", 0, {}, [resubmit("native_dhcp")], STATIC)
    yield _nd_reply_target_flow()
    # duplicate address detection probes (from ::) are never answered
    yield Flow.make("arp_nd_responder", 105, {"dl_type": IPV6, "nw_proto": 58,
                                              "icmpv6_type": ICMPV6_NS, "ipv6_src": "::"},
                    [resubmit("native_dhcp")], STATIC)
    yield Flow.make("native_dhcp", 0, {}, [resubmit("acl_egress")], STATIC)
    for stage_name, after, icmpv6_types, dhcp, stateless in (
            ("acl_egress", "l2_lookup", ICMPV6_EGRESS_ALLOWED, ("68", "67"), FLAG_STATELESS_EGRESS),
            ("acl_ingress", "output", ICMPV6_INGRESS_ALLOWED, ("67", "68"), FLAG_STATELESS_INGRESS)):
        go = [resubmit(after)]
        tracked = f"0/{stateless:#x}"  # conntrack only for ports with stateful groups
        if stage_name == "acl_egress":
            flag = f"{FLAG_NO_PORT_SECURITY:#x}/{FLAG_NO_PORT_SECURITY:#x}"
            yield Flow.make(stage_name, P_ACL_BYPASS, {"reg0": flag}, go, STATIC)
        yield Flow.make(stage_name, P_ACL_BYPASS, {"dl_type": ARP}, go, STATIC)
        yield Flow.make(stage_name, P_ACL_BYPASS, {"dl_type": IPV4, "nw_proto": 17, "tp_src": dhcp[0],
                                                   "tp_dst": dhcp[1]}, go, STATIC)
        for icmp_type in icmpv6_types:
            yield Flow.make(stage_name, P_ACL_BYPASS, {"dl_type": IPV6, "nw_proto": 58,
                                                       "icmpv6_type": icmp_type}, go, STATIC)
        for eth in (IPV4, IPV6):
            yield Flow.make(stage_name, P_ACL_CT, {"reg0": tracked, "dl_type": eth, "ct_state": "-trk"},
                            [ct_recirculate(stage_name)], STATIC)
        yield Flow.make(stage_name, P_ACL_STATE, {"reg0": tracked, "ct_state": "+inv+trk"}, (), STATIC)
        yield Flow.make(stage_name, P_ACL_STATE - 1, {"reg0": tracked, "ct_state": "+est-rel-inv+trk"},
                        go, STATIC)
        yield Flow.make(stage_name, P_ACL_STATE - 1, {"reg0": tracked, "ct_state": "+rel-inv+trk"},
                        go, STATIC)


# --- native DHCP ---------------------------------------------------------------------------------
#
# The agent listens on an internal port of br-int (the DHCP port).  A served port's DHCP request
# goes there with its UDP source port overwritten by the VIF's ofport, which tells the agent
# which port asked; the agent answers to UDP port <ofport>, and the reply flow below turns that
# back into port 68 while it picks the output port.  Nothing else reaches the DHCP port, and it
# can reach nothing but local VIFs (the output stage knows only those).

def dhcp_served(port: PortPolicy, network: NetworkPolicy) -> bool:
    """Whether the agent answers this port's DHCPv4: it has an IPv4 fixed IP on a subnet with
    enable_dhcp and a DHCP server address (the network's DHCP port)."""
    on = {f.subnet_id for f in port.fixed_ips}
    return any(s.id in on and s.ip_version == 4 and s.enable_dhcp and s.dhcp_server_ip
               and s.dhcp_server_mac for s in network.subnets)


def _dhcp_port_flows(dhcp_ofport: int) -> list[Flow]:
    return [
        Flow.make("classify", 100, {"in_port": dhcp_ofport},
                  [load(dhcp_ofport, "reg6"), resubmit("native_dhcp")], STATIC),
        Flow.make("native_dhcp", 110, {"reg6": dhcp_ofport, "dl_type": IPV4, "nw_proto": 17,
                                       "tp_src": 67},
                  ["move:NXM_OF_UDP_DST[]->NXM_NX_REG7[0..15]", "set_field:68->udp_dst",
                   resubmit("output")], STATIC),
        Flow.make("native_dhcp", 105, {"reg6": dhcp_ofport}, (), STATIC),
    ]


def _dhcp_request_flow(port: PortPolicy, ofport: int, dhcp_ofport: int) -> Flow:
    return Flow.make("native_dhcp", 100, {"reg6": ofport, "dl_type": IPV4, "nw_proto": 17,
                                          "tp_src": 68, "tp_dst": 67},
                     ["move:NXM_NX_REG6[0..15]->NXM_OF_UDP_SRC[]", f"output:{dhcp_ofport}"],
                     cookie_for("port", port.id))


def key_mac(key: int) -> str:
    """The MAC that carries a VIF's key (its ofport, 16 bits) between the pipeline and the
    agent's DHCP port, in router solicitations and their advertisements."""
    return f"0a:00:00:00:{key >> 8 & 0xFF:02x}:{key & 0xFF:02x}"


def _router_solicitation_flows(port: PortPolicy, ofport: int, dhcp_ofport: int) -> tuple[Flow, ...]:
    """The port's router solicitations go to the agent's DHCP port addressed to its key; the
    agent's advertisement addressed to that key goes to the port, with the port's MAC."""
    cookie = cookie_for("port", port.id)
    icmpv6: dict[str, str | int] = {"dl_type": IPV6, "nw_proto": 58}
    return (
        Flow.make("native_dhcp", 100, {"reg6": ofport, **icmpv6, "icmpv6_type": ICMPV6_RS},
                  [f"set_field:{key_mac(ofport)}->eth_dst", f"output:{dhcp_ofport}"], cookie),
        Flow.make("native_dhcp", 110, {"reg6": dhcp_ofport, "dl_dst": key_mac(ofport), **icmpv6,
                                       "icmpv6_type": ICMPV6_RA},
                  [f"set_field:{port.mac_address}->eth_dst", load(ofport, "reg7"),
                   resubmit("output")], cookie),
    )


def _dhcp_server_arp_flows(network: NetworkPolicy) -> list[Flow]:
    """ARP answers for the DHCP server address (a client renewing by unicast asks for it)."""
    cookie = cookie_for("network", network.id)
    return [neighbour_reply(network.tunnel_key, s.dhcp_server_ip, s.dhcp_server_mac, cookie)
            for s in network.subnets
            if s.ip_version == 4 and s.enable_dhcp and s.dhcp_server_ip and s.dhcp_server_mac]


# --- per network ---------------------------------------------------------------------------------

def _vni(network: NetworkPolicy) -> int:
    return network.segmentation_id if network.segmentation_id is not None else network.tunnel_key


def _zone(network: NetworkPolicy, ct_zones: Mapping[str, int] | None) -> int:
    zone = ct_zones.get(network.id, 0) if ct_zones is not None else network.tunnel_key
    if not 0 < zone < 1 << 16:
        raise PipelineError(f"network {network.id}: conntrack zone {zone} must be 1..65535")
    return zone


def _network_flows(network: NetworkPolicy, members: Sequence[int],
                   tunnel_ofports: Mapping[str, int], zone: int,
                   provider_ofports: Mapping[str, int] | None = None) -> list[Flow]:
    if network.network_type in ("geneve", "vxlan"):
        flows = _overlay_flows(network, members, tunnel_ofports, zone)
    else:
        flows = _provider_flows(network, members, provider_ofports or {}, zone)
    # ARP / ND responder for the remote ports' addresses
    cookie = cookie_for("network", network.id)
    for remote in sorted(network.remote_ports, key=lambda r: r.id):
        for address in remote.ip_addresses:
            flows.append(neighbour_reply(network.tunnel_key, address, remote.mac_address, cookie))
    return flows


def _to_locals(members: Sequence[int]) -> list[str]:
    """Actions that copy the frame to every local port of the network (through `output`), given
    their ofports in port id order."""
    actions: list[str] = []
    for ofport in members:
        actions += [load(ofport, "reg7"), resubmit("output")]
    return actions


def _from_outside_flows(key: int, to_locals: list[str], cookie: int) -> list[Flow]:
    """From a tunnel or a provider network: broadcast/multicast to the local ports only; unknown
    unicast is dropped (the sender's side flooded it everywhere already)."""
    outside = f"{FLAG_FROM_OUTSIDE:#x}/{FLAG_FROM_OUTSIDE:#x}"
    return [Flow.make("l2_lookup", 20, {"metadata": key, "reg0": outside, "dl_dst": BROADCAST_MASK},
                      to_locals, cookie),
            Flow.make("l2_lookup", 15, {"metadata": key, "reg0": outside}, (), cookie)]


def _overlay_flows(network: NetworkPolicy, members: Sequence[int],
                   tunnel_ofports: Mapping[str, int], zone: int) -> list[Flow]:
    """A geneve / vxlan network: other chassis are reached through tunnels (VNI in tun_id)."""
    cookie = cookie_for("network", network.id)
    key, vni = network.tunnel_key, _vni(network)
    flows: list[Flow] = []
    # from every peer with a tunnel here: besides the chassis holding ports of the network, a
    # chassis that routes into it (distributed routing) sends its packets straight in
    peers = sorted(tunnel_ofports)
    from_tunnel = [load(key, "metadata"), load(zone, "reg5"), load(FLAG_FROM_OUTSIDE, "reg0"),
                   resubmit("l2_lookup")]
    for peer in peers:
        flows.append(Flow.make("classify", 100, {"in_port": tunnel_ofports[peer], "tun_id": vni},
                               from_tunnel, cookie))
    # remote MACs: straight into the tunnel of their chassis (never back into a tunnel)
    for remote in sorted(network.remote_ports, key=lambda r: r.id):
        if remote.chassis in tunnel_ofports:
            flows.append(Flow.make(
                "l2_lookup", 100,
                {"metadata": key, "reg0": f"0/{FLAG_FROM_OUTSIDE:#x}", "dl_dst": remote.mac_address},
                [load(vni, "tun_id"), f"output:{tunnel_ofports[remote.chassis]}"], cookie))
    # broadcast, multicast and unknown unicast: every local port (+ the flood chassis if local)
    to_locals = _to_locals(members)
    to_tunnels = [load(vni, "tun_id")] if network.flood_chassis else []
    to_tunnels += [f"output:{tunnel_ofports[c]}" for c in sorted(set(network.flood_chassis))
                   if c in tunnel_ofports]
    flows += _from_outside_flows(key, to_locals, cookie)
    flows.append(Flow.make("l2_lookup", 10, {"metadata": key}, to_locals + to_tunnels, cookie))
    return flows


def provider_vlan(network: NetworkPolicy) -> int | None:
    """The VLAN id of a vlan network's frames on its physical network (None: untagged, i.e. a
    flat network, or a vlan network without a valid VLAN id, which is never connected)."""
    if network.network_type == "vlan" and network.segmentation_id is not None \
            and 1 <= network.segmentation_id <= 4094:
        return network.segmentation_id
    return None


def _provider_flows(network: NetworkPolicy, members: Sequence[int],
                    provider_ofports: Mapping[str, int], zone: int) -> list[Flow]:
    """A flat / vlan network: other chassis are reached through the physical network, out of the
    patch port to the provider bridge of its bridge mapping (tagged with the VLAN id for vlan);
    no tunnels.  Without a patch port for its physical network here, only the local ports of
    the network reach each other."""
    cookie = cookie_for("network", network.id)
    key = network.tunnel_key
    vid = provider_vlan(network)
    patch = provider_ofports.get(network.physical_network or "")
    if network.network_type == "vlan" and vid is None:
        patch = None  # no usable VLAN id: never leak its frames untagged
    to_locals = _to_locals(members)
    if patch is None:
        return [Flow.make("l2_lookup", 10, {"metadata": key}, to_locals, cookie)]
    flows: list[Flow] = []
    # from the physical network: the VLAN id (or no tag, flat) -> network; strip the tag
    from_provider = [load(key, "metadata"), load(zone, "reg5"), load(FLAG_FROM_OUTSIDE, "reg0"),
                     resubmit("l2_lookup")]
    if vid is not None:
        flows.append(Flow.make("classify", 100, {"in_port": patch, "dl_vlan": vid},
                               ["pop_vlan", *from_provider], cookie))
    else:
        flows.append(Flow.make("classify", 100, {"in_port": patch, "vlan_tci": "0x0000/0x1fff"},
                               from_provider, cookie))
    # to the physical network: tag last, after the local copies (they must stay untagged)
    to_provider = ([] if vid is None else ["push_vlan:0x8100", f"set_field:{0x1000 | vid}->vlan_vid"])
    to_provider.append(f"output:{patch}")
    for remote in sorted(network.remote_ports, key=lambda r: r.id):
        flows.append(Flow.make(
            "l2_lookup", 100,
            {"metadata": key, "reg0": f"0/{FLAG_FROM_OUTSIDE:#x}", "dl_dst": remote.mac_address},
            to_provider, cookie))
    flows += _from_outside_flows(key, to_locals, cookie)
    flows.append(Flow.make("l2_lookup", 10, {"metadata": key}, to_locals + to_provider, cookie))
    return flows


def neighbour_reply(network_key: int, ip: str, mac: str, cookie: int, router: bool = False) -> Flow:
    """The responder's answer for `ip` at `mac`: an ARP reply (IPv4) or a neighbour
    advertisement (IPv6; with the router flag for a router's address)."""
    if ipaddress.ip_address(ip).version == 4:
        return _arp_reply(network_key, ip, mac, cookie)
    return _nd_reply(network_key, ip, mac, cookie, router)


def _nd_reply(network_key: int, ip: str, mac: str, cookie: int, router: bool = False) -> Flow:
    """Turn a neighbour solicitation for `ip` into the solicited advertisement from `mac`, back
    out of the port it came in: swap the addresses, hop limit 255, type NA with flags S|O (not a
    router), the source link-layer address option becomes the target link-layer address option
    (type 2). OVS writes ND options by the packet's type when it commits the actions, so the
    option's address is set in a second pass, as an NA (`_nd_reply_target_flow`, flag bit 2).
    DAD probes (from ::) never get here: a higher-priority flow passes them on, so an address
    is never reported duplicate."""
    return Flow.make("arp_nd_responder", 100,
                     {"metadata": network_key, "dl_type": IPV6, "nw_proto": 58,
                      "icmpv6_type": ICMPV6_NS, "nd_target": ip}, [
                         "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]", f"set_field:{mac}->eth_src",
                         "move:NXM_NX_IPV6_SRC[]->NXM_NX_IPV6_DST[]", f"set_field:{ip}->ipv6_src",
                         "set_field:255->nw_ttl", f"set_field:{ICMPV6_NA}->icmpv6_type",
                         "set_field:2->nd_options_type",
                         f"set_field:{0xE0000000 if router else 0x60000000:#x}->nd_reserved",
                         f"set_field:{FLAG_ND_REPLY:#x}/{FLAG_ND_REPLY:#x}->reg0",
                         resubmit("arp_nd_responder")], cookie)


def _nd_reply_target_flow() -> Flow:
    """Second pass of every ND answer: the target link-layer address := the new source MAC."""
    flag = f"{FLAG_ND_REPLY:#x}/{FLAG_ND_REPLY:#x}"
    return Flow.make("arp_nd_responder", 120, {"reg0": flag, "dl_type": IPV6, "nw_proto": 58,
                                               "icmpv6_type": ICMPV6_NA},
                     ["move:NXM_OF_ETH_SRC[]->NXM_NX_ND_TLL[]", "IN_PORT"], STATIC)


def _arp_reply(network_key: int, ip: str, mac: str, cookie: int,
               stage_name: str = "arp_nd_responder") -> Flow:
    """Turn an ARP request for `ip` into the reply from `mac`, back out of the port it came in."""
    return Flow.make(stage_name, 100 if stage_name == "arp_nd_responder" else 110,
                     {"metadata": network_key, "dl_type": ARP, "arp_op": 1, "arp_tpa": ip}, [
                         "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]", f"set_field:{mac}->eth_src",
                         "set_field:2->arp_op", "move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[]",
                         f"set_field:{mac}->arp_sha", "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[]",
                         f"set_field:{ip}->arp_spa", "IN_PORT"], cookie)


# --- per local port ------------------------------------------------------------------------------

def eui64_link_local(mac: str) -> str:
    """The EUI-64 link-local address of `mac` (an interface's, as the kernel makes it)."""
    octets = [int(b, 16) for b in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    return str(ipaddress.IPv6Address(bytes([0xFE, 0x80, *[0] * 6, *eui])))


@functools.lru_cache(maxsize=RENDER_CACHE_SIZE)
def _port_flows(port: PortPolicy, net: int, ofport: int, zone: int) -> tuple[Flow, ...]:
    """Everything a local port needs on its own (network key `net`): memoised, so an agent
    re-renders only the ports whose document, ofport or zone changed."""
    cookie = cookie_for("port", port.id)
    flags = 0 if port.port_security_enabled else FLAG_NO_PORT_SECURITY
    first = "port_security_ingress_from_vif" if port.port_security_enabled else "arp_nd_responder"
    flows = [
        Flow.make("classify", 100, {"in_port": ofport},
                  [load(net, "metadata"), load(zone, "reg5"), load(ofport, "reg6"), load(flags, "reg0"),
                   resubmit(first)], cookie),
        Flow.make("l2_lookup", 100, {"metadata": net, "dl_dst": port.mac_address},
                  [load(ofport, "reg7"), resubmit("acl_ingress")], cookie),
        Flow.make("output", 100, {"reg7": ofport}, [f"output:{ofport}"], cookie),
    ]
    if not port.port_security_enabled:
        flows.append(Flow.make("acl_ingress", P_ACL_BYPASS, {"reg7": ofport}, [resubmit("output")], cookie))
    addresses = [(f.ip_address, port.mac_address) for f in port.fixed_ips]
    # the responder answers for the port's fixed IPs (not to the port itself), never for its
    # allowed address pairs: a VIP moves between ports (VRRP) and its holder answers for it
    for fixed in port.fixed_ips:
        ip = fixed.ip_address
        flows.append(neighbour_reply(net, ip, port.mac_address, cookie))
        own: dict[str, str | int] = (
            {"reg6": ofport, "dl_type": ARP, "arp_tpa": ip} if ipaddress.ip_address(ip).version == 4
            else {"reg6": ofport, "dl_type": IPV6, "nw_proto": 58, "icmpv6_type": ICMPV6_NS,
                  "nd_target": ip})
        flows.append(Flow.make("arp_nd_responder", 110, own, [resubmit("native_dhcp")], cookie))
    addresses += [(p.ip_address, p.mac_address.lower()) for p in port.allowed_address_pairs]
    if port.port_security_enabled:
        flows += _port_security_flows(port, ofport, addresses, cookie)
    return tuple(flows)


def _port_security_flows(port: PortPolicy, ofport: int, addresses: list[tuple[str, str]],
                         cookie: int) -> list[Flow]:
    ok = [resubmit("arp_nd_responder")]
    mac = port.mac_address
    flows = [
        # DHCP discover / request from 0.0.0.0
        Flow.make("port_security_ingress_from_vif", 100,
                  {"reg6": ofport, "dl_src": mac, "dl_type": IPV4, "nw_proto": 17, "nw_src": "0.0.0.0",
                   "tp_src": 68, "tp_dst": 67}, ok, cookie),
        # IPv6 DAD (NS) and MLD reports from ::
        *(Flow.make("port_security_ingress_from_vif", 100,
                    {"reg6": ofport, "dl_src": mac, "dl_type": IPV6, "nw_proto": 58, "ipv6_src": "::",
                     "icmpv6_type": t}, ok, cookie) for t in (ICMPV6_NS, ICMPV6_MLD2)),
        # no router advertisements from a VM; neighbour advertisements only for its own addresses
        *(Flow.make("port_security_ingress_from_vif", 105,
                    {"reg6": ofport, "dl_type": IPV6, "nw_proto": 58, "icmpv6_type": t}, (), cookie)
          for t in (ICMPV6_RA, ICMPV6_NA)),
    ]
    v6 = [(eui64_link_local(mac), mac)]
    for ip, pair_mac in addresses:
        network = ipaddress.ip_network(ip, strict=False)
        text = ip if "/" in ip else str(network.network_address)
        if network.version == 4:
            flows.append(Flow.make("port_security_ingress_from_vif", 100,
                                   {"reg6": ofport, "dl_src": pair_mac, "dl_type": IPV4, "nw_src": text},
                                   ok, cookie))
            flows.append(Flow.make("port_security_ingress_from_vif", 100,
                                   {"reg6": ofport, "dl_src": pair_mac, "dl_type": ARP, "arp_spa": text,
                                    "arp_sha": pair_mac}, ok, cookie))
        else:
            v6.append((text, pair_mac))
    for ip, pair_mac in dict.fromkeys(v6):
        flows.append(Flow.make("port_security_ingress_from_vif", 100,
                               {"reg6": ofport, "dl_src": pair_mac, "dl_type": IPV6, "ipv6_src": ip},
                               ok, cookie))
        flows.append(Flow.make("port_security_ingress_from_vif", 110,
                               {"reg6": ofport, "dl_src": pair_mac, "dl_type": IPV6, "nw_proto": 58,
                                "icmpv6_type": ICMPV6_NA, "nd_target": ip}, ok, cookie))
    return flows


# --- security groups -----------------------------------------------------------------------------

def conj_id(rule_id: str) -> int:
    """The conjunction id of a rule (deterministic, 31 bits, non-zero)."""
    return (int.from_bytes(hashlib.sha256(rule_id.encode()).digest()[:4], "big") & 0x7FFFFFFF) or 1


def port_range_masks(low: int, high: int) -> list[str]:
    """`low..high` as the fewest `value/mask` matches (16-bit ports)."""
    out: list[str] = []
    while low <= high:
        size = low & -low if low else 1 << 16
        while size > high - low + 1:
            size >>= 1
        out.append(f"{low:#x}/{0xFFFF & ~(size - 1):#x}" if size > 1 else str(low))
        low += size
    return out


def _rule_matches(rule: SecurityGroupRulePolicy) -> list[dict[str, str | int]]:
    """Clause 2 of a rule: its protocol / ports / remote prefix, as one or more matches."""
    v6 = rule.ethertype == "IPv6"
    base: dict[str, str | int] = {"dl_type": IPV6 if v6 else IPV4}
    protocol = rule.protocol
    if v6 and protocol == 1:
        protocol = 58  # Neutron accepts "icmp" for IPv6 rules and means ICMPv6
    if protocol is not None:
        base["nw_proto"] = protocol
    if rule.remote_ip_prefix is not None:
        prefix = ipaddress.ip_network(rule.remote_ip_prefix, strict=False)
        if prefix.prefixlen:
            side = "src" if rule.direction == "ingress" else "dst"
            base[f"ipv6_{side}" if v6 else f"nw_{side}"] = str(prefix)
    if protocol in _L4_PROTOCOLS and rule.port_range_min is not None:
        high = rule.port_range_max if rule.port_range_max is not None else rule.port_range_min
        if (rule.port_range_min, high) != (1, 65535) and (rule.port_range_min, high) != (0, 65535):
            return [{**base, "tp_dst": m} for m in port_range_masks(rule.port_range_min, high)]
    if protocol in (1, 58) and rule.port_range_min is not None:
        prefix_name = "icmpv6" if protocol == 58 else "icmp"
        base[f"{prefix_name}_type"] = rule.port_range_min
        if rule.port_range_max is not None:
            base[f"{prefix_name}_code"] = rule.port_range_max
    return [base]


@functools.lru_cache(maxsize=RENDER_CACHE_SIZE)
def _group_rule_flows(group: SecurityGroupPolicy) -> tuple[Flow, ...]:
    """Clause 2 of each rule of the group (its match) and its conjunction flow (commit, go on)."""
    flows: list[Flow] = []
    cookie = cookie_for("security_group", group.id)
    for rule in group.rules:
        cid = conj_id(rule.id)
        stage_name = "acl_ingress" if rule.direction == "ingress" else "acl_egress"
        clauses = 3 if rule.remote_group_id else 2
        for match in _rule_matches(rule):
            flows.append(Flow.make(stage_name, P_ACL_RULE, match, [conjunction(cid, 2, clauses)], cookie))
        after = resubmit("output" if rule.direction == "ingress" else "l2_lookup")
        eth = IPV6 if rule.ethertype == "IPv6" else IPV4  # ct() needs the IP prerequisite
        if group.stateful:  # a new connection: commit it, its replies pass as established
            flows.append(Flow.make(stage_name, P_ACL_RULE, {"conj_id": cid, "dl_type": eth,
                                                            "ct_state": "+new-est+trk"},
                                   [ct_commit(), after], cookie))
        else:  # stateless: this packet only
            flows.append(Flow.make(stage_name, P_ACL_RULE, {"conj_id": cid, "dl_type": eth},
                                   [after], cookie))
    return tuple(flows)


@functools.lru_cache(maxsize=RENDER_CACHE_SIZE)
def _port_clause_flows(port_id: str, ofport: int,
                       groups: tuple[SecurityGroupPolicy, ...]) -> tuple[Flow, ...]:
    """Clause 1 of every rule of the port's groups: one flow per direction. A port whose groups
    are all stateless also gets its packets marked so that the ACL stages skip conntrack for
    them: every packet, replies included, must then match a rule."""
    flows: list[Flow] = []
    cookie = cookie_for("port", port_id)
    if groups and not any(g.stateful for g in groups):
        for stage_name, reg, flag in (("acl_egress", "reg6", FLAG_STATELESS_EGRESS),
                                      ("acl_ingress", "reg7", FLAG_STATELESS_INGRESS)):
            flows.append(Flow.make(stage_name, P_ACL_CT + 1, {reg: ofport, "reg0": f"0/{flag:#x}"},
                                   [f"set_field:{flag:#x}/{flag:#x}->reg0", resubmit(stage_name)],
                                   cookie))
    for direction, stage_name, reg in (("egress", "acl_egress", "reg6"),
                                       ("ingress", "acl_ingress", "reg7")):
        actions = [conjunction(conj_id(r.id), 1, 3 if r.remote_group_id else 2)
                   for g in groups for r in g.rules if r.direction == direction]
        if actions:
            flows.append(Flow.make(stage_name, P_ACL_RULE, {reg: ofport}, dict.fromkeys(actions), cookie))
    return tuple(flows)


@functools.lru_cache(maxsize=RENDER_CACHE_SIZE)
def _address_set_flows(address_set: AddressSetPolicy,
                       rules: tuple[SecurityGroupRulePolicy, ...]) -> tuple[Flow, ...]:
    """Clause 3 of the rules naming the group as remote: one flow per address and rule."""
    flows: list[Flow] = []
    cookie = cookie_for("address_set", address_set.id)
    for rule in rules:
        v6 = rule.ethertype == "IPv6"
        side = "src" if rule.direction == "ingress" else "dst"
        stage_name = "acl_ingress" if rule.direction == "ingress" else "acl_egress"
        for address in address_set.ipv6 if v6 else address_set.ipv4:
            flows.append(Flow.make(stage_name, P_ACL_RULE,
                                   {"dl_type": IPV6 if v6 else IPV4,
                                    (f"ipv6_{side}" if v6 else f"nw_{side}"): address},
                                   [conjunction(conj_id(rule.id), 3, 3)], cookie))
    return tuple(flows)
