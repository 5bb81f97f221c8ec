"""API test fixtures: a Neutrino app on a fresh database, driven through HTTP in-process.

`client` runs every API test against SQLite and (marked `postgres`) against a real PostgreSQL
started from Debian's package. The server runs in noauth mode here; callers choose who they
are with `as_project(project, roles)` headers. Keystone auth is covered in tests/clients.

Migrating a database takes longer than most tests, so each session migrates one database per
backend: SQLite tests get a copy of its file, PostgreSQL tests share one database per session
(per xdist worker) that is emptied (TRUNCATE ... RESTART IDENTITY) after each test.
`postgres_template` stays available for tests that need a database of their own.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from psycopg import sql
from sqlalchemy import create_engine

from neutrino.api.app import create_app
from neutrino.config import Settings
from neutrino.db.engine import Database
from neutrino.db.migrate import alembic_config, upgrade

ADMIN = {"X-Project-Id": "admin-project", "X-Roles": "admin,member,reader"}


def as_project(project: str, roles: str = "member,reader") -> dict[str, str]:
    return {"X-Project-Id": project, "X-Roles": roles}


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "neutrino.sqlite"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_server: Any) -> str:
    url = postgres_server.create_database("api_template")
    engine = create_engine(url)
    with engine.begin() as conn:  # own the connection: a template must have no sessions left
        config = alembic_config(url)
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    engine.dispose()
    return "api_template"


class SharedPostgres:
    """One migrated database reused by every PostgreSQL test of the session; `empty()` puts it
    back to its freshly migrated state (empty tables, sequences restarted)."""

    def __init__(self, server: Any, template: str) -> None:
        self.name = "api_shared"
        with server._admin_connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                sql.Identifier(self.name), sql.Identifier(template), sql.Identifier(server.user)))
        self.url: str = server.url_for(self.name)
        self.conn = server._admin_connect(self.name)
        self.conn.execute("SET lock_timeout = '30s'")
        tables = [row[0] for row in self.conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'")]
        self.truncate = sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in tables))

    def empty(self) -> None:
        # a session a test left open (its app's threads) would deadlock with TRUNCATE's locks
        self.conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        self.conn.execute(self.truncate)


@pytest.fixture(scope="session")
def shared_postgres(postgres_server: Any, postgres_template: str) -> Iterator[SharedPostgres]:
    shared = SharedPostgres(postgres_server, postgres_template)
    yield shared
    shared.conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty, migrated database."""
    if request.param == "sqlite":
        path = tmp_path / "neutrino.sqlite"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    shared: SharedPostgres = request.getfixturevalue("shared_postgres")
    shared.empty()  # also after a test that failed before its own teardown
    yield shared.url
    shared.empty()


@pytest.fixture
def app_parts(database_url: str, tmp_path: Path) -> Iterator[tuple[Any, Database]]:
    # the compiler loop (tests/distribution) would write compiler state in the background
    settings = Settings(state_dir=tmp_path, database=database_url, auth="noauth",
                        compiler_enabled=False)
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
