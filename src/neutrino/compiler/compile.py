"""Compilation: intent snapshot -> the complete set of policy documents of one chassis, and which
chassis a set of changes may affect.

Both functions are pure: they read an `Intent` and return new values. `compile_chassis` is
deterministic (every tuple in a document is in a defined order), so compiling equal intents
gives equal documents and the distribution layer can diff old and new sets item by item.
docs/policy-model.md states, field by field, what each document holds and which chassis gets it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from neutrino.api.validators import protocol_number
from neutrino.compiler.intent import (
    OVERLAY_TYPES,
    PHYSICAL_TYPES,
    Intent,
    NetworkRow,
    PortRow,
    RuleRow,
    SecurityGroupRow,
)
from neutrino.db.outbox import PORT_STATUS_KIND, Change
from neutrino.policy.model import (
    AddressPair,
    AddressSetPolicy,
    DhcpOption,
    Document,
    FixedIp,
    HostRoute,
    NetworkPolicy,
    PortPolicy,
    RemotePort,
    SecurityGroupPolicy,
    SecurityGroupRulePolicy,
    SubnetPolicy,
    TunnelPolicy,
    item_key,
)

__all__ = ["TUNNEL_KEY_TYPE_CODES", "affected_chassis", "compile_chassis", "tunnel_key"]

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


def _network_policy(intent: Intent, network: NetworkRow, chassis: str) -> NetworkPolicy:
    remote_ports = []
    for port_id in intent.ports_by_network.get(network.id, ()):
        port = intent.ports[port_id]
        if port.host and port.host != chassis:
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


def compile_chassis(intent: Intent, chassis: str) -> dict[str, Document]:
    """Every item the chassis must hold: `item_key(chassis, kind, id)` -> document."""
    docs: dict[str, Document] = {}
    local = [intent.ports[p] for p in intent.ports_by_chassis.get(chassis, ())]
    for port in local:
        docs[item_key(chassis, "port", port.id)] = _port_policy(port)

    peers: dict[str, str] = {}  # peer chassis -> encap
    for network_id in sorted({p.network_id for p in local}):
        network = intent.networks.get(network_id)
        if network is None or network.network_type not in NETWORK_TYPES:
            continue
        docs[item_key(chassis, "network", network_id)] = _network_policy(intent, network, chassis)
        if network.network_type in OVERLAY_TYPES:
            for peer in intent.chassis_by_network.get(network_id, ()):
                if peer != chassis and peers.get(peer) != "geneve":
                    peers[peer] = network.network_type

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

    for peer, encap in sorted(peers.items()):
        row = intent.chassis.get(peer)
        if row is not None:
            docs[item_key(chassis, "tunnel", peer)] = TunnelPolicy(
                id=peer, ip=row.tunnel_ip, encap=encap  # type: ignore[arg-type]
            )
    return docs


# --- which chassis a change may affect ------------------------------------------------------


def _hosts_on_networks(intent: Intent, network_ids: Iterable[str]) -> set[str]:
    hosts: set[str] = set()
    for network_id in network_ids:
        hosts.update(intent.chassis_by_network.get(network_id, ()))
    return hosts


def _affected_in(intent: Intent, change: Change) -> set[str] | None:
    """Chassis whose documents read the changed object in this intent; None = unknown kind."""
    if change.kind == "port":
        port = intent.ports.get(change.id)
        if port is None:
            return set()
        hosts = {port.host} if port.host else set()
        hosts |= _hosts_on_networks(intent, [port.network_id])  # remote_ports, flood, tunnels
        for group_id in port.security_group_ids:  # address sets it is a member of
            hosts |= intent.address_set_consumers(group_id)
        return hosts
    if change.kind == PORT_STATUS_KIND:  # ACTIVE / DOWN reported by an agent: no policy input
        return set()
    if change.kind == "network":
        return _hosts_on_networks(intent, [change.id])
    if change.kind == "subnet":
        subnet = intent.subnets.get(change.id)
        return _hosts_on_networks(intent, [subnet.network_id]) if subnet else set()
    if change.kind == "security_group":
        # the group's own document; address sets depend on port membership only (port changes)
        return set(intent.chassis_by_group.get(change.id, ()))
    if change.kind == "security_group_rule":
        rule = intent.rules.get(change.id)
        return set(intent.chassis_by_group.get(rule.security_group_id, ())) if rule else set()
    if change.kind == "chassis":  # its tunnel items on the chassis sharing overlay networks
        networks = {intent.ports[p].network_id for p in intent.ports_by_chassis.get(change.id, ())}
        overlays = [n for n in networks
                    if n in intent.networks and intent.networks[n].network_type in OVERLAY_TYPES]
        return _hosts_on_networks(intent, overlays) - {change.id}
    return None


def _all_chassis(intent: Intent) -> set[str]:
    return set(intent.ports_by_chassis) | set(intent.chassis)


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
    if before.physical_networks != after.physical_networks:  # physnet indexes of tunnel keys
        for intent in (before, after):
            physical = [n.id for n in intent.networks.values() if n.network_type in PHYSICAL_TYPES]
            affected |= _hosts_on_networks(intent, physical)
    return affected
