"""Tables of the networking intent (Neutron resources), tags and the change outbox.

Each resource table carries Neutron's standard attributes as columns (id, project_id, name,
description, created_at, updated_at, revision_number). Attributes that are lists or dicts
in the API (allocation pools, allowed address pairs, binding profile...) are JSON columns;
relations that need uniqueness or lookups (IP allocations, port security groups, tags) are
tables of their own.

`outbox` is the contract with the compiler: every committed mutation adds one row holding the
ids of what it changed; its autoincrement key is the global revision.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from neutrino.db.meta import metadata

ID = String(36)
TS = String(20)  # "2026-11-21T07:30:00Z", as Neutron renders timestamps


def _standard(*columns: Column | Index | UniqueConstraint | PrimaryKeyConstraint) -> list:
    """Neutron's standard attributes, shared by every resource table."""
    return [
        Column("id", ID, primary_key=True),
        Column("project_id", String(255), nullable=False, index=True),
        Column("name", String(255), nullable=False, default=""),
        Column("description", String(255), nullable=False, default=""),
        Column("created_at", TS, nullable=False),
        Column("updated_at", TS, nullable=False),
        Column("revision_number", Integer, nullable=False, default=1),
        *columns,
    ]


networks = Table(
    "networks",
    metadata,
    *_standard(
        Column("admin_state_up", Boolean, nullable=False),
        Column("shared", Boolean, nullable=False),
        Column("router_external", Boolean, nullable=False),
        Column("mtu", Integer, nullable=False),
        Column("status", String(16), nullable=False),
        Column("availability_zone_hints", JSON, nullable=False),
        Column("port_security_enabled", Boolean, nullable=False),
        Column("network_type", String(32), nullable=False),
        Column("physical_network", String(64)),
        Column("segmentation_id", Integer),
        # "<type>:<physnet>:<id>" for every segment that must be unique (NULL never collides)
        Column("segment_key", String(128), unique=True),
    ),
)

subnets = Table(
    "subnets",
    metadata,
    *_standard(
        Column("network_id", ID, ForeignKey("networks.id"), nullable=False, index=True),
        Column("cidr", String(64), nullable=False),
        Column("ip_version", Integer, nullable=False),
        Column("gateway_ip", String(64)),
        Column("allocation_pools", JSON, nullable=False),
        Column("dns_nameservers", JSON, nullable=False),
        Column("host_routes", JSON, nullable=False),
        Column("enable_dhcp", Boolean, nullable=False),
        Column("ipv6_ra_mode", String(32)),
        Column("ipv6_address_mode", String(32)),
    ),
)

ports = Table(
    "ports",
    metadata,
    *_standard(
        Column("network_id", ID, ForeignKey("networks.id"), nullable=False, index=True),
        Column("mac_address", String(32), nullable=False),
        Column("admin_state_up", Boolean, nullable=False),
        Column("status", String(16), nullable=False),
        Column("device_id", String(255), nullable=False, index=True),
        Column("device_owner", String(255), nullable=False),
        Column("binding_host_id", String(255), nullable=False, index=True),
        Column("binding_vnic_type", String(32), nullable=False),
        Column("binding_profile", JSON, nullable=False),
        Column("binding_vif_type", String(64), nullable=False),
        Column("binding_vif_details", JSON, nullable=False),
        Column("port_security_enabled", Boolean, nullable=False),
        Column("allowed_address_pairs", JSON, nullable=False),
        Column("extra_dhcp_opts", JSON, nullable=False),
        UniqueConstraint("network_id", "mac_address"),
    ),
)

ip_allocations = Table(
    "ip_allocations",
    metadata,
    Column("port_id", ID, ForeignKey("ports.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("subnet_id", ID, ForeignKey("subnets.id"), nullable=False),
    Column("network_id", ID, nullable=False),
    Column("ip_address", String(64), nullable=False),
    Column("position", Integer, nullable=False),  # order of fixed_ips as the user gave them
    PrimaryKeyConstraint("subnet_id", "ip_address"),
)

security_groups = Table(
    "security_groups",
    metadata,
    *_standard(Column("stateful", Boolean, nullable=False)),
)

# the one `default` group of each project, created on first use
default_security_groups = Table(
    "default_security_groups",
    metadata,
    Column("project_id", String(255), primary_key=True),
    Column(
        "security_group_id",
        ID,
        ForeignKey("security_groups.id", ondelete="CASCADE"),
        nullable=False,
    ),
)

security_group_rules = Table(
    "security_group_rules",
    metadata,
    *_standard(
        Column(
            "security_group_id",
            ID,
            ForeignKey("security_groups.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        Column("direction", String(16), nullable=False),
        Column("ethertype", String(8), nullable=False),
        Column("protocol", String(40)),
        Column("port_range_min", Integer),
        Column("port_range_max", Integer),
        Column("remote_ip_prefix", String(64)),
        Column("remote_group_id", ID, ForeignKey("security_groups.id"), index=True),
        Column("remote_address_group_id", ID),
        Column("normalized_cidr", String(64)),
    ),
)

port_security_groups = Table(
    "port_security_groups",
    metadata,
    Column("port_id", ID, ForeignKey("ports.id", ondelete="CASCADE"), nullable=False),
    Column("security_group_id", ID, ForeignKey("security_groups.id"), nullable=False, index=True),
    PrimaryKeyConstraint("port_id", "security_group_id"),
)

# --- L3: routers, their ports, floating IPs and port forwardings --------------------------------

routers = Table(
    "routers",
    metadata,
    *_standard(
        Column("admin_state_up", Boolean, nullable=False),
        Column("status", String(16), nullable=False),
        # the gateway port (device_owner network:router_gateway) on an external network
        Column("gw_port_id", ID, ForeignKey("ports.id"), unique=True),
        Column("enable_snat", Boolean, nullable=False),
        Column("distributed", Boolean, nullable=False),
        Column("ha", Boolean, nullable=False),
        Column("routes", JSON, nullable=False),  # extra routes: [{"destination", "nexthop"}]
    ),
)

# which ports a router owns (Neutron's routerports): its interfaces and its gateway port
router_ports = Table(
    "router_ports",
    metadata,
    Column("port_id", ID, ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True),
    Column("router_id", ID, ForeignKey("routers.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("port_type", String(255), nullable=False),  # the port's device_owner
)

floatingips = Table(
    "floatingips",
    metadata,
    *_standard(
        Column("floating_network_id", ID, ForeignKey("networks.id"), nullable=False, index=True),
        # the port (device_owner network:floatingip) holding the address on the external network
        Column("floating_port_id", ID, ForeignKey("ports.id"), nullable=False, unique=True),
        Column("floating_ip_address", String(64), nullable=False),
        Column("fixed_port_id", ID, ForeignKey("ports.id"), index=True),
        Column("fixed_ip_address", String(64)),
        Column("router_id", ID, ForeignKey("routers.id"), index=True),
        Column("status", String(16), nullable=False),
        # one floating IP per fixed address and external network (NULLs never collide)
        UniqueConstraint("floating_network_id", "fixed_port_id", "fixed_ip_address",
                         name="uq_floatingips_fixed"),
    ),
)

port_forwardings = Table(
    "port_forwardings",
    metadata,
    Column("id", ID, primary_key=True),
    Column("floatingip_id", ID, ForeignKey("floatingips.id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("project_id", String(255), nullable=False, index=True),  # the floating IP's project
    Column("external_port", Integer, nullable=False),
    Column("internal_port_id", ID, ForeignKey("ports.id"), nullable=False, index=True),
    Column("internal_ip_address", String(64), nullable=False),
    Column("internal_port", Integer, nullable=False),
    Column("protocol", String(40), nullable=False),
    Column("description", String(1024), nullable=False),
    # Neutron's two uniqueness rules: one mapping per external port, one per internal socket
    UniqueConstraint("floatingip_id", "external_port", "protocol",
                     name="uq_port_forwardings_external"),
    UniqueConstraint("internal_port_id", "internal_ip_address", "internal_port", "protocol",
                     name="uq_port_forwardings_internal"),
)

tags = Table(
    "tags",
    metadata,
    Column("resource_type", String(32), nullable=False),
    Column("resource_id", ID, nullable=False),
    Column("tag", String(255), nullable=False),
    PrimaryKeyConstraint("resource_type", "resource_id", "tag"),
    Index("ix_tags_tag", "tag"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("revision", Integer, primary_key=True, autoincrement=True),
    Column("created_at", TS, nullable=False),
    # [{"kind": "port", "id": "...", "op": "create|update|delete"}, ...]
    Column("changes", Text, nullable=False),
)

# --- the data plane's side: chassis (hosts with an agent) and their compiled policy ------------

chassis = Table(
    "chassis",
    metadata,
    Column("name", String(255), primary_key=True),  # the host name (binding:host_id)
    Column("agent_id", ID, nullable=False, unique=True),  # the id GET /v2.0/agents shows
    Column("tunnel_ip", String(64), nullable=False),
    Column("bridge_mappings", JSON, nullable=False),  # {"physnet1": "br-ex"}
    Column("is_gateway", Boolean, nullable=False, default=False),
    Column("gateway_priority", Integer, nullable=False, default=0),
    Column("availability_zone", String(255), nullable=False, default="nova"),
    Column("configurations", JSON, nullable=False),  # what the agent reports about itself
    Column("admin_state_up", Boolean, nullable=False, default=True),
    Column("created_at", TS, nullable=False),
    Column("started_at", TS, nullable=False),
    Column("heartbeat_at", TS, nullable=False),
    Column("realised_revision", Integer, nullable=False, default=0),  # policy live on the host
    # fault management (neutrino.faults): "up" / "down" as the inspector (or an admin) decided,
    # an admin's forced_down (Nova's os-services force_down), maintenance (drained: no gateway
    # roles), and when the state last changed (epoch seconds)
    Column("state", String(16), nullable=False, server_default="up"),
    Column("forced_down", Boolean, nullable=False, server_default="0"),
    Column("maintenance", Boolean, nullable=False, server_default="0"),
    Column("state_changed_at", Float, nullable=False, server_default="0"),
)

policy_items = Table(
    "policy_items",
    metadata,
    Column("key", String(512), primary_key=True),  # /chassis/<chassis>/<kind>/<id>
    Column("chassis", String(255), nullable=False),
    Column("revision", Integer, nullable=False),  # global revision of the last change
    Column("document", Text),  # JSON; NULL marks a deletion (kept until compacted)
    Index("ix_policy_items_chassis_revision", "chassis", "revision"),
)

# where the compiler and the distribution store stand: `compiled_revision` (the last outbox
# revision whose policy is in policy_items) and `compacted_revision` (changes after it are all
# still known: deletion markers at or before it may have been dropped)
compiler_state = Table(
    "compiler_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Integer, nullable=False),
)


# --- fault management (neutrino.faults) --------------------------------------------------------

faults = Table(
    "faults",
    metadata,
    Column("id", ID, primary_key=True),
    Column("type", String(64), nullable=False),  # host.down, port.down, link.down, ...
    Column("severity", String(16), nullable=False),  # critical, major, minor, warning
    Column("state", String(16), nullable=False),  # active, cleared
    Column("resource_type", String(32), nullable=False),  # host, port, link
    Column("resource_id", String(255), nullable=False),
    Column("source", String(64), nullable=False),  # what decided it: heartbeat, bfd, report, ...
    Column("fault_time", Float, nullable=False),  # best estimate of when it happened (epoch s)
    Column("detected_at", Float, nullable=False),
    Column("cleared_at", Float),
    # {"hosts": [...], "ports": [...], "instances": [...], "routers": [...]}
    Column("affected", JSON, nullable=False),
    Column("project_ids", JSON, nullable=False),  # projects owning an affected resource
    Index("ix_faults_resource", "resource_type", "resource_id", "state"),
)

fault_subscriptions = Table(
    "fault_subscriptions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("project_id", String(255), nullable=False, index=True),
    Column("url", String(2048), nullable=False),
    Column("event_types", JSON, nullable=False),  # [] = every type
    Column("resource_ids", JSON, nullable=False),  # [] = every resource the project may see
    Column("description", String(255), nullable=False, server_default=""),
    Column("created_at", TS, nullable=False),
)

# the webhook outbox: one row per (event, subscription), delivered at least once
fault_deliveries = Table(
    "fault_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscription_id", ID, ForeignKey("fault_subscriptions.id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("event_id", ID, nullable=False),
    Column("event", JSON, nullable=False),  # the CloudEvents envelope, as sent
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("delivered_at", Float),
    Column("last_error", String(1024)),
    UniqueConstraint("subscription_id", "event_id", name="uq_fault_deliveries_event"),
    Index("ix_fault_deliveries_pending", "delivered_at", "next_attempt_at"),
)
