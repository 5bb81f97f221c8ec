"""What every resource shares: visibility (scope), tags, loading views, writing rows.

A `Resource` never opens transactions; the controller hands it a connection inside one.
Views are plain dicts shaped exactly as the Neutron API returns them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Select, Table, and_, delete, insert, select
from sqlalchemy.sql.expression import true

from neutrino.api.address_hints import AddressHints
from neutrino.api.attributes import UNSET, Attr
from neutrino.api.errors import NotFound, resource_not_found
from neutrino.config import Settings
from neutrino.context import RequestContext
from neutrino.db.outbox import Change
from neutrino.db.schema import tags
from neutrino.timeutil import now_iso

STANDARD_COLUMNS = ("id", "project_id", "name", "description", "created_at", "updated_at",
                    "revision_number")


def new_id() -> str:
    return str(uuid.uuid4())


class Resource:
    resource: str  # singular API name: "network"
    collection: str  # plural API name: "networks"
    path: str = ""  # URL segment under /v2.0, when it differs from collection ("security-groups")
    table: Table
    attributes: dict[str, Attr]
    # a sub-resource (/v2.0/<parent>/{<parent_key>}/<collection>): the parent's collection and
    # the column naming the parent
    parent: str | None = None
    parent_key: str = ""
    # member actions (PUT /v2.0/<path>/{id}/<action>): action name -> request body JSON schema;
    # they run in `act`
    actions: dict[str, dict[str, Any]] = {}
    taggable = True  # standard-attr-tag: views carry `tags` (False for port forwardings)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hints = AddressHints()  # replaced by the one the controller shares
        if not self.path:
            self.path = self.collection

    # --- visibility -----------------------------------------------------------------------
    def scope(self, ctx: RequestContext) -> ColumnElement[bool]:
        """SQL condition selecting the rows this caller may see."""
        if ctx.is_admin:
            return true()
        return self.table.c.project_id == ctx.project_id

    def hidden_attributes(self, ctx: RequestContext) -> frozenset[str]:
        if ctx.is_admin:
            return frozenset()
        return frozenset(a.name for a in self.attributes.values() if a.admin_visible_only)

    # --- reading ----------------------------------------------------------------------------
    def load(
        self, conn: Connection, where: ColumnElement[bool], order_by: Sequence[Any] = ()
    ) -> list[dict[str, Any]]:
        """Full API views of the rows matching `where`, in `order_by` order."""
        stmt: Select[Any] = select(self.table).where(where)
        if order_by:
            stmt = stmt.order_by(*order_by)
        rows = conn.execute(stmt).all()
        if not rows:
            return []
        ids_query = select(self.table.c.id).where(where)
        related = self.load_related(conn, ids_query)
        tag_map = load_tags(conn, self.resource, ids_query) if self.taggable else {}
        views = []
        for row in rows:
            view = self.view(row, related)
            if self.taggable:
                view["tags"] = tag_map.get(row.id, [])
            views.append(view)
        return views

    def load_related(self, conn: Connection, ids_query: Select[Any]) -> Any:
        """Rows of child tables for the views being built (fixed IPs, rules...)."""
        return None

    def view(self, row: Row[Any], related: Any) -> dict[str, Any]:
        raise NotImplementedError

    def get(
        self, conn: Connection, ctx: RequestContext, resource_id: str,
        where: ColumnElement[bool] | None = None,
    ) -> dict[str, Any]:
        if "\x00" in resource_id:  # no id holds one, and PostgreSQL refuses to compare them
            raise self.not_found(resource_id)
        condition = and_(self.table.c.id == resource_id, self.scope(ctx))
        if where is not None:
            condition = and_(condition, where)
        found = self.load(conn, condition)
        if not found:
            raise self.not_found(resource_id)
        return found[0]

    def not_found(self, resource_id: str) -> NotFound:
        """Neutron's <Resource>NotFound for this resource."""
        return resource_not_found(self.resource, resource_id)

    def matches(self, view: dict[str, Any], key: str, values: list[str]) -> bool:
        """Filter on an attribute that is not a plain column (lists, dicts)."""
        value = view.get(key)
        if isinstance(value, list):
            return any(str(v) in values for v in value)
        return str(value) in values

    def needs_write_before_list(self, conn: Connection, ctx: RequestContext) -> bool:
        """True when listing must first create something (e.g. a project's default group)."""
        return False

    def before_list(self, conn: Connection, ctx: RequestContext) -> list[Change]:
        return []

    # --- writing ----------------------------------------------------------------------------
    def create(
        self, conn: Connection, ctx: RequestContext, values: dict[str, Any]
    ) -> tuple[str, list[Change]]:
        raise NotImplementedError

    def create_view(
        self, conn: Connection, ctx: RequestContext, values: dict[str, Any]
    ) -> tuple[dict[str, Any], list[Change]]:
        """Create, and return the new resource's full view (read back unless overridden)."""
        resource_id, changes = self.create(conn, ctx, values)
        return self.get(conn, RequestContext.admin(), resource_id), changes

    def update(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any],
        values: dict[str, Any],
    ) -> list[Change]:
        raise NotImplementedError

    def delete(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any]
    ) -> list[Change]:
        raise NotImplementedError

    def check_writable(self, ctx: RequestContext, current: dict[str, Any]) -> None:
        """Extra rules before an update or delete (beyond ownership), e.g. default groups."""

    def act(
        self, conn: Connection, ctx: RequestContext, current: dict[str, Any], action: str,
        body: Any,
    ) -> tuple[dict[str, Any], list[Change]]:
        """Run one of `actions` on a resource the caller may change; returns the answer body."""
        raise NotImplementedError

    # --- helpers for subclasses ---------------------------------------------------------------
    def standard_row(self, values: dict[str, Any], resource_id: str | None = None) -> dict[str, Any]:
        stamp = now_iso()
        return {
            "id": resource_id or new_id(),
            "project_id": values["project_id"],
            "name": _given(values.get("name", UNSET), ""),
            "description": _given(values.get("description", UNSET), ""),
            "created_at": stamp,
            "updated_at": stamp,
            "revision_number": 1,
        }

    def standard_view(self, row: Row[Any]) -> dict[str, Any]:
        return {
            "id": row.id,
            "name": row.name,
            "description": row.description,
            "project_id": row.project_id,
            "tenant_id": row.project_id,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "revision_number": row.revision_number,
        }

    def touch(self, conn: Connection, resource_id: str, columns: dict[str, Any]) -> None:
        """Write changed columns and bump updated_at and revision_number."""
        conn.execute(
            self.table.update()
            .where(self.table.c.id == resource_id)
            .values(
                **columns,
                updated_at=now_iso(),
                revision_number=self.table.c.revision_number + 1,
            )
        )

    def column_updates(self, values: dict[str, Any]) -> dict[str, Any]:
        """Columns for the given attribute values (attributes that map 1:1 to a column)."""
        out = {}
        for name, value in values.items():
            attr = self.attributes[name]
            if attr.column is not None:
                out[attr.column] = value
        return out


def _given(value: Any, default: Any) -> Any:
    return default if value is UNSET else value


def load_tags(conn: Connection, resource_type: str, ids_query: Select[Any]) -> dict[str, list[str]]:
    rows = conn.execute(
        select(tags.c.resource_id, tags.c.tag)
        .where(tags.c.resource_type == resource_type, tags.c.resource_id.in_(ids_query))
        .order_by(tags.c.tag)
    )
    out: dict[str, list[str]] = {}
    for resource_id, tag in rows:
        out.setdefault(resource_id, []).append(tag)
    return out


def replace_tags(conn: Connection, resource_type: str, resource_id: str, new: list[str]) -> None:
    conn.execute(
        delete(tags).where(tags.c.resource_type == resource_type, tags.c.resource_id == resource_id)
    )
    if new:
        conn.execute(
            insert(tags),
            [{"resource_type": resource_type, "resource_id": resource_id, "tag": t}
             for t in sorted(set(new))],
        )


def delete_tags(conn: Connection, resource_type: str, resource_id: str) -> None:
    replace_tags(conn, resource_type, resource_id, [])
