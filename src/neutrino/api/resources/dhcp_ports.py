"""The network's DHCP port, kept by the server as Neutron's DHCP agent keeps it.

Every network with an IPv4 subnet that has `enable_dhcp` gets one port with
`device_owner=network:dhcp` and `device_id=dhcp-<network id>`, owned by the network's project,
holding one address on each such subnet (the lowest free one, so usually `.2`). That address and
the port's MAC are where DHCP answers come from: the agent on every chassis answers natively
(`neutrino.agent.dhcp`) in the name of this port, so the port is not bound to any host and its
status is ACTIVE.

`sync` runs inside the transaction of the subnet change that calls for it, so the port appears,
gains or loses an address, or goes away atomically with the subnet. A subnet with no free
address left gets no DHCP address (DHCP is then not served on it) rather than failing the
subnet change.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, select

from neutrino import ipam
from neutrino.api.resources.base import new_id
from neutrino.db.outbox import Change
from neutrino.db.schema import ip_allocations, networks, ports, subnets
from neutrino.timeutil import now_iso

DHCP_OWNER = "network:dhcp"


def dhcp_device_id(network_id: str) -> str:
    return f"dhcp-{network_id}"


class DhcpPorts:
    """Keeps each network's DHCP port in step with its DHCP-enabled IPv4 subnets.

    `ports` is the Ports resource: its IPAM (lowest free address, shared address hints) and MAC
    allocation are used, so DHCP ports obey the same rules as every other port."""

    def __init__(self, ports_resource: Any) -> None:
        self.ports = ports_resource

    def sync(self, conn: Connection, network_id: str) -> list[Change]:
        # the network row is locked first, so that two servers syncing the same network
        # (several servers on one PostgreSQL) take turns instead of making two DHCP ports.
        # NO KEY UPDATE: it does not conflict with the KEY SHARE lock that inserting the
        # subnet (a foreign key to the network) already took, so two such writers queue here
        # instead of deadlocking
        conn.execute(select(networks.c.id).where(networks.c.id == network_id)
                     .with_for_update(key_share=True))  # PostgreSQL: FOR NO KEY UPDATE
        wanted = conn.execute(
            select(subnets).where(subnets.c.network_id == network_id, subnets.c.ip_version == 4,
                                  subnets.c.enable_dhcp.is_(True))
            .order_by(subnets.c.created_at, subnets.c.id)
        ).all()
        port = conn.execute(
            select(ports.c.id).where(
                ports.c.network_id == network_id, ports.c.device_owner == DHCP_OWNER,
                ports.c.device_id == dhcp_device_id(network_id))
        ).first()
        if port is None and not wanted:
            return []
        created = port is None
        port_id = self._create(conn, network_id) if port is None else port.id
        held = {r.subnet_id: (r.ip_address, r.ip_version, r.position) for r in conn.execute(
            select(ip_allocations.c.subnet_id, ip_allocations.c.ip_address, subnets.c.ip_version,
                   ip_allocations.c.position)
            .join(subnets, subnets.c.id == ip_allocations.c.subnet_id)
            .where(ip_allocations.c.port_id == port_id))}
        wanted_ids = {s.id for s in wanted}
        # only its IPv4 addresses are the DHCP port's business (SLAAC ones come with any port)
        stale = [s for s, (_a, version, _p) in held.items() if version == 4 and s not in wanted_ids]
        for subnet_id in stale:
            self.ports.hints.freed(subnet_id, ipam.ip_to_int(held[subnet_id][0]))
            conn.execute(delete(ip_allocations).where(ip_allocations.c.port_id == port_id,
                                                      ip_allocations.c.subnet_id == subnet_id))
        added = []
        for subnet in wanted:
            if subnet.id in held:
                continue
            address = self.ports._pick(conn, subnet, network_id, exclude=set(), fail=False)
            if address is not None:
                added.append((subnet.id, address))
        if added:
            position = max((p for _a, _v, p in held.values()), default=99) + 1
            conn.execute(insert(ip_allocations), [
                {"port_id": port_id, "subnet_id": s, "network_id": network_id, "ip_address": a,
                 "position": position + n} for n, (s, a) in enumerate(added)])
        serving = len(added) + sum(1 for s in held if s in wanted_ids)
        if not serving:  # no DHCP address left (or none free): no DHCP port
            conn.execute(delete(ip_allocations).where(ip_allocations.c.port_id == port_id))
            conn.execute(delete(ports).where(ports.c.id == port_id))
            return [] if created else [Change("port", port_id, "delete")]
        if created:
            return [Change("port", port_id, "create")]
        if not stale and not added:
            return []
        self.ports.touch(conn, port_id, {})
        return [Change("port", port_id, "update")]

    def _create(self, conn: Connection, network_id: str) -> str:
        net = conn.execute(select(networks.c.project_id).where(networks.c.id == network_id)).one()
        mac = self.ports._mac(conn, network_id, None)
        stamp = now_iso()
        port_id = new_id()
        conn.execute(insert(ports).values(
            id=port_id, project_id=net.project_id, name="", description="", created_at=stamp,
            updated_at=stamp, revision_number=1, network_id=network_id, mac_address=mac,
            admin_state_up=True, status="ACTIVE", device_id=dhcp_device_id(network_id),
            device_owner=DHCP_OWNER, binding_host_id="", binding_vnic_type="normal",
            binding_profile={}, binding_vif_type="unbound", binding_vif_details={},
            port_security_enabled=False, allowed_address_pairs=[], extra_dhcp_opts=[],
        ))
        # like any port, it has its EUI-64 address on each SLAAC subnet
        from neutrino.api.resources.subnets import is_auto_address  # (subnets imports us)
        auto = [(r.id, ipam.eui64_address(r.cidr, mac)) for r in conn.execute(
            select(subnets).where(subnets.c.network_id == network_id, subnets.c.ip_version == 6))
            if is_auto_address(r)]
        if auto:
            conn.execute(insert(ip_allocations), [
                {"port_id": port_id, "subnet_id": s, "network_id": network_id, "ip_address": a,
                 "position": 1000 + n} for n, (s, a) in enumerate(auto)])
        return port_id
