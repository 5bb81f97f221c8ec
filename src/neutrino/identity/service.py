"""IdentityService: bootstrap, authentication, token validation and identity management.

Every API request calls `validate_token`; after a token's first lookup its RequestContext
comes from an in-memory cache until the token expires, is revoked, or something it depends
on changes (its user, its project, the user's roles there). Tokens are random opaque
strings; the database stores only their SHA-256 digest.

Failures raise `KeystoneError`s (errors.py), which the API renders in Keystone's format.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from neutrino.config import Settings
from neutrino.context import RequestContext
from neutrino.db.engine import Database
from neutrino.identity import queries
from neutrino.identity.errors import BadRequest, Conflict, NotFound, Unauthorized
from neutrino.identity.models import (
    AuthRequest,
    Domain,
    IssuedToken,
    Project,
    ProjectReference,
    Region,
    Role,
    RoleAssignment,
    TokenInfo,
    User,
    UserReference,
)
from neutrino.identity.passwords import (
    hash_password,
    needs_rehash,
    verify_password,
    verify_unknown_user,
)
from neutrino.identity.schema import (
    domains,
    projects,
    regions,
    role_assignments,
    roles,
    tokens,
    users,
)
from neutrino.identity.token_cache import TokenCache

DEFAULT_DOMAIN_ID = "default"
DEFAULT_DOMAIN_NAME = "Default"
ADMIN_PROJECT = "admin"
ADMIN_USER = "admin"
BOOTSTRAP_ROLES = ("admin", "member", "reader")
ADMIN_PASSWORD_ENV = "NEUTRINO_ADMIN_PASSWORD"
EXPIRED_TOKEN_PURGE_SECONDS = 600

PROJECT_FIELDS = frozenset({"name", "description", "enabled"})
USER_FIELDS = frozenset({"name", "password", "enabled", "email", "description", "default_project_id"})


def utcnow() -> datetime:
    """Now, as the naive UTC datetime the tables store."""
    return datetime.now(UTC).replace(tzinfo=None)


def epoch_seconds(naive_utc: datetime) -> float:
    return naive_utc.replace(tzinfo=UTC).timestamp()


def token_digest(token: str) -> str:
    """What the tokens table stores instead of the token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_id() -> str:
    return uuid.uuid4().hex


class IdentityService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._token_cache = TokenCache()
        self._next_expired_purge = 0.0

    # ------------------------------------------------------------------ bootstrap

    def bootstrap(self) -> str | None:
        """Create the Default domain, admin project and user, roles and region if missing.

        Idempotent. Returns the admin password only when it was generated (neither
        settings.admin_password nor $NEUTRINO_ADMIN_PASSWORD given) on the first start;
        a given password is (re)applied to the existing admin user on every start.
        """
        given_password = self.settings.admin_password or os.environ.get(ADMIN_PASSWORD_ENV)
        with self.db.write() as conn:
            self._ensure_bootstrap_records(conn)
            admin_row = queries.find_user_row_by_name(conn, ADMIN_USER, DEFAULT_DOMAIN_ID)
            generated: str | None = None
            if admin_row is None:
                generated = None if given_password else secrets.token_urlsafe(18)
                admin_user_id = self._insert_admin_user(conn, given_password or generated or "")
            else:
                admin_user_id = admin_row.id
                if given_password and not verify_password(admin_row.password_hash, given_password):
                    self._set_password_hash(conn, admin_user_id, hash_password(given_password))
            self._ensure_admin_assignment(conn, admin_user_id)
        self._forget_tokens_of_user(admin_user_id)
        return generated

    def _ensure_bootstrap_records(self, conn: Connection) -> None:
        if queries.get_domain(conn, DEFAULT_DOMAIN_ID) is None:
            conn.execute(
                insert(domains).values(
                    id=DEFAULT_DOMAIN_ID,
                    name=DEFAULT_DOMAIN_NAME,
                    description="The default domain",
                    enabled=True,
                )
            )
        if queries.find_project_by_name(conn, ADMIN_PROJECT, DEFAULT_DOMAIN_ID) is None:
            conn.execute(
                insert(projects).values(
                    id=new_id(),
                    name=ADMIN_PROJECT,
                    domain_id=DEFAULT_DOMAIN_ID,
                    description="Bootstrap project for initializing the cloud.",
                    enabled=True,
                )
            )
        existing_roles = {role.name for role in queries.list_roles(conn)}
        for role_name in BOOTSTRAP_ROLES:
            if role_name not in existing_roles:
                conn.execute(insert(roles).values(id=new_id(), name=role_name))
        if queries.get_region(conn, self.settings.region) is None:
            conn.execute(insert(regions).values(id=self.settings.region))

    def _insert_admin_user(self, conn: Connection, password: str) -> str:
        user_id = new_id()
        conn.execute(
            insert(users).values(
                id=user_id,
                name=ADMIN_USER,
                domain_id=DEFAULT_DOMAIN_ID,
                password_hash=hash_password(password),
                enabled=True,
                created_at=utcnow(),
            )
        )
        return user_id

    def _ensure_admin_assignment(self, conn: Connection, admin_user_id: str) -> None:
        admin_project = queries.find_project_by_name(conn, ADMIN_PROJECT, DEFAULT_DOMAIN_ID)
        admin_role = queries.list_roles(conn, name="admin")
        assert admin_project is not None and admin_role
        self._insert_assignment(conn, admin_user_id, admin_project.id, admin_role[0].id)

    # ------------------------------------------------------------------ tokens

    def validate_token(self, token: str) -> RequestContext | None:
        """Who `token` belongs to; None for an unknown, expired or revoked token.

        A dict lookup plus an expiry check once the token has been seen.
        """
        context = self._token_cache.get(token)
        if context is not None:
            return context
        info = self.token_info(token)
        return info.context if info else None

    def token_info(self, token: str) -> TokenInfo | None:
        """Everything about a valid token (read from the database); None when not valid."""
        if not token or len(token) > 1024:
            return None
        with self.db.read() as conn:
            row = conn.execute(select(tokens).where(tokens.c.token_hash == token_digest(token))).first()
            if row is None or row.expires_at <= utcnow():
                return None
            info = self._describe_token(
                conn,
                user_id=row.user_id,
                project_id=row.project_id,
                methods=tuple(row.methods.split(",")),
                audit_ids=tuple(row.audit_ids.split(",")),
                issued_at=row.issued_at,
                expires_at=row.expires_at,
            )
        if info is not None:
            self._token_cache.put(token, epoch_seconds(info.expires_at), info.context)
        return info

    def issue_token(self, request: AuthRequest) -> IssuedToken:
        """Authenticate `request` and issue a token with the scope it asks for.

        Raises Unauthorized for bad credentials, a disabled user, or a project the user
        has no role on.
        """
        now = utcnow()
        audit_ids: tuple[str, ...]
        if request.token is not None:
            parent = self.token_info(request.token)
            if parent is None:
                raise Unauthorized()
            user_id = parent.user.id
            methods = tuple(dict.fromkeys(("token", *parent.methods)))
            audit_ids = (_new_audit_id(), parent.audit_ids[0])
            expires_at = parent.expires_at
            default_project_id = parent.project.id if parent.project else None
        else:
            user = self._authenticate_password(request.password_user, request.password)
            user_id = user.id
            methods = ("password",)
            audit_ids = (_new_audit_id(),)
            expires_at = now + timedelta(seconds=self.settings.token_ttl_seconds)
            default_project_id = user.default_project_id
        token = secrets.token_urlsafe(32)
        with self.db.write() as conn:
            project_id = self._scope_project_id(conn, request, user_id, default_project_id)
            conn.execute(
                insert(tokens).values(
                    token_hash=token_digest(token),
                    user_id=user_id,
                    project_id=project_id,
                    methods=",".join(methods),
                    audit_ids=",".join(audit_ids),
                    issued_at=now,
                    expires_at=expires_at,
                )
            )
            self._purge_expired_tokens(conn, now)
            info = self._describe_token(conn, user_id, project_id, methods, audit_ids, now, expires_at)
        if info is None:  # the user was disabled meanwhile
            raise Unauthorized()
        self._token_cache.put(token, epoch_seconds(expires_at), info.context)
        return IssuedToken(token=token, info=info)

    def revoke_token(self, token: str) -> bool:
        """Revoke `token`; False when it was not a valid token."""
        if not token or len(token) > 1024:
            return False
        with self.db.write() as conn:
            result = conn.execute(delete(tokens).where(tokens.c.token_hash == token_digest(token)))
        self._token_cache.forget(token)
        return result.rowcount > 0

    def _authenticate_password(self, reference: UserReference | None, password: str | None) -> User:
        if reference is None or password is None:
            raise Unauthorized()
        with self.db.read() as conn:
            row = self._find_user_row(conn, reference)
            domain = queries.get_domain(conn, row.domain_id) if row else None
        if row is None:
            verify_unknown_user(password)
            raise Unauthorized()
        if not verify_password(row.password_hash, password):
            raise Unauthorized()
        if not (row.enabled and domain and domain.enabled):
            raise Unauthorized()
        if needs_rehash(row.password_hash):
            with self.db.write() as conn:
                self._set_password_hash(conn, row.id, hash_password(password), revoke=False)
        return queries.user_of(row)

    def _find_user_row(self, conn: Connection, reference: UserReference) -> Any:
        if reference.id is not None:
            return queries.get_user_row(conn, reference.id)
        domain = self._find_domain(conn, reference.domain_id, reference.domain_name)
        if domain is None or reference.name is None:
            return None
        return queries.find_user_row_by_name(conn, reference.name, domain.id)

    def _find_domain(self, conn: Connection, domain_id: str | None, domain_name: str | None) -> Domain | None:
        if domain_id is not None:
            return queries.get_domain(conn, domain_id)
        if domain_name is not None:
            return queries.find_domain_by_name(conn, domain_name)
        return None

    def _scope_project_id(
        self,
        conn: Connection,
        request: AuthRequest,
        user_id: str,
        default_project_id: str | None,
    ) -> str | None:
        """The project the new token is scoped to, None for an unscoped token."""
        if request.project is not None:
            project = self._find_project(conn, request.project)
            if project is None or not self._may_use_project(conn, user_id, project):
                raise Unauthorized(f"User {user_id} has no access to the requested project.")
            return project.id
        if request.unscoped or default_project_id is None:
            return None
        # like Keystone: an unusable default project yields an unscoped token
        project = queries.get_project(conn, default_project_id)
        if project is None or not self._may_use_project(conn, user_id, project):
            return None
        return project.id

    def _find_project(self, conn: Connection, reference: ProjectReference) -> Project | None:
        if reference.id is not None:
            return queries.get_project(conn, reference.id)
        domain = self._find_domain(conn, reference.domain_id, reference.domain_name)
        if domain is None or reference.name is None:
            return None
        return queries.find_project_by_name(conn, reference.name, domain.id)

    def _may_use_project(self, conn: Connection, user_id: str, project: Project) -> bool:
        domain = queries.get_domain(conn, project.domain_id)
        if not (project.enabled and domain and domain.enabled):
            return False
        return bool(queries.direct_roles(conn, user_id, project.id))

    def _describe_token(
        self,
        conn: Connection,
        user_id: str,
        project_id: str | None,
        methods: tuple[str, ...],
        audit_ids: tuple[str, ...],
        issued_at: datetime,
        expires_at: datetime,
    ) -> TokenInfo | None:
        """The token's owner, scope and roles as they are now; None if no longer valid."""
        user = queries.get_user(conn, user_id)
        user_domain = queries.get_domain(conn, user.domain_id) if user else None
        if user is None or user_domain is None or not (user.enabled and user_domain.enabled):
            return None
        project = queries.get_project(conn, project_id) if project_id else None
        project_domain = queries.get_domain(conn, project.domain_id) if project else None
        token_roles: tuple[Role, ...] = ()
        if project_id is not None:
            if project is None or project_domain is None:
                return None
            if not (project.enabled and project_domain.enabled):
                return None
            token_roles = queries.effective_roles(conn, user.id, project.id)
            if not token_roles:
                return None
        context = RequestContext(
            user_id=user.id,
            project_id=project.id if project else None,
            roles=tuple(role.name for role in token_roles),
            user_name=user.name,
            project_name=project.name if project else None,
            domain_id=project.domain_id if project else user.domain_id,
        )
        return TokenInfo(
            user=user,
            user_domain=user_domain,
            project=project,
            project_domain=project_domain,
            roles=token_roles,
            methods=methods,
            audit_ids=audit_ids,
            issued_at=issued_at,
            expires_at=expires_at,
            context=context,
        )

    def _purge_expired_tokens(self, conn: Connection, now: datetime) -> None:
        if time.monotonic() < self._next_expired_purge:
            return
        self._next_expired_purge = time.monotonic() + EXPIRED_TOKEN_PURGE_SECONDS
        conn.execute(delete(tokens).where(tokens.c.expires_at <= now))

    def _delete_tokens_of_user(self, conn: Connection, user_id: str) -> None:
        """Delete the user's tokens; call `_forget_tokens_of_user` after the commit."""
        conn.execute(delete(tokens).where(tokens.c.user_id == user_id))

    def _forget_tokens_of_user(self, user_id: str) -> None:
        self._token_cache.forget_where(lambda context: context.user_id == user_id)

    # ------------------------------------------------------------------ domains

    def list_domains(self, name: str | None = None, enabled: bool | None = None) -> list[Domain]:
        with self.db.read() as conn:
            return queries.list_domains(conn, name=name, enabled=enabled)

    def get_domain(self, domain_id: str) -> Domain:
        with self.db.read() as conn:
            domain = queries.get_domain(conn, domain_id)
        if domain is None:
            raise NotFound("domain", domain_id)
        return domain

    # ------------------------------------------------------------------ projects

    def projects_exist(self, project_ids: Iterable[str]) -> bool:
        """Whether every one of `project_ids` names an existing project."""
        wanted = set(project_ids)
        if not all(queries.storable(project_id) for project_id in wanted):
            return False
        with self.db.read() as conn:
            found = queries.list_projects(conn, ids=wanted)
        return len(found) == len(wanted)

    def project_name(self, project_id: str) -> str | None:
        """The name of the project, None when there is no such project."""
        with self.db.read() as conn:
            project = queries.get_project(conn, project_id)
        return project.name if project else None

    def list_projects(
        self,
        name: str | None = None,
        domain_id: str | None = None,
        enabled: bool | None = None,
    ) -> list[Project]:
        with self.db.read() as conn:
            return queries.list_projects(conn, name=name, domain_id=domain_id, enabled=enabled)

    def get_project(self, project_id: str) -> Project:
        with self.db.read() as conn:
            project = queries.get_project(conn, project_id)
        if project is None:
            raise NotFound("project", project_id)
        return project

    def user_projects(self, user_id: str) -> list[Project]:
        """The projects the user holds a role on."""
        with self.db.read() as conn:
            if queries.get_user(conn, user_id) is None:
                raise NotFound("user", user_id)
            return queries.list_projects(conn, ids=queries.user_project_ids(conn, user_id))

    def create_project(
        self,
        name: str,
        domain_id: str = DEFAULT_DOMAIN_ID,
        description: str | None = None,
        enabled: bool = True,
    ) -> Project:
        project = Project(
            id=new_id(), name=name, domain_id=domain_id, description=description, enabled=enabled
        )
        with self._storing("project", f"name {name} at domain ID {domain_id}") as conn:
            if queries.get_domain(conn, domain_id) is None:
                raise NotFound("domain", domain_id)
            if queries.find_project_by_name(conn, name, domain_id) is not None:
                raise _duplicate("project", name, domain_id)
            conn.execute(insert(projects).values(**_fields(project)))
        return project

    def update_project(self, project_id: str, changes: Mapping[str, Any]) -> Project:
        """Apply `changes` (name, description, enabled) to the project."""
        _refuse_unknown_fields(changes, PROJECT_FIELDS)
        with self._storing("project", f"name {changes.get('name')}") as conn:
            project = queries.get_project(conn, project_id)
            if project is None:
                raise NotFound("project", project_id)
            new_name = changes.get("name", project.name)
            if new_name != project.name and queries.find_project_by_name(conn, new_name, project.domain_id):
                raise _duplicate("project", new_name, project.domain_id)
            if changes:
                conn.execute(update(projects).where(projects.c.id == project_id).values(**changes))
            updated = queries.get_project(conn, project_id)
        assert updated is not None
        self._token_cache.forget_where(lambda context: context.project_id == project_id)
        return updated

    def delete_project(self, project_id: str) -> None:
        """Delete the project, its role assignments and the tokens scoped to it."""
        with self.db.write() as conn:
            if queries.get_project(conn, project_id) is None:
                raise NotFound("project", project_id)
            conn.execute(delete(tokens).where(tokens.c.project_id == project_id))
            conn.execute(delete(role_assignments).where(role_assignments.c.project_id == project_id))
            conn.execute(delete(projects).where(projects.c.id == project_id))
        self._token_cache.forget_where(lambda context: context.project_id == project_id)

    # ------------------------------------------------------------------ users

    def list_users(
        self,
        name: str | None = None,
        domain_id: str | None = None,
        enabled: bool | None = None,
    ) -> list[User]:
        with self.db.read() as conn:
            return queries.list_users(conn, name=name, domain_id=domain_id, enabled=enabled)

    def get_user(self, user_id: str) -> User:
        with self.db.read() as conn:
            user = queries.get_user(conn, user_id)
        if user is None:
            raise NotFound("user", user_id)
        return user

    def create_user(
        self,
        name: str,
        domain_id: str = DEFAULT_DOMAIN_ID,
        password: str | None = None,
        enabled: bool = True,
        email: str | None = None,
        description: str | None = None,
        default_project_id: str | None = None,
    ) -> User:
        user = User(
            id=new_id(),
            name=name,
            domain_id=domain_id,
            enabled=enabled,
            email=email,
            description=description,
            default_project_id=default_project_id,
        )
        password_hash = hash_password(password) if password is not None else None
        with self._storing("user", f"name {name} at domain ID {domain_id}") as conn:
            if queries.get_domain(conn, domain_id) is None:
                raise NotFound("domain", domain_id)
            if default_project_id and queries.get_project(conn, default_project_id) is None:
                raise NotFound("project", default_project_id)
            if queries.find_user_row_by_name(conn, name, domain_id) is not None:
                raise _duplicate("user", name, domain_id)
            conn.execute(
                insert(users).values(**_fields(user), password_hash=password_hash, created_at=utcnow())
            )
        return user

    def update_user(self, user_id: str, changes: Mapping[str, Any]) -> User:
        """Apply `changes` (name, password, enabled, email, description, default_project_id).

        A new password or disabling the user revokes the user's tokens.
        """
        _refuse_unknown_fields(changes, USER_FIELDS)
        values = {key: value for key, value in changes.items() if key != "password"}
        if "password" in changes:
            password = changes["password"]
            values["password_hash"] = hash_password(password) if password is not None else None
        with self._storing("user", f"name {changes.get('name')}") as conn:
            user = queries.get_user(conn, user_id)
            if user is None:
                raise NotFound("user", user_id)
            self._check_user_changes(conn, user, changes)
            if values:
                conn.execute(update(users).where(users.c.id == user_id).values(**values))
            if "password" in changes or changes.get("enabled") is False:
                self._delete_tokens_of_user(conn, user_id)
            updated = queries.get_user(conn, user_id)
        assert updated is not None
        self._forget_tokens_of_user(user_id)
        return updated

    def _check_user_changes(self, conn: Connection, user: User, changes: Mapping[str, Any]) -> None:
        new_name = changes.get("name", user.name)
        if new_name != user.name and queries.find_user_row_by_name(conn, new_name, user.domain_id):
            raise _duplicate("user", new_name, user.domain_id)
        default_project_id = changes.get("default_project_id")
        if default_project_id and queries.get_project(conn, default_project_id) is None:
            raise NotFound("project", default_project_id)

    def change_password(self, user_id: str, original_password: str, new_password: str) -> None:
        """Self-service password change: the original password must match."""
        with self.db.read() as conn:
            row = queries.get_user_row(conn, user_id)
        if row is None:
            verify_unknown_user(original_password)
            raise Unauthorized()
        if not verify_password(row.password_hash, original_password):
            raise Unauthorized()
        with self.db.write() as conn:
            self._set_password_hash(conn, user_id, hash_password(new_password))
        self._forget_tokens_of_user(user_id)

    def delete_user(self, user_id: str) -> None:
        """Delete the user, the user's role assignments and tokens."""
        with self.db.write() as conn:
            if queries.get_user(conn, user_id) is None:
                raise NotFound("user", user_id)
            self._delete_tokens_of_user(conn, user_id)
            conn.execute(delete(role_assignments).where(role_assignments.c.user_id == user_id))
            conn.execute(delete(users).where(users.c.id == user_id))
        self._forget_tokens_of_user(user_id)

    def _set_password_hash(
        self, conn: Connection, user_id: str, password_hash: str, revoke: bool = True
    ) -> None:
        """Store a new hash; with `revoke`, also delete the user's tokens (then forget them)."""
        conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))
        if revoke:
            self._delete_tokens_of_user(conn, user_id)

    # ------------------------------------------------------------------ roles

    def list_roles(self, name: str | None = None) -> list[Role]:
        with self.db.read() as conn:
            return queries.list_roles(conn, name=name)

    def get_role(self, role_id: str) -> Role:
        with self.db.read() as conn:
            role = queries.get_role(conn, role_id)
        if role is None:
            raise NotFound("role", role_id)
        return role

    def assign_role(self, project_id: str, user_id: str, role_id: str) -> None:
        """Grant the role to the user on the project (idempotent)."""
        with self.db.write() as conn:
            self._require_assignment_parts(conn, project_id, user_id, role_id)
            self._insert_assignment(conn, user_id, project_id, role_id)
        self._forget_tokens_of_user_on(user_id, project_id)

    def has_role(self, project_id: str, user_id: str, role_id: str) -> bool:
        """Whether the user holds exactly this role (directly) on the project."""
        with self.db.read() as conn:
            self._require_assignment_parts(conn, project_id, user_id, role_id)
            return bool(queries.role_assignments_matching(conn, user_id, project_id, role_id))

    def unassign_role(self, project_id: str, user_id: str, role_id: str) -> None:
        with self.db.write() as conn:
            self._require_assignment_parts(conn, project_id, user_id, role_id)
            result = conn.execute(
                delete(role_assignments).where(
                    role_assignments.c.user_id == user_id,
                    role_assignments.c.project_id == project_id,
                    role_assignments.c.role_id == role_id,
                )
            )
            if result.rowcount == 0:
                raise NotFound("role assignment", f"{role_id} of user {user_id} on {project_id}")
        self._forget_tokens_of_user_on(user_id, project_id)

    def user_roles_on_project(self, project_id: str, user_id: str) -> list[Role]:
        """The roles assigned (directly) to the user on the project."""
        with self.db.read() as conn:
            if queries.get_project(conn, project_id) is None:
                raise NotFound("project", project_id)
            if queries.get_user(conn, user_id) is None:
                raise NotFound("user", user_id)
            return queries.direct_roles(conn, user_id, project_id)

    def list_role_assignments(
        self,
        user_id: str | None = None,
        project_id: str | None = None,
        role_id: str | None = None,
        effective: bool = False,
    ) -> list[RoleAssignment]:
        """Assignments narrowed by user, project and role; `effective` adds implied roles."""
        with self.db.read() as conn:
            if not effective:
                return queries.role_assignments_matching(conn, user_id, project_id, role_id)
            direct = queries.role_assignments_matching(conn, user_id, project_id)
            expanded = [
                RoleAssignment(a.user, a.user_domain, a.project, a.project_domain, implied, implied_by=a.role)
                for a in direct
                for implied in queries.implied_roles(conn, a.role)
            ]
        return [a for a in direct + expanded if role_id is None or a.role.id == role_id]

    def _require_assignment_parts(
        self, conn: Connection, project_id: str, user_id: str, role_id: str
    ) -> None:
        if queries.get_project(conn, project_id) is None:
            raise NotFound("project", project_id)
        if queries.get_user(conn, user_id) is None:
            raise NotFound("user", user_id)
        if queries.get_role(conn, role_id) is None:
            raise NotFound("role", role_id)

    def _insert_assignment(self, conn: Connection, user_id: str, project_id: str, role_id: str) -> None:
        if not queries.role_assignments_matching(conn, user_id, project_id, role_id):
            conn.execute(
                insert(role_assignments).values(user_id=user_id, project_id=project_id, role_id=role_id)
            )

    def _forget_tokens_of_user_on(self, user_id: str, project_id: str) -> None:
        """Cached contexts list roles: let the next request recompute them."""
        self._token_cache.forget_where(
            lambda context: context.user_id == user_id and context.project_id == project_id
        )

    # ------------------------------------------------------------------ regions

    def list_regions(self, parent_region_id: str | None = None) -> list[Region]:
        with self.db.read() as conn:
            return queries.list_regions(conn, parent_region_id=parent_region_id)

    def get_region(self, region_id: str) -> Region:
        with self.db.read() as conn:
            region = queries.get_region(conn, region_id)
        if region is None:
            raise NotFound("region", region_id)
        return region

    # ------------------------------------------------------------------ helpers

    @contextmanager
    def _storing(self, kind: str, what: str) -> Iterator[Connection]:
        """A write transaction that turns a unique-constraint race into 409 Conflict."""
        try:
            with self.db.write() as conn:
                yield conn
        except IntegrityError as error:
            raise Conflict(kind, f"Duplicate entry found with {what}") from error


def _new_audit_id() -> str:
    return secrets.token_urlsafe(16)[:22]


def _fields(record: Project | User) -> dict[str, Any]:
    return asdict(record)


def _duplicate(kind: str, name: str, domain_id: str) -> Conflict:
    return Conflict(kind, f"Duplicate entry found with name {name} at domain ID {domain_id}")


def _refuse_unknown_fields(changes: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise BadRequest(f"Cannot update {', '.join(unknown)}.")
