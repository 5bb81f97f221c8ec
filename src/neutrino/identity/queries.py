"""Reads of the identity tables on an open connection, returning identity records.

Lookups by id or name accept any string: a value that cannot be stored (too long, or with
a NUL character, which PostgreSQL rejects) simply finds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import Connection, Row, Select, select

from neutrino.identity.models import Domain, Project, Region, Role, RoleAssignment, User
from neutrino.identity.schema import (
    ID_LENGTH,
    NAME_LENGTH,
    domains,
    projects,
    regions,
    role_assignments,
    roles,
    users,
)

T = TypeVar("T")

# roles a role brings along, as Keystone's bootstrap sets them up: admin > member > reader
IMPLIED_ROLES: dict[str, tuple[str, ...]] = {"admin": ("member",), "member": ("reader",)}


def storable(value: str | None, max_length: int = NAME_LENGTH) -> bool:
    """Whether `value` could be stored in a column, so looking it up is meaningful."""
    return value is not None and len(value) <= max_length and "\x00" not in value


def _storable_id(value: str) -> bool:
    return storable(value, ID_LENGTH)


def domain_of(row: Row[Any]) -> Domain:
    return Domain(id=row.id, name=row.name, description=row.description, enabled=row.enabled)


def project_of(row: Row[Any]) -> Project:
    return Project(
        id=row.id,
        name=row.name,
        domain_id=row.domain_id,
        description=row.description,
        enabled=row.enabled,
    )


def user_of(row: Row[Any]) -> User:
    return User(
        id=row.id,
        name=row.name,
        domain_id=row.domain_id,
        enabled=row.enabled,
        email=row.email,
        description=row.description,
        default_project_id=row.default_project_id,
    )


def role_of(row: Row[Any]) -> Role:
    return Role(id=row.id, name=row.name, description=row.description)


def region_of(row: Row[Any]) -> Region:
    return Region(id=row.id, description=row.description, parent_region_id=row.parent_region_id)


def _filtered(query: Select[Any], column: Any, value: str | bool | None) -> Select[Any] | None:
    """`query` narrowed to `column == value`; None when `value` cannot match anything."""
    if value is None:
        return query
    if isinstance(value, str) and not storable(value):
        return None
    return query.where(column == value)


def get_domain(conn: Connection, domain_id: str) -> Domain | None:
    if not _storable_id(domain_id):
        return None
    row = conn.execute(select(domains).where(domains.c.id == domain_id)).first()
    return domain_of(row) if row else None


def find_domain_by_name(conn: Connection, name: str) -> Domain | None:
    if not storable(name):
        return None
    row = conn.execute(select(domains).where(domains.c.name == name)).first()
    return domain_of(row) if row else None


def list_domains(conn: Connection, name: str | None = None, enabled: bool | None = None) -> list[Domain]:
    query: Select[Any] | None = select(domains).order_by(domains.c.name)
    for column, value in ((domains.c.name, name), (domains.c.enabled, enabled)):
        query = _filtered(query, column, value) if query is not None else None
    return [domain_of(row) for row in conn.execute(query)] if query is not None else []


def get_project(conn: Connection, project_id: str) -> Project | None:
    if not _storable_id(project_id):
        return None
    row = conn.execute(select(projects).where(projects.c.id == project_id)).first()
    return project_of(row) if row else None


def find_project_by_name(conn: Connection, name: str, domain_id: str) -> Project | None:
    if not (storable(name) and _storable_id(domain_id)):
        return None
    query = select(projects).where(projects.c.name == name, projects.c.domain_id == domain_id)
    row = conn.execute(query).first()
    return project_of(row) if row else None


def list_projects(
    conn: Connection,
    name: str | None = None,
    domain_id: str | None = None,
    enabled: bool | None = None,
    ids: Iterable[str] | None = None,
) -> list[Project]:
    query: Select[Any] | None = select(projects).order_by(projects.c.name, projects.c.id)
    filters = (
        (projects.c.name, name),
        (projects.c.domain_id, domain_id),
        (projects.c.enabled, enabled),
    )
    for column, value in filters:
        query = _filtered(query, column, value) if query is not None else None
    if query is None:
        return []
    if ids is not None:
        query = query.where(projects.c.id.in_(list(ids)))
    return [project_of(row) for row in conn.execute(query)]


def get_user(conn: Connection, user_id: str) -> User | None:
    row = get_user_row(conn, user_id)
    return user_of(row) if row else None


def get_user_row(conn: Connection, user_id: str) -> Row[Any] | None:
    """The user's row, password hash included."""
    if not _storable_id(user_id):
        return None
    return conn.execute(select(users).where(users.c.id == user_id)).first()


def find_user_row_by_name(conn: Connection, name: str, domain_id: str) -> Row[Any] | None:
    if not (storable(name) and _storable_id(domain_id)):
        return None
    query = select(users).where(users.c.name == name, users.c.domain_id == domain_id)
    return conn.execute(query).first()


def list_users(
    conn: Connection,
    name: str | None = None,
    domain_id: str | None = None,
    enabled: bool | None = None,
) -> list[User]:
    query: Select[Any] | None = select(users).order_by(users.c.name, users.c.id)
    filters = ((users.c.name, name), (users.c.domain_id, domain_id), (users.c.enabled, enabled))
    for column, value in filters:
        query = _filtered(query, column, value) if query is not None else None
    return [user_of(row) for row in conn.execute(query)] if query is not None else []


def get_role(conn: Connection, role_id: str) -> Role | None:
    if not _storable_id(role_id):
        return None
    row = conn.execute(select(roles).where(roles.c.id == role_id)).first()
    return role_of(row) if row else None


def list_roles(conn: Connection, name: str | None = None) -> list[Role]:
    query = _filtered(select(roles).order_by(roles.c.name), roles.c.name, name)
    return [role_of(row) for row in conn.execute(query)] if query is not None else []


def get_region(conn: Connection, region_id: str) -> Region | None:
    if not _storable_id(region_id):
        return None
    row = conn.execute(select(regions).where(regions.c.id == region_id)).first()
    return region_of(row) if row else None


def list_regions(conn: Connection, parent_region_id: str | None = None) -> list[Region]:
    query = _filtered(select(regions).order_by(regions.c.id), regions.c.parent_region_id, parent_region_id)
    return [region_of(row) for row in conn.execute(query)] if query is not None else []


def direct_roles(conn: Connection, user_id: str, project_id: str) -> list[Role]:
    """The roles assigned to the user on the project (without implied ones)."""
    query = (
        select(roles)
        .join(role_assignments, role_assignments.c.role_id == roles.c.id)
        .where(role_assignments.c.user_id == user_id)
        .where(role_assignments.c.project_id == project_id)
        .order_by(roles.c.name)
    )
    return [role_of(row) for row in conn.execute(query)]


def implied_roles(conn: Connection, role: Role) -> list[Role]:
    """The roles `role` implies, transitively (admin: member and reader)."""
    names: list[str] = []
    pending = list(IMPLIED_ROLES.get(role.name, ()))
    while pending:
        name = pending.pop(0)
        if name not in names:
            names.append(name)
            pending.extend(IMPLIED_ROLES.get(name, ()))
    if not names:
        return []
    rows = conn.execute(select(roles).where(roles.c.name.in_(names))).all()
    by_name = {row.name: role_of(row) for row in rows}
    return [by_name[name] for name in names if name in by_name]


def effective_roles(conn: Connection, user_id: str, project_id: str) -> tuple[Role, ...]:
    """Assigned roles plus the roles they imply, each once, assigned ones first."""
    assigned = direct_roles(conn, user_id, project_id)
    effective = {role.id: role for role in assigned}
    for role in assigned:
        for implied in implied_roles(conn, role):
            effective.setdefault(implied.id, implied)
    return tuple(effective.values())


def user_project_ids(conn: Connection, user_id: str) -> list[str]:
    """Projects the user holds at least one role on."""
    query = select(role_assignments.c.project_id).where(role_assignments.c.user_id == user_id).distinct()
    return [row.project_id for row in conn.execute(query)]


def role_assignments_matching(
    conn: Connection,
    user_id: str | None = None,
    project_id: str | None = None,
    role_id: str | None = None,
) -> list[RoleAssignment]:
    """Direct assignments, narrowed by any of user, project and role."""
    query: Select[Any] | None = select(role_assignments)
    filters = (
        (role_assignments.c.user_id, user_id),
        (role_assignments.c.project_id, project_id),
        (role_assignments.c.role_id, role_id),
    )
    for column, value in filters:
        query = _filtered(query, column, value) if query is not None else None
    if query is None:
        return []
    rows = conn.execute(query).all()
    users_by_id = _by_id(conn, users, user_of, {row.user_id for row in rows})
    projects_by_id = _by_id(conn, projects, project_of, {row.project_id for row in rows})
    roles_by_id = _by_id(conn, roles, role_of, {row.role_id for row in rows})
    domain_ids = {user.domain_id for user in users_by_id.values()}
    domain_ids |= {project.domain_id for project in projects_by_id.values()}
    domains_by_id = _by_id(conn, domains, domain_of, domain_ids)
    assignments = [
        RoleAssignment(
            user=users_by_id[row.user_id],
            user_domain=domains_by_id[users_by_id[row.user_id].domain_id],
            project=projects_by_id[row.project_id],
            project_domain=domains_by_id[projects_by_id[row.project_id].domain_id],
            role=roles_by_id[row.role_id],
        )
        for row in rows
    ]
    assignments.sort(key=lambda a: (a.project.name, a.user.name, a.role.name))
    return assignments


def _by_id(conn: Connection, table: Any, record_of: Callable[[Row[Any]], T], ids: set[str]) -> dict[str, T]:
    if not ids:
        return {}
    rows = conn.execute(select(table).where(table.c.id.in_(sorted(ids))))
    return {row.id: record_of(row) for row in rows}
