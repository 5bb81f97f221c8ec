"""The identity service and API on PostgreSQL (the private cluster of tests/support/postgres.py).

PostgreSQL is stricter than SQLite: it refuses NUL characters in text and enforces column
lengths, so identifiers that cannot be stored must simply find nothing, never fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from neutrino.config import Settings
from neutrino.db.engine import Database
from neutrino.db.meta import metadata
from neutrino.identity.errors import Conflict
from neutrino.identity.models import AuthRequest, ProjectReference, UserReference
from neutrino.identity.service import IdentityService

from .conftest import ADMIN_PASSWORD, TestClient, identity_app, password_auth

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_service(postgres_db: str, tmp_path: Path) -> Iterator[IdentityService]:
    db = Database(postgres_db)
    metadata.create_all(db.engine)
    service = IdentityService(db, Settings(state_dir=tmp_path, admin_password=ADMIN_PASSWORD))
    service.bootstrap()
    yield service
    db.dispose()


def test_bootstrap_authentication_and_validation_on_postgres(pg_service: IdentityService) -> None:
    assert pg_service.bootstrap() is None
    issued = pg_service.issue_token(
        AuthRequest(
            methods=("password",),
            password_user=UserReference(name="admin", domain_name="Default"),
            password=ADMIN_PASSWORD,
            project=ProjectReference(name="admin", domain_id="default"),
        )
    )
    fresh_cache = IdentityService(pg_service.db, pg_service.settings)
    context = fresh_cache.validate_token(issued.token)
    assert context is not None and context.roles == ("admin", "member", "reader")
    assert pg_service.revoke_token(issued.token)
    assert IdentityService(pg_service.db, pg_service.settings).validate_token(issued.token) is None


def test_unstorable_identifiers_find_nothing_on_postgres(pg_service: IdentityService) -> None:
    assert pg_service.validate_token("\x00") is None
    assert pg_service.list_projects(name="a\x00b") == []
    assert pg_service.list_role_assignments(user_id="\x00", project_id="x" * 300) == []
    assert not pg_service.projects_exist(["\x00"])
    assert pg_service.project_name("x" * 300) is None


def test_duplicate_names_conflict_on_postgres(pg_service: IdentityService) -> None:
    pg_service.create_project("p1")
    with pytest.raises(Conflict):
        pg_service.create_project("p1")


@pytest.mark.parametrize(
    "path",
    [
        "/v3/projects/%00",
        "/v3/users/" + "x" * 5000,
        "/v3/projects?name=%00",
        "/v3/role_assignments?user.id=%00&scope.project.id=" + "p" * 300,
        "/v3/projects/%00/users/%00/roles/%00",
    ],
)
def test_odd_identifiers_never_cause_server_errors_on_postgres(
    pg_service: IdentityService, path: str
) -> None:
    with TestClient(identity_app(pg_service)) as client:
        token = client.post("/v3/auth/tokens", json=password_auth()).headers["X-Subject-Token"]
        for method in ("GET", "HEAD", "PUT", "DELETE", "PATCH"):
            response = client.request(method, path, headers={"X-Auth-Token": token}, json={})
            assert response.status_code < 500, (method, path, response.text)
