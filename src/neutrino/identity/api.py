"""The Keystone v3 HTTP API: routes under /v3, Keystone's error format, OpenAPI docs.

`install(app, service)` adds everything to a FastAPI app. Request bodies are parsed by hand
(parsing.py) so bad input gets Keystone's 400 rather than FastAPI's 422; every route
documents its request body and each status code it can answer.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from neutrino.context import RequestContext
from neutrino.identity import catalog, policy, render
from neutrino.identity.errors import BadRequest, Forbidden, KeystoneError, NotFound, Unauthorized
from neutrino.identity.models import Project, RoleAssignment, TokenInfo
from neutrino.identity.parsing import (
    AUTH_SCHEMA,
    PASSWORD_CHANGE,
    PROJECT_CREATE,
    PROJECT_UPDATE,
    USER_CREATE,
    USER_UPDATE,
    member,
    parse_auth_request,
    parse_json,
    query_flag,
    read_fields,
    request_body,
    wrapped_schema,
)
from neutrino.identity.service import DEFAULT_DOMAIN_ID, IdentityService

Json = dict[str, Any]

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
}
_ERROR_SCHEMA: Json = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "title"],
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "title": {"type": "string"},
            },
        }
    },
}


def _errors(*codes: int) -> dict[int | str, Json]:
    """OpenAPI `responses` for Keystone errors with these status codes."""
    return {
        code: {
            "description": _TITLES[code],
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        }
        for code in codes
    }


AUTHENTICATED = (401, 403)


# ---------------------------------------------------------------- dependencies


def _service(request: Request) -> IdentityService:
    service: IdentityService = request.app.state.identity_service
    return service


Service = Annotated[IdentityService, Depends(_service)]


def _caller(
    service: Service,
    x_auth_token: Annotated[str | None, Header(description="A token issued by /v3/auth/tokens")] = None,
) -> RequestContext:
    """The RequestContext of the request's X-Auth-Token; 401 without a valid one."""
    context = service.validate_token(x_auth_token) if x_auth_token else None
    if context is None:
        raise Unauthorized()
    return context


Caller = Annotated[RequestContext, Depends(_caller)]
SubjectToken = Annotated[str | None, Header(description="The token to validate")]
OptionalQuery = Annotated[str | None, Query()]


def _root(request: Request, service: IdentityService) -> str:
    """The server's root URL as clients reach it (settings.public_url wins if set)."""
    return (service.settings.public_url or str(request.base_url)).rstrip("/")


def _self_url(request: Request, service: IdentityService) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{_root(request, service)}{request.url.path}{query}"


async def _body(request: Request) -> Json:
    return parse_json(await request.body())


def _json(body: Json, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status_code, headers=headers)


# ---------------------------------------------------------------- install


def install(app: FastAPI, service: IdentityService) -> None:
    """Serve the Keystone v3 subset of `service` under /v3 of `app`."""
    app.state.identity_service = service
    app.add_exception_handler(KeystoneError, _render_keystone_error)
    app.include_router(router)


async def _render_keystone_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, KeystoneError)
    headers = None
    if isinstance(error, Unauthorized):
        root = _root(request, request.app.state.identity_service)
        headers = {"WWW-Authenticate": f'Keystone uri="{root}/v3"'}
    return JSONResponse(error.body(), status_code=error.code, headers=headers)


router = APIRouter(prefix="/v3", tags=["identity"])


# ---------------------------------------------------------------- version discovery


@router.get("", summary="Identity API v3 version document")
def show_version(request: Request, service: Service) -> Response:
    return _json(render.version(_root(request, service)))


@router.get("/", include_in_schema=False)
def show_version_with_slash(request: Request, service: Service) -> Response:
    return show_version(request, service)


# ---------------------------------------------------------------- tokens

PASSWORD_CHECKS = 1  # password checks (argon2id, CPU-heavy by design) running at once


def _password_checks(request: Request) -> anyio.CapacityLimiter:
    """The app's limiter of password checks: a login storm (every agent of a cloud restarting
    at once) queues here instead of taking every core from the API's other requests."""
    limiter: anyio.CapacityLimiter | None = getattr(request.app.state, "password_checks", None)
    if limiter is None:
        limiter = request.app.state.password_checks = anyio.CapacityLimiter(PASSWORD_CHECKS)
    return limiter


@router.post(
    "/auth/tokens",
    status_code=201,
    summary="Authenticate with a password or a token; the new token is in X-Subject-Token",
    openapi_extra=request_body(AUTH_SCHEMA),
    responses=_errors(400, 401),
)
async def issue_token(request: Request, service: Service, nocatalog: OptionalQuery = None) -> Response:
    auth_request = parse_auth_request(await _body(request))
    issued = await anyio.to_thread.run_sync(service.issue_token, auth_request,
                                            limiter=_password_checks(request))
    body = render.token(_root(request, service), service.settings.region, issued.info, nocatalog is None)
    return _json(body, status_code=201, headers={"X-Subject-Token": issued.token})


def _subject_token(
    service: IdentityService, caller: RequestContext, subject: str | None, action: str
) -> TokenInfo:
    """The X-Subject-Token's details: admins see any token, users their own."""
    info = service.token_info(subject) if subject else None
    if info is None:
        raise NotFound("token", subject or "(no X-Subject-Token given)")
    policy.require_admin_or_self(caller, info.user.id, action)
    return info


@router.get(
    "/auth/tokens",
    summary="Validate the X-Subject-Token and show it",
    responses=_errors(*AUTHENTICATED, 404),
)
def show_token(
    request: Request,
    service: Service,
    caller: Caller,
    x_subject_token: SubjectToken = None,
    nocatalog: OptionalQuery = None,
) -> Response:
    info = _subject_token(service, caller, x_subject_token, "validate_token")
    body = render.token(_root(request, service), service.settings.region, info, nocatalog is None)
    return _json(body, headers={"X-Subject-Token": x_subject_token or ""})


@router.head(
    "/auth/tokens",
    status_code=200,
    response_class=Response,
    summary="Check the X-Subject-Token",
    responses=_errors(*AUTHENTICATED, 404),
)
def check_token(service: Service, caller: Caller, x_subject_token: SubjectToken = None) -> Response:
    _subject_token(service, caller, x_subject_token, "check_token")
    return Response(status_code=200)


@router.delete(
    "/auth/tokens",
    status_code=204,
    response_class=Response,
    summary="Revoke the X-Subject-Token",
    responses=_errors(*AUTHENTICATED, 404),
)
def revoke_token(service: Service, caller: Caller, x_subject_token: SubjectToken = None) -> Response:
    _subject_token(service, caller, x_subject_token, "revoke_token")
    service.revoke_token(x_subject_token or "")
    return Response(status_code=204)


@router.get(
    "/auth/projects",
    summary="Projects the token's user may scope to",
    responses=_errors(*AUTHENTICATED),
)
def list_auth_projects(request: Request, service: Service, caller: Caller) -> Response:
    projects = _projects_of(service, caller)
    root = _root(request, service)
    items = [render.project(root, project) for project in projects if project.enabled]
    return _json(render.collection("projects", items, _self_url(request, service)))


@router.get(
    "/auth/domains",
    summary="Domains the token's user may scope to (none: only project scope exists)",
    responses=_errors(*AUTHENTICATED),
)
def list_auth_domains(request: Request, service: Service, caller: Caller) -> Response:
    return _json(render.collection("domains", [], _self_url(request, service)))


@router.get(
    "/auth/catalog",
    summary="The service catalog of a project-scoped token",
    responses=_errors(*AUTHENTICATED),
)
def show_auth_catalog(request: Request, service: Service, caller: Caller) -> Response:
    if caller.project_id is None:
        raise Forbidden("identity:get_auth_catalog (a project-scoped token is required)")
    entries = catalog.token_catalog(_root(request, service), service.settings.region)
    return _json({"catalog": entries, "links": {"self": _self_url(request, service)}})


def _projects_of(service: IdentityService, caller: RequestContext) -> list[Project]:
    return service.user_projects(caller.user_id) if caller.user_id else []


# ---------------------------------------------------------------- domains


@router.get("/domains", summary="List domains", responses=_errors(*AUTHENTICATED))
def list_domains(
    request: Request,
    service: Service,
    caller: Caller,
    name: OptionalQuery = None,
    enabled: OptionalQuery = None,
) -> Response:
    policy.require_admin(caller, "list_domains")
    root = _root(request, service)
    domains = service.list_domains(name=name, enabled=query_flag(enabled))
    items = [render.domain(root, domain) for domain in domains]
    return _json(render.collection("domains", items, _self_url(request, service)))


@router.get("/domains/{domain_id}", summary="Show a domain", responses=_errors(*AUTHENTICATED, 404))
def show_domain(request: Request, service: Service, caller: Caller, domain_id: str) -> Response:
    if caller.domain_id != domain_id:
        policy.require_admin(caller, "get_domain")
    domain = service.get_domain(domain_id)
    return _json({"domain": render.domain(_root(request, service), domain)})


# ---------------------------------------------------------------- projects


@router.get("/projects", summary="List projects", responses=_errors(*AUTHENTICATED))
def list_projects(
    request: Request,
    service: Service,
    caller: Caller,
    name: OptionalQuery = None,
    domain_id: OptionalQuery = None,
    enabled: OptionalQuery = None,
) -> Response:
    policy.require_admin(caller, "list_projects")
    root = _root(request, service)
    projects = service.list_projects(name=name, domain_id=domain_id, enabled=query_flag(enabled))
    items = [render.project(root, project) for project in projects]
    return _json(render.collection("projects", items, _self_url(request, service)))


@router.post(
    "/projects",
    status_code=201,
    summary="Create a project",
    openapi_extra=request_body(wrapped_schema("project", PROJECT_CREATE)),
    responses=_errors(400, *AUTHENTICATED, 404, 409),
)
async def create_project(request: Request, service: Service, caller: Caller) -> Response:
    policy.require_admin(caller, "create_project")
    fields = read_fields(member(await _body(request), "project"), PROJECT_CREATE, "project")
    domain_id = fields.get("domain_id") or DEFAULT_DOMAIN_ID
    await run_in_threadpool(_refuse_hierarchy, service, fields.get("parent_id"), domain_id)
    project = await run_in_threadpool(
        service.create_project,
        name=fields["name"],
        domain_id=domain_id,
        description=fields.get("description"),
        enabled=fields.get("enabled", True),
    )
    return _json({"project": render.project(_root(request, service), project)}, status_code=201)


def _refuse_hierarchy(service: IdentityService, parent_id: str | None, domain_id: str) -> None:
    """Projects live directly in their domain: a parent_id may only name that domain."""
    if parent_id is None or parent_id == domain_id:
        return
    service.get_project(parent_id)  # 404 for a parent that does not exist, as Keystone
    raise BadRequest("Hierarchical projects are not supported: parent_id must be the domain.")


@router.get("/projects/{project_id}", summary="Show a project", responses=_errors(*AUTHENTICATED, 404))
def show_project(request: Request, service: Service, caller: Caller, project_id: str) -> Response:
    if not caller.is_admin:
        own_project_ids = {project.id for project in _projects_of(service, caller)}
        policy.require_admin_or_member(caller, project_id, own_project_ids, "get_project")
    project = service.get_project(project_id)
    return _json({"project": render.project(_root(request, service), project)})


@router.patch(
    "/projects/{project_id}",
    summary="Update a project's name, description or enabled flag",
    openapi_extra=request_body(wrapped_schema("project", PROJECT_UPDATE)),
    responses=_errors(400, *AUTHENTICATED, 404, 409),
)
async def update_project(request: Request, service: Service, caller: Caller, project_id: str) -> Response:
    policy.require_admin(caller, "update_project")
    requested = member(await _body(request), "project")
    changes = read_fields(requested, PROJECT_UPDATE, "project")
    current = await run_in_threadpool(service.get_project, project_id)
    _refuse_immutable_change(requested, "domain_id", current.domain_id)
    _refuse_immutable_change(requested, "id", current.id)
    project = await run_in_threadpool(service.update_project, project_id, changes)
    return _json({"project": render.project(_root(request, service), project)})


def _refuse_immutable_change(requested: Json, attribute: str, current: str) -> None:
    if attribute in requested and requested[attribute] != current:
        raise BadRequest(f"Update of `{attribute}` is not allowed.")


@router.delete(
    "/projects/{project_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a project with its role assignments and tokens",
    responses=_errors(*AUTHENTICATED, 404),
)
def delete_project(service: Service, caller: Caller, project_id: str) -> Response:
    policy.require_admin(caller, "delete_project")
    service.delete_project(project_id)
    return Response(status_code=204)


# ---------------------------------------------------------------- users


@router.get("/users", summary="List users", responses=_errors(*AUTHENTICATED))
def list_users(
    request: Request,
    service: Service,
    caller: Caller,
    name: OptionalQuery = None,
    domain_id: OptionalQuery = None,
    enabled: OptionalQuery = None,
) -> Response:
    policy.require_admin(caller, "list_users")
    root = _root(request, service)
    users = service.list_users(name=name, domain_id=domain_id, enabled=query_flag(enabled))
    items = [render.user(root, user) for user in users]
    return _json(render.collection("users", items, _self_url(request, service)))


@router.post(
    "/users",
    status_code=201,
    summary="Create a user",
    openapi_extra=request_body(wrapped_schema("user", USER_CREATE)),
    responses=_errors(400, *AUTHENTICATED, 404, 409),
)
async def create_user(request: Request, service: Service, caller: Caller) -> Response:
    policy.require_admin(caller, "create_user")
    fields = read_fields(member(await _body(request), "user"), USER_CREATE, "user")
    user = await run_in_threadpool(
        service.create_user,
        name=fields["name"],
        domain_id=fields.get("domain_id") or DEFAULT_DOMAIN_ID,
        password=fields.get("password"),
        enabled=fields.get("enabled", True),
        email=fields.get("email"),
        description=fields.get("description"),
        default_project_id=fields.get("default_project_id"),
    )
    return _json({"user": render.user(_root(request, service), user)}, status_code=201)


@router.get("/users/{user_id}", summary="Show a user", responses=_errors(*AUTHENTICATED, 404))
def show_user(request: Request, service: Service, caller: Caller, user_id: str) -> Response:
    policy.require_admin_or_self(caller, user_id, "get_user")
    user = service.get_user(user_id)
    return _json({"user": render.user(_root(request, service), user)})


@router.patch(
    "/users/{user_id}",
    summary="Update a user, password included (a new password revokes the user's tokens)",
    openapi_extra=request_body(wrapped_schema("user", USER_UPDATE)),
    responses=_errors(400, *AUTHENTICATED, 404, 409),
)
async def update_user(request: Request, service: Service, caller: Caller, user_id: str) -> Response:
    policy.require_admin(caller, "update_user")
    requested = member(await _body(request), "user")
    changes = read_fields(requested, USER_UPDATE, "user")
    current = await run_in_threadpool(service.get_user, user_id)
    _refuse_immutable_change(requested, "domain_id", current.domain_id)
    _refuse_immutable_change(requested, "id", current.id)
    user = await run_in_threadpool(service.update_user, user_id, changes)
    return _json({"user": render.user(_root(request, service), user)})


@router.delete(
    "/users/{user_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a user with the user's role assignments and tokens",
    responses=_errors(*AUTHENTICATED, 404),
)
def delete_user(service: Service, caller: Caller, user_id: str) -> Response:
    policy.require_admin(caller, "delete_user")
    service.delete_user(user_id)
    return Response(status_code=204)


@router.get(
    "/users/{user_id}/projects",
    summary="Projects the user holds a role on",
    responses=_errors(*AUTHENTICATED, 404),
)
def list_user_projects(request: Request, service: Service, caller: Caller, user_id: str) -> Response:
    policy.require_admin_or_self(caller, user_id, "list_user_projects")
    root = _root(request, service)
    items = [render.project(root, project) for project in service.user_projects(user_id)]
    return _json(render.collection("projects", items, _self_url(request, service)))


@router.post(
    "/users/{user_id}/password",
    status_code=204,
    response_class=Response,
    summary="Change one's own password (needs the original password, not a token)",
    openapi_extra=request_body(wrapped_schema("user", PASSWORD_CHANGE)),
    responses=_errors(400, 401),
)
async def change_password(request: Request, service: Service, user_id: str) -> Response:
    fields = read_fields(member(await _body(request), "user"), PASSWORD_CHANGE, "user")
    await anyio.to_thread.run_sync(service.change_password, user_id, fields["original_password"],
                                   fields["password"], limiter=_password_checks(request))
    return Response(status_code=204)


# ---------------------------------------------------------------- roles and assignments


@router.get("/roles", summary="List roles", responses=_errors(*AUTHENTICATED))
def list_roles(request: Request, service: Service, caller: Caller, name: OptionalQuery = None) -> Response:
    policy.require_admin(caller, "list_roles")
    root = _root(request, service)
    items = [render.role(root, role) for role in service.list_roles(name=name)]
    return _json(render.collection("roles", items, _self_url(request, service)))


@router.get("/roles/{role_id}", summary="Show a role", responses=_errors(*AUTHENTICATED, 404))
def show_role(request: Request, service: Service, caller: Caller, role_id: str) -> Response:
    policy.require_admin(caller, "get_role")
    return _json({"role": render.role(_root(request, service), service.get_role(role_id))})


_GRANT = "/projects/{project_id}/users/{user_id}/roles/{role_id}"


@router.get(
    "/projects/{project_id}/users/{user_id}/roles",
    summary="Roles the user holds on the project",
    responses=_errors(*AUTHENTICATED, 404),
)
def list_grants(
    request: Request, service: Service, caller: Caller, project_id: str, user_id: str
) -> Response:
    policy.require_admin(caller, "list_grants")
    root = _root(request, service)
    roles = service.user_roles_on_project(project_id, user_id)
    items = [render.role(root, role) for role in roles]
    return _json(render.collection("roles", items, _self_url(request, service)))


@router.put(
    _GRANT,
    status_code=204,
    response_class=Response,
    summary="Grant a role to a user on a project",
    responses=_errors(*AUTHENTICATED, 404),
)
def create_grant(service: Service, caller: Caller, project_id: str, user_id: str, role_id: str) -> Response:
    policy.require_admin(caller, "create_grant")
    service.assign_role(project_id, user_id, role_id)
    return Response(status_code=204)


@router.head(
    _GRANT,
    status_code=204,
    response_class=Response,
    summary="Check whether a user holds a role on a project",
    responses=_errors(*AUTHENTICATED, 404),
)
def check_grant(service: Service, caller: Caller, project_id: str, user_id: str, role_id: str) -> Response:
    policy.require_admin(caller, "check_grant")
    if not service.has_role(project_id, user_id, role_id):
        raise NotFound("role assignment", f"{role_id} of user {user_id} on project {project_id}")
    return Response(status_code=204)


@router.delete(
    _GRANT,
    status_code=204,
    response_class=Response,
    summary="Revoke a role from a user on a project",
    responses=_errors(*AUTHENTICATED, 404),
)
def revoke_grant(service: Service, caller: Caller, project_id: str, user_id: str, role_id: str) -> Response:
    policy.require_admin(caller, "revoke_grant")
    service.unassign_role(project_id, user_id, role_id)
    return Response(status_code=204)


@router.get(
    "/role_assignments",
    summary="List role assignments, by user, project and role",
    responses=_errors(*AUTHENTICATED),
)
def list_role_assignments(
    request: Request,
    service: Service,
    caller: Caller,
    user_id: Annotated[str | None, Query(alias="user.id")] = None,
    project_id: Annotated[str | None, Query(alias="scope.project.id")] = None,
    role_id: Annotated[str | None, Query(alias="role.id")] = None,
    effective: OptionalQuery = None,
    include_names: OptionalQuery = None,
) -> Response:
    policy.require_admin(caller, "list_role_assignments")
    root = _root(request, service)
    assignments = _assignments_in_scope(request, service, user_id, project_id, role_id, effective)
    with_names = bool(query_flag(include_names))
    items = [render.role_assignment(root, a, with_names) for a in assignments]
    return _json(render.collection("role_assignments", items, _self_url(request, service)))


def _assignments_in_scope(
    request: Request,
    service: IdentityService,
    user_id: str | None,
    project_id: str | None,
    role_id: str | None,
    effective: str | None,
) -> list[RoleAssignment]:
    """Assignments matching the filters; group, domain and system filters match nothing."""
    other_scopes = ("group.id", "scope.domain.id", "scope.system", "scope.OS-INHERIT:inherited_to")
    if any(key in request.query_params for key in other_scopes):
        return []
    return service.list_role_assignments(
        user_id=user_id,
        project_id=project_id,
        role_id=role_id,
        effective=bool(query_flag(effective)),
    )


# ---------------------------------------------------------------- regions and catalog


@router.get("/regions", summary="List regions", responses=_errors(*AUTHENTICATED))
def list_regions(
    request: Request,
    service: Service,
    caller: Caller,
    parent_region_id: OptionalQuery = None,
) -> Response:
    root = _root(request, service)
    regions = service.list_regions(parent_region_id=parent_region_id)
    items = [render.region(root, region) for region in regions]
    return _json(render.collection("regions", items, _self_url(request, service)))


@router.get("/regions/{region_id}", summary="Show a region", responses=_errors(*AUTHENTICATED, 404))
def show_region(request: Request, service: Service, caller: Caller, region_id: str) -> Response:
    region = service.get_region(region_id)
    return _json({"region": render.region(_root(request, service), region)})


@router.get("/services", summary="List catalog services", responses=_errors(*AUTHENTICATED))
def list_services(
    request: Request,
    service: Service,
    caller: Caller,
    type: OptionalQuery = None,
    name: OptionalQuery = None,
) -> Response:
    root = _root(request, service)
    items = [
        render.service(root, entry)
        for entry in catalog.SERVICES
        if type in (None, entry.type) and name in (None, entry.name)
    ]
    return _json(render.collection("services", items, _self_url(request, service)))


@router.get(
    "/services/{service_id}",
    summary="Show a catalog service",
    responses=_errors(*AUTHENTICATED, 404),
)
def show_service(request: Request, service: Service, caller: Caller, service_id: str) -> Response:
    for entry in catalog.SERVICES:
        if entry.id == service_id:
            return _json({"service": render.service(_root(request, service), entry)})
    raise NotFound("service", service_id)


@router.get("/endpoints", summary="List catalog endpoints", responses=_errors(*AUTHENTICATED))
def list_endpoints(
    request: Request,
    service: Service,
    caller: Caller,
    interface: OptionalQuery = None,
    service_id: OptionalQuery = None,
    region_id: OptionalQuery = None,
) -> Response:
    root = _root(request, service)
    items = [
        render.endpoint(root, endpoint)
        for endpoint in catalog.endpoints(root, service.settings.region)
        if interface in (None, endpoint.interface)
        and service_id in (None, endpoint.service.id)
        and region_id in (None, endpoint.region)
    ]
    return _json(render.collection("endpoints", items, _self_url(request, service)))


@router.get(
    "/endpoints/{endpoint_id}",
    summary="Show a catalog endpoint",
    responses=_errors(*AUTHENTICATED, 404),
)
def show_endpoint(request: Request, service: Service, caller: Caller, endpoint_id: str) -> Response:
    root = _root(request, service)
    for endpoint in catalog.endpoints(root, service.settings.region):
        if endpoint.id == endpoint_id:
            return _json({"endpoint": render.endpoint(root, endpoint)})
    raise NotFound("endpoint", endpoint_id)
