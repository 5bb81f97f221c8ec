"""IdentityService: bootstrap, authentication, token validation and its cache, management."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from neutrino.config import Settings
from neutrino.db.engine import Database
from neutrino.db.meta import metadata
from neutrino.identity.errors import Conflict, NotFound, Unauthorized
from neutrino.identity.models import AuthRequest, ProjectReference, UserReference
from neutrino.identity.schema import domains, projects, regions, role_assignments, roles, tokens
from neutrino.identity.schema import users as users_table
from neutrino.identity.service import IdentityService

from .conftest import ADMIN_PASSWORD


def fresh_service(directory: Path, **settings: object) -> IdentityService:
    db = Database(f"sqlite:///{directory}/db.sqlite")
    metadata.create_all(db.engine)
    return IdentityService(db, Settings(state_dir=directory, **settings))  # type: ignore[arg-type]


def login(
    user: str = "admin",
    password: str = ADMIN_PASSWORD,
    project: str | None = "admin",
) -> AuthRequest:
    scope = ProjectReference(name=project, domain_name="Default") if project else None
    return AuthRequest(
        methods=("password",),
        password_user=UserReference(name=user, domain_id="default"),
        password=password,
        project=scope,
    )


def count(service: IdentityService, table: object) -> int:
    with service.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def add_member(service: IdentityService, user: str = "alice", project: str = "p1") -> str:
    """Create a user holding `member` on a new project; returns the user's id."""
    created_project = service.create_project(project)
    created_user = service.create_user(user, password="alice-pw")
    member_role = service.list_roles(name="member")[0]
    service.assign_role(created_project.id, created_user.id, member_role.id)
    return created_user.id


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_creates_default_domain_admin_project_roles_region_and_admin(
    service: IdentityService,
) -> None:
    assert service.get_domain("default").name == "Default"
    assert [p.name for p in service.list_projects()] == ["admin"]
    assert sorted(r.name for r in service.list_roles()) == ["admin", "member", "reader"]
    assert [r.id for r in service.list_regions()] == ["RegionOne"]
    [admin] = service.list_users(name="admin")
    assert admin.domain_id == "default"
    [assignment] = service.list_role_assignments(user_id=admin.id)
    assert (assignment.project.name, assignment.role.name) == ("admin", "admin")


def test_bootstrap_is_idempotent_and_returns_none_when_the_password_is_given(
    service: IdentityService,
) -> None:
    before = [count(service, t) for t in (domains, projects, users_table, roles, regions)]
    assert service.bootstrap() is None
    assert service.bootstrap() is None
    after = [count(service, t) for t in (domains, projects, users_table, roles, regions)]
    assert before == after == [1, 1, 1, 3, 1]
    assert count(service, role_assignments) == 1


def test_bootstrap_generates_a_password_once_and_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEUTRINO_ADMIN_PASSWORD", raising=False)
    service = fresh_service(tmp_path)
    generated = service.bootstrap()
    assert generated and len(generated) >= 16
    assert service.bootstrap() is None
    issued = service.issue_token(login(password=generated))
    assert issued.info.user.name == "admin"


def test_bootstrap_takes_the_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEUTRINO_ADMIN_PASSWORD", "from-env")
    service = fresh_service(tmp_path)
    assert service.bootstrap() is None
    assert service.issue_token(login(password="from-env")).info.project is not None


def test_bootstrap_applies_a_changed_admin_password(tmp_path: Path) -> None:
    fresh_service(tmp_path, admin_password="first").bootstrap()
    service = fresh_service(tmp_path, admin_password="second")
    assert service.bootstrap() is None
    service.issue_token(login(password="second"))
    with pytest.raises(Unauthorized):
        service.issue_token(login(password="first"))


def test_bootstrap_registers_the_configured_region(tmp_path: Path) -> None:
    service = fresh_service(tmp_path, admin_password="pw", region="Edge7")
    service.bootstrap()
    assert service.get_region("Edge7").id == "Edge7"


# ---------------------------------------------------------------- passwords and tokens at rest


def test_passwords_are_stored_as_argon2id_hashes_that_verify_quickly(
    service: IdentityService,
) -> None:
    with service.db.read() as conn:
        stored = conn.execute(select(users_table.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    assert ADMIN_PASSWORD not in stored
    started = time.perf_counter()
    service.issue_token(login())
    assert time.perf_counter() - started < 0.2  # one argon2 verification is ~10 ms


def test_tokens_are_stored_as_sha256_digests_only(service: IdentityService) -> None:
    issued = service.issue_token(login())
    with service.db.read() as conn:
        stored = conn.execute(select(tokens.c.token_hash)).scalars().all()
    assert stored == [hashlib.sha256(issued.token.encode()).hexdigest()]
    assert len(issued.token) >= 43  # token_urlsafe(32)


# ---------------------------------------------------------------- authentication


def test_a_project_scoped_token_carries_assigned_and_implied_roles(
    service: IdentityService,
) -> None:
    issued = service.issue_token(login())
    context = service.validate_token(issued.token)
    assert context is not None
    assert context.roles == ("admin", "member", "reader")
    assert context.is_admin
    assert (context.user_name, context.project_name, context.domain_id) == (
        "admin",
        "admin",
        "default",
    )
    assert context.project_id == issued.info.project.id  # type: ignore[union-attr]


def test_a_member_gets_member_and_reader_but_not_admin(service: IdentityService) -> None:
    add_member(service)
    issued = service.issue_token(login("alice", "alice-pw", "p1"))
    context = service.validate_token(issued.token)
    assert context is not None and context.roles == ("member", "reader")
    assert context.can_write and not context.is_admin


@pytest.mark.parametrize(
    "request_",
    [
        login(password="wrong"),
        login(user="nobody"),
        AuthRequest(
            methods=("password",),
            password_user=UserReference(name="admin", domain_name="NoSuchDomain"),
            password=ADMIN_PASSWORD,
        ),
        AuthRequest(
            methods=("password",),
            password_user=UserReference(id="not-a-user-id"),
            password=ADMIN_PASSWORD,
        ),
        login(project="no-such-project"),
    ],
    ids=["wrong-password", "unknown-user", "unknown-domain", "unknown-user-id", "no-project"],
)
def test_bad_credentials_or_scope_are_unauthorized(service: IdentityService, request_: AuthRequest) -> None:
    with pytest.raises(Unauthorized):
        service.issue_token(request_)


def test_a_project_without_a_role_for_the_user_is_unauthorized(service: IdentityService) -> None:
    add_member(service)
    with pytest.raises(Unauthorized):
        service.issue_token(login("alice", "alice-pw", "admin"))


def test_a_disabled_user_cannot_authenticate(service: IdentityService) -> None:
    user_id = add_member(service)
    service.update_user(user_id, {"enabled": False})
    with pytest.raises(Unauthorized):
        service.issue_token(login("alice", "alice-pw", "p1"))


def test_without_scope_the_default_project_is_used_else_the_token_is_unscoped(
    service: IdentityService,
) -> None:
    user_id = add_member(service)
    unscoped = service.issue_token(login("alice", "alice-pw", project=None))
    assert unscoped.info.project is None and unscoped.info.roles == ()
    project_id = service.list_projects(name="p1")[0].id
    service.update_user(user_id, {"default_project_id": project_id})
    scoped = service.issue_token(login("alice", "alice-pw", project=None))
    assert scoped.info.project is not None and scoped.info.project.id == project_id


def test_a_token_can_be_rescoped_with_the_token_method(service: IdentityService) -> None:
    unscoped = service.issue_token(login(project=None))
    rescoped = service.issue_token(
        AuthRequest(
            methods=("token",),
            token=unscoped.token,
            project=ProjectReference(name="admin", domain_id="default"),
        )
    )
    assert rescoped.info.project is not None and rescoped.info.project.name == "admin"
    assert rescoped.info.methods == ("token", "password")
    assert rescoped.info.audit_ids[1] == unscoped.info.audit_ids[0]
    assert rescoped.info.expires_at == unscoped.info.expires_at


# ---------------------------------------------------------------- validation and its cache


def test_unknown_tokens_are_not_valid(service: IdentityService) -> None:
    assert service.validate_token("not-a-token") is None
    assert service.validate_token("") is None
    assert service.validate_token("x" * 5000) is None


def test_validation_after_the_first_lookup_does_not_touch_the_database(
    service: IdentityService, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = service.issue_token(login())

    def no_database() -> None:
        raise AssertionError("validate_token read the database")

    monkeypatch.setattr(service.db, "read", no_database)
    started = time.perf_counter()
    for _ in range(10_000):
        assert service.validate_token(issued.token) is not None
    assert time.perf_counter() - started < 0.5  # ~1 microsecond each


def test_a_token_issued_elsewhere_is_validated_from_the_database_then_cached(
    service: IdentityService,
) -> None:
    issued = service.issue_token(login())
    other_process = IdentityService(service.db, service.settings)
    context = other_process.validate_token(issued.token)
    assert context is not None and context.user_name == "admin"


def test_expired_tokens_are_not_valid(tmp_path: Path) -> None:
    service = fresh_service(tmp_path, admin_password="pw", token_ttl_seconds=0)
    service.bootstrap()
    issued = service.issue_token(login(password="pw"))
    assert service.validate_token(issued.token) is None
    assert IdentityService(service.db, service.settings).validate_token(issued.token) is None


def test_revoked_tokens_are_not_valid_anywhere(service: IdentityService) -> None:
    issued = service.issue_token(login())
    assert service.revoke_token(issued.token)
    assert service.validate_token(issued.token) is None
    assert IdentityService(service.db, service.settings).validate_token(issued.token) is None
    assert not service.revoke_token(issued.token)


def test_changing_a_password_revokes_the_users_tokens(service: IdentityService) -> None:
    user_id = add_member(service)
    issued = service.issue_token(login("alice", "alice-pw", "p1"))
    service.update_user(user_id, {"password": "new-pw"})
    assert service.validate_token(issued.token) is None
    service.issue_token(login("alice", "new-pw", "p1"))


def test_self_service_password_change_needs_the_original_password(
    service: IdentityService,
) -> None:
    user_id = add_member(service)
    with pytest.raises(Unauthorized):
        service.change_password(user_id, "wrong", "new-pw")
    service.change_password(user_id, "alice-pw", "new-pw")
    service.issue_token(login("alice", "new-pw", "p1"))


def test_removing_the_last_role_invalidates_project_tokens(service: IdentityService) -> None:
    user_id = add_member(service)
    issued = service.issue_token(login("alice", "alice-pw", "p1"))
    project_id = issued.info.project.id  # type: ignore[union-attr]
    member_role = service.list_roles(name="member")[0]
    service.unassign_role(project_id, user_id, member_role.id)
    assert service.validate_token(issued.token) is None


def test_role_changes_show_in_the_next_validation(service: IdentityService) -> None:
    user_id = add_member(service)
    issued = service.issue_token(login("alice", "alice-pw", "p1"))
    project_id = issued.info.project.id  # type: ignore[union-attr]
    service.assign_role(project_id, user_id, service.list_roles(name="admin")[0].id)
    context = service.validate_token(issued.token)
    assert context is not None and context.is_admin


def test_deleting_the_user_or_project_invalidates_their_tokens(service: IdentityService) -> None:
    user_id = add_member(service)
    by_user = service.issue_token(login("alice", "alice-pw", "p1"))
    service.delete_user(user_id)
    assert service.validate_token(by_user.token) is None

    add_member(service, user="bob", project="p2")
    by_project = service.issue_token(login("bob", "alice-pw", "p2"))
    service.delete_project(by_project.info.project.id)  # type: ignore[union-attr]
    assert service.validate_token(by_project.token) is None


def test_disabling_the_project_invalidates_its_tokens(service: IdentityService) -> None:
    add_member(service)
    issued = service.issue_token(login("alice", "alice-pw", "p1"))
    service.update_project(issued.info.project.id, {"enabled": False})  # type: ignore[union-attr]
    assert service.validate_token(issued.token) is None


# ---------------------------------------------------------------- management


def test_names_are_unique_within_a_domain(service: IdentityService) -> None:
    service.create_project("p1")
    with pytest.raises(Conflict):
        service.create_project("p1")
    service.create_user("u1")
    with pytest.raises(Conflict):
        service.create_user("u1")
    other = service.create_project("p2")
    with pytest.raises(Conflict):
        service.update_project(other.id, {"name": "p1"})


def test_references_to_missing_records_are_not_found(service: IdentityService) -> None:
    with pytest.raises(NotFound):
        service.create_project("p1", domain_id="nope")
    with pytest.raises(NotFound):
        service.create_user("u1", default_project_id="nope")
    with pytest.raises(NotFound):
        service.assign_role("nope", "nope", "nope")
    with pytest.raises(NotFound):
        service.get_project("\x00" * 100)


def test_projects_exist_and_project_name(service: IdentityService) -> None:
    project = service.create_project("p1", description="first")
    admin_id = service.list_projects(name="admin")[0].id
    assert service.projects_exist([project.id, admin_id])
    assert service.projects_exist([])
    assert not service.projects_exist([project.id, "missing"])
    assert service.project_name(project.id) == "p1"
    assert service.project_name("missing") is None


def test_user_projects_are_those_with_a_role(service: IdentityService) -> None:
    user_id = add_member(service)
    service.create_project("unrelated")
    assert [p.name for p in service.user_projects(user_id)] == ["p1"]


def test_effective_assignments_add_implied_roles(service: IdentityService) -> None:
    [admin] = service.list_users(name="admin")
    effective = service.list_role_assignments(user_id=admin.id, effective=True)
    assert [(a.role.name, a.implied_by and a.implied_by.name) for a in effective] == [
        ("admin", None),
        ("member", "admin"),
        ("reader", "admin"),
    ]
