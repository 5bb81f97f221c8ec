"""Compilation: intent snapshot -> the complete set of policy documents of one chassis, and which
chassis a set of changes may affect.

Both functions are pure: they read an `Intent` and return new values. `compile_chassis` is
deterministic (every tuple in a document is in a defined order), so compiling equal intents
gives equal documents and the distribution layer can diff old and new sets item by item.
docs/policy-model.md states, field by field, what each document holds and which chassis gets it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from neutrino.api.validators import protocol_number
from neutrino.compiler.intent import (
    OVERLAY_TYPES,
    PHYSICAL_TYPES,
    Intent,
    NetworkRow,
    PortRow,
    RuleRow,
    SecurityGroupRow,
    is_interface,
)
from neutrino.db.outbox import PORT_STATUS_KIND, Change
from neutrino.policy.model import (
    AddressPair,
    AddressSetPolicy,
    DhcpOption,
    Document,
    FixedIp,
    FloatingIpPolicy,
    HostRoute,
    ItemKind,
    NetworkPolicy,
    PortForwardingPolicy,
    PortPolicy,
    RemotePort,
    RouterAddress,
    RouterGateway,
    RouterInterface,
    RouterPolicy,
    RouterRoute,
    SecurityGroupPolicy,
    SecurityGroupRulePolicy,
    SubnetPolicy,
    TunnelPolicy,
    item_key,
)

__all__ = [
    "TUNNEL_KEY_TYPE_CODES",
    "affected_chassis",
    "compile_chassis",
    "recompile_chassis",
    "tunnel_key",
]

#: bits 32-39 of a tunnel key: which kind of segment the low 32 bits identify
TUNNEL_KEY_TYPE_CODES = {"geneve": 1, "vxlan": 2, "vlan": 3, "flat": 4}
NETWORK_TYPES = frozenset(TUNNEL_KEY_TYPE_CODES)


def tunnel_key(intent: Intent, network: NetworkRow) -> int:
    """The network's key inside a chassis pipeline (64-bit metadata), distinct per network:

    - geneve / vxlan: `code << 32 | VNI` (a VNI is unique per overlay type);
    - vlan: `3 << 32 | physnet_index << 12 | vlan_id` (unique per physnet and VLAN id);
    - flat: `4 << 32 | physnet_index << 12` (one flat network per physnet);

    where physnet_index is 1 + the rank of the physical network in `intent.physical_networks`
    (every physnet named by a network or a chassis bridge mapping, sorted).
    """
    code = TUNNEL_KEY_TYPE_CODES[network.network_type]
    if network.network_type in OVERLAY_TYPES:
        return code << 32 | (network.segmentation_id or 0)
    physnet = network.physical_network
    index = intent.physical_networks.index(physnet) + 1 if physnet in intent.physical_networks else 0
    vlan = (network.segmentation_id or 0) if network.network_type == "vlan" else 0
    return code << 32 | index << 12 | vlan


def _port_policy(port: PortRow) -> PortPolicy:
    return PortPolicy(
        id=port.id,
        network_id=port.network_id,
        mac_address=port.mac_address,
        fixed_ips=tuple(FixedIp(subnet_id=s, ip_address=ip) for s, ip in port.fixed_ips),
        admin_state_up=port.admin_state_up,
        port_security_enabled=port.port_security_enabled,
        allowed_address_pairs=tuple(
            AddressPair(ip_address=ip, mac_address=mac)
            for ip, mac in sorted(set(port.allowed_address_pairs))
        ),
        security_group_ids=port.security_group_ids if port.port_security_enabled else (),
        device_owner=port.device_owner,
        device_id=port.device_id,
        extra_dhcp_opts=tuple(
            DhcpOption(opt_name=name, opt_value=value, ip_version=version)
            for name, value, version in sorted(port.extra_dhcp_opts, key=lambda o: (o[2], o[0], o[1]))
        ),
    )


def _subnet_policies(intent: Intent, network_id: str) -> tuple[SubnetPolicy, ...]:
    policies = []
    for subnet_id in intent.subnets_by_network.get(network_id, ()):
        subnet = intent.subnets[subnet_id]
        server_ip = server_mac = None
        dhcp_port_id = intent.dhcp_port_by_subnet.get(subnet_id)
        if dhcp_port_id is not None:
            dhcp_port = intent.ports[dhcp_port_id]
            server_ip = next(ip for s, ip in dhcp_port.fixed_ips if s == subnet_id)
            server_mac = dhcp_port.mac_address
        policies.append(SubnetPolicy(
            id=subnet.id,
            cidr=subnet.cidr,
            ip_version=subnet.ip_version,
            gateway_ip=subnet.gateway_ip,
            enable_dhcp=subnet.enable_dhcp,
            dns_nameservers=subnet.dns_nameservers,
            host_routes=tuple(HostRoute(destination=d, nexthop=n) for d, n in subnet.host_routes),
            ipv6_ra_mode=subnet.ipv6_ra_mode,
            ipv6_address_mode=subnet.ipv6_address_mode,
            dhcp_server_ip=server_ip,
            dhcp_server_mac=server_mac,
        ))
    return tuple(policies)


def _is_service_port(intent: Intent, port_id: str) -> bool:
    """A router's interface or gateway port, or a floating IP's port: never a remote port (every
    chassis holding the router answers for an interface; gateway and floating IP ports are
    where routers and floating IPs are, not where a frame is tunnelled to)."""
    return (is_interface(intent.router_ports.get(port_id))
            or port_id in intent.routers_by_gateway_port
            or port_id in intent.floatingips_by_floating_port)


def _network_policy(intent: Intent, network: NetworkRow, chassis: str) -> NetworkPolicy:
    remote_ports = []
    for port_id in intent.ports_by_network.get(network.id, ()):
        port = intent.ports[port_id]
        if port.host and port.host != chassis and not _is_service_port(intent, port_id):
            remote_ports.append(RemotePort(
                id=port.id,
                mac_address=port.mac_address,
                ip_addresses=tuple(sorted({ip for _s, ip in port.fixed_ips})),
                chassis=port.host,
            ))
    return NetworkPolicy(
        id=network.id,
        network_type=network.network_type,  # type: ignore[arg-type]  # checked by the caller
        segmentation_id=network.segmentation_id,
        physical_network=network.physical_network,
        mtu=network.mtu,
        tunnel_key=tunnel_key(intent, network),
        subnets=_subnet_policies(intent, network.id),
        remote_ports=tuple(remote_ports),
        flood_chassis=tuple(h for h in intent.chassis_by_network.get(network.id, ()) if h != chassis),
    )


def _rule_policy(rule: RuleRow) -> SecurityGroupRulePolicy | None:
    """None for a rule the pipeline cannot enforce exactly (an unknown protocol, a remote address
    group): leaving it out fails closed, rules only ever allow."""
    if rule.remote_address_group_id is not None:
        return None
    protocol = None
    if rule.protocol is not None:
        try:
            protocol = protocol_number(rule.protocol)
        except (KeyError, ValueError):
            return None
    return SecurityGroupRulePolicy(
        id=rule.id,
        direction=rule.direction,  # type: ignore[arg-type]  # validated by the API
        ethertype=rule.ethertype,  # type: ignore[arg-type]
        protocol=protocol,
        port_range_min=rule.port_range_min,
        port_range_max=rule.port_range_max,
        remote_ip_prefix=rule.remote_ip_prefix,
        remote_group_id=rule.remote_group_id,
    )


def _group_policy(intent: Intent, group: SecurityGroupRow) -> SecurityGroupPolicy:
    rules = (_rule_policy(intent.rules[r]) for r in intent.rules_by_group.get(group.id, ()))
    return SecurityGroupPolicy(
        id=group.id, stateful=group.stateful, rules=tuple(r for r in rules if r is not None)
    )


def _address_set(intent: Intent, group_id: str) -> AddressSetPolicy:
    v4: set[str] = set()
    v6: set[str] = set()
    for port_id in intent.ports_by_group.get(group_id, ()):
        port = intent.ports[port_id]
        addresses = [ip for _s, ip in port.fixed_ips] + [ip for ip, _m in port.allowed_address_pairs]
        for address in addresses:
            (v6 if ":" in address else v4).add(address)
    return AddressSetPolicy(id=group_id, ipv4=tuple(sorted(v4)), ipv6=tuple(sorted(v6)))


def _router_addresses(intent: Intent, port: PortRow) -> tuple[RouterAddress, ...]:
    """A router port's addresses on subnets of its network, sorted by (subnet, address), with
    their subnets' prefixes (an address whose subnet is gone is left out)."""
    addresses = []
    for subnet_id, ip in sorted(set(port.fixed_ips)):
        subnet = intent.subnets.get(subnet_id)
        if subnet is not None and subnet.network_id == port.network_id:
            addresses.append(RouterAddress(subnet_id=subnet_id, ip_address=ip, cidr=subnet.cidr))
    return tuple(addresses)


def _router_gateway(intent: Intent, router_id: str) -> RouterGateway | None:
    port = intent.gateway_port(router_id)
    if port is None:
        return None
    addresses = _router_addresses(intent, port)
    next_hops: list[str] = []
    for subnet_id in dict.fromkeys(a.subnet_id for a in addresses):  # each subnet once, in order
        gateway_ip = intent.subnets[subnet_id].gateway_ip
        if gateway_ip:
            next_hops.append(gateway_ip)
    return RouterGateway(port_id=port.id, network_id=port.network_id, mac_address=port.mac_address,
                         fixed_ips=addresses, next_hops=tuple(next_hops),
                         enable_snat=intent.routers[router_id].enable_snat,
                         chassis=intent.gateway_chassis(router_id))


def _floating_ip_policies(intent: Intent, router_id: str) -> tuple[FloatingIpPolicy, ...]:
    policies = []
    for fip in intent.router_floatingips(router_id):
        assert fip.fixed_port_id is not None and fip.fixed_ip_address is not None
        fixed_port = intent.ports.get(fip.fixed_port_id)
        policies.append(FloatingIpPolicy(
            id=fip.id,
            floating_ip_address=fip.floating_ip_address,
            fixed_ip_address=fip.fixed_ip_address,
            port_id=fip.fixed_port_id,
            mac_address=intent.ports[fip.floating_port_id].mac_address,
            chassis=fixed_port.host if fixed_port is not None else "",
        ))
    return tuple(policies)


def _router_policy(intent: Intent, router_id: str) -> RouterPolicy:
    router = intent.routers[router_id]
    interfaces = []
    for port_id in intent.interfaces_by_router.get(router_id, ()):
        port = intent.ports.get(port_id)
        if port is None:
            continue
        interfaces.append(RouterInterface(port_id=port.id, network_id=port.network_id,
                                          mac_address=port.mac_address,
                                          fixed_ips=_router_addresses(intent, port)))
    return RouterPolicy(
        id=router.id,
        tunnel_key=intent.router_keys[router.id],
        admin_state_up=router.admin_state_up,
        interfaces=tuple(interfaces),
        routes=tuple(RouterRoute(destination=d, nexthop=n) for d, n in sorted(set(router.routes))),
        gateway=_router_gateway(intent, router_id),
        floating_ips=_floating_ip_policies(intent, router_id),
        port_forwardings=tuple(sorted(
            (PortForwardingPolicy(floating_ip_address=fip.floating_ip_address,
                                  protocol=protocol,  # type: ignore[arg-type]
                                  external_port=external, internal_ip_address=address,
                                  internal_port=internal)
             for fip in intent.router_port_forwardings(router_id)
             for protocol, external, address, internal in fip.port_forwardings
             if protocol in ("tcp", "udp")),
            key=lambda pf: (pf.floating_ip_address, pf.protocol, pf.external_port))),
    )


def _held(
    intent: Intent, chassis: str, local_networks: Iterable[str]
) -> tuple[list[str], list[str]]:
    """(routers, networks) a chassis holds, given the networks it has bound ports on: every
    router with an interface on one of them or scheduled on it as a gateway chassis, and those
    networks with every network of those routers (the chassis routes into them) and the
    external network of each of those routers it is a gateway chassis of or binds the port of
    a floating IP of, both sorted."""
    local = set(local_networks)
    routers = {r for n in local for r in intent.routers_by_network.get(n, ())
               if r in intent.routers}
    routers |= intent.gateway_routers(chassis)
    networks = set(local)
    for router_id in routers:
        networks.update(intent.router_networks(router_id))
        external = intent.gateway_network(router_id)
        if external is not None and (chassis in intent.gateway_chassis(router_id)
                                     or chassis in intent.floatingip_hosts(router_id)):
            networks.add(external)
    return sorted(routers), sorted(networks)


def _tunnel_items(intent: Intent, chassis: str, network_ids: Iterable[str],
                  router_ids: Iterable[str] = ()) -> dict[str, Document]:
    """The chassis's `tunnel` items, given the networks and routers it holds: a tunnel to every
    chassis with a port on one of its overlay networks, and to every gateway chassis of its
    routers (geneve)."""
    peers: dict[str, str] = {}  # peer chassis -> encap
    for network_id in network_ids:
        network = intent.networks.get(network_id)
        if network is None or network.network_type not in OVERLAY_TYPES:
            continue
        for peer in intent.chassis_by_network.get(network_id, ()):
            if peer != chassis and peers.get(peer) != "geneve":
                peers[peer] = network.network_type
    for router_id in router_ids:
        for peer in intent.gateway_chassis(router_id):
            if peer != chassis:
                peers[peer] = "geneve"
    items: dict[str, Document] = {}
    for peer, encap in sorted(peers.items()):
        row = intent.chassis.get(peer)
        if row is not None:
            items[item_key(chassis, "tunnel", peer)] = TunnelPolicy(
                id=peer, ip=row.tunnel_ip, encap=encap  # type: ignore[arg-type]
            )
    return items


def compile_chassis(intent: Intent, chassis: str) -> dict[str, Document]:
    """Every item the chassis must hold: `item_key(chassis, kind, id)` -> document."""
    docs: dict[str, Document] = {}
    local = [intent.ports[p] for p in intent.ports_by_chassis.get(chassis, ())]
    for port in local:
        docs[item_key(chassis, "port", port.id)] = _port_policy(port)

    routers, networks = _held(intent, chassis, {p.network_id for p in local})
    for network_id in networks:
        network = intent.networks.get(network_id)
        if network is None or network.network_type not in NETWORK_TYPES:
            continue
        docs[item_key(chassis, "network", network_id)] = _network_policy(intent, network, chassis)

    used_groups = sorted({g for p in local if p.port_security_enabled for g in p.security_group_ids})
    remote_groups: set[str] = set()
    for group_id in used_groups:
        for rule_id in intent.rules_by_group.get(group_id, ()):
            remote = intent.rules[rule_id].remote_group_id
            if remote is not None:
                remote_groups.add(remote)
        group = intent.security_groups.get(group_id)
        if group is not None:
            docs[item_key(chassis, "security_group", group_id)] = _group_policy(intent, group)
    for group_id in sorted(remote_groups):
        docs[item_key(chassis, "address_set", group_id)] = _address_set(intent, group_id)

    for router_id in routers:
        docs[item_key(chassis, "router", router_id)] = _router_policy(intent, router_id)

    docs.update(_tunnel_items(intent, chassis, networks, routers))
    return docs


# --- compiling only what a change can alter -------------------------------------------------

#: change kinds that are no input of any document: a port's status report; port forwardings
#: (no rows of theirs in the intent; their ports and floating IPs are changes of their own)
KINDS_WITHOUT_DOCUMENTS = frozenset({PORT_STATUS_KIND, "port_forwarding"})


@dataclass
class _Stale:
    """Items (by id, on any chassis) whose document may differ between two intents."""

    ports: set[str] = field(default_factory=set)
    networks: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    address_sets: set[str] = field(default_factory=set)
    routers: set[str] = field(default_factory=set)
    tunnels: bool = False  # every tunnel item


def _remote_groups(intent: Intent, group_ids: Iterable[str]) -> set[str]:
    """Groups named as remote group by a rule of one of `group_ids`."""
    remotes = set()
    for group_id in group_ids:
        for rule_id in intent.rules_by_group.get(group_id, ()):
            remote = intent.rules[rule_id].remote_group_id
            if remote is not None:
                remotes.add(remote)
    return remotes


def _stale_router(stale: _Stale, before: Intent, after: Intent, router_id: str) -> None:
    """A router, its interfaces or one of its interface ports changed: its item; when its
    interfaces or networks changed, the items of its networks (held through it, and their
    remote ports, which leave out interfaces) and the tunnels (the networks held changed)."""
    stale.routers.add(router_id)
    interfaces_changed = (before.interfaces_by_router.get(router_id)
                          != after.interfaces_by_router.get(router_id))
    networks_changed = before.router_networks(router_id) != after.router_networks(router_id)
    if interfaces_changed or networks_changed:
        for intent in (before, after):
            stale.networks |= intent.interface_networks(router_id)
    stale.tunnels |= networks_changed
    gateways = [intent.routers[router_id].gw_port_id if router_id in intent.routers else None
                for intent in (before, after)]
    if gateways[0] != gateways[1]:  # remote_ports leave gateway ports out
        for intent in (before, after):
            stale.networks |= {intent.ports[p].network_id for p in gateways
                               if p is not None and p in intent.ports}
    _stale_gateway(stale, before, after, router_id)


def _stale_gateway(stale: _Stale, before: Intent, after: Intent, router_id: str) -> None:
    """The router's gateway, its floating IPs or the chassis holding it may have changed: its
    item; when the chassis holding its external network through it changed, that network's
    items and the tunnels."""
    stale.routers.add(router_id)
    externals = {before.gateway_network(router_id), after.gateway_network(router_id)}
    if len(externals) > 1 or before.external_hosts(router_id) != after.external_hosts(router_id):
        stale.networks |= {n for n in externals if n is not None}
        stale.tunnels = True
    if before.gateway_chassis(router_id) != after.gateway_chassis(router_id):
        # its gateway chassis hold it with its networks, and tunnels to it
        for intent in (before, after):
            stale.networks |= intent.interface_networks(router_id)
        stale.tunnels = True


def _rescheduled(before: Intent, after: Intent) -> set[str]:
    """Routers whose gateway chassis differ between the intents."""
    routers = {r for intent in (before, after)
               for rs in intent.routers_by_gateway_network.values() for r in rs}
    return {r for r in routers if before.gateway_chassis(r) != after.gateway_chassis(r)}


def _floatingips_of_port(intent: Intent, port_id: str) -> list[str]:
    """Floating IPs associated with the port, or held by it."""
    return [*intent.floatingips_by_fixed_port.get(port_id, ()),
            *intent.floatingips_by_floating_port.get(port_id, ())]


def _routers_of_port(intent: Intent, port_id: str) -> set[str]:
    row = intent.router_ports.get(port_id)
    return {row.router_id} if row is not None and is_interface(row) else set()


def _stale_items(before: Intent, after: Intent, changes: Sequence[Change]) -> _Stale | None:
    """What `changes` can alter in any chassis's documents; None when it cannot say (a kind it
    does not know, a change of the physnet names that every tunnel key depends on)."""
    if before.physical_networks != after.physical_networks:
        return None
    stale = _Stale()
    intents = (before, after)
    for change in changes:
        if change.kind in KINDS_WITHOUT_DOCUMENTS:
            continue
        if change.kind == "port":
            for router_id in _routers_of_port(before, change.id) | _routers_of_port(after, change.id):
                _stale_router(stale, before, after, router_id)  # an interface of theirs
            for intent in intents:
                # their gateway; the fixed or floating port of their floating IPs
                for router_id in intent.routers_by_gateway_port.get(change.id, ()):
                    _stale_gateway(stale, before, after, router_id)
                for fip_id in _floatingips_of_port(intent, change.id):
                    fip_router = intent.floatingips[fip_id].router_id
                    if fip_router is not None:
                        _stale_gateway(stale, before, after, fip_router)
            for intent in intents:
                port = intent.ports.get(change.id)
                if port is None:
                    continue
                stale.ports.add(port.id)
                stale.networks.add(port.network_id)  # remote_ports, flood, DHCP server
                stale.groups.update(port.security_group_ids)  # held while a local port is in it
                stale.address_sets.update(port.security_group_ids)  # members
                stale.address_sets.update(_remote_groups(intent, port.security_group_ids))
                hosts_before = before.chassis_by_network.get(port.network_id)
                if hosts_before != after.chassis_by_network.get(port.network_id):
                    stale.tunnels = True
                    # who holds the network's routers, and so their networks, changed
                    for other in intents:
                        for router_id in other.routers_by_network.get(port.network_id, ()):
                            stale.networks.update(other.router_networks(router_id))
                            _stale_gateway(stale, before, after, router_id)
        elif change.kind == "network":
            stale.networks.add(change.id)
            stale.tunnels = True  # its type decides tunnels and their encap
        elif change.kind == "subnet":
            for intent in intents:
                subnet = intent.subnets.get(change.id)
                if subnet is not None:
                    stale.networks.add(subnet.network_id)
                    for other in intents:  # the prefixes of their interfaces' and gateways'
                        # addresses, the gateways' next hops
                        stale.routers.update(other.routers_by_network.get(subnet.network_id, ()))
                        stale.routers.update(
                            other.routers_by_gateway_network.get(subnet.network_id, ()))
        elif change.kind == "security_group":
            stale.groups.add(change.id)
            for intent in intents:  # its rules, which a new or deleted group brings or takes
                stale.address_sets.update(_remote_groups(intent, [change.id]))
        elif change.kind == "security_group_rule":
            for intent in intents:
                rule = intent.rules.get(change.id)
                if rule is not None:
                    stale.groups.add(rule.security_group_id)
                    if rule.remote_group_id is not None:
                        stale.address_sets.add(rule.remote_group_id)
        elif change.kind == "chassis":  # its tunnel_ip; bridge mappings: physnet names above;
            stale.tunnels = True  # its gateway role: the routers scheduled on it
            for router_id in _rescheduled(before, after):
                _stale_gateway(stale, before, after, router_id)
        elif change.kind == "router":
            _stale_router(stale, before, after, change.id)
        elif change.kind == "floatingip":
            for intent in intents:
                fip = intent.floatingips.get(change.id)
                if fip is None:
                    continue
                floating_port = intent.ports.get(fip.floating_port_id)
                if floating_port is not None:  # remote_ports leave floating IP ports out
                    stale.networks.add(floating_port.network_id)
                if fip.router_id is not None:
                    _stale_gateway(stale, before, after, fip.router_id)
        else:
            return None
    stale.routers |= _routers_with_new_keys(before, after)
    return stale


def _routers_with_new_keys(before: Intent, after: Intent) -> set[str]:
    """Routers whose tunnel key differs (a router came or went; only a hash collision moves
    the key of another)."""
    if before.router_keys is after.router_keys:
        return set()
    old, new = before.router_keys, after.router_keys
    return {r for r in old.keys() & new.keys() if old[r] != new[r]}


def _port_item(intent: Intent, chassis: str, port_id: str) -> Document | None:
    port = intent.ports.get(port_id)
    return _port_policy(port) if port is not None and port.host == chassis else None


def _holds_router(intent: Intent, chassis: str, router_id: str) -> bool:
    return (chassis in intent.gateway_chassis(router_id)
            or any(chassis in intent.chassis_by_network.get(network_id, ())
                   for network_id in intent.router_networks(router_id)))


def _holds_network(intent: Intent, chassis: str, network_id: str) -> bool:
    return (chassis in intent.chassis_by_network.get(network_id, ())
            or any(_holds_router(intent, chassis, r)
                   for r in intent.routers_by_network.get(network_id, ()))
            or any(chassis in intent.external_hosts(r)
                   for r in intent.routers_by_gateway_network.get(network_id, ())))


def _network_item(intent: Intent, chassis: str, network_id: str) -> Document | None:
    network = intent.networks.get(network_id)
    if network is None or network.network_type not in NETWORK_TYPES:
        return None
    if not _holds_network(intent, chassis, network_id):
        return None
    return _network_policy(intent, network, chassis)


def _group_item(intent: Intent, chassis: str, group_id: str) -> Document | None:
    group = intent.security_groups.get(group_id)
    if group is None or chassis not in intent.chassis_by_group.get(group_id, ()):
        return None
    return _group_policy(intent, group)


def _address_set_item(intent: Intent, chassis: str, group_id: str) -> Document | None:
    if chassis not in intent.address_set_consumers(group_id):
        return None
    return _address_set(intent, group_id)


def _router_item(intent: Intent, chassis: str, router_id: str) -> Document | None:
    if not _holds_router(intent, chassis, router_id):
        return None
    return _router_policy(intent, router_id)


def _held_items(intent: Intent, chassis: str) -> tuple[list[str], list[str]]:
    """(routers, networks) the chassis holds (`_held`)."""
    local = {intent.ports[p].network_id for p in intent.ports_by_chassis.get(chassis, ())}
    return _held(intent, chassis, local)


def recompile_chassis(
    before: Intent, after: Intent, chassis: str, previous: Mapping[str, Document],
    changes: Sequence[Change],
) -> dict[str, Document]:
    """`compile_chassis(after, chassis)`, given `previous` = `compile_chassis(before, chassis)`
    and `changes` listing every object that differs between `before` and `after`: only the
    items the changes can alter are compiled again, every other document is `previous`'s
    (the same object). Falls back to `compile_chassis` when it cannot tell what changed."""
    stale = _stale_items(before, after, changes)
    if stale is None:
        return compile_chassis(after, chassis)
    docs = dict(previous)
    builders: list[tuple[ItemKind, set[str], Callable[[Intent, str, str], Document | None]]] = [
        ("port", stale.ports, _port_item),
        ("network", stale.networks, _network_item),
        ("security_group", stale.groups, _group_item),
        ("address_set", stale.address_sets, _address_set_item),
        ("router", stale.routers, _router_item),
    ]
    for kind, ids, build in builders:
        for id in ids:
            key = item_key(chassis, kind, id)
            doc = build(after, chassis, id)
            if doc is None:
                docs.pop(key, None)
            else:
                docs[key] = doc
    if stale.tunnels:
        routers, networks = _held_items(before, chassis)
        for key in _tunnel_items(before, chassis, networks, routers):
            docs.pop(key, None)
        routers, networks = _held_items(after, chassis)
        docs.update(_tunnel_items(after, chassis, networks, routers))
    return docs


# --- which chassis a change may affect ------------------------------------------------------


def _hosts_of_networks(intent: Intent, network_ids: Iterable[str]) -> set[str]:
    """Chassis holding one of the networks (a port bound on it, or a router into it)."""
    hosts: set[str] = set()
    for network_id in network_ids:
        hosts |= intent.network_hosts(network_id)
    return hosts


def _affected_in(intent: Intent, change: Change) -> set[str] | None:
    """Chassis whose documents read the changed object in this intent; None = unknown kind.
    (A router change also depends on both intents: `affected_chassis`.)"""
    if change.kind == "port":
        port = intent.ports.get(change.id)
        if port is None:
            return set()
        hosts = {port.host} if port.host else set()
        # remote_ports, flood, tunnels; the routers it is an interface of, or whose holders it
        # changes, have interfaces on its network: their holders hold it
        hosts |= intent.network_hosts(port.network_id)
        for group_id in port.security_group_ids:  # address sets it is a member of
            hosts |= intent.address_set_consumers(group_id)
        # the routers it is the gateway of, or the fixed or floating port of a floating IP of
        # (their external network is held by some of their holders)
        for router_id in intent.routers_by_gateway_port.get(change.id, ()):
            hosts |= intent.router_hosts(router_id)
        for fip_id in _floatingips_of_port(intent, change.id):
            fip_router = intent.floatingips[fip_id].router_id
            if fip_router is not None:
                hosts |= intent.router_hosts(fip_router)
        return hosts
    if change.kind in KINDS_WITHOUT_DOCUMENTS:  # port status (ACTIVE / DOWN), port forwardings
        return set()
    if change.kind == "floatingip":  # its router's item and external network; the remote_ports
        fip = intent.floatingips.get(change.id)  # of its port's network
        if fip is None:
            return set()
        hosts = intent.router_hosts(fip.router_id) if fip.router_id is not None else set()
        floating_port = intent.ports.get(fip.floating_port_id)
        if floating_port is not None:
            hosts |= intent.network_hosts(floating_port.network_id)
        return hosts
    if change.kind == "network":
        return intent.network_hosts(change.id)
    if change.kind == "subnet":  # its network's item; the addresses of routers' interfaces,
        subnet = intent.subnets.get(change.id)  # and of their gateways (and next hops)
        if subnet is None:
            return set()
        hosts = intent.network_hosts(subnet.network_id)
        for router_id in intent.routers_by_gateway_network.get(subnet.network_id, ()):
            hosts |= intent.router_hosts(router_id)
        return hosts
    if change.kind == "security_group":
        # the group's own document; address sets depend on port membership only (port changes)
        return set(intent.chassis_by_group.get(change.id, ()))
    if change.kind == "security_group_rule":
        rule = intent.rules.get(change.id)
        return set(intent.chassis_by_group.get(rule.security_group_id, ())) if rule else set()
    if change.kind == "chassis":  # its tunnel items on the chassis holding its overlay networks
        networks = {intent.ports[p].network_id for p in intent.ports_by_chassis.get(change.id, ())}
        overlays = [n for n in networks
                    if n in intent.networks and intent.networks[n].network_type in OVERLAY_TYPES]
        return _hosts_of_networks(intent, overlays) - {change.id}
    if change.kind == "router":  # its item; networks and tunnels held through it
        return intent.router_hosts(change.id)
    return None


def _all_chassis(intent: Intent) -> set[str]:
    return set(intent.ports_by_chassis) | set(intent.chassis)


def _moved_interfaces(before: Intent, after: Intent, router_id: str) -> set[str]:
    """Chassis holding a network where the router gained or lost an interface or its gateway
    port (the network's remote_ports leave them out)."""
    moved = set(before.interfaces_by_router.get(router_id, ())) ^ set(
        after.interfaces_by_router.get(router_id, ()))
    gateways = {intent.routers[router_id].gw_port_id if router_id in intent.routers else None
                for intent in (before, after)}
    if len(gateways) > 1:
        moved |= {p for p in gateways if p is not None}
    hosts: set[str] = set()
    for intent in (before, after):
        hosts |= _hosts_of_networks(intent, {intent.ports[p].network_id
                                             for p in moved if p in intent.ports})
    return hosts


def affected_chassis(before: Intent, after: Intent, changes: Sequence[Change]) -> set[str]:
    """Chassis whose compiled documents may differ between `before` and `after`, given that
    `changes` lists every object that differs. A chassis left out compiles to equal documents
    in both intents. Unknown change kinds make every chassis affected."""
    affected: set[str] = set()
    for change in changes:
        for intent in (before, after):
            hosts = _affected_in(intent, change)
            if hosts is None:
                return _all_chassis(before) | _all_chassis(after)
            affected |= hosts
        if change.kind == "router":
            affected |= _moved_interfaces(before, after, change.id)
        if change.kind == "chassis":
            for router_id in _rescheduled(before, after):
                affected |= before.router_hosts(router_id) | after.router_hosts(router_id)
    for router_id in _routers_with_new_keys(before, after):
        affected |= before.router_hosts(router_id) | after.router_hosts(router_id)
    if before.physical_networks != after.physical_networks:  # physnet indexes of tunnel keys
        for intent in (before, after):
            physical = [n.id for n in intent.networks.values() if n.network_type in PHYSICAL_TYPES]
            affected |= _hosts_of_networks(intent, physical)
    return affected
