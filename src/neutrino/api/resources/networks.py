"""Networks: L2 domains, with provider segments (flat/vlan/vxlan/geneve) and tenant segment ids
allocated from the configured ranges."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Select, delete, insert, or_, select

from neutrino.api.attributes import (
    UNSET,
    Attr,
    dict_or_empty,
    list_of_strings,
    one_of,
    standard_attributes,
    string_or_none,
    to_boolean,
    to_int_or_none,
)
from neutrino.api.errors import BadRequest, Conflict, Forbidden, InvalidInput
from neutrino.api.resources.base import Resource
from neutrino.context import RequestContext
from neutrino.db.outbox import Change
from neutrino.db.schema import ip_allocations, networks, ports, subnets

NETWORK_TYPES = ("flat", "vlan", "vxlan", "geneve")
OVERLAY_TYPES = ("vxlan", "geneve")
# ports the network owns itself and removes with it (Neutron's "network:*" service ports)
AUTO_DELETE_OWNERS = ("network:dhcp",)

_ = dict_or_empty  # keep import surface small for subclasses

ATTRIBUTES: dict[str, Attr] = {
    **standard_attributes(),
    "admin_state_up": Attr("admin_state_up", column="admin_state_up", convert=to_boolean,
                           default=True, schema={"type": "boolean"}),
    "status": Attr("status", column="status", allow_post=False, allow_put=False),
    "shared": Attr("shared", column="shared", convert=to_boolean, default=False,
                   admin_only=True, schema={"type": "boolean"}),
    "router:external": Attr("router:external", column="router_external", convert=to_boolean,
                            default=False, admin_only=True, schema={"type": "boolean"}),
    "mtu": Attr("mtu", column="mtu", convert=to_int_or_none(68, 65535), default=None,
                schema={"type": "integer", "minimum": 68, "maximum": 65535}),
    "port_security_enabled": Attr("port_security_enabled", column="port_security_enabled",
                                  convert=to_boolean, default=True, schema={"type": "boolean"}),
    "availability_zone_hints": Attr("availability_zone_hints", convert=list_of_strings(255),
                                    default=[], allow_put=False,
                                    schema={"type": "array", "items": {"type": "string"}}),
    "availability_zones": Attr("availability_zones", allow_post=False, allow_put=False,
                               filterable=False),
    "subnets": Attr("subnets", allow_post=False, allow_put=False),
    "provider:network_type": Attr("provider:network_type", column="network_type",
                                  convert=one_of(*NETWORK_TYPES), admin_only=True,
                                  admin_visible_only=True, allow_put=False,
                                  schema={"type": "string", "enum": list(NETWORK_TYPES)}),
    "provider:physical_network": Attr("provider:physical_network", column="physical_network",
                                      convert=string_or_none(64), admin_only=True,
                                      admin_visible_only=True, allow_put=False,
                                      schema={"type": ["string", "null"]}),
    "provider:segmentation_id": Attr("provider:segmentation_id", column="segmentation_id",
                                     convert=to_int_or_none(0, 16777215), admin_only=True,
                                     admin_visible_only=True, allow_put=False,
                                     schema={"type": ["integer", "null"]}),
    "ipv4_address_scope": Attr("ipv4_address_scope", allow_post=False, allow_put=False,
                               filterable=False),
    "ipv6_address_scope": Attr("ipv6_address_scope", allow_post=False, allow_put=False,
                               filterable=False),
}


def segment_key(network_type: str, physnet: str | None, segmentation_id: int | None) -> str | None:
    """The uniqueness key of a segment: one flat network per physnet, one VLAN id per physnet,
    one VNI per overlay type."""
    if network_type == "flat":
        return f"flat:{physnet}:"
    if segmentation_id is None:
        return None
    return f"{network_type}:{physnet or ''}:{segmentation_id}"


class Networks(Resource):
    resource = "network"
    collection = "networks"
    table = networks
    attributes = ATTRIBUTES

    def scope(self, ctx: RequestContext) -> ColumnElement[bool]:
        if ctx.is_admin:
            return super().scope(ctx)
        return or_(networks.c.project_id == ctx.project_id, networks.c.shared.is_(True),
                   networks.c.router_external.is_(True))

    def load_related(self, conn: Connection, ids_query: Select[Any]) -> dict[str, list[str]]:
        rows = conn.execute(
            select(subnets.c.network_id, subnets.c.id)
            .where(subnets.c.network_id.in_(ids_query))
            .order_by(subnets.c.created_at, subnets.c.id)
        )
        out: dict[str, list[str]] = {}
        for network_id, subnet_id in rows:
            out.setdefault(network_id, []).append(subnet_id)
        return out

    def view(self, row: Row[Any], related: dict[str, list[str]]) -> dict[str, Any]:
        view = self.standard_view(row)
        view.update(
            {
                "admin_state_up": row.admin_state_up,
                "status": row.status,
                "shared": row.shared,
                "router:external": row.router_external,
                "mtu": row.mtu,
                "port_security_enabled": row.port_security_enabled,
                "availability_zone_hints": row.availability_zone_hints,
                "availability_zones": [],
                "subnets": related.get(row.id, []),
                "provider:network_type": row.network_type,
                "provider:physical_network": row.physical_network,
                "provider:segmentation_id": row.segmentation_id,
                "ipv4_address_scope": None,
                "ipv6_address_scope": None,
                "l2_adjacency": True,
            }
        )
        return view

    # --- segments ---------------------------------------------------------------------------
    def _segment(
        self, conn: Connection, values: dict[str, Any]
    ) -> tuple[str, str | None, int | None]:
        network_type = values["provider:network_type"]
        physnet = values["provider:physical_network"]
        seg_id = values["provider:segmentation_id"]
        if network_type is UNSET:
            if physnet not in (UNSET, None) or seg_id not in (UNSET, None):
                raise InvalidInput("provider:network_type required")
            network_type = self.settings.tenant_network_type
        physnet = None if physnet is UNSET else physnet
        seg_id = None if seg_id is UNSET else seg_id
        if network_type in OVERLAY_TYPES:
            if physnet:
                raise InvalidInput(f"provider:physical_network specified for {network_type} network")
            if seg_id is not None and not 1 <= seg_id <= 16777215:
                raise InvalidInput(f"{network_type} network segmentation_id {seg_id} out of range")
        elif network_type == "flat":
            if not physnet:
                raise InvalidInput("provider:physical_network required for flat provider network")
            if seg_id is not None:
                raise InvalidInput("provider:segmentation_id specified for flat provider network")
        elif network_type == "vlan":
            if not physnet:
                ranges = [r for r in self.settings.segment_ranges if r.network_type == "vlan"]
                physnet = ranges[0].physical_network if ranges else None
                if not physnet:
                    raise InvalidInput("provider:physical_network required for VLAN network")
            if seg_id is not None and not 1 <= seg_id <= 4094:
                raise InvalidInput(f"VLAN segmentation_id {seg_id} out of range 1-4094")
        if network_type in ("flat", "vlan") and physnet not in self.settings.physical_networks:
            raise InvalidInput(f"physical_network '{physnet}' unknown for {network_type} provider "
                               "network")
        if seg_id is None and network_type != "flat":
            seg_id = self._allocate_segment(conn, network_type, physnet)
        key = segment_key(network_type, physnet, seg_id)
        # geneve and vxlan share one VNI space: both ride on the one tunnel port a chassis has
        # per peer, where the VNI alone tells their networks apart
        keys = ([segment_key(t, physnet, seg_id) for t in OVERLAY_TYPES]
                if network_type in OVERLAY_TYPES else [key])
        if key is not None and conn.execute(
            select(networks.c.id).where(networks.c.segment_key.in_(keys))
        ).first():
            if network_type == "flat":
                raise Conflict(f"Unable to create the flat network. Physical network {physnet} "
                               "is in use.", type="FlatNetworkInUse")
            if network_type == "vlan":
                raise Conflict(f"Unable to create the network. The VLAN {seg_id} on physical "
                               f"network {physnet} is in use.", type="VlanIdInUse")
            raise Conflict(f"Unable to create the network. The tunnel ID {seg_id} is in use.",
                           type="TunnelIdInUse")
        return network_type, physnet, seg_id

    def _allocate_segment(self, conn: Connection, network_type: str, physnet: str | None) -> int:
        for rng in self.settings.segment_ranges:
            if rng.network_type != network_type or (
                network_type == "vlan" and rng.physical_network != physnet
            ):
                continue
            used = {
                r[0]
                for r in conn.execute(
                    select(networks.c.segmentation_id).where(
                        networks.c.network_type.in_(OVERLAY_TYPES)  # one VNI space
                        if network_type in OVERLAY_TYPES else networks.c.network_type == network_type,
                        networks.c.segmentation_id.between(rng.minimum, rng.maximum),
                        (networks.c.physical_network == physnet) if physnet
                        else networks.c.physical_network.is_(None),
                    )
                )
            }
            for candidate in range(rng.minimum, rng.maximum + 1):
                if candidate not in used:
                    return candidate
        raise Conflict("Unable to create the network. No tenant network is available for "
                       "allocation.", type="NoNetworkAvailable")

    # --- writes -----------------------------------------------------------------------------
    def create(
        self, conn: Connection, ctx: RequestContext, values: dict[str, Any]
    ) -> tuple[str, list[Change]]:
        network_type, physnet, seg_id = self._segment(conn, values)
        default_mtu = (self.settings.overlay_mtu(network_type) if network_type in OVERLAY_TYPES
                       else self.settings.global_physnet_mtu)
        mtu = values["mtu"] if values["mtu"] not in (UNSET, None) else default_mtu
        if mtu > default_mtu:
            raise InvalidInput(f"Requested MTU is too big, maximum is {default_mtu}")
        row = self.standard_row(values)
        row.update(
            admin_state_up=values["admin_state_up"],
            shared=values["shared"],
            router_external=values["router:external"],
            mtu=mtu,
            status="ACTIVE",
            availability_zone_hints=values["availability_zone_hints"],
            port_security_enabled=values["port_security_enabled"],
            network_type=network_type,
            physical_network=physnet,
            segmentation_id=seg_id,
            segment_key=segment_key(network_type, physnet, seg_id),
        )
        conn.execute(insert(networks).values(**row))
        return row["id"], [Change("network", row["id"], "create")]

    def update(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any],
        values: dict[str, Any],
    ) -> list[Change]:
        if "mtu" in values and values["mtu"] is not None:
            limit = (self.settings.overlay_mtu(current["provider:network_type"])
                     if current["provider:network_type"] in OVERLAY_TYPES
                     else self.settings.global_physnet_mtu)
            if values["mtu"] > limit:
                raise InvalidInput(f"Requested MTU is too big, maximum is {limit}")
        if values.get("mtu", 0) is None:
            raise InvalidInput("mtu must not be null")
        if values.get("shared") is False and current["shared"]:
            self._check_unshare(conn, current)
        if values.get("router:external") is False and current["router:external"]:
            gateway = conn.execute(select(ports.c.id).where(
                ports.c.network_id == current["id"],
                ports.c.device_owner.in_(("network:router_gateway", "network:floatingip")),
            )).first()
            if gateway is not None:
                raise Conflict(f"External network {current['id']} cannot be updated to be made "
                               "non-external, since it has existing gateway ports.",
                               type="ExternalNetworkInUse")
        self.touch(conn, current["id"], self.column_updates(values))
        return [Change("network", current["id"], "update")]

    def _check_unshare(self, conn: Connection, current: dict[str, Any]) -> None:
        other = conn.execute(
            select(ports.c.id).where(
                ports.c.network_id == current["id"],
                ports.c.project_id != current["project_id"],
                ports.c.device_owner.notin_(AUTO_DELETE_OWNERS),
            )
        ).first()
        if other:
            raise Conflict(f"Unable to reconfigure sharing settings for network {current['id']}. "
                           "Multiple tenants are using it.", type="InvalidSharedSetting")

    def delete(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any]
    ) -> list[Change]:
        network_id = current["id"]
        in_use = conn.execute(
            select(ports.c.id).where(
                ports.c.network_id == network_id, ports.c.device_owner.notin_(AUTO_DELETE_OWNERS)
            )
        ).first()
        if in_use:
            raise Conflict(f"Unable to complete operation on network {network_id}. There are one "
                           "or more ports still in use on the network.", type="NetworkInUse")
        changes = []
        owned = [r[0] for r in conn.execute(select(ports.c.id).where(ports.c.network_id == network_id))]
        for port_id in owned:
            changes.append(Change("port", port_id, "delete"))
        conn.execute(delete(ip_allocations).where(ip_allocations.c.network_id == network_id))
        conn.execute(delete(ports).where(ports.c.network_id == network_id))
        for subnet_id in current["subnets"]:
            changes.append(Change("subnet", subnet_id, "delete"))
        conn.execute(delete(subnets).where(subnets.c.network_id == network_id))
        conn.execute(delete(networks).where(networks.c.id == network_id))
        changes.append(Change("network", network_id, "delete"))
        return changes

    def check_writable(self, ctx: RequestContext, current: dict[str, Any]) -> None:
        if not ctx.is_admin and current["project_id"] != ctx.project_id:
            raise Forbidden("(rule:update_network) is disallowed by policy")


__all__ = ["BadRequest", "Networks"]
