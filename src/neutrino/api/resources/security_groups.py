"""Security groups and their rules; each project gets a `default` group on first use with
Neutron's default rules (egress anywhere, ingress from members of the same group)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, Select, delete, insert, or_, select

from neutrino.api import validators as v
from neutrino.api.attributes import UNSET, Attr, standard_attributes, to_boolean
from neutrino.api.errors import Conflict, Forbidden, InvalidInput, resource_not_found
from neutrino.api.resources.base import Resource, new_id
from neutrino.context import RequestContext
from neutrino.db.outbox import Change
from neutrino.db.schema import (
    default_security_groups,
    port_security_groups,
    security_group_rules,
    security_groups,
)
from neutrino.timeutil import now_iso

RULE_COLUMNS = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max",
                "remote_ip_prefix", "remote_group_id", "remote_address_group_id",
                "normalized_cidr", "security_group_id")

GROUP_ATTRIBUTES: dict[str, Attr] = {
    **standard_attributes(),
    "stateful": Attr("stateful", column="stateful", convert=to_boolean, default=True,
                     schema={"type": "boolean"}),
    "security_group_rules": Attr("security_group_rules", allow_post=False, allow_put=False,
                                 filterable=False),
    "shared": Attr("shared", allow_post=False, allow_put=False, filterable=False),
}

RULE_ATTRIBUTES: dict[str, Attr] = {
    **{k: a for k, a in standard_attributes().items() if k != "name"},
    "security_group_id": Attr("security_group_id", column="security_group_id",
                              convert=v.validate_uuid, required=True, allow_put=False,
                              schema={"type": "string", "format": "uuid"}),
    "direction": Attr("direction", column="direction", convert=v.validate_direction,
                      required=True, allow_put=False,
                      schema={"type": "string", "enum": ["ingress", "egress"]}),
    "ethertype": Attr("ethertype", column="ethertype", convert=v.validate_ethertype,
                      default="IPv4", allow_put=False,
                      schema={"type": "string", "enum": ["IPv4", "IPv6"]}),
    "protocol": Attr("protocol", column="protocol", convert=v.validate_protocol, default=None,
                     allow_put=False, schema={"type": ["string", "null"]}),
    "port_range_min": Attr("port_range_min", column="port_range_min",
                           convert=v.validate_port_value, default=None, allow_put=False,
                           schema={"type": ["integer", "null"]}),
    "port_range_max": Attr("port_range_max", column="port_range_max",
                           convert=v.validate_port_value, default=None, allow_put=False,
                           schema={"type": ["integer", "null"]}),
    "remote_ip_prefix": Attr("remote_ip_prefix", column="remote_ip_prefix", default=None,
                             allow_put=False, schema={"type": ["string", "null"]}),
    "remote_group_id": Attr("remote_group_id", column="remote_group_id",
                            convert=lambda x: None if x is None else v.validate_uuid(x),
                            default=None, allow_put=False, schema={"type": ["string", "null"]}),
    "remote_address_group_id": Attr("remote_address_group_id", column="remote_address_group_id",
                                    allow_post=False, allow_put=False),
    "normalized_cidr": Attr("normalized_cidr", column="normalized_cidr", allow_post=False,
                            allow_put=False),
}


def rule_view(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "project_id": row.project_id,
        "tenant_id": row.project_id,
        "security_group_id": row.security_group_id,
        "direction": row.direction,
        "ethertype": row.ethertype,
        "protocol": row.protocol,
        "port_range_min": row.port_range_min,
        "port_range_max": row.port_range_max,
        "remote_ip_prefix": row.remote_ip_prefix,
        "remote_group_id": row.remote_group_id,
        "remote_address_group_id": row.remote_address_group_id,
        "normalized_cidr": row.normalized_cidr,
        "description": row.description,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "revision_number": row.revision_number,
    }


def _insert_rule(conn: Connection, project_id: str, group_id: str, **fields: Any) -> str:
    stamp = now_iso()
    rule_id = new_id()
    row: dict[str, Any] = {column: None for column in RULE_COLUMNS}
    row.update(fields)
    row.update(id=rule_id, project_id=project_id, name="", security_group_id=group_id,
               description=fields.get("description", ""), created_at=stamp, updated_at=stamp,
               revision_number=1)
    conn.execute(insert(security_group_rules).values(**row))
    return rule_id


def _insert_group(conn: Connection, project_id: str, name: str, description: str,
                  stateful: bool, *, default: bool) -> str:
    stamp = now_iso()
    group_id = new_id()
    conn.execute(insert(security_groups).values(
        id=group_id, project_id=project_id, name=name, description=description,
        created_at=stamp, updated_at=stamp, revision_number=1, stateful=stateful,
    ))
    for ethertype in ("IPv4", "IPv6"):
        _insert_rule(conn, project_id, group_id, direction="egress", ethertype=ethertype)
        if default:
            _insert_rule(conn, project_id, group_id, direction="ingress", ethertype=ethertype,
                         remote_group_id=group_id)
    return group_id


def ensure_default_security_group(
    conn: Connection, project_id: str, changes: list[Change]
) -> str:
    """The id of the project's `default` group, created (with its rules) on first use."""
    found = conn.execute(
        select(default_security_groups.c.security_group_id)
        .where(default_security_groups.c.project_id == project_id)
    ).first()
    if found:
        return str(found[0])
    group_id = _insert_group(conn, project_id, "default", "Default security group", True,
                             default=True)
    conn.execute(insert(default_security_groups).values(project_id=project_id,
                                                        security_group_id=group_id))
    changes.append(Change("security_group", group_id, "create"))
    return group_id


def default_group_exists(conn: Connection, project_id: str) -> bool:
    return conn.execute(
        select(default_security_groups.c.project_id)
        .where(default_security_groups.c.project_id == project_id)
    ).first() is not None


class SecurityGroups(Resource):
    resource = "security_group"
    collection = "security_groups"
    path = "security-groups"
    table = security_groups
    attributes = GROUP_ATTRIBUTES

    def load_related(self, conn: Connection, ids_query: Select[Any]) -> Any:
        rules: dict[str, list[dict[str, Any]]] = {}
        for row in conn.execute(
            select(security_group_rules)
            .where(security_group_rules.c.security_group_id.in_(ids_query))
            .order_by(security_group_rules.c.created_at, security_group_rules.c.id)
        ):
            rules.setdefault(row.security_group_id, []).append(rule_view(row))
        return rules

    def view(self, row: Row[Any], related: Any) -> dict[str, Any]:
        view = self.standard_view(row)
        view["stateful"] = row.stateful
        view["shared"] = False
        view["security_group_rules"] = related.get(row.id, [])
        return view

    def needs_write_before_list(self, conn: Connection, ctx: RequestContext) -> bool:
        return bool(ctx.project_id) and not default_group_exists(conn, ctx.project_id or "")

    def before_list(self, conn: Connection, ctx: RequestContext) -> list[Change]:
        changes: list[Change] = []
        if ctx.project_id:
            ensure_default_security_group(conn, ctx.project_id, changes)
        return changes

    def create(
        self, conn: Connection, ctx: RequestContext, values: dict[str, Any]
    ) -> tuple[str, list[Change]]:
        changes: list[Change] = []
        ensure_default_security_group(conn, values["project_id"], changes)
        if values["name"] == "default":
            raise Conflict("Default security group already exists.",
                           type="SecurityGroupDefaultAlreadyExists")
        group_id = _insert_group(conn, values["project_id"], values["name"],
                                 values["description"], values["stateful"], default=False)
        changes.append(Change("security_group", group_id, "create"))
        return group_id, changes

    def _is_default(self, conn: Connection, group_id: str) -> bool:
        return conn.execute(
            select(default_security_groups.c.project_id)
            .where(default_security_groups.c.security_group_id == group_id)
        ).first() is not None

    def update(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any],
        values: dict[str, Any],
    ) -> list[Change]:
        if values.get("name", current["name"]) != current["name"] and (
            self._is_default(conn, current["id"]) or values["name"] == "default"
        ):
            raise Conflict("Updating default security group not allowed.",
                           type="SecurityGroupCannotUpdateDefault")
        if "stateful" in values and values["stateful"] != current["stateful"] and self._in_use(
            conn, current["id"]
        ):
            raise Conflict(f"Security Group {current['id']} in use.", type="SecurityGroupInUse")
        self.touch(conn, current["id"], self.column_updates(values))
        return [Change("security_group", current["id"], "update")]

    @staticmethod
    def _in_use(conn: Connection, group_id: str) -> bool:
        return conn.execute(
            select(port_security_groups.c.port_id)
            .where(port_security_groups.c.security_group_id == group_id)
        ).first() is not None

    def delete(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any]
    ) -> list[Change]:
        group_id = current["id"]
        if self._is_default(conn, group_id) and not ctx.is_admin:
            raise Conflict("Insufficient rights for removing default security group.",
                           type="SecurityGroupCannotRemoveDefault")
        if self._in_use(conn, group_id):
            raise Conflict(f"Security Group {group_id} in use.", type="SecurityGroupInUse")
        # rules of other groups that name this one as remote go with it (as in Neutron)
        referencing = conn.execute(
            select(security_group_rules.c.id, security_group_rules.c.security_group_id)
            .where(security_group_rules.c.remote_group_id == group_id,
                   security_group_rules.c.security_group_id != group_id)
        ).all()
        conn.execute(delete(security_group_rules).where(or_(
            security_group_rules.c.security_group_id == group_id,
            security_group_rules.c.remote_group_id == group_id,
        )))
        conn.execute(delete(default_security_groups)
                     .where(default_security_groups.c.security_group_id == group_id))
        conn.execute(delete(security_groups).where(security_groups.c.id == group_id))
        changes = [Change("security_group_rule", rid, "delete") for rid, _ in referencing]
        changes += [Change("security_group", gid, "update") for gid in {g for _, g in referencing}]
        return [*changes, Change("security_group", group_id, "delete")]


class SecurityGroupRules(Resource):
    resource = "security_group_rule"
    collection = "security_group_rules"
    path = "security-group-rules"
    table = security_group_rules
    attributes = RULE_ATTRIBUTES

    def view(self, row: Row[Any], related: Any) -> dict[str, Any]:
        return rule_view(row)

    def _group(self, conn: Connection, ctx: RequestContext, group_id: str) -> Row[Any]:
        group = conn.execute(select(security_groups).where(security_groups.c.id == group_id)).first()
        if group is None or (not ctx.is_admin and group.project_id != ctx.project_id):
            raise resource_not_found("security_group", group_id)
        return group

    def create(
        self, conn: Connection, ctx: RequestContext, values: dict[str, Any]
    ) -> tuple[str, list[Change]]:
        group = self._group(conn, ctx, values["security_group_id"])
        ethertype = values["ethertype"]
        protocol = v.validate_protocol(values["protocol"], ethertype)
        port_min, port_max = v.validate_port_range(
            protocol, values["port_range_min"], values["port_range_max"]
        )
        prefix = values["remote_ip_prefix"]
        remote_group = values["remote_group_id"]
        if prefix is not None and remote_group is not None:
            raise InvalidInput("Only remote_ip_prefix or remote_group_id may be provided.")
        normalized = v.validate_ip_prefix(prefix, ethertype) if prefix is not None else None
        if remote_group is not None:
            self._group(conn, ctx, remote_group)
        fields = {
            "direction": values["direction"], "ethertype": ethertype, "protocol": protocol,
            "port_range_min": port_min, "port_range_max": port_max,
            "remote_ip_prefix": normalized, "remote_group_id": remote_group,
            "normalized_cidr": normalized,
        }
        self._check_duplicate(conn, group.id, fields)
        rule_id = _insert_rule(conn, group.project_id, group.id,
                               description=values["description"], **fields)
        SecurityGroups(self.settings).touch(conn, group.id, {})
        return rule_id, [Change("security_group_rule", rule_id, "create"),
                         Change("security_group", group.id, "update")]

    @staticmethod
    def _check_duplicate(conn: Connection, group_id: str, fields: dict[str, Any]) -> None:
        """Neutron's duplicate check: a protocol's name and number are the same protocol, and a
        prefix of the whole address space is the same as no prefix."""
        def key(rule: Any) -> tuple[Any, ...]:
            protocol, prefix = rule["protocol"], rule["normalized_cidr"]
            return (None if protocol is None else v.protocol_number(protocol),
                    rule["port_range_min"], rule["port_range_max"], rule["remote_group_id"],
                    None if prefix in ("0.0.0.0/0", "::/0") else prefix)

        wanted = key(fields)
        for row in conn.execute(select(security_group_rules).where(
            security_group_rules.c.security_group_id == group_id,
            security_group_rules.c.direction == fields["direction"],
            security_group_rules.c.ethertype == fields["ethertype"],
        )).mappings():
            if key(row) == wanted:
                raise Conflict(f"Security group rule already exists. Rule id is {row['id']}.",
                               type="SecurityGroupRuleExists")

    def update(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any],
        values: dict[str, Any],
    ) -> list[Change]:
        self.touch(conn, current["id"], self.column_updates(values))
        return [Change("security_group_rule", current["id"], "update")]

    def delete(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any]
    ) -> list[Change]:
        conn.execute(delete(security_group_rules)
                     .where(security_group_rules.c.id == current["id"]))
        SecurityGroups(self.settings).touch(conn, current["security_group_id"], {})
        return [Change("security_group_rule", current["id"], "delete"),
                Change("security_group", current["security_group_id"], "update")]


__all__ = [
    "UNSET",
    "Forbidden",
    "SecurityGroupRules",
    "SecurityGroups",
    "ensure_default_security_group",
]
