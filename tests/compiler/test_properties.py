"""Hypothesis properties of the compiler on random small intents.

- affected_chassis is sound: after random changes, every chassis it leaves out compiles to
  exactly the same documents as before.
- isolation: a chassis's documents only mention what it needs (its own ports, the ports of its
  networks and of the networks its routers route into, the members of a group), so a tenant's
  port never shows up in another network's policy.
- tunnel keys are distinct per chassis for any set of networks with distinct segments.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from neutrino.api.resources.l3 import INTERFACE_OWNERS, ROUTER_GATEWAY
from neutrino.compiler import Intent, affected_chassis, compile_chassis, tunnel_key
from neutrino.compiler.intent import (
    OVERLAY_TYPES,
    ChassisRow,
    FloatingIpRow,
    NetworkRow,
    PortRow,
    RouterPortRow,
    RouterRow,
    RuleRow,
    SecurityGroupRow,
    SubnetRow,
    is_interface,
)
from neutrino.compiler.scheduling import gateway_chassis
from neutrino.db.outbox import Change
from neutrino.policy.model import (
    DOCUMENT_TYPES,
    AddressSetPolicy,
    NetworkPolicy,
    PortPolicy,
    RouterPolicy,
    SecurityGroupPolicy,
    TunnelPolicy,
    parse_key,
)

CHASSIS = ("c0", "c1", "c2", "c3")
NETWORKS = ("n0", "n1", "n2")
SUBNETS = ("s0", "s1", "s2", "s3")
PORTS = tuple(f"p{i}" for i in range(8))
GROUPS = ("g0", "g1", "g2")
RULES = tuple(f"r{i}" for i in range(6))
PHYSNETS = ("physA", "physB", "physC")
IPS = ("10.0.0.1", "10.0.0.2", "10.0.1.1", "fd00::1", "fd00::2")
MACS = ("fa:16:3e:00:00:01", "fa:16:3e:00:00:02", "fa:16:3e:00:00:03")
ROUTERS = ("R0", "R1")
ROUTES = (("10.9.0.0/24", "10.0.0.1"), ("0.0.0.0/0", "10.0.0.2"), ("fd09::/64", "fd00::1"))
FLOATINGIPS = ("f0", "f1", "f2")

small_ints = st.integers(1, 3)


def networks(id: str) -> st.SearchStrategy[NetworkRow]:
    def build(kind: str, seg: int, physnet: str, mtu: int) -> NetworkRow:
        return NetworkRow(id=id, network_type=kind,
                          segmentation_id=None if kind == "flat" else seg,
                          physical_network=physnet if kind in ("flat", "vlan") else None, mtu=mtu)
    return st.builds(build, st.sampled_from(("flat", "vlan", "vxlan", "geneve")), small_ints,
                     st.sampled_from(PHYSNETS), st.sampled_from((1442, 1500)))


def subnets(id: str) -> st.SearchStrategy[SubnetRow]:
    def build(network: str, v6: bool, dhcp: bool, gateway: bool) -> SubnetRow:
        cidr, gw = ("fd00::/64", "fd00::ff") if v6 else ("10.0.0.0/16", "10.0.255.254")
        return SubnetRow(id=id, network_id=network, cidr=cidr, ip_version=6 if v6 else 4,
                         gateway_ip=gw if gateway else None, enable_dhcp=dhcp)
    return st.builds(build, st.sampled_from(NETWORKS), st.booleans(), st.booleans(), st.booleans())


def ports(id: str) -> st.SearchStrategy[PortRow]:
    def build(network: str, host: str, ips: list[tuple[str, str]], groups: frozenset[str],
              security: bool, pairs: list[tuple[str, str]], owner: str, mac: str,
              admin: bool) -> PortRow:
        return PortRow(id=id, network_id=network, mac_address=mac, fixed_ips=tuple(ips), host=host,
                       security_group_ids=tuple(sorted(groups)), port_security_enabled=security,
                       allowed_address_pairs=tuple(pairs), admin_state_up=admin,
                       device_owner=owner)
    return st.builds(
        build, st.sampled_from(NETWORKS), st.sampled_from(("", *CHASSIS)),
        st.lists(st.tuples(st.sampled_from(SUBNETS), st.sampled_from(IPS)), max_size=2),
        st.frozensets(st.sampled_from(GROUPS)), st.booleans(),
        st.lists(st.tuples(st.sampled_from(("10.9.0.0/24", "fd09::9")), st.sampled_from(MACS)),
                 max_size=1),
        # a device_owner of a router's makes no interface (router_ports does)
        st.sampled_from(("", "compute:nova", "network:dhcp", "network:router_interface")),
        st.sampled_from(MACS), st.booleans(),
    )


def groups(id: str) -> st.SearchStrategy[SecurityGroupRow]:
    return st.builds(SecurityGroupRow, st.just(id), st.booleans())


def rules(id: str) -> st.SearchStrategy[RuleRow]:
    return st.builds(
        RuleRow, id=st.just(id), security_group_id=st.sampled_from(GROUPS),
        direction=st.sampled_from(("ingress", "egress")), ethertype=st.sampled_from(("IPv4", "IPv6")),
        protocol=st.sampled_from((None, "tcp", "6", "udp", "ipv6-icmp")),
        port_range_min=st.sampled_from((None, 22)), port_range_max=st.sampled_from((None, 22)),
        remote_ip_prefix=st.sampled_from((None, "10.0.0.0/8")),
        remote_group_id=st.sampled_from((None, *GROUPS)),
    )


def chassis_rows(name: str) -> st.SearchStrategy[ChassisRow]:
    """A chassis, a gateway chassis (with a priority) or not: routers with a gateway are then
    scheduled on it, and it holds them."""
    def build(ip: str, physnets: frozenset[str], gateway: bool, priority: int) -> ChassisRow:
        return ChassisRow(name, ip, tuple(sorted((p, f"br-{p}") for p in physnets)),
                          is_gateway=gateway, gateway_priority=priority)
    return st.builds(build, st.sampled_from(("192.0.2.1", "192.0.2.2")),
                     st.frozensets(st.sampled_from(PHYSNETS)), st.booleans(),
                     st.sampled_from((0, 1)))


def routers(id: str) -> st.SearchStrategy[RouterRow]:
    def build(admin: bool, routes: frozenset[tuple[str, str]], distributed: bool,
              gateway: str | None, snat: bool) -> RouterRow:
        return RouterRow(id=id, admin_state_up=admin, distributed=distributed,
                         routes=tuple(sorted(routes)), gw_port_id=gateway, enable_snat=snat)
    return st.builds(build, st.booleans(), st.frozensets(st.sampled_from(ROUTES)), st.booleans(),
                     st.none() | st.sampled_from(PORTS), st.booleans())


def floatingips(id: str) -> st.SearchStrategy[FloatingIpRow]:
    """A floating IP on any network and port (the API keeps them consistent; the compiler
    must not need it), associated or not, with or without a router."""
    def build(network: str, port: str, address: str, fixed: tuple[str, str] | None,
              router: str | None, forwardings: frozenset[tuple[str, int, str, int]]
              ) -> FloatingIpRow:
        return FloatingIpRow(id=id, floating_network_id=network, floating_port_id=port,
                             floating_ip_address=address,
                             fixed_port_id=fixed[0] if fixed else None,
                             fixed_ip_address=fixed[1] if fixed else None, router_id=router,
                             port_forwardings=tuple(sorted(forwardings)))
    return st.builds(build, st.sampled_from(NETWORKS), st.sampled_from(PORTS),
                     st.sampled_from(("203.0.113.5", "203.0.113.6")),
                     st.none() | st.tuples(st.sampled_from(PORTS),
                                           st.sampled_from(("10.0.0.1", "10.0.1.1"))),
                     st.none() | st.sampled_from(ROUTERS),
                     st.frozensets(st.sampled_from((("tcp", 2222, "10.0.0.1", 22),
                                                    ("udp", 53, "10.0.1.1", 5353)))))


def router_ports(port_id: str) -> st.SearchStrategy[RouterPortRow]:
    """The router port row of a port (keyed by port id, as the table's primary key)."""
    return st.builds(RouterPortRow, st.just(port_id), st.sampled_from(ROUTERS),
                     st.sampled_from((*INTERFACE_OWNERS, ROUTER_GATEWAY)))


#: Intent field -> (Change kind, ids, strategy of a row for an id); a router port row is named
#: by a change of its port or of its router (`changed`)
TABLES: dict[str, tuple[str, tuple[str, ...], Any]] = {
    "networks": ("network", NETWORKS, networks),
    "subnets": ("subnet", SUBNETS, subnets),
    "ports": ("port", PORTS, ports),
    "security_groups": ("security_group", GROUPS, groups),
    "rules": ("security_group_rule", RULES, rules),
    "chassis": ("chassis", CHASSIS, chassis_rows),
    "routers": ("router", ROUTERS, routers),
    "router_ports": ("port", PORTS, router_ports),
    "floatingips": ("floatingip", FLOATINGIPS, floatingips),
}


@st.composite
def intents(draw: st.DrawFn) -> Intent:
    tables: dict[str, dict[str, Any]] = {}
    for name, (_kind, ids, strategy) in TABLES.items():
        tables[name] = {}
        for id in ids:
            row = draw(st.none() | strategy(id))
            if row is not None:
                tables[name][id] = row
    if draw(st.booleans()):
        wire_floating_ip(draw, tables)
    return Intent(**tables)


def wire_floating_ip(draw: st.DrawFn, tables: dict[str, dict[str, Any]]) -> None:
    """Make one floating IP served (rare by chance): a router with a gateway port and an
    interface on the network of a bound port that the floating IP is associated with, so
    that the port's chassis holds the external network."""
    if len(tables["ports"]) < 4:
        return
    fixed, interface, gateway, floating = draw(st.permutations(sorted(tables["ports"])))[:4]
    router_id = draw(st.sampled_from(ROUTERS))
    ports = tables["ports"]
    ports[fixed] = replace(ports[fixed], host=draw(st.sampled_from(CHASSIS)))
    ports[interface] = replace(ports[interface], network_id=ports[fixed].network_id)
    # the gateway and floating IP ports, unbound, on another network: the external one
    external = draw(st.sampled_from([n for n in NETWORKS if n != ports[fixed].network_id]))
    for port_id in (gateway, floating):
        ports[port_id] = replace(ports[port_id], network_id=external, host="")
    tables["router_ports"][interface] = RouterPortRow(interface, router_id, INTERFACE_OWNERS[0])
    tables["router_ports"][gateway] = RouterPortRow(gateway, router_id, ROUTER_GATEWAY)
    tables["routers"][router_id] = replace(
        tables["routers"].get(router_id) or RouterRow(router_id), gw_port_id=gateway)
    fip_id = draw(st.sampled_from(FLOATINGIPS))
    tables["floatingips"][fip_id] = FloatingIpRow(
        fip_id, ports[floating].network_id, floating, "203.0.113.9", fixed, "10.0.0.1", router_id)


@st.composite
def changed(draw: st.DrawFn, before: Intent, count: int) -> tuple[Intent, list[Change]]:
    """`before` with `count` random objects created, updated or deleted, and their Changes. A
    router port row (an interface attached or detached) is named as the API names it: by a
    change of its port, or by changes of its routers (the one it left and the one it joined)."""
    after, changes = before, []
    for _ in range(count):
        table = draw(st.sampled_from(sorted(TABLES)))
        kind, ids, strategy = TABLES[table]
        id = draw(st.sampled_from(ids))
        rows = dict(getattr(after, table))
        old = rows.get(id)
        row = draw(st.none() | strategy(id))
        op = "delete" if row is None else "update" if id in rows else "create"
        if row is None:
            rows.pop(id, None)
        else:
            rows[id] = row
        after = replace(after, **{table: rows})  # type: ignore[arg-type]
        if table == "router_ports" and draw(st.booleans()):
            named = sorted({r.router_id for r in (old, row) if r is not None})
            changes += [Change("router", r, "update") for r in named]
        else:
            changes.append(Change(kind, id, "update" if table == "router_ports" else op))
    return after, changes


def every_chassis(*intents: Intent) -> set[str]:
    names = set(CHASSIS)
    for intent in intents:
        names |= set(intent.ports_by_chassis) | set(intent.chassis)
    return names


@settings(max_examples=400, deadline=None)
@given(data=st.data(), before=intents(), count=st.integers(1, 3))
def test_unaffected_chassis_compile_the_same(data: st.DataObject, before: Intent, count: int) -> None:
    after, changes = data.draw(changed(before, count))
    affected = affected_chassis(before, after, changes)
    for name in sorted(every_chassis(before, after) - affected):
        assert compile_chassis(before, name) == compile_chassis(after, name), (name, changes)


@settings(max_examples=200, deadline=None)
@given(before=intents())
def test_no_change_affects_nothing(before: Intent) -> None:
    assert affected_chassis(before, before, []) == set()


@settings(max_examples=300, deadline=None)
@given(intent=intents())
def test_isolation(intent: Intent) -> None:
    for name in sorted(every_chassis(intent)):
        docs = compile_chassis(intent, name)
        local = [p for p in intent.ports.values() if p.host == name]
        local_networks = {p.network_id for p in local}
        routers = {r for n in local_networks for r in intent.routers_by_network.get(n, ())
                   if r in intent.routers}
        # routers with a gateway port are scheduled on gateway chassis: each of those holds them
        gateways = [(c.name, c.gateway_priority) for c in intent.chassis.values() if c.is_gateway]
        scheduled = {r.id: gateway_chassis(r.id, gateways) for r in intent.routers.values()
                     if r.gw_port_id in intent.ports}
        gateway_of = {r for r, where in scheduled.items() if name in where}
        routers |= gateway_of
        held_networks = local_networks.union(*(intent.router_networks(r) for r in routers))
        for router_id in routers:  # the external network, for a floating IP of a local port
            router = intent.routers[router_id]
            fixed_ports = {f.fixed_port_id for f in intent.floatingips.values()
                           if f.router_id == router_id and f.fixed_ip_address is not None
                           and f.floating_port_id in intent.ports}
            if router.gw_port_id in intent.ports and (router_id in gateway_of or any(
                    p in intent.ports and intent.ports[p].host == name for p in fixed_ports)):
                held_networks.add(intent.ports[router.gw_port_id].network_id)
        used_groups = {g for p in local if p.port_security_enabled for g in p.security_group_ids}
        for key, doc in docs.items():
            chassis, kind, item_id = parse_key(key)
            assert chassis == name and doc.id == item_id  # type: ignore[attr-defined]
            assert type(doc) is DOCUMENT_TYPES[kind]
            if isinstance(doc, PortPolicy):
                assert intent.ports[doc.id].host == name
            elif isinstance(doc, NetworkPolicy):
                assert doc.id in held_networks
                for remote in doc.remote_ports:
                    port = intent.ports[remote.id]
                    assert port.network_id == doc.id, "a port of another network leaked"
                    assert remote.chassis == port.host != name
                    assert not is_interface(intent.router_ports.get(port.id))
                    assert all(r.gw_port_id != port.id for r in intent.routers.values())
                    assert all(f.floating_port_id != port.id for f in intent.floatingips.values())
                    assert set(remote.ip_addresses) <= {ip for _s, ip in port.fixed_ips}
                assert set(doc.flood_chassis) == set(intent.chassis_by_network.get(doc.id, ())) - {name}
                assert {s.id for s in doc.subnets} == {
                    s.id for s in intent.subnets.values() if s.network_id == doc.id}
            elif isinstance(doc, SecurityGroupPolicy):
                assert doc.id in used_groups
                assert all(intent.rules[r.id].security_group_id == doc.id for r in doc.rules)
            elif isinstance(doc, AddressSetPolicy):
                assert any(intent.rules[r].remote_group_id == doc.id
                           for g in used_groups for r in intent.rules_by_group.get(g, ()))
                members: set[str] = set()
                for port in intent.ports.values():
                    if doc.id in port.security_group_ids:
                        members |= {ip for _s, ip in port.fixed_ips}
                        members |= {ip for ip, _m in port.allowed_address_pairs}
                assert set(doc.ipv4) | set(doc.ipv6) == members
                assert all(":" not in a for a in doc.ipv4) and all(":" in a for a in doc.ipv6)
            elif isinstance(doc, RouterPolicy):
                assert doc.id in routers, "a router of no network of this chassis"
                assert {i.network_id for i in doc.interfaces} & local_networks \
                    or doc.id in gateway_of
                for interface in doc.interfaces:
                    row = intent.router_ports[interface.port_id]
                    assert row.router_id == doc.id and is_interface(row)
                    assert interface.network_id == intent.ports[interface.port_id].network_id
                    for address in interface.fixed_ips:
                        assert intent.subnets[address.subnet_id].network_id == interface.network_id
                gw_port = intent.ports.get(intent.routers[doc.id].gw_port_id or "")
                if gw_port is None:
                    assert doc.gateway is None
                else:
                    assert doc.gateway is not None and doc.gateway.port_id == gw_port.id
                    assert doc.gateway.network_id == gw_port.network_id
                    assert doc.gateway.enable_snat == intent.routers[doc.id].enable_snat
                    assert doc.gateway.chassis == scheduled[doc.id]
                    assert len(doc.gateway.chassis) == min(len(gateways), 3)
                for fip in doc.floating_ips:
                    row = intent.floatingips[fip.id]
                    assert row.router_id == doc.id and row.fixed_port_id == fip.port_id
                    assert fip.mac_address == intent.ports[row.floating_port_id].mac_address
                    fixed = intent.ports.get(fip.port_id)
                    assert fip.chassis == (fixed.host if fixed else "")
                assert {(pf.floating_ip_address, pf.protocol, pf.external_port,
                         pf.internal_ip_address, pf.internal_port)
                        for pf in doc.port_forwardings} == {
                    (f.floating_ip_address, *forwarding) for f in intent.floatingips.values()
                    if f.router_id == doc.id and f.fixed_port_id is None
                    for forwarding in f.port_forwardings}
                assert [f.id for f in doc.floating_ips] == sorted(
                    f.id for f in intent.floatingips.values() if f.router_id == doc.id
                    and f.fixed_port_id is not None and f.floating_port_id in intent.ports)
            else:
                assert isinstance(doc, TunnelPolicy)
                assert doc.ip == intent.chassis[doc.id].tunnel_ip
                assert any(intent.networks[n].network_type in OVERLAY_TYPES
                           and doc.id in intent.chassis_by_network.get(n, ())
                           for n in held_networks if n in intent.networks) \
                    or any(doc.id in scheduled.get(r, ()) for r in routers), \
                    "a tunnel to a chassis of no overlay network or gateway of this chassis"


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from(("flat", "vlan", "vxlan", "geneve")),
                               st.integers(1, 4094), st.sampled_from(PHYSNETS)), max_size=12))
def test_tunnel_keys_distinct_per_segment(rows: list[tuple[str, int, str]]) -> None:
    segments: dict[tuple[str, str | None, int | None], NetworkRow] = {}
    for kind, seg, physnet in rows:  # one network per segment, as the API's segment_key enforces
        key = (kind, physnet if kind in ("flat", "vlan") else None, None if kind == "flat" else seg)
        segments[key] = NetworkRow(f"n{len(segments)}", kind, key[2], key[1])
    intent = Intent(networks={n.id: n for n in segments.values()})
    keys = [tunnel_key(intent, n) for n in intent.networks.values()]
    assert len(set(keys)) == len(keys)
    assert all(0 < k < 1 << 64 for k in keys)
