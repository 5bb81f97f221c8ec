"""The fault management API (the notifier's northbound side, OPNFV Doctor's consumer interface).

Every route needs an authenticated caller; errors are Neutron's envelope. Visibility is by
project: an admin sees everything; anyone else sees the faults touching a resource of their
project (`faults.project_ids`), with `affected` cut down to that project's ports, instances and
routers and no hosts (the faulty resource itself, e.g. the host of a host.down, is kept: the
consumer must know which host failed), and their own project's subscriptions. A caller that is
not an admin needs a project-scoped token (403 otherwise). Readers may read, not write (403).

Routes:

- `GET /v2.0/faults` -> `{"faults": [fault, ...]}`, newest first. Filters (repeatable, OR
  within one key): `state` (active | cleared), `type` (a fault type, e.g. host.down),
  `resource_type`, `resource_id`, `severity`; any other query parameter, or an unknown state or
  type, is a 400. A fault:
  `{id, type, severity, state, resource_type, resource_id, source, fault_time, detected_at,
  cleared_at, affected: {hosts, ports, instances, routers}}`, times in RFC 3339 UTC with
  microseconds (`cleared_at` null while active).
- `GET /v2.0/faults/{fault_id}` -> `{"fault": fault}`; 404 FaultNotFound when unknown or not
  visible.
- `GET /v2.0/faults/stream[?type=T...]`: Server-Sent Events (`text/event-stream`), live events
  as the caller may see them (the same cut as webhooks, `FaultEvent.for_project`), from the
  moment of connection (no replay: read `GET /v2.0/faults` after connecting to catch up). The
  stream opens with a `retry:` hint and a `: connected` comment; each event is
  `id: <event id>\\nevent: <event type>\\ndata: <CloudEvents envelope as JSON>\\n\\n`; a
  `: keepalive` comment comes after `KEEPALIVE` seconds without events. `type` takes fault types
  (host.down: raised and cleared) or full event types (org.neutrino.fault.host.down.cleared);
  unknown ones are a 400. A listener that falls far behind gets `: overflow` and the stream
  ends (reconnect and re-read the list).
- `POST /v2.0/fault-subscriptions` `{"subscription": {"url": "http(s)://host[:port]/path",
  "event_types": [...], "resource_ids": [...], "description": ""}}` -> 201
  `{"subscription": subscription}`. `url` is required (http or https with a host, at most 2048
  characters); `event_types` (fault or event types; empty or absent: all) and `resource_ids`
  (the faulty or any affected resource; empty or absent: all) filter what is sent. A member's
  subscription belongs to its project. An admin's sees every project's events, unfiltered
  (stored with project_id "" and shown with `all_projects: true`), unless the admin names a
  `project_id` (or `tenant_id`): it is then that project's. Anything else in the body, an
  unknown event type or a bad URL is a 400; a reader gets 403; more than
  `MAX_SUBSCRIPTIONS` in one project is a 409 OverQuota. A subscription:
  `{id, project_id, tenant_id, all_projects, url, event_types, resource_ids, description,
  created_at}`. Events are POSTed to the URL as CloudEvents (see neutrino.faults.notifier).
- `GET /v2.0/fault-subscriptions` -> `{"subscriptions": [...]}` (the caller's project's; an
  admin's: all), oldest first; no query parameters (400).
- `GET /v2.0/fault-subscriptions/{subscription_id}` -> `{"subscription": subscription}`; 404
  FaultSubscriptionNotFound when unknown or not visible.
- `DELETE /v2.0/fault-subscriptions/{subscription_id}` -> 204 (its undelivered events go with
  it); 404 when not visible, 403 for a reader.

These routes are left out of the OpenAPI document, like the agent routes (the fuzz of
tests/test_openapi_fuzz.py must not open the never-ending stream).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, delete, func, insert, or_, select
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from neutrino.api.auth import Authenticator
from neutrino.api.controller import NetworkingApi
from neutrino.api.errors import BadRequest, Conflict, Forbidden, NotFound, resource_not_found
from neutrino.api.routes import (
    json_response,
    read_json,
    run_with_lifespan,
    stopping_event,
    until_stopping,
)
from neutrino.config import Settings
from neutrino.context import RequestContext
from neutrino.db.schema import fault_subscriptions, faults
from neutrino.db.schema import ports as ports_table
from neutrino.db.schema import routers as routers_table
from neutrino.faults.events import AFFECTED_KINDS, EVENT_TYPES, FAULT_TYPES, rfc3339
from neutrino.faults.notifier import ALL_PROJECTS, ListenerOverflow, Notifier
from neutrino.timeutil import now_iso

SSE = "text/event-stream"
KEEPALIVE = 15.0  # seconds without an event before a keepalive comment
MAX_SUBSCRIPTIONS = 100  # per project (admins' all-project subscriptions count as one project)
MAX_URL = 2048
MAX_RESOURCE_IDS = 100
STATES = ("active", "cleared")
FAULT_FILTERS = ("state", "type", "resource_type", "resource_id", "severity")
KNOWN_TYPES = frozenset(FAULT_TYPES) | frozenset(EVENT_TYPES)


class SubscriptionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: str = Field(min_length=1, max_length=MAX_URL)
    event_types: list[str] = Field(default_factory=list)
    resource_ids: list[str] = Field(default_factory=list, max_length=MAX_RESOURCE_IDS)
    description: str = Field(default="", max_length=255)
    project_id: str | None = Field(default=None, min_length=1, max_length=255)
    tenant_id: str | None = Field(default=None, min_length=1, max_length=255)


def validate_url(url: str) -> str:
    """An http(s) URL with a host (400 otherwise)."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise BadRequest(f"Invalid input: url {url!r} contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise BadRequest(f"Invalid input: url {url!r}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise BadRequest(f"Invalid input: url {url!r} must be http or https")
    if not parts.hostname:
        raise BadRequest(f"Invalid input: url {url!r} has no host")
    return url


def validate_event_types(values: Iterable[str]) -> list[str]:
    """Fault types or full event types, deduplicated in order (400 for an unknown one)."""
    chosen: list[str] = []
    for value in values:
        if value not in KNOWN_TYPES:
            raise BadRequest(f"Invalid input: unknown event type {value!r} (one of "
                             f"{', '.join(FAULT_TYPES)}, or a full type such as {EVENT_TYPES[0]})")
        if value not in chosen:
            chosen.append(value)
    return chosen


def _clean(text: str, what: str) -> str:
    if "\x00" in text:
        raise BadRequest(f"Invalid input: {what} contains a NUL character")
    return text


def _parse_subscription(body: Any) -> SubscriptionBody:
    if not isinstance(body, dict) or set(body) != {"subscription"} or not isinstance(
            body["subscription"], dict):
        raise BadRequest("Unable to find 'subscription' in request body")
    try:
        parsed = SubscriptionBody.model_validate(body["subscription"])
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'subscription'}: {e['msg']}"
                             for e in exc.errors())
        raise BadRequest(f"Invalid input: {problems}") from None
    validate_url(parsed.url)
    parsed.event_types = validate_event_types(parsed.event_types)
    ids: list[str] = []
    for resource_id in parsed.resource_ids:
        if not 0 < len(resource_id) <= 255:
            raise BadRequest("Invalid input: resource_ids must be 1 to 255 characters each")
        if _clean(resource_id, "resource_ids") not in ids:
            ids.append(resource_id)
    parsed.resource_ids = ids
    _clean(parsed.description, "description")
    for given in (parsed.project_id, parsed.tenant_id):
        if given is not None:
            _clean(given, "project_id")
    if parsed.project_id and parsed.tenant_id and parsed.project_id != parsed.tenant_id:
        raise BadRequest("Invalid input: project_id and tenant_id differ")
    return parsed


def scope(ctx: RequestContext) -> str | None:
    """The project whose view the caller gets (None: an admin, everything)."""
    if ctx.is_admin:
        return None
    if not ctx.project_id:
        raise Forbidden("A project-scoped token is required")
    return ctx.project_id


def _not_found_fault(fault_id: str) -> NotFound:
    return resource_not_found("fault", fault_id)


def _not_found_subscription(subscription_id: str) -> NotFound:
    return resource_not_found("fault_subscription", subscription_id)


def _bad_id(value: str) -> bool:
    return "\x00" in value or len(value) > 36


# --- faults -----------------------------------------------------------------------------------

def _fault_filters(params: list[tuple[str, str]]) -> dict[str, set[str]]:
    wanted: dict[str, set[str]] = {}
    for key, value in params:
        if key not in FAULT_FILTERS:
            raise BadRequest(f"[{key}] is invalid attribute for filtering")
        _clean(value, key)
        if key == "state" and value not in STATES:
            raise BadRequest(f"Invalid input: state {value!r} is not one of {', '.join(STATES)}")
        if key == "type" and value not in FAULT_TYPES:
            raise BadRequest(f"Invalid input: type {value!r} is not one of {', '.join(FAULT_TYPES)}")
        wanted.setdefault(key, set()).add(value)
    return wanted


def _affected(stored: Any) -> dict[str, list[str]]:
    stored = stored if isinstance(stored, dict) else {}
    return {kind: [str(r) for r in stored.get(kind) or ()] for kind in AFFECTED_KINDS}


def _own_resources(conn: Connection, project_id: str, stored: list[Any]) -> set[str]:
    """Which of the affected ports, instances and routers of the faults `stored` (their
    `affected` values) are `project_id`'s: from `affected.projects` when the fault carries it
    (`events.Affected.projects`), else from who owns them now."""
    own: set[str] = set()
    ports: set[str] = set()
    instances: set[str] = set()
    routers: set[str] = set()
    for affected in stored:
        if not isinstance(affected, dict):
            continue
        projects = affected.get("projects")
        if isinstance(projects, dict):
            own.update(str(r) for r, p in projects.items() if p == project_id)
            continue
        ports.update(map(str, affected.get("ports") or ()))
        instances.update(map(str, affected.get("instances") or ()))
        routers.update(map(str, affected.get("routers") or ()))
    if ports or instances:
        rows = conn.execute(select(ports_table.c.id, ports_table.c.device_id).where(
            ports_table.c.project_id == project_id,
            or_(ports_table.c.id.in_(ports), ports_table.c.device_id.in_(instances))))
        for port_id, device_id in rows:
            own.add(port_id)
            if device_id in instances:
                own.add(device_id)
    if routers:
        own.update(conn.execute(select(routers_table.c.id).where(
            routers_table.c.project_id == project_id, routers_table.c.id.in_(routers))).scalars())
    return own


def _fault_views(conn: Connection, rows: list[Any], project_id: str | None) -> list[dict[str, Any]]:
    if project_id is not None:
        rows = [r for r in rows if project_id in (r.project_ids or ())]
        own = _own_resources(conn, project_id, [r.affected for r in rows])
    views = []
    for row in rows:
        affected = _affected(row.affected)
        if project_id is not None:
            affected = {kind: [] if kind == "hosts" else [r for r in ids if r in own]
                        for kind, ids in affected.items()}
        views.append({
            "id": row.id, "type": row.type, "severity": row.severity, "state": row.state,
            "resource_type": row.resource_type, "resource_id": row.resource_id,
            "source": row.source, "fault_time": rfc3339(row.fault_time),
            "detected_at": rfc3339(row.detected_at), "cleared_at": rfc3339(row.cleared_at),
            "affected": affected,
        })
    return views


def list_faults(api: NetworkingApi, ctx: RequestContext,
                params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    project_id = scope(ctx)
    wanted = _fault_filters(params)
    query = select(faults)
    for key, values in wanted.items():
        query = query.where(faults.c[key].in_(sorted(values)))
    query = query.order_by(faults.c.detected_at.desc(), faults.c.id)
    with api.db.read() as conn:
        return _fault_views(conn, list(conn.execute(query)), project_id)


def show_fault(api: NetworkingApi, ctx: RequestContext, fault_id: str) -> dict[str, Any]:
    project_id = scope(ctx)
    if _bad_id(fault_id):
        raise _not_found_fault(fault_id)
    with api.db.read() as conn:
        row = conn.execute(select(faults).where(faults.c.id == fault_id)).first()
        views = _fault_views(conn, [row], project_id) if row is not None else []
    if not views:
        raise _not_found_fault(fault_id)
    return views[0]


# --- subscriptions ----------------------------------------------------------------------------

def subscription_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "project_id": row.project_id,
        "tenant_id": row.project_id,
        "all_projects": row.project_id == ALL_PROJECTS,
        "url": row.url,
        "event_types": list(row.event_types or ()),
        "resource_ids": list(row.resource_ids or ()),
        "description": row.description,
        "created_at": row.created_at,
    }


def create_subscription(api: NetworkingApi, ctx: RequestContext, body: Any) -> dict[str, Any]:
    caller = scope(ctx)
    if not isinstance(body, dict) or "subscription" not in body:
        raise BadRequest("Unable to find 'subscription' in request body")
    if not ctx.can_write:
        raise Forbidden("(rule:create_fault_subscription) is disallowed by policy")
    parsed = _parse_subscription(body)
    named = parsed.project_id or parsed.tenant_id
    if caller is None:
        owner = named if named is not None else ALL_PROJECTS
    elif named is not None and named != caller:
        raise Forbidden("(rule:create_fault_subscription:project_id) is disallowed by policy")
    else:
        owner = caller
    values = {"id": str(uuid.uuid4()), "project_id": owner, "url": parsed.url,
              "event_types": parsed.event_types, "resource_ids": parsed.resource_ids,
              "description": parsed.description, "created_at": now_iso()}
    with api.db.write() as conn:
        count = conn.execute(select(func.count()).select_from(fault_subscriptions)
                             .where(fault_subscriptions.c.project_id == owner)).scalar_one()
        if count >= MAX_SUBSCRIPTIONS:
            raise Conflict("Quota exceeded for resources: ['fault_subscription'].",
                           type="OverQuota")
        conn.execute(insert(fault_subscriptions).values(**values))
        row = conn.execute(select(fault_subscriptions)
                           .where(fault_subscriptions.c.id == values["id"])).one()
    return subscription_view(row)


def _visible_subscription(conn: Connection, ctx: RequestContext, subscription_id: str) -> Any:
    project_id = scope(ctx)
    row = None if _bad_id(subscription_id) else conn.execute(
        select(fault_subscriptions).where(fault_subscriptions.c.id == subscription_id)).first()
    if row is None or (project_id is not None and row.project_id != project_id):
        raise _not_found_subscription(subscription_id)
    return row


def list_subscriptions(api: NetworkingApi, ctx: RequestContext,
                       params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    project_id = scope(ctx)
    for key, _value in params:
        raise BadRequest(f"[{key}] is invalid attribute for filtering")
    query = select(fault_subscriptions).order_by(fault_subscriptions.c.created_at,
                                                 fault_subscriptions.c.id)
    if project_id is not None:
        query = query.where(fault_subscriptions.c.project_id == project_id)
    with api.db.read() as conn:
        return [subscription_view(row) for row in conn.execute(query)]


def show_subscription(api: NetworkingApi, ctx: RequestContext,
                      subscription_id: str) -> dict[str, Any]:
    with api.db.read() as conn:
        return subscription_view(_visible_subscription(conn, ctx, subscription_id))


def delete_subscription(api: NetworkingApi, ctx: RequestContext, subscription_id: str) -> None:
    with api.db.write() as conn:
        _visible_subscription(conn, ctx, subscription_id)
        if not ctx.can_write:
            raise Forbidden("(rule:delete_fault_subscription) is disallowed by policy")
        conn.execute(delete(fault_subscriptions)
                     .where(fault_subscriptions.c.id == subscription_id))


# --- the event stream -------------------------------------------------------------------------

def sse_frame(envelope: dict[str, Any]) -> bytes:
    """One Server-Sent Event: id, event (the CloudEvents type) and the envelope as data."""
    return (f"id: {envelope['id']}\nevent: {envelope['type']}\n".encode()
            + b"data: " + orjson.dumps(envelope) + b"\n\n")


async def sse_events(notifier: Notifier, project_id: str | None,
                     event_types: list[str]) -> AsyncIterator[bytes]:
    async with notifier.listen(project_id, event_types) as listener:
        yield b"retry: 1000\n: connected\n\n"
        while True:
            try:
                envelope = await listener.get(KEEPALIVE)
            except ListenerOverflow:
                yield b": overflow\n\n"
                return
            yield b": keepalive\n\n" if envelope is None else sse_frame(envelope)


def stream_types(params: list[tuple[str, str]]) -> list[str]:
    types = []
    for key, value in params:
        if key != "type":
            raise BadRequest(f"[{key}] is invalid attribute for filtering")
        types.append(value)
    return validate_event_types(types)


# --- routes -----------------------------------------------------------------------------------

def install(app: FastAPI, api: NetworkingApi, authenticate: Authenticator, settings: Settings,
            notifier: Notifier | None = None) -> Notifier:
    """Add the fault routes and run the notifier's delivery worker with the app's lifespan.
    The notifier (made here unless given) is `app.state.notifier` and the publisher of the
    inspector (`app.state.distribution.inspector`, when agents.install made one)."""
    notifier = notifier if notifier is not None else Notifier(api.db, settings)
    app.state.notifier = notifier
    stopping = stopping_event(app)
    # the inspector (neutrino.api.agents installs it first) publishes through the notifier
    inspector = getattr(getattr(app.state, "distribution", None), "inspector", None)
    if inspector is not None and getattr(inspector, "publisher", None) is None:
        inspector.publisher = notifier

    @app.get("/v2.0/faults", tags=["faults"], include_in_schema=False)
    async def get_faults(request: Request) -> Response:
        ctx = authenticate(request)
        params = list(request.query_params.multi_items())
        return json_response({"faults": list_faults(api, ctx, params)})

    @app.get("/v2.0/faults/stream", tags=["faults"], include_in_schema=False)
    async def fault_stream(request: Request) -> Response:
        ctx = authenticate(request)
        project_id = scope(ctx)
        types = stream_types(list(request.query_params.multi_items()))
        return StreamingResponse(until_stopping(sse_events(notifier, project_id, types), stopping),
                                 media_type=SSE,
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/v2.0/faults/{fault_id}", tags=["faults"], include_in_schema=False)
    async def get_fault(request: Request, fault_id: str) -> Response:
        ctx = authenticate(request)
        return json_response({"fault": show_fault(api, ctx, fault_id)})

    @app.post("/v2.0/fault-subscriptions", tags=["faults"], include_in_schema=False,
              status_code=201)
    async def post_subscription(request: Request) -> Response:
        ctx = authenticate(request)
        body = await read_json(request)
        return json_response({"subscription": create_subscription(api, ctx, body)}, 201)

    @app.get("/v2.0/fault-subscriptions", tags=["faults"], include_in_schema=False)
    async def get_subscriptions(request: Request) -> Response:
        ctx = authenticate(request)
        params = list(request.query_params.multi_items())
        return json_response({"subscriptions": list_subscriptions(api, ctx, params)})

    @app.get("/v2.0/fault-subscriptions/{subscription_id}", tags=["faults"],
             include_in_schema=False)
    async def get_subscription(request: Request, subscription_id: str) -> Response:
        ctx = authenticate(request)
        return json_response({"subscription": show_subscription(api, ctx, subscription_id)})

    @app.delete("/v2.0/fault-subscriptions/{subscription_id}", tags=["faults"],
                include_in_schema=False, status_code=204)
    async def remove_subscription(request: Request, subscription_id: str) -> Response:
        ctx = authenticate(request)
        delete_subscription(api, ctx, subscription_id)
        return Response(status_code=204)

    run_with_lifespan(app, notifier.running)
    return notifier
