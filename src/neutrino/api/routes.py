"""HTTP routes of the Neutron v2.0 API, generated from each resource's attribute map.

Every route is registered explicitly (one per operation and resource) so the OpenAPI document
describes real request bodies and every status code an operation can answer; handlers parse
JSON themselves so bad input is Neutron's 400, never FastAPI's 422.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from neutrino.api.attributes import PROJECT_KEYS
from neutrino.api.auth import Authenticator
from neutrino.api.controller import NetworkingApi
from neutrino.api.errors import BadRequest
from neutrino.api.resources.base import Resource

ERROR_SCHEMA = {
    "type": "object",
    "required": ["NeutronError"],
    "properties": {
        "NeutronError": {
            "type": "object",
            "required": ["type", "message", "detail"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"},
                           "detail": {"type": "string"}},
        }
    },
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
            409: "Conflict", 412: "Precondition failed"}
    return {
        code: {"description": text[code],
               "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        for code in codes
    }


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise BadRequest("Resource body required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("Malformed request body") from None


def _body_schema(res: Resource, *, create: bool) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, attr in res.attributes.items():
        if (attr.allow_post if create else attr.allow_put) and name not in PROJECT_KEYS:
            props[name] = attr.schema or {}
    if create:
        props["project_id"] = props["tenant_id"] = {"type": "string", "minLength": 1, "maxLength": 255}
    required = [n for n, a in res.attributes.items() if a.required] if create else []
    # any other attribute is refused (400), as Neutron does
    item = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    return {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object", "properties": {res.resource: item}, "required": [res.resource],
        }}},
    }


TAGS_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["tags"],
    }}},
}

LIST_PARAMETERS = [
    {"name": n, "in": "query", "required": False, "schema": s}
    for n, s in (
        ("fields", {"type": "string"}),
        ("limit", {"type": "integer", "minimum": 0}),
        ("marker", {"type": "string"}),
        ("sort_key", {"type": "string"}),
        ("sort_dir", {"type": "string", "enum": ["asc", "desc"]}),
        ("tags", {"type": "string"}),
        ("tags-any", {"type": "string"}),
        ("not-tags", {"type": "string"}),
        ("not-tags-any", {"type": "string"}),
    )
]
# Neutron's revision-if-match: `If-Match: revision_number=N` (400 when malformed, 412 when stale)
IF_MATCH = [{"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
             "example": "revision_number=1"}]


def _router(app: FastAPI, res: Resource) -> Callable[..., None]:
    """Registers one documented route of `res` (operation id `<op>_<resource>`)."""

    def route(path: str, method: str, op: str, endpoint: Callable[..., Awaitable[Response]],
              codes: tuple[int, ...], status: int = 200, *, empty: bool = False,
              **extra: Any) -> None:
        ok: dict[int | str, dict[str, Any]] = {status: {"description": "Success"}}
        # `empty`: the success answer has no body, so the document declares no content for it
        app.add_api_route(path, endpoint, methods=[method], operation_id=f"{op}_{res.resource}",
                          responses={**ok, **_errors(*codes)}, status_code=status,
                          response_class=Response if empty or status == 204 else JSONResponse,
                          include_in_schema=True, openapi_extra=extra or None,
                          tags=[res.collection])

    return route


def add_resource_routes(
    app: FastAPI, api: NetworkingApi, authenticate: Authenticator, res: Resource
) -> None:
    """A resource's collection and members under /v2.0, or under its parent for a
    sub-resource, e.g. /v2.0/floatingips/{floatingip_id}/port_forwardings[/{resource_id}]
    (sub-resources have no tags, no actions and no If-Match)."""
    coll, parent = res.collection, res.parent_key if res.parent is not None else None
    base = f"/v2.0/{res.path}"
    item_path = base + "/{resource_id}"
    route = _router(app, res)

    def parent_of(request: Request) -> str | None:
        return request.path_params[parent] if parent is not None else None

    def if_match(request: Request) -> str | None:
        return request.headers.get("if-match") if parent is None else None

    async def list_items(request: Request) -> Response:
        ctx = authenticate(request)
        params = list(request.query_params.multi_items())
        base_url = str(request.url).split("?", 1)[0]
        return json_response(api.list_collection(ctx, coll, params, base_url, parent_of(request)))

    async def create_item(request: Request) -> Response:
        ctx = authenticate(request)
        body = await read_json(request)
        return json_response(api.create(ctx, coll, body, parent_of(request)), 201)

    async def show_item(request: Request, resource_id: str) -> Response:
        ctx = authenticate(request)
        params = list(request.query_params.multi_items())
        return json_response(api.show(ctx, coll, resource_id, params, parent_of(request)))

    async def update_item(request: Request, resource_id: str) -> Response:
        ctx = authenticate(request)
        body = await read_json(request)
        return json_response(api.update(ctx, coll, resource_id, body, if_match(request),
                                        parent_of(request)))

    async def delete_item(request: Request, resource_id: str) -> Response:
        ctx = authenticate(request)
        api.delete(ctx, coll, resource_id, if_match(request), parent_of(request))
        return Response(status_code=204)

    if parent is not None:
        parent_param = [{"name": parent, "in": "path", "required": True,
                         "schema": {"type": "string"}}]
        route(base, "GET", "list", list_items, (400, 401, 404),
              parameters=[*parent_param, *LIST_PARAMETERS])
        route(base, "POST", "create", create_item, (400, 401, 403, 404, 409), 201,
              parameters=parent_param, requestBody=_body_schema(res, create=True))
        route(item_path, "GET", "show", show_item, (401, 404), parameters=parent_param)
        route(item_path, "PUT", "update", update_item, (400, 401, 403, 404, 409),
              parameters=parent_param, requestBody=_body_schema(res, create=False))
        route(item_path, "DELETE", "delete", delete_item, (401, 403, 404, 409), 204,
              parameters=parent_param)
        return
    route(base, "GET", "list", list_items, (400, 401, 404), parameters=LIST_PARAMETERS)  # 404: marker
    route(base, "POST", "create", create_item, (400, 401, 403, 404, 409), 201,
          requestBody=_body_schema(res, create=True))
    route(item_path, "GET", "show", show_item, (401, 404))
    route(item_path, "PUT", "update", update_item, (400, 401, 403, 404, 409, 412),
          requestBody=_body_schema(res, create=False), parameters=IF_MATCH)
    route(item_path, "DELETE", "delete", delete_item, (400, 401, 403, 404, 409, 412), 204,
          parameters=IF_MATCH)
    add_tag_routes(app, api, authenticate, res, route)
    add_action_routes(app, api, authenticate, res, route)


def add_action_routes(
    app: FastAPI, api: NetworkingApi, authenticate: Authenticator, res: Resource,
    route: Callable[..., None],
) -> None:
    """PUT /v2.0/<path>/{resource_id}/<action> for each of the resource's member actions."""
    coll = res.collection

    def endpoint(action: str) -> Callable[..., Awaitable[Response]]:
        async def act(request: Request, resource_id: str) -> Response:
            ctx = authenticate(request)
            body = await read_json(request)
            return json_response(api.action(ctx, coll, resource_id, action, body))

        return act

    for action, schema in res.actions.items():
        route(f"/v2.0/{res.path}/{{resource_id}}/{action}", "PUT", action, endpoint(action),
              (400, 401, 403, 404, 409),
              requestBody={"required": True, "content": {"application/json": {"schema": schema}}})


def add_tag_routes(
    app: FastAPI, api: NetworkingApi, authenticate: Authenticator, res: Resource,
    route: Callable[..., None],
) -> None:
    coll = res.collection
    tags_path = f"/v2.0/{res.path}/{{resource_id}}/tags"
    tag_path = tags_path + "/{tag}"

    async def get_tags(request: Request, resource_id: str) -> Response:
        return json_response({"tags": api.get_tags(authenticate(request), coll, resource_id)})

    async def put_tags(request: Request, resource_id: str) -> Response:
        ctx = authenticate(request)
        return json_response({"tags": api.put_tags(ctx, coll, resource_id, await read_json(request))})

    async def delete_tags(request: Request, resource_id: str) -> Response:
        api.delete_all_tags(authenticate(request), coll, resource_id)
        return Response(status_code=204)

    async def check_tag(request: Request, resource_id: str, tag: str) -> Response:
        api.has_tag(authenticate(request), coll, resource_id, tag)
        return Response(status_code=204)

    async def put_tag(request: Request, resource_id: str, tag: str) -> Response:
        api.put_tag(authenticate(request), coll, resource_id, tag)
        return Response(status_code=201)

    async def delete_tag(request: Request, resource_id: str, tag: str) -> Response:
        api.delete_tag(authenticate(request), coll, resource_id, tag)
        return Response(status_code=204)

    route(tags_path, "GET", "list_tags", get_tags, (401, 404))
    route(tags_path, "PUT", "replace_tags", put_tags, (400, 401, 403, 404), requestBody=TAGS_BODY)
    route(tags_path, "DELETE", "delete_tags", delete_tags, (401, 403, 404), 204)
    route(tag_path, "GET", "check_tag", check_tag, (401, 404), 204)
    route(tag_path, "PUT", "add_tag", put_tag, (400, 401, 403, 404), 201, empty=True)
    route(tag_path, "DELETE", "remove_tag", delete_tag, (401, 403, 404), 204)


def run_with_lifespan(app: FastAPI,
                      running: Callable[[], contextlib.AbstractAsyncContextManager[None]]) -> None:
    """Enter `running()` (background tasks) for as long as the app runs, after whatever its
    lifespan already does."""
    original = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with original(app_) as state, running():
            yield state

    app.router.lifespan_context = lifespan


def stopping_event(app: FastAPI) -> asyncio.Event:
    """Set when the server begins to stop (`neutrino server` sets it on SIGTERM/SIGINT, before
    it waits for requests in flight): never-ending responses end at once (`until_stopping`)
    instead of holding the shutdown up."""
    event: asyncio.Event | None = getattr(app.state, "stopping", None)
    if event is None:
        event = app.state.stopping = asyncio.Event()
    return event


async def until_stopping(stream: AsyncIterator[bytes],
                         stopping: asyncio.Event) -> AsyncIterator[bytes]:
    """`stream`'s chunks until it ends or `stopping` is set (the response then ends cleanly:
    its client sees the end of the body and reconnects, to this server or another)."""
    stop = asyncio.ensure_future(stopping.wait())
    step: asyncio.Future[bytes] | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(stream))
            await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                return
            try:
                chunk = step.result()
            except StopAsyncIteration:
                return
            step = None
            yield chunk
    finally:  # stopping, or the client went away (this generator is cancelled or closed)
        stop.cancel()
        if step is not None and not step.done():
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await step
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
