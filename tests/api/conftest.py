"""API test fixtures: a Neutrino app on a fresh database, driven through HTTP in-process.

`client` runs every API test against SQLite and (marked `postgres`) against a real PostgreSQL
started from Debian's package. The server runs in noauth mode here; callers choose who they
are with `as_project(project, roles)` headers. Keystone auth is covered in tests/clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from neutrino.api.app import create_app
from neutrino.config import Settings
from neutrino.db.engine import Database
from neutrino.db.migrate import upgrade

ADMIN = {"X-Project-Id": "admin-project", "X-Roles": "admin,member,reader"}


def as_project(project: str, roles: str = "member,reader") -> dict[str, str]:
    return {"X-Project-Id": project, "X-Roles": roles}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/neutrino.sqlite"
    server = request.getfixturevalue("postgres_server")
    url: str = server.create_database()
    return url


@pytest.fixture
def app_parts(database_url: str, tmp_path: Path) -> Iterator[tuple[Any, Database]]:
    settings = Settings(state_dir=tmp_path, database=database_url, auth="noauth")
    upgrade(database_url)
    db = Database(database_url)
    yield create_app(settings, db), db
    db.dispose()


@pytest.fixture
def client(app_parts: tuple[Any, Database]) -> Iterator[TestClient]:
    app, _db = app_parts
    with TestClient(app, headers=ADMIN) as test_client:
        yield test_client


@pytest.fixture
def db(app_parts: tuple[Any, Database]) -> Database:
    return app_parts[1]
