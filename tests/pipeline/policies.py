"""Hand-built policy documents for the pipeline tests: one geneve network, one port per host.

host1: port p1 (vm1, 10.0.0.1) in group `open`: egress anything; ingress ICMP from group
`closed` and TCP 5001 from anyone.
host2: port p2 (vm2, 10.0.0.2) in group `closed`: egress anything; ingress TCP 5001 from group
`open` only (no ICMP: pings to vm2 are dropped, its own pings' replies pass because conntrack
knows them).
"""

from __future__ import annotations

from neutrino.policy.model import (
    AddressSetPolicy,
    Document,
    FixedIp,
    NetworkPolicy,
    PortPolicy,
    RemotePort,
    SecurityGroupPolicy,
    SecurityGroupRulePolicy,
    SubnetPolicy,
    item_key,
)

NETWORK_ID = "net1"
VNI = 1001
NETWORK_KEY = 5
MAC = {"p1": "fa:16:3e:00:00:01", "p2": "fa:16:3e:00:00:02"}
IP = {"p1": "10.0.0.1", "p2": "10.0.0.2"}
HOST = {"p1": "host1", "p2": "host2"}
GROUP = {"p1": "open", "p2": "closed"}
SUBNET = SubnetPolicy(id="sub1", cidr="10.0.0.0/24", ip_version=4, gateway_ip=None)


def _egress_all(group: str) -> tuple[SecurityGroupRulePolicy, ...]:
    return (SecurityGroupRulePolicy(id=f"{group}-eg4", direction="egress", ethertype="IPv4"),
            SecurityGroupRulePolicy(id=f"{group}-eg6", direction="egress", ethertype="IPv6"))


GROUPS = {
    "open": SecurityGroupPolicy(id="open", rules=(
        *_egress_all("open"),
        SecurityGroupRulePolicy(id="open-icmp", direction="ingress", ethertype="IPv4", protocol=1,
                                remote_group_id="closed"),
        SecurityGroupRulePolicy(id="open-tcp", direction="ingress", ethertype="IPv4", protocol=6,
                                port_range_min=5001, port_range_max=5001, remote_ip_prefix="0.0.0.0/0"),
    )),
    "closed": SecurityGroupPolicy(id="closed", rules=(
        *_egress_all("closed"),
        SecurityGroupRulePolicy(id="closed-tcp", direction="ingress", ethertype="IPv4", protocol=6,
                                port_range_min=5001, port_range_max=5001, remote_group_id="open"),
    )),
}


def port(port_id: str, **changes: object) -> PortPolicy:
    base = PortPolicy(id=port_id, network_id=NETWORK_ID, mac_address=MAC[port_id],
                      fixed_ips=(FixedIp(subnet_id="sub1", ip_address=IP[port_id]),),
                      security_group_ids=(GROUP[port_id],), device_owner="compute:nova")
    return base.model_copy(update=changes)


def chassis_documents(local: str, **port_changes: object) -> dict[str, Document]:
    """The items chassis HOST[local] holds when `local` is its port (p1 or p2)."""
    remote = "p2" if local == "p1" else "p1"
    chassis = HOST[local]
    network = NetworkPolicy(
        id=NETWORK_ID, network_type="geneve", segmentation_id=VNI, mtu=1450, tunnel_key=NETWORK_KEY,
        subnets=(SUBNET,), flood_chassis=(HOST[remote],),
        remote_ports=(RemotePort(id=remote, mac_address=MAC[remote], ip_addresses=(IP[remote],),
                                 chassis=HOST[remote]),))
    group = GROUPS[GROUP[local]]
    remote_groups = {r.remote_group_id for r in group.rules if r.remote_group_id}
    docs: dict[str, Document] = {
        item_key(chassis, "port", local): port(local, **port_changes),
        item_key(chassis, "network", NETWORK_ID): network,
        item_key(chassis, "security_group", group.id): group,
    }
    for remote_group in sorted(remote_groups):
        members = [IP[p] for p, g in GROUP.items() if g == remote_group]
        docs[item_key(chassis, "address_set", remote_group)] = AddressSetPolicy(id=remote_group,
                                                                               ipv4=tuple(members))
    return docs
