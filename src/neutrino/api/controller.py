"""The generic Neutron operations (list, show, create, update, delete, tags) over any Resource.

Each mutation is one database transaction that writes the intent rows and one outbox row;
validation happens before it starts and any error inside rolls it back, so a rejected request
changes nothing. Policy (who may see and change what) is applied here: admins everything,
members their own project, readers read only; an invisible resource is a 404, a visible one the
caller may not change is a 403, as in Neutron.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, and_, exists, not_, select
from sqlalchemy.exc import IntegrityError, OperationalError

from neutrino.api.address_hints import AddressHints
from neutrino.api.attributes import body_items, prepare_create, prepare_update
from neutrino.api.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    resource_not_found,
)
from neutrino.api.listing import (
    ListQuery,
    is_no_match,
    page_links,
    page_window,
    parse_list_query,
    select_fields,
)
from neutrino.api.resources.base import Resource, delete_tags, replace_tags
from neutrino.api.resources.dhcp_ports import DhcpPorts
from neutrino.api.resources.subnets import Subnets
from neutrino.api.validators import validate_tag, validate_tags_body, validate_tags_limit
from neutrino.context import RequestContext
from neutrino.db.engine import Database
from neutrino.db.outbox import Change, record_changes
from neutrino.db.schema import tags

T = TypeVar("T")
# Neutron retries lost races up to 10 times with a growing random back-off; so do we, so
# that servers sharing one PostgreSQL and picking the same free address both succeed.
WRITE_RETRIES = 10
RETRY_BACKOFF = 0.005  # seconds; the n-th retry waits up to RETRY_BACKOFF * 2**n (<= 0.25 s)


class NetworkingApi:
    def __init__(self, db: Database, resources: Sequence[Resource]) -> None:
        self.db = db
        self.resources = {r.collection: r for r in resources}
        self.hints = AddressHints()
        # called (from the writing thread) after each commit that recorded changes: wakes the
        # compiler loop (neutrino.distribution)
        self.on_commit: list[Callable[[], None]] = []
        for res in resources:
            res.hints = self.hints
        subnets, ports = self.resources.get("subnets"), self.resources.get("ports")
        if isinstance(subnets, Subnets) and ports is not None:
            subnets.dhcp_ports = DhcpPorts(ports)
        for res in resources:  # routers and floating IPs create ports with the ports' IPAM
            if hasattr(res, "ports"):
                res.ports = ports

    def resource(self, collection: str) -> Resource:
        return self.resources[collection]

    # --- transactions -------------------------------------------------------------------------
    def write(self, work: Callable[[Connection], tuple[T, list[Change]]]) -> T:
        """Run `work` in one transaction with its outbox row; retry lost uniqueness races."""
        for attempt in range(WRITE_RETRIES):
            try:
                # address hints change with the transaction: applied on commit, else dropped
                with self.db.write_lock:
                    try:
                        with self.db.write() as conn:
                            result, changes = work(conn)
                            if changes:
                                record_changes(conn, changes)
                    except BaseException:
                        self.hints.rollback()
                        raise
                    self.hints.commit()
                if changes:
                    for callback in self.on_commit:
                        callback()
                return result
            except (IntegrityError, OperationalError) as exc:
                if isinstance(exc, OperationalError) and not _is_transient(exc):
                    raise
                if attempt == WRITE_RETRIES - 1:
                    raise Conflict("The request conflicts with a concurrent change; retry it.") from exc
            time.sleep(random.uniform(0, min(RETRY_BACKOFF * 2**attempt, 0.25)))
        raise AssertionError("unreachable")

    def _parent_scope(
        self, conn: Connection, ctx: RequestContext, res: Resource, parent_id: str | None
    ) -> ColumnElement[bool] | None:
        """For a sub-resource: the condition selecting its parent's children, once the parent
        is known to be visible to the caller (else the parent's 404)."""
        if res.parent is None:
            return None
        self.resource(res.parent).get(conn, ctx, parent_id or "")
        return res.table.c[res.parent_key] == parent_id

    # --- reading ------------------------------------------------------------------------------
    def list_collection(
        self,
        ctx: RequestContext,
        collection: str,
        params: Sequence[tuple[str, str]],
        base_url: str,
        parent_id: str | None = None,
    ) -> dict[str, Any]:
        res = self.resource(collection)
        query = parse_list_query(params, res.attributes)
        hidden = res.hidden_attributes(ctx)
        for key in (*query.column_filters, *query.other_filters):
            if key in hidden:
                raise BadRequest(f"[{key}] is invalid attribute for filtering")
        with self.db.read() as conn:
            prepare = res.needs_write_before_list(conn, ctx)
        if prepare:
            self.write(lambda conn: (None, res.before_list(conn, ctx)))
        with self.db.read() as conn:
            parent = self._parent_scope(conn, ctx, res, parent_id)
            where = and_(res.scope(ctx), *self._sql_filters(res, query),
                         *([] if parent is None else [parent]))
            order = self._order(res, query)
            if not query.paginated and not query.other_filters:
                views = res.load(conn, where, order)
                more_after = more_before = False
            else:
                ids = [r[0] for r in conn.execute(select(res.table.c.id).where(where).order_by(*order))]
                if query.other_filters:
                    views = res.load(conn, where, order)
                    views = [v for v in views if self._matches(res, v, query)]
                    ids = [v["id"] for v in views]
                    by_id = {v["id"]: v for v in views}
                    page, more_after, more_before = self._page(res, ids, query)
                    views = [by_id[i] for i in page]
                else:
                    page, more_after, more_before = self._page(res, ids, query)
                    position = {i: n for n, i in enumerate(page)}
                    views = res.load(conn, res.table.c.id.in_(page)) if page else []
                    views.sort(key=lambda v: position[v["id"]])
        fields = query.fields
        body: dict[str, Any] = {
            collection: [self._present(v, hidden, fields) for v in views]
        }
        links = page_links(base_url, params, views, query, more_after, more_before)
        if links:
            body[f"{collection}_links"] = links
        return body

    def show(
        self, ctx: RequestContext, collection: str, resource_id: str,
        params: Sequence[tuple[str, str]], parent_id: str | None = None,
    ) -> dict[str, Any]:
        res = self.resource(collection)
        fields = [f for k, v in params if k == "fields" for f in v.split(",") if f]
        with self.db.read() as conn:
            view = res.get(conn, ctx, resource_id, self._parent_scope(conn, ctx, res, parent_id))
        return {res.resource: self._present(view, res.hidden_attributes(ctx), fields)}

    @staticmethod
    def _page(res: Resource, ids: list[str], query: ListQuery) -> tuple[list[str], bool, bool]:
        if query.marker is not None and query.marker not in ids:
            raise resource_not_found(res.resource, query.marker)  # as Neutron's marker lookup
        return page_window(ids, query)

    @staticmethod
    def _present(view: dict[str, Any], hidden: frozenset[str], fields: list[str]) -> dict[str, Any]:
        if hidden:
            view = {k: v for k, v in view.items() if k not in hidden}
        return select_fields(view, fields)

    def _sql_filters(self, res: Resource, query: ListQuery) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        for column, values in query.column_filters.items():
            usable = [v for v in values if not is_no_match(v)]
            conditions.append(res.table.c[column].in_(usable))
        id_col = res.table.c.id
        for kind, wanted in query.tag_filters.items():
            if not wanted:
                continue
            has_each = [
                exists().where(tags.c.resource_type == res.resource,
                               tags.c.resource_id == id_col, tags.c.tag == tag)
                for tag in wanted
            ]
            has_any = exists().where(tags.c.resource_type == res.resource,
                                     tags.c.resource_id == id_col, tags.c.tag.in_(wanted))
            if kind == "tags":
                conditions.extend(has_each)
            elif kind == "tags-any":
                conditions.append(has_any)
            elif kind == "not-tags":
                conditions.append(not_(and_(*has_each)))
            else:
                conditions.append(not_(has_any))
        return conditions

    @staticmethod
    def _order(res: Resource, query: ListQuery) -> list[Any]:
        order: list[Any] = []
        reverse = False  # page windows are cut from the forward order (see page_window)
        for name, direction in query.sort:
            column = res.table.c[res.attributes[name].column or name]
            desc = (direction == "desc") != reverse
            order.append(column.desc() if desc else column.asc())
        order.append(res.table.c.id.asc())
        return order

    @staticmethod
    def _matches(res: Resource, view: dict[str, Any], query: ListQuery) -> bool:
        return all(res.matches(view, key, values) for key, values in query.other_filters.items())

    # --- writing ------------------------------------------------------------------------------
    def create(
        self, ctx: RequestContext, collection: str, body: Any, parent_id: str | None = None
    ) -> dict[str, Any]:
        res = self.resource(collection)
        items, bulk = body_items(body, res.resource, collection)
        if not ctx.can_write:
            raise Forbidden(f"(rule:create_{res.resource}) is disallowed by policy")
        prepared = [prepare_create(ctx, res.resource, item, res.attributes) for item in items]

        def work(conn: Connection) -> tuple[list[dict[str, Any]], list[Change]]:
            created, changes = [], []
            if self._parent_scope(conn, ctx, res, parent_id) is not None:
                for values in prepared:
                    values[res.parent_key] = parent_id
            for values in prepared:
                view, item_changes = res.create_view(conn, ctx, values)
                changes.extend(item_changes)
                created.append(view)
            return created, changes

        created = self.write(work)
        hidden = res.hidden_attributes(ctx)
        shown = [self._present(v, hidden, []) for v in created]
        return {collection: shown} if bulk else {res.resource: shown[0]}

    def _writable(
        self, conn: Connection, ctx: RequestContext, res: Resource, resource_id: str, action: str,
        parent_id: str | None = None, rule: str | None = None,
    ) -> dict[str, Any]:
        """The current view, if the caller may change it (404 if invisible, 403 if read-only)."""
        current = res.get(conn, ctx, resource_id, self._parent_scope(conn, ctx, res, parent_id))
        owner = ctx.is_admin or current.get("project_id") == ctx.project_id
        if not ctx.can_write or not owner:
            raise Forbidden(f"(rule:{rule or f'{action}_{res.resource}'}) is disallowed by policy")
        res.check_writable(ctx, current)
        return current

    def update(
        self, ctx: RequestContext, collection: str, resource_id: str, body: Any,
        if_match: str | None, parent_id: str | None = None,
    ) -> dict[str, Any]:
        res = self.resource(collection)
        if not isinstance(body, dict) or set(body) != {res.resource} or not isinstance(
            body[res.resource], dict
        ):
            raise BadRequest(f"Unable to find '{res.resource}' in request body")
        values = prepare_update(ctx, res.resource, body[res.resource], res.attributes)
        expected = parse_if_match(if_match)

        def work(conn: Connection) -> tuple[dict[str, Any], list[Change]]:
            current = self._writable(conn, ctx, res, resource_id, "update", parent_id)
            check_revision(res, current, expected)
            changes = res.update(conn, ctx, current, values) if values else []
            return res.get(conn, RequestContext.admin(), resource_id), changes

        updated = self.write(work)
        return {res.resource: self._present(updated, res.hidden_attributes(ctx), [])}

    def delete(
        self, ctx: RequestContext, collection: str, resource_id: str, if_match: str | None = None,
        parent_id: str | None = None,
    ) -> None:
        res = self.resource(collection)
        expected = parse_if_match(if_match)

        def work(conn: Connection) -> tuple[None, list[Change]]:
            current = self._writable(conn, ctx, res, resource_id, "delete", parent_id)
            check_revision(res, current, expected)
            changes = res.delete(conn, ctx, current)
            delete_tags(conn, res.resource, resource_id)
            return None, changes

        self.write(work)

    def action(
        self, ctx: RequestContext, collection: str, resource_id: str, action: str, body: Any
    ) -> dict[str, Any]:
        """A member action (PUT /v2.0/routers/{id}/add_router_interface...): one transaction,
        on a resource the caller may change."""
        res = self.resource(collection)

        def work(conn: Connection) -> tuple[dict[str, Any], list[Change]]:
            current = self._writable(conn, ctx, res, resource_id, action, rule=action)
            return res.act(conn, ctx, current, action, body)

        result = self.write(work)
        if isinstance(result.get(res.resource), dict):  # an answer holding the resource's view
            result = {res.resource: self._present(result[res.resource],
                                                  res.hidden_attributes(ctx), [])}
        return result

    # --- tags ---------------------------------------------------------------------------------
    def get_tags(self, ctx: RequestContext, collection: str, resource_id: str) -> list[str]:
        res = self.resource(collection)
        with self.db.read() as conn:
            return list(res.get(conn, ctx, resource_id)["tags"])

    def has_tag(self, ctx: RequestContext, collection: str, resource_id: str, tag: str) -> None:
        if tag not in self.get_tags(ctx, collection, resource_id):
            raise NotFound(f"Tag {tag} could not be found for {self.resource(collection).resource}"
                           f" {resource_id}.", type="TagNotFound")

    def change_tags(
        self, ctx: RequestContext, collection: str, resource_id: str,
        edit: Callable[[list[str]], list[str]],
    ) -> list[str]:
        res = self.resource(collection)

        def work(conn: Connection) -> tuple[list[str], list[Change]]:
            current = self._writable(conn, ctx, res, resource_id, "update")
            new = edit(list(current["tags"]))
            replace_tags(conn, res.resource, resource_id, new)
            res.touch(conn, resource_id, {})
            return sorted(set(new)), [Change(res.resource, resource_id, "update")]

        return self.write(work)

    def put_tags(self, ctx: RequestContext, collection: str, resource_id: str, body: Any) -> list[str]:
        new = validate_tags_body(body)
        validate_tags_limit(self.resource(collection).resource, new)
        return self.change_tags(ctx, collection, resource_id, lambda _old: new)

    def put_tag(self, ctx: RequestContext, collection: str, resource_id: str, tag: str) -> None:
        tag = validate_tag(tag)

        def add(old: list[str]) -> list[str]:
            validate_tags_limit(self.resource(collection).resource, [*old, tag])
            return [*old, tag]

        self.change_tags(ctx, collection, resource_id, add)

    def delete_tag(self, ctx: RequestContext, collection: str, resource_id: str, tag: str) -> None:
        def remove(old: list[str]) -> list[str]:
            if tag not in old:
                raise NotFound(f"Tag {tag} could not be found for {self.resource(collection).resource}"
                               f" {resource_id}.", type="TagNotFound")
            return [t for t in old if t != tag]

        self.change_tags(ctx, collection, resource_id, remove)

    def delete_all_tags(self, ctx: RequestContext, collection: str, resource_id: str) -> None:
        self.change_tags(ctx, collection, resource_id, lambda _old: [])

    def not_found(self, collection: str, resource_id: str) -> NotFound:
        return resource_not_found(self.resource(collection).resource, resource_id)


def _is_transient(exc: OperationalError) -> bool:
    """A deadlock or serialization failure between servers on PostgreSQL: retry the transaction."""
    return getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")


def check_revision(res: Resource, current: dict[str, Any], expected: int | None) -> None:
    """Refuse (412) an update or delete whose If-Match revision is not the current one."""
    if expected is not None and current["revision_number"] != expected:
        raise PreconditionFailed(
            f"Constraint mismatch: revision_number of {res.resource} {current['id']} is "
            f"{current['revision_number']}, not {expected}",
            type="RevisionNumberConstraintFailed",
        )


def parse_if_match(header: str | None) -> int | None:
    """`If-Match: revision_number=N` (Neutron's revision-if-match extension)."""
    if not header:
        return None
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "revision_number":
            try:
                return int(value)
            except ValueError:
                raise BadRequest(f"Invalid If-Match header: {header}") from None
    return None
