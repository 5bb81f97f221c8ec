"""The identity records the service hands out: plain frozen dataclasses, no database rows.

The API renders them into Keystone's JSON shapes (render.py); other parts of Neutrino may use
them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from neutrino.context import RequestContext


@dataclass(frozen=True)
class Domain:
    id: str
    name: str
    description: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    domain_id: str
    description: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class User:
    id: str
    name: str
    domain_id: str
    enabled: bool = True
    email: str | None = None
    description: str | None = None
    default_project_id: str | None = None


@dataclass(frozen=True)
class Role:
    id: str
    name: str
    description: str | None = None


@dataclass(frozen=True)
class Region:
    id: str
    description: str | None = None
    parent_region_id: str | None = None


@dataclass(frozen=True)
class RoleAssignment:
    """`user` holds `role` on `project`; `implied_by` is set for roles implied by another."""

    user: User
    user_domain: Domain
    project: Project
    project_domain: Domain
    role: Role
    implied_by: Role | None = None


@dataclass(frozen=True)
class UserReference:
    """How an authentication request names a user: by id, or by name within a domain."""

    id: str | None = None
    name: str | None = None
    domain_id: str | None = None
    domain_name: str | None = None


@dataclass(frozen=True)
class ProjectReference:
    """How a scope names a project: by id, or by name within a domain."""

    id: str | None = None
    name: str | None = None
    domain_id: str | None = None
    domain_name: str | None = None


@dataclass(frozen=True)
class AuthRequest:
    """A parsed `POST /v3/auth/tokens`: who proves what, and the scope asked for.

    `password_user`/`password` are set for the password method, `token` for the token
    method. `project` is the requested scope; with neither it nor `unscoped`, the user's
    default project (if any) is used.
    """

    methods: tuple[str, ...]
    password_user: UserReference | None = None
    password: str | None = None
    token: str | None = None
    project: ProjectReference | None = None
    unscoped: bool = False


@dataclass(frozen=True)
class TokenInfo:
    """Everything a token says about its owner, as `GET /v3/auth/tokens` shows it."""

    user: User
    user_domain: Domain
    project: Project | None
    project_domain: Domain | None
    roles: tuple[Role, ...]
    methods: tuple[str, ...]
    audit_ids: tuple[str, ...]
    issued_at: datetime  # naive UTC
    expires_at: datetime  # naive UTC
    context: RequestContext = field(compare=False, repr=False)


@dataclass(frozen=True)
class IssuedToken:
    """A new token: the secret id (shown once, in X-Subject-Token) and what it carries."""

    token: str
    info: TokenInfo
