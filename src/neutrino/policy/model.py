"""Policy documents, one kind per keyed item of a chassis.

The compiler turns intent (networks, subnets, ports, security groups) into these documents;
the distribution layer stores them under keys `/chassis/<chassis>/<kind>/<id>`, each with the
global revision that last changed it; the agent of that chassis renders them into OpenFlow.
Documents are small and independent so that a change to one port rewrites only the items of
the chassis that need it. They are frozen Pydantic models: JSON in and out, validated on the
way into the agent.

Item kinds (the published key layout; docs/policy-model.md documents every field):

| kind | id | on which chassis |
|---|---|---|
| `port` | port id | the chassis the port is bound to (binding:host_id) |
| `network` | network id | every chassis with a port on the network |
| `security_group` | group id | every chassis with a port in the group |
| `address_set` | group id | every chassis with a port whose groups name this group as remote |
| `tunnel` | peer chassis name | every chassis sharing an overlay network with the peer |
| `router` | router id | every chassis with a port on a network the router has an interface on |

A chassis that holds a `router` item also holds the `network` items of all the router's
interface networks (it routes into them: distributed routing happens on the source chassis),
and the `tunnel` items to the chassis holding their ports.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

ItemKind = Literal["port", "network", "security_group", "address_set", "tunnel", "router"]
ITEM_KINDS: tuple[ItemKind, ...] = ("port", "network", "security_group", "address_set", "tunnel",
                                    "router")


_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def _mac(value: str) -> str:
    if not _MAC.match(value):
        raise ValueError(f"{value!r} is not a MAC address")
    return value


def _ip(value: str) -> str:
    ipaddress.ip_network(value, strict=False)  # an address or a prefix (ValueError otherwise)
    return value


# Every value that goes into a flow match verbatim is checked here, where documents are built
# and loaded: one bad value would make the renderer or ovs-ofctl refuse every flow of a chassis
Mac = Annotated[str, AfterValidator(_mac)]
Ip = Annotated[str, AfterValidator(_ip)]  # an address, or a prefix where the field allows one
IpProtocol = Annotated[int, Field(ge=0, le=255)]
L4Port = Annotated[int, Field(ge=0, le=65535)]


class Document(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FixedIp(Document):
    subnet_id: str
    ip_address: Ip


class AddressPair(Document):
    ip_address: Ip  # an address or a CIDR
    mac_address: Mac


class DhcpOption(Document):
    opt_name: str
    opt_value: str
    ip_version: int = 4


class PortPolicy(Document):
    """A port bound to this chassis: what its VIF may send and receive."""

    id: str
    network_id: str
    mac_address: Mac
    fixed_ips: tuple[FixedIp, ...] = ()
    admin_state_up: bool = True
    port_security_enabled: bool = True
    allowed_address_pairs: tuple[AddressPair, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    device_owner: str = ""
    device_id: str = ""
    extra_dhcp_opts: tuple[DhcpOption, ...] = ()


class HostRoute(Document):
    destination: Ip
    nexthop: Ip


class SubnetPolicy(Document):
    id: str
    cidr: Ip
    ip_version: int
    gateway_ip: Ip | None = None
    enable_dhcp: bool = True
    dns_nameservers: tuple[Ip, ...] = ()
    host_routes: tuple[HostRoute, ...] = ()
    ipv6_ra_mode: str | None = None
    ipv6_address_mode: str | None = None
    dhcp_server_ip: Ip | None = None  # the address DHCP answers come from (the DHCP port's)
    dhcp_server_mac: Mac | None = None


class RemotePort(Document):
    """A port of the network bound to another chassis: where to tunnel frames for its MAC and
    which addresses to answer ARP/ND for."""

    id: str
    mac_address: Mac
    ip_addresses: tuple[Ip, ...] = ()
    chassis: str


class NetworkPolicy(Document):
    id: str
    network_type: Literal["flat", "vlan", "vxlan", "geneve"]
    segmentation_id: int | None = None  # tunnel key (VNI) or VLAN id
    physical_network: str | None = None
    mtu: int = 1500
    tunnel_key: int  # the network's key inside this chassis's pipeline (metadata)
    subnets: tuple[SubnetPolicy, ...] = ()
    remote_ports: tuple[RemotePort, ...] = ()
    flood_chassis: tuple[str, ...] = ()  # other chassis with ports on it (broadcast/unknown)


class SecurityGroupRulePolicy(Document):
    id: str
    direction: Literal["ingress", "egress"]
    ethertype: Literal["IPv4", "IPv6"]
    protocol: IpProtocol | None = None  # IP protocol number; None = any
    port_range_min: L4Port | None = None  # or ICMP type
    port_range_max: L4Port | None = None  # or ICMP code
    remote_ip_prefix: Ip | None = None
    remote_group_id: str | None = None


class SecurityGroupPolicy(Document):
    id: str
    stateful: bool = True
    rules: tuple[SecurityGroupRulePolicy, ...] = ()


class AddressSetPolicy(Document):
    """The addresses of every port in a security group (for rules with remote_group_id)."""

    id: str  # the security group id
    ipv4: tuple[Ip, ...] = ()
    ipv6: tuple[Ip, ...] = ()


class TunnelPolicy(Document):
    id: str  # the peer chassis name
    ip: Ip  # the peer's tunnel endpoint address
    encap: Literal["geneve", "vxlan"] = "geneve"


class RouterAddress(Document):
    """One address of a router interface, with the subnet it routes to."""

    subnet_id: str
    ip_address: Ip  # the interface's address on the subnet (the subnet's gateway, usually)
    cidr: Ip  # the subnet's prefix: routed to this interface directly (a connected route)


class RouterInterface(Document):
    """A router port on one of its internal networks (device_owner network:router_interface*)."""

    port_id: str
    network_id: str
    mac_address: Mac
    fixed_ips: tuple[RouterAddress, ...] = ()  # sorted by (subnet_id, ip_address)


class RouterRoute(Document):
    """An extra route (extraroute): `destination` through `nexthop`, an address on one of the
    router's connected subnets."""

    destination: Ip
    nexthop: Ip


class RouterGateway(Document):
    """A router's gateway port on its external network."""

    port_id: str
    network_id: str  # the external network (router:external)
    mac_address: Mac
    fixed_ips: tuple[RouterAddress, ...] = ()  # its addresses, with their subnets' prefixes
    next_hops: tuple[Ip, ...] = ()  # the gateway_ip of each of those subnets: default routes
    enable_snat: bool = True
    # the gateway chassis its SNAT is scheduled on, preferred first (neutrino.compiler.scheduling):
    # a chassis sends SNAT traffic to the first of them it reaches (BFD), or translates it
    # itself when it is on the list and reaches none before itself
    chassis: tuple[str, ...] = ()


class FloatingIpPolicy(Document):
    """A floating IP of the router: `floating_ip_address` on the gateway's external network
    stands for `fixed_ip_address` of `port_id`. Distributed: the chassis of that port
    translates it and answers ARP for it with `mac_address`, the floating IP port's MAC."""

    id: str
    floating_ip_address: Ip
    fixed_ip_address: Ip
    port_id: str
    mac_address: Mac
    chassis: str = ""  # where port_id is bound ("" = nowhere: nobody translates it)


class PortForwardingPolicy(Document):
    """A port forwarding of one of the router's floating IPs (one without an associated port):
    `protocol` traffic to `floating_ip_address`:`external_port` goes to
    `internal_ip_address`:`internal_port`. Centralized: the router's active gateway chassis
    answers ARP for the floating IP and translates it, as it does SNAT."""

    floating_ip_address: Ip
    protocol: Literal["tcp", "udp"]
    external_port: L4Port
    internal_ip_address: Ip
    internal_port: L4Port


class RouterPolicy(Document):
    id: str
    tunnel_key: int  # the router's key inside the pipeline (metadata while routing), see docs
    admin_state_up: bool = True
    interfaces: tuple[RouterInterface, ...] = ()  # sorted by port_id
    routes: tuple[RouterRoute, ...] = ()  # sorted by (destination, nexthop)
    gateway: RouterGateway | None = None
    floating_ips: tuple[FloatingIpPolicy, ...] = ()  # associated ones (with a port), sorted by id
    port_forwardings: tuple[PortForwardingPolicy, ...] = ()  # sorted


PolicyDocument = (PortPolicy | NetworkPolicy | SecurityGroupPolicy | AddressSetPolicy | TunnelPolicy
                  | RouterPolicy)

DOCUMENT_TYPES: dict[ItemKind, type[Document]] = {
    "port": PortPolicy,
    "network": NetworkPolicy,
    "security_group": SecurityGroupPolicy,
    "address_set": AddressSetPolicy,
    "tunnel": TunnelPolicy,
    "router": RouterPolicy,
}


def item_key(chassis: str, kind: ItemKind, item_id: str) -> str:
    """`/chassis/<chassis>/<kind>/<id>`."""
    return f"/chassis/{chassis}/{kind}/{item_id}"


def parse_key(key: str) -> tuple[str, ItemKind, str]:
    parts = key.split("/")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "chassis" or parts[3] not in ITEM_KINDS:
        raise ValueError(f"not a policy key: {key!r}")
    return parts[2], parts[3], parts[4]


def load_document(kind: ItemKind, data: object) -> Document:
    return DOCUMENT_TYPES[kind].model_validate(data)
