"""Server settings: one frozen dataclass built from CLI flags and environment.

Nothing here touches the network or the database; other modules receive a `Settings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_STATE_DIR = Path(os.environ.get("NEUTRINO_STATE_DIR", "~/.neutrino/server")).expanduser()


@dataclass(frozen=True)
class SegmentRange:
    """A range of tenant segment ids the server may allocate for one network type."""

    network_type: str  # vxlan | geneve | vlan
    minimum: int
    maximum: int
    physical_network: str | None = None  # only for vlan


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 9696
    state_dir: Path = DEFAULT_STATE_DIR
    database: str | None = None  # SQLAlchemy URL; default SQLite file under state_dir
    # "keystone" (built-in Keystone v3 subset), "noauth" (development), or "external"
    auth: str = "keystone"
    keystone_url: str | None = None  # validate tokens of an external Keystone instead
    admin_password: str | None = None
    region: str = "RegionOne"
    token_ttl_seconds: int = 3600 * 12
    base_mac: str = "fa:16:3e:00:00:00"
    # tenant networks get this type with ids from the matching range
    tenant_network_type: str = "geneve"
    segment_ranges: tuple[SegmentRange, ...] = field(
        default_factory=lambda: (
            SegmentRange("geneve", 1, 65535),
            SegmentRange("vxlan", 1, 65535),
            SegmentRange("vlan", 100, 4094, "physnet1"),
        )
    )
    # physical networks operators may use for flat/vlan provider networks
    physical_networks: tuple[str, ...] = ("physnet1", "public")
    global_physnet_mtu: int = 1500
    overlay_ip_version: int = 4
    public_url: str | None = None  # what the catalog advertises; default http://host:port
    # Nova's API root (http://nova:8774): port status changes are sent to it as
    # os-server-external-events (network-vif-plugged / -unplugged); None: not sent
    compute_url: str | None = None
    # agents heartbeat every `agent_heartbeat_interval` seconds; an agent is alive while its
    # last heartbeat is at most 3 intervals old
    agent_heartbeat_interval: float = 1.0
    # an idle policy stream sends a keepalive line this often (seconds)
    policy_keepalive_interval: float = 5.0
    # run the compiler loop (outbox -> policy store) inside the server
    compiler_enabled: bool = True
    # routers (Neutron's router_distributed, l3_ha, enable_snat_by_default, max_routes): the
    # `distributed` and `ha` a router gets when its creator does not say, SNAT on a gateway
    # unless `enable_snat` says otherwise, and the most extra routes one router may have
    router_distributed: bool = False
    l3_ha: bool = False
    enable_snat_by_default: bool = True
    max_routes: int = 30

    @property
    def database_url(self) -> str:
        if self.database:
            return self.database
        return f"sqlite:///{self.state_dir / 'neutrino.sqlite'}"

    @property
    def root_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    def overlay_mtu(self, network_type: str) -> int:
        """Tenant MTU: physical MTU minus the encapsulation overhead (as Neutron computes it)."""
        ip_overhead = 20 if self.overlay_ip_version == 4 else 40
        overhead = {"vxlan": 30 + ip_overhead, "geneve": 30 + ip_overhead + 8}.get(network_type, 0)
        return self.global_physnet_mtu - overhead
