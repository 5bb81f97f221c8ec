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
        wanted = conn.execute(
            select(subnets).where(subnets.c.network_id == network_id, subnets.c.ip_version == 4,
                                  subnets.c.enable_dhcp.is_(True))
            .order_by(subnets.c.created_at, subnets.c.id)
        ).all()
        port = conn.execute(
            select(ports.c.id).where(
                ports.c.network_id == network_id, ports.c.device_owner == DHCP_OWNER)
            .order_by(ports.c.created_at, ports.c.id)
        ).first()
        if port is None and not wanted:
            return []
        if port is None:
            port_id = self._create(conn, network_id)
            held: dict[str, str] = {}
            change = Change("port", port_id, "create")
        else:
            port_id = port.id
            held = {r.subnet_id: r.ip_address for r in conn.execute(
                select(ip_allocations.c.subnet_id, ip_allocations.c.ip_address)
                .where(ip_allocations.c.port_id == port_id))}
            change = Change("port", port_id, "update")
        wanted_ids = {s.id for s in wanted}
        stale = [s for s in held if s not in wanted_ids]
        for subnet_id in stale:
            self.ports.hints.freed(subnet_id, ipam.ip_to_int(held[subnet_id]))
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
            position = 100 + len(held)
            conn.execute(insert(ip_allocations), [
                {"port_id": port_id, "subnet_id": s, "network_id": network_id, "ip_address": a,
                 "position": position + n} for n, (s, a) in enumerate(added)])
        if not wanted:  # no DHCP subnet left: the port goes
            conn.execute(delete(ip_allocations).where(ip_allocations.c.port_id == port_id))
            conn.execute(delete(ports).where(ports.c.id == port_id))
            return [Change("port", port_id, "delete")]
        if change.op == "update" and not stale and not added:
            return []
        if change.op == "update":
            self.ports.touch(conn, port_id, {})
        return [change]

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
        return port_id
