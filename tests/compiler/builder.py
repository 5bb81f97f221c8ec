"""A small builder of `Intent` snapshots for compiler tests: readable ids, sensible defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from neutrino.compiler.intent import (
    ChassisRow,
    FloatingIpRow,
    Intent,
    NetworkRow,
    PortRow,
    RouterPortRow,
    RouterRow,
    RuleRow,
    SecurityGroupRow,
    SubnetRow,
)


@dataclass
class IntentBuilder:
    networks: dict[str, NetworkRow] = field(default_factory=dict)
    subnets: dict[str, SubnetRow] = field(default_factory=dict)
    ports: dict[str, PortRow] = field(default_factory=dict)
    groups: dict[str, SecurityGroupRow] = field(default_factory=dict)
    rules: dict[str, RuleRow] = field(default_factory=dict)
    chassis_rows: dict[str, ChassisRow] = field(default_factory=dict)
    routers: dict[str, RouterRow] = field(default_factory=dict)
    router_ports: dict[str, RouterPortRow] = field(default_factory=dict)
    floatingips: dict[str, FloatingIpRow] = field(default_factory=dict)

    def chassis(self, name: str, tunnel_ip: str, **mappings: str) -> IntentBuilder:
        self.chassis_rows[name] = ChassisRow(name, tunnel_ip, tuple(sorted(mappings.items())))
        return self

    def network(self, id: str, network_type: str = "geneve", segmentation_id: int | None = None,
                physical_network: str | None = None, mtu: int = 1442) -> IntentBuilder:
        if segmentation_id is None and network_type != "flat":
            segmentation_id = 100 + len(self.networks)
        self.networks[id] = NetworkRow(id, network_type, segmentation_id, physical_network, mtu)
        return self

    def subnet(self, id: str, network_id: str, cidr: str, **attrs: Any) -> IntentBuilder:
        attrs.setdefault("ip_version", 6 if ":" in cidr else 4)
        self.subnets[id] = SubnetRow(id=id, network_id=network_id, cidr=cidr, **attrs)
        return self

    def port(self, id: str, network_id: str, *ips: tuple[str, str], host: str = "",
             groups: tuple[str, ...] = (), mac: str | None = None, **attrs: Any) -> IntentBuilder:
        mac = mac or f"fa:16:3e:00:00:{len(self.ports) + 1:02x}"
        self.ports[id] = PortRow(id=id, network_id=network_id, mac_address=mac, fixed_ips=ips,
                                 host=host, security_group_ids=tuple(sorted(groups)), **attrs)
        return self

    def group(self, id: str, stateful: bool = True) -> IntentBuilder:
        self.groups[id] = SecurityGroupRow(id, stateful)
        return self

    def rule(self, id: str, group: str, direction: str = "ingress", ethertype: str = "IPv4",
             **attrs: Any) -> IntentBuilder:
        self.rules[id] = RuleRow(id=id, security_group_id=group, direction=direction,
                                 ethertype=ethertype, **attrs)
        return self

    def router(self, id: str, routes: tuple[tuple[str, str], ...] = (), **attrs: Any) -> IntentBuilder:
        self.routers[id] = RouterRow(id=id, routes=tuple(sorted(routes)), **attrs)
        return self

    def interface(self, router_id: str, port_id: str, network_id: str, *ips: tuple[str, str],
                  port_type: str = "network:router_interface_distributed",
                  **attrs: Any) -> IntentBuilder:
        """A router port: the port (device_owner = port_type, device_id = the router) and its
        router_ports row."""
        self.port(port_id, network_id, *ips, device_owner=port_type, device_id=router_id, **attrs)
        self.router_ports[port_id] = RouterPortRow(port_id, router_id, port_type)
        return self

    def floatingip(self, id: str, port_id: str, network_id: str, address: tuple[str, str],
                   fixed_port_id: str | None = None, fixed_ip_address: str | None = None,
                   router_id: str | None = None, mac: str | None = None) -> IntentBuilder:
        """A floating IP and its port (network:floatingip, unbound) holding `address`
        (subnet_id, ip_address); associated when fixed_port_id is given."""
        self.port(port_id, network_id, address, device_owner="network:floatingip",
                  device_id=id, mac=mac)
        self.floatingips[id] = FloatingIpRow(id, network_id, port_id, address[1], fixed_port_id,
                                             fixed_ip_address, router_id)
        return self

    def build(self) -> Intent:
        return Intent(networks=dict(self.networks), subnets=dict(self.subnets),
                      ports=dict(self.ports), security_groups=dict(self.groups),
                      rules=dict(self.rules), chassis=dict(self.chassis_rows),
                      routers=dict(self.routers), router_ports=dict(self.router_ports),
                      floatingips=dict(self.floatingips))
