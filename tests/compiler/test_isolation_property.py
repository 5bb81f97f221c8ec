"""Isolation, as a property of compiler + renderer: for random intents (several projects, each
with networks, some shared; ports of all projects bound across a few chassis; overlapping
subnets, reused MAC addresses, security groups that name each other), no chassis's flows let a
frame that entered on one network leave on another. So ports of different projects exchange
packets only when they are on one (shared) network: the network is the only boundary, and
project membership plays no part in the data path.

How it is checked, on the flows `render_chassis` makes for each chassis from
`compile_chassis` (every bound port plugged at a made-up ofport, a tunnel to every other
chassis, a patch port per bridge mapping, the agent's DHCP port):

* entry: every `classify` flow that sets the network key (metadata) matches an in_port that is
  a local VIF (and sets its port's network), a tunnel (in_port + tun_id: one network per
  (peer, VNI)) or a provider patch port (in_port + VLAN id / untagged: one network per
  (physnet, VLAN)); nothing else sets metadata, anywhere in the pipeline;
* delivery: the only flows that choose a local VIF as output (write reg7) are `l2_lookup` flows
  that match the network key and choose only VIFs of that network (and the reply flow of the
  agent's own DHCP port); the only flows that output to a VIF are `output` flows `reg7=N ->
  output:N`; `IN_PORT` (back to the sender) only in the ARP responder;
* exits: a flow that outputs to a tunnel matches the network key and sets tun_id to that
  network's VNI first, and the peer maps (this chassis, that VNI) to the same network or to
  nothing; a flow that outputs to a patch port matches the network key and tags frames with the
  network's VLAN (none for flat), and every chassis with that physnet maps it back to the same
  network or to nothing;
* ARP / ND answers: only `arp_nd_responder` flows write a source MAC, and a flow of a network
  writes only a MAC of that network's ports (or of its DHCP server).

* routers: a frame changes network only through a router held here that has interfaces on
  both networks: `l2_lookup` hands a frame of network N addressed to the MAC of router R's
  interface on N to R (metadata := R's key), and `ip_routing` of R hands it only to one of R's
  interface networks (metadata := that network's key), with R's interface MAC on it as source;
  `arp_resolve` of a network addresses it only to a port of that network;
* floating IPs: on a router's gateway network only that router's floating IP MACs lead into it
  (and the router leaves there only with them); ARP answers from `l2_lookup` carry only those
  MACs; the agent's ARP requests enter that network only as those MACs.

Together: a frame's network is fixed on entry and changes only through a router joining both
networks, and every way out of the pipeline is for the network the frame is on. So ports of
different projects exchange packets only on a shared network or through a router with
interfaces on both their networks.

Left out of the random intents: a geneve and a vxlan network with the same segmentation id,
which would be one VNI on the one tunnel port between two chassis. The API never makes one
(geneve and vxlan share one VNI space: tests/api/test_networks.py).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.builder import IntentBuilder
from neutrino.compiler import Intent, compile_chassis, tunnel_key
from neutrino.compiler.intent import (
    ChassisRow,
    FloatingIpRow,
    NetworkRow,
    PortRow,
    RouterPortRow,
    RouterRow,
    RuleRow,
    SecurityGroupRow,
    SubnetRow,
)
from neutrino.pipeline.flows import Flow
from neutrino.pipeline.render import render_chassis
from neutrino.policy.model import NetworkPolicy, PortPolicy, RouterPolicy

PROJECTS = ("pA", "pB", "pC")
CHASSIS = ("c0", "c1", "c2")
PHYSNETS = ("physA", "physB")
MACS = tuple(f"fa:16:3e:00:00:{i:02x}" for i in range(1, 5))
CIDR = "10.0.0.0/24"  # every network has this subnet: addresses repeat across networks
DHCP_OFPORT = 99
RENDER_TAKES_PROVIDERS = "provider_ofports" in inspect.signature(render_chassis).parameters

_SET = re.compile(r"set_field:(0x[0-9a-f]+|\d+)->(\w+)")
_SET_MAC = re.compile(r"set_field:([0-9a-f]{2}(?::[0-9a-f]{2}){5})->eth_src")
_SET_DST_MAC = re.compile(r"set_field:([0-9a-f]{2}(?::[0-9a-f]{2}){5})->eth_dst")


# --- random intents ------------------------------------------------------------------------------

@st.composite
def segments(draw: st.DrawFn) -> list[tuple[str, str | None, int | None]]:
    """2-4 network segments as the API allows them: (type, physnet, segmentation id), unique per
    (type, physnet, id), one flat network per physnet; VNIs distinct across geneve and vxlan."""
    kinds = st.one_of(
        st.tuples(st.sampled_from(("geneve", "vxlan")), st.none(), st.integers(1, 6)),
        st.tuples(st.just("vlan"), st.sampled_from(PHYSNETS), st.integers(1, 3)),
        st.tuples(st.just("flat"), st.sampled_from(PHYSNETS), st.none()))
    return draw(st.lists(kinds, min_size=2, max_size=4,
                         unique_by=lambda s: ("overlay", s[2]) if s[1] is None else s))


@st.composite
def intents(draw: st.DrawFn) -> Intent:
    networks: dict[str, NetworkRow] = {}
    shared: set[str] = set()
    for i, (kind, physnet, seg) in enumerate(draw(segments())):
        network_id = f"n{i}"
        networks[network_id] = NetworkRow(network_id, kind, seg, physnet,
                                          project_id=draw(st.sampled_from(PROJECTS)))
        if draw(st.booleans()):
            shared.add(network_id)
    subnets = {f"s-{n}": SubnetRow(f"s-{n}", n, CIDR, 4, gateway_ip="10.0.0.1") for n in networks}
    groups = {f"g-{p}": SecurityGroupRow(f"g-{p}", project_id=p) for p in PROJECTS}
    rules = {}
    for i in range(draw(st.integers(0, 5))):
        rules[f"r{i}"] = RuleRow(
            f"r{i}", draw(st.sampled_from(sorted(groups))), draw(st.sampled_from(("ingress", "egress"))),
            "IPv4", protocol=draw(st.sampled_from((None, "tcp", "icmp"))),
            remote_group_id=draw(st.none() | st.sampled_from(sorted(groups))))
    ports: dict[str, PortRow] = {}
    used_macs: dict[str, set[str]] = {n: set() for n in networks}
    hosts_per_network: dict[str, int] = dict.fromkeys(networks, 10)
    for network_id in networks:  # a DHCP port (unbound) on some networks
        if draw(st.booleans()):
            mac = draw(st.sampled_from(MACS))
            used_macs[network_id].add(mac)
            ports[f"dhcp-{network_id}"] = PortRow(
                f"dhcp-{network_id}", network_id, mac, ((f"s-{network_id}", "10.0.0.2"),),
                device_owner="network:dhcp", project_id=networks[network_id].project_id)
    for i in range(draw(st.integers(1, 8))):
        project = draw(st.sampled_from(PROJECTS))
        allowed = sorted(n for n, row in networks.items() if row.project_id == project or n in shared)
        if not allowed:
            continue
        network_id = draw(st.sampled_from(allowed))
        free = [m for m in MACS if m not in used_macs[network_id]]  # unique per network (API)
        if not free:
            continue
        mac = draw(st.sampled_from(free))
        used_macs[network_id].add(mac)
        hosts_per_network[network_id] += 1
        address = f"10.0.0.{hosts_per_network[network_id]}"  # unique per network (IPAM)
        security = draw(st.booleans())
        pairs = ((f"10.0.0.{100 + i}", draw(st.sampled_from((mac, *MACS)))),) \
            if security and draw(st.booleans()) else ()
        ports[f"p{i}"] = PortRow(
            f"p{i}", network_id, mac, ((f"s-{network_id}", address),),
            host=draw(st.sampled_from(("", *CHASSIS))),
            security_group_ids=tuple(sorted(draw(st.frozensets(st.sampled_from(sorted(groups)),
                                                              max_size=2)))) if security else (),
            port_security_enabled=security, allowed_address_pairs=pairs,
            admin_state_up=draw(st.booleans()), device_owner="compute:nova", project_id=project)
    chassis = {name: ChassisRow(name, f"192.0.2.{i + 1}", tuple(
        sorted((p, f"br-{p}") for p in draw(st.frozensets(st.sampled_from(PHYSNETS))))))
        for i, name in enumerate(CHASSIS)}
    # routers: each with interfaces on 1-3 networks, on a second subnet of each (10.<n>.0.0/24,
    # distinct per network: one router never joins overlapping subnets), unbound ports
    routers: dict[str, RouterRow] = {}
    router_ports: dict[str, RouterPortRow] = {}
    floatingips: dict[str, FloatingIpRow] = {}
    order = sorted(networks)
    for r in range(draw(st.integers(0, 2))):
        router_id = f"r{r}"
        routers[router_id] = RouterRow(router_id, admin_state_up=draw(st.booleans()) or r == 0,
                                       project_id=draw(st.sampled_from(PROJECTS)))
        joined = draw(st.lists(st.sampled_from(order), min_size=1, max_size=3, unique=True))
        for network_id in joined:
            index = order.index(network_id) + 1
            subnets.setdefault(f"s2-{network_id}", SubnetRow(
                f"s2-{network_id}", network_id, f"10.{index}.0.0/24", 4, gateway_ip=f"10.{index}.0.1"))
            port_id = f"rp-{router_id}-{network_id}"
            ports[port_id] = PortRow(
                port_id, network_id, f"fa:16:3e:ff:{r:02x}:{index:02x}",
                ((f"s2-{network_id}", f"10.{index}.0.{1 + r}"),),
                device_owner="network:router_interface_distributed", device_id=router_id,
                project_id=routers[router_id].project_id)
            router_ports[port_id] = RouterPortRow(port_id, router_id,
                                                  "network:router_interface_distributed")
        # a gateway on a flat / vlan network (172.16.<n>.0/24), and floating IPs there for
        # some bound ports of the router's networks
        externals = [n for n in order if networks[n].network_type in ("flat", "vlan")]
        if not externals or not draw(st.booleans()):
            continue
        external = draw(st.sampled_from(externals))
        index = order.index(external) + 1
        subnets.setdefault(f"s3-{external}", SubnetRow(
            f"s3-{external}", external, f"172.16.{index}.0/24", 4, gateway_ip=f"172.16.{index}.1"))
        gateway_id = f"gw-{router_id}"
        ports[gateway_id] = PortRow(gateway_id, external, f"fa:16:3e:fe:{r:02x}:{index:02x}",
                                    ((f"s3-{external}", f"172.16.{index}.{2 + r}"),),
                                    device_owner="network:router_gateway", device_id=router_id)
        router_ports[gateway_id] = RouterPortRow(gateway_id, router_id, "network:router_gateway")
        routers[router_id] = replace(routers[router_id], gw_port_id=gateway_id)
        candidates = sorted(p.id for p in ports.values() if p.host and p.network_id in joined
                            and p.device_owner == "compute:nova")
        for k, fixed in enumerate(draw(st.lists(st.sampled_from(candidates), unique=True,
                                                max_size=2)) if candidates else []):
            fip_id, fip_port = f"fip-{router_id}-{k}", f"fp-{router_id}-{k}"
            address = f"172.16.{index}.{50 + 10 * r + k}"
            ports[fip_port] = PortRow(fip_port, external, f"fa:16:3e:fd:{r:02x}:{k:02x}",
                                      ((f"s3-{external}", address),),
                                      device_owner="network:floatingip", device_id=fip_id)
            floatingips[fip_id] = FloatingIpRow(fip_id, external, fip_port, address, fixed,
                                                ports[fixed].fixed_ips[0][1], router_id)
    return Intent(networks=networks, subnets=subnets, ports=ports, security_groups=groups,
                  rules=rules, chassis=chassis, routers=routers, router_ports=router_ports,
                  floatingips=floatingips)


# --- one chassis, rendered -----------------------------------------------------------------------

@dataclass
class Rendered:
    name: str
    flows: list[Flow]
    vif_port: dict[int, PortPolicy]  # ofport -> local port
    tunnel_peer: dict[int, str]  # ofport -> peer chassis
    patch_physnet: dict[int, str]  # ofport -> physnet
    networks: dict[int, NetworkPolicy]  # network key -> network
    routers: dict[int, RouterPolicy] = field(default_factory=dict)  # router key -> router
    #: (peer or physnet, VNI or VLAN id) -> the network key its classify flow sets
    entries: dict[tuple[str, int | None], int] = field(default_factory=dict)


def render(intent: Intent, name: str) -> Rendered:
    documents = compile_chassis(intent, name)
    ports = sorted((d for d in documents.values() if isinstance(d, PortPolicy)), key=lambda p: p.id)
    networks = [d for d in documents.values() if isinstance(d, NetworkPolicy)]
    local = {p.id: 100 + i for i, p in enumerate(ports)}
    tunnels = {peer: 1 + i for i, peer in enumerate(CHASSIS) if peer != name}
    row = intent.chassis.get(name)
    patches = {physnet: 50 + i for i, (physnet, _bridge) in enumerate(row.bridge_mappings if row else ())}
    routers = sorted(d.id for d in documents.values() if isinstance(d, RouterPolicy))
    zones = {z: i + 1 for i, z in enumerate(sorted(n.id for n in networks) + routers)}
    extra: dict[str, Any] = {"provider_ofports": patches} if RENDER_TAKES_PROVIDERS else {}
    flows = render_chassis(documents, local, tunnels, zones, DHCP_OFPORT, **extra)
    return Rendered(name, flows, {local[p.id]: p for p in ports}, {v: k for k, v in tunnels.items()},
                    {v: k for k, v in patches.items()} if RENDER_TAKES_PROVIDERS else {},
                    {n.tunnel_key: n for n in networks},
                    {d.tunnel_key: d for d in documents.values() if isinstance(d, RouterPolicy)})


def sets(flow: Flow) -> list[tuple[str, int]]:
    """(field, value) of every set_field with a number, in action order."""
    return [(f, int(v, 0)) for action in flow.actions for v, f in _SET.findall(action)]


def written(flow: Flow, register: str) -> list[int]:
    return [v for f, v in sets(flow) if f == register]


def network_key(flow: Flow) -> int | None:
    value = dict(flow.match).get("metadata")
    return int(value, 0) if value is not None else None


def vni(network: NetworkPolicy) -> int:
    return network.segmentation_id if network.segmentation_id is not None else network.tunnel_key


def port_macs(chassis: Rendered, network: NetworkPolicy) -> set[str]:
    macs = {p.mac_address for p in chassis.vif_port.values() if p.network_id == network.id}
    macs |= {r.mac_address for r in network.remote_ports}
    return macs | {s.dhcp_server_mac for s in network.subnets if s.dhcp_server_mac}


def interface_macs(chassis: Rendered, network: NetworkPolicy,
                   router: RouterPolicy | None = None) -> set[str]:
    """The MACs of the interfaces on `network` of the routers held here (or of `router`)."""
    routers = [router] if router is not None else list(chassis.routers.values())
    return {i.mac_address for r in routers for i in r.interfaces if i.network_id == network.id}


def floating_macs(chassis: Rendered, network: NetworkPolicy,
                  router: RouterPolicy | None = None) -> set[str]:
    """The MACs of the floating IPs of the routers held here (or of `router`) whose gateway is
    on `network`."""
    routers = [router] if router is not None else list(chassis.routers.values())
    return {f.mac_address for r in routers if r.gateway is not None
            and r.gateway.network_id == network.id for f in r.floating_ips}


def router_networks(router: RouterPolicy) -> set[str]:
    """The networks a router joins: its interfaces' and its gateway's."""
    joined = {i.network_id for i in router.interfaces}
    return joined | ({router.gateway.network_id} if router.gateway is not None else set())


def check_chassis(chassis: Rendered) -> list[tuple[int, str, str | None, int | None]]:
    """Assert the per-chassis invariants; return the exits: (network key, "tunnel"|"patch",
    peer or physnet, VNI or VLAN id)."""
    exits: list[tuple[int, str, str | None, int | None]] = []
    for flow in chassis.flows:
        match = dict(flow.match)
        text = f"{chassis.name}: {flow.describe()}"
        key = network_key(flow)
        # entry
        metadata = written(flow, "metadata")
        assert not any("metadata" in a.lower() and not a.startswith("set_field")
                       for a in flow.actions), text
        if metadata and flow.stage == "l2_lookup":  # into a router, by one of its MACs there
            assert len(metadata) == 1 and key in chassis.networks, text
            router, network = chassis.routers[metadata[0]], chassis.networks[key]
            assert match["dl_dst"] in interface_macs(chassis, network, router) | floating_macs(
                chassis, network, router), text
        elif metadata and flow.stage == "ip_routing":  # out of a router, to one of its networks
            assert len(metadata) == 1 and key in chassis.routers, text
            router, network = chassis.routers[key], chassis.networks[metadata[0]]
            assert network.id in router_networks(router), text
            assert set(_SET_MAC.findall(",".join(flow.actions))) <= interface_macs(
                chassis, network, router) | floating_macs(chassis, network, router), text
        elif metadata and flow.stage == "native_dhcp":  # the agent's ARP, as a floating IP or
            # (gratuitous) as a router's interface on the network
            assert len(metadata) == 1 and int(match["reg6"]) == DHCP_OFPORT, text
            network = chassis.networks[metadata[0]]
            assert match["dl_src"] in floating_macs(chassis, network) | {
                mac for router in chassis.routers.values()
                for mac in interface_macs(chassis, network, router)}, text
        elif metadata:
            assert flow.stage == "classify" and len(metadata) == 1, text
            in_port = int(match["in_port"])
            if in_port in chassis.vif_port:
                port = chassis.vif_port[in_port]
                assert chassis.networks[metadata[0]].id == port.network_id, text
            elif in_port in chassis.tunnel_peer:
                entry = (chassis.tunnel_peer[in_port], int(match["tun_id"], 0))
                assert chassis.entries.setdefault(entry, metadata[0]) == metadata[0], text
                assert vni(chassis.networks[metadata[0]]) == entry[1], text
            elif in_port in chassis.patch_physnet:
                vlan = int(match["dl_vlan"]) if "dl_vlan" in match else None
                assert "dl_vlan" in match or match.get("vlan_tci") == "0x0000/0x1fff", text
                entry = (chassis.patch_physnet[in_port], vlan)
                assert chassis.entries.setdefault(entry, metadata[0]) == metadata[0], text
                network = chassis.networks[metadata[0]]
                assert network.physical_network == entry[0], text
                assert (network.segmentation_id if network.network_type == "vlan" else None) == vlan, text
            else:
                pytest.fail(f"metadata set for an unknown in_port: {text}")
        elif flow.stage == "classify" and "in_port" in match and flow.actions:
            assert int(match["in_port"]) == DHCP_OFPORT, f"a port enters without a network: {text}"
        # delivery to local VIFs
        chosen = written(flow, "reg7")
        if chosen or any("REG7" in a for a in flow.actions):
            if flow.stage == "native_dhcp":
                assert int(match.get("reg6", "-1")) == DHCP_OFPORT, text
            else:
                assert flow.stage == "l2_lookup" and key in chassis.networks, text
                network = chassis.networks[key]
                for ofport in chosen:
                    assert chassis.vif_port[ofport].network_id == network.id, text
        # answers: only with a MAC of the network asked
        replied = _SET_MAC.findall(",".join(flow.actions))
        if replied and flow.stage == "l2_lookup":  # ARP for a floating IP, from outside too
            assert key in chassis.networks, text
            assert set(replied) <= floating_macs(chassis, chassis.networks[key]), text
        elif replied and flow.stage != "ip_routing":
            assert flow.stage == "arp_nd_responder" and key in chassis.networks, text
            network = chassis.networks[key]
            assert set(replied) <= port_macs(chassis, network) | interface_macs(chassis, network), text
        next_hops = _SET_DST_MAC.findall(",".join(flow.actions))
        if next_hops:  # only arp_resolve addresses a frame, to a port of the network it is on
            assert flow.stage == "arp_resolve" and key in chassis.networks, text
            assert set(next_hops) <= port_macs(chassis, chassis.networks[key]), text
        # every way out
        tun_id: int | None = None
        vlan: int | None = None
        for action in flow.actions:
            for value, name in _SET.findall(action):
                if name == "tun_id":
                    tun_id = int(value, 0)
                elif name == "vlan_vid":
                    vlan = int(value, 0) & 0xFFF
            if action == "IN_PORT":  # back to the asker: a neighbour or an echo answer
                assert flow.stage in ("arp_nd_responder", "l3_input", "l2_lookup"), text
            if not action.startswith("output:"):
                continue
            out = int(action.split(":")[1])
            if out in chassis.vif_port:
                assert flow.stage == "output" and match == {"reg7": str(out)}, text
            elif out == DHCP_OFPORT and flow.stage == "l2_lookup":  # ARP to a floating IP's MAC
                assert key in chassis.networks and match.get("dl_type") == "0x0806", text
                assert match["dl_dst"] in floating_macs(chassis, chassis.networks[key]), text
            elif out == DHCP_OFPORT:
                assert flow.stage == "native_dhcp" and int(match["reg6"]) in chassis.vif_port, text
            elif out in chassis.tunnel_peer:
                assert flow.stage == "l2_lookup" and key in chassis.networks, text
                assert tun_id == vni(chassis.networks[key]), text
                exits.append((key, "tunnel", chassis.tunnel_peer[out], tun_id))
            elif out in chassis.patch_physnet:
                assert flow.stage == "l2_lookup" and key in chassis.networks, text
                network = chassis.networks[key]
                assert network.physical_network == chassis.patch_physnet[out], text
                assert vlan == (network.segmentation_id if network.network_type == "vlan" else None), text
                exits.append((key, "patch", chassis.patch_physnet[out], vlan))
            else:
                pytest.fail(f"output to an unknown port: {text}")
    return exits


def check_isolation(intent: Intent) -> None:
    rendered = {name: render(intent, name) for name in CHASSIS}
    for name, chassis in rendered.items():
        for key, kind, where, tag in check_chassis(chassis):
            if kind == "tunnel":
                assert where is not None
                peer_entry = rendered[where].entries.get((name, tag))
                assert peer_entry in (None, key), f"{name} -> {where}: VNI {tag} is another network there"
            else:
                for other in rendered.values():
                    if other.name != name:
                        assert other.entries.get((str(where), tag)) in (None, key), (
                            f"{name} -> {other.name}: {where} VLAN {tag} is another network there")


@settings(max_examples=300, deadline=None)
@given(intent=intents())
def test_no_frame_crosses_from_one_network_to_another(intent: Intent) -> None:
    check_isolation(intent)


def test_the_check_sees_a_leak() -> None:
    """The check is not vacuous: an l2_lookup flow that hands a frame of one network to a port
    of another fails it."""
    b = IntentBuilder().chassis("c0", "192.0.2.1").chassis("c1", "192.0.2.2")
    b.network("a", "geneve", 1).network("b", "geneve", 2)
    b.subnet("sa", "a", CIDR).subnet("sb", "b", CIDR)
    b.port("pa", "a", ("sa", "10.0.0.5"), host="c0").port("pb", "b", ("sb", "10.0.0.5"), host="c0")
    chassis = render(b.build(), "c0")
    check_chassis(chassis)
    key_a = tunnel_key(b.build(), b.networks["a"])
    port_b = next(o for o, p in chassis.vif_port.items() if p.id == "pb")
    leak = Flow.make("l2_lookup", 120, {"metadata": key_a}, [f"set_field:{port_b:#x}->reg7"], 1)
    chassis.flows.append(leak)
    with pytest.raises(AssertionError):
        check_chassis(chassis)


def test_the_check_sees_a_router_leak() -> None:
    """Routing is checked too: a router's ip_routing flow into a network it has no interface on
    fails the check (here: network c, which only shares a chassis with the router's a and b)."""
    b = IntentBuilder().chassis("c0", "192.0.2.1").chassis("c1", "192.0.2.2")
    b.network("a", "geneve", 1).network("b", "geneve", 2).network("c", "geneve", 3)
    b.subnet("sa", "a", "10.1.0.0/24").subnet("sb", "b", "10.2.0.0/24").subnet("sc", "c", CIDR)
    b.port("pa", "a", ("sa", "10.1.0.5"), host="c0").port("pb", "b", ("sb", "10.2.0.5"), host="c1")
    b.port("pc", "c", ("sc", "10.0.0.5"), host="c0")
    b.router("r").interface("r", "ra", "a", ("sa", "10.1.0.1")).interface("r", "rb", "b", ("sb", "10.2.0.1"))
    intent = b.build()
    chassis = render(intent, "c0")
    check_chassis(chassis)
    assert any(f.stage == "ip_routing" and f.priority > 0 for f in chassis.flows)  # rendered here
    router_key = next(iter(chassis.routers))
    key_c = tunnel_key(intent, b.networks["c"])
    leak = Flow.make("ip_routing", 200, {"metadata": router_key, "dl_type": "0x0800",
                                         "nw_dst": "10.0.0.0/24"},
                     [f"set_field:{key_c:#x}->metadata", "resubmit(,56)"], 1)
    chassis.flows.append(leak)
    with pytest.raises(AssertionError):
        check_chassis(chassis)


@settings(max_examples=50, deadline=None)
@given(intent=intents())
def test_random_intents_have_routers_that_route(intent: Intent) -> None:
    """The random intents are not vacuous for routing: whenever a chassis holds a live router
    with an interface on a network it holds, it has that router's flows."""
    for name in CHASSIS:
        chassis = render(intent, name)
        live = [r for r in chassis.routers.values() if r.admin_state_up and any(
            i.network_id in {n.id for n in chassis.networks.values()} for i in r.interfaces)]
        if live:
            assert any(f.stage == "l3_input" and f.priority > 0 for f in chassis.flows)
