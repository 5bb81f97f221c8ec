"""The ASGI application: Neutron v2.0 API + Keystone v3 subset on one server.

`create_app` wires settings -> database -> identity -> resources -> routes. Errors of every
kind leave as Neutron's envelope (Keystone's under /v3), never as FastAPI's 422.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from neutrino.api import agents, discovery, faults
from neutrino.api.auth import Authenticator, TokenValidator
from neutrino.api.controller import NetworkingApi
from neutrino.api.errors import NeutronError
from neutrino.api.resources.floatingips import FloatingIps
from neutrino.api.resources.networks import Networks
from neutrino.api.resources.port_forwardings import PortForwardings
from neutrino.api.resources.ports import Ports
from neutrino.api.resources.routers import Routers
from neutrino.api.resources.security_groups import SecurityGroupRules, SecurityGroups
from neutrino.api.resources.subnets import Subnets
from neutrino.api.routes import add_resource_routes, json_response
from neutrino.config import Settings
from neutrino.db.engine import Database

log = logging.getLogger(__name__)

HTTP_TYPES = {404: "HTTPNotFound", 405: "HTTPMethodNotAllowed", 400: "HTTPBadRequest",
              401: "HTTPUnauthorized", 403: "HTTPForbidden", 409: "HTTPConflict"}


def create_app(
    settings: Settings, db: Database, validator: TokenValidator | None = None,
    identity_installer: object | None = None,
) -> FastAPI:
    """Build the app. `validator` is None for noauth; identity routes are added by the caller
    through `identity_installer(app)` when the built-in Keystone subset is enabled."""
    app = FastAPI(title="Neutrino", version="2.0", docs_url=None, redoc_url=None)
    resources = [Networks(settings), Subnets(settings), Ports(settings),
                 SecurityGroups(settings), SecurityGroupRules(settings), Routers(settings),
                 FloatingIps(settings), PortForwardings(settings)]
    api = NetworkingApi(db, resources)
    app.state.networking = api
    app.state.settings = settings
    authenticate = Authenticator(validator)

    @app.exception_handler(NeutronError)
    async def neutron_error(_request: Request, exc: NeutronError) -> Response:
        return json_response(exc.body(), exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = HTTP_TYPES.get(exc.status_code, "HTTPError")
        message = "The resource could not be found." if exc.status_code == 404 else str(exc.detail)
        body: dict[str, Any] = {"NeutronError": {"type": kind, "message": message, "detail": ""}}
        if request.url.path.startswith("/v3"):  # Keystone's own error format under /v3
            title = kind.removeprefix("HTTP").replace("NotFound", "Not Found")
            body = {"error": {"code": exc.status_code, "message": message, "title": title}}
        response = json_response(body, exc.status_code)
        response.headers.update(exc.headers or {})  # e.g. a 405's Allow
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        body = {"NeutronError": {"type": "HTTPBadRequest", "message": str(exc), "detail": ""}}
        return json_response(body, 400)

    @app.exception_handler(Exception)
    async def unexpected_error(_request: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        body = {"NeutronError": {"type": "HTTPInternalServerError",
                                 "message": "Request Failed: internal server error while "
                                 "processing your request.", "detail": ""}}
        return json_response(body, 500)

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> Response:
        return json_response(discovery.versions(_root_url(request)))

    @app.get("/v2.0", include_in_schema=False)
    @app.get("/v2.0/", include_in_schema=False)
    async def v2_index(request: Request) -> Response:
        authenticate(request)
        pairs = [(r.resource, r.collection, r.path) for r in resources if r.parent is None]
        return json_response(discovery.v2_index(_root_url(request), pairs))

    @app.get("/v2.0/extensions", responses={401: {"description": "Unauthorized"}})
    async def list_extensions(request: Request) -> Response:
        authenticate(request)
        return json_response(discovery.extensions())

    @app.get("/v2.0/extensions/{alias}",
             responses={401: {"description": "Unauthorized"}, 404: {"description": "Not found"}})
    async def show_extension(request: Request, alias: str) -> Response:
        authenticate(request)
        if alias not in discovery.EXTENSIONS:
            raise NeutronError(f"Extension with alias {alias} does not exist",
                               type="HTTPNotFound").with_status(404)
        return json_response({"extension": discovery.extension(alias)})

    for res in resources:
        add_resource_routes(app, api, authenticate, res)
    agents.install(app, api, authenticate, settings)
    faults.install(app, api, authenticate, settings)  # app.state.notifier
    if identity_installer is not None:
        identity_installer(app)  # type: ignore[operator]
    _leave_out_422(app)
    return app


def _leave_out_422(app: FastAPI) -> None:
    """FastAPI documents a 422 for every route with parameters, but request validation errors
    are answered 400 here (`validation_error`): keep the never-sent 422 out of the document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()  # cached by FastAPI; removing twice is harmless
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        schemas = document.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        if not schemas:
            document.get("components", {}).pop("schemas", None)
        if not document.get("components", True):
            del document["components"]
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _root_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")
