"""The private PostgreSQL cluster helper works: connect, SELECT 1, DDL, fresh databases."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text

if TYPE_CHECKING:
    from support.postgres import PostgresServer

# Registers the fixtures even when tests/conftest.py does not load this plugin (a no-op when it
# does).  Imported lazily below so that pytest imports the plugin first.
pytest_plugins = ["support.postgres"]

pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("postgres-fixture")]


def test_select_one_and_create_table(postgres_server: PostgresServer) -> None:
    assert postgres_server.url.startswith("postgresql+psycopg://neutrino@/neutrino?host=/tmp/")
    engine = create_engine(postgres_server.url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
            conn.execute(
                text("CREATE TABLE IF NOT EXISTS widgets (id serial PRIMARY KEY, name text)")
            )
            conn.execute(text("INSERT INTO widgets (name) VALUES ('a'), ('b')"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM widgets")).scalar_one() >= 2
            user = conn.execute(text("SELECT current_user")).scalar_one()
            assert user == "neutrino"
            # unix socket only: no TCP listener
            assert conn.execute(text("SHOW listen_addresses")).scalar_one() == ""
            assert conn.execute(text("SHOW fsync")).scalar_one() == "off"
    finally:
        engine.dispose()


def test_create_database_is_fresh_and_isolated(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("fixture_fresh_db")
    assert url.endswith(f"/fixture_fresh_db?host={postgres_server.socket_dir}&port=5432")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar_one() == (
                "fixture_fresh_db"
            )
            conn.execute(text("CREATE TABLE widgets (id int PRIMARY KEY)"))
    finally:
        engine.dispose()
    postgres_server.drop_database("fixture_fresh_db")
    with pytest.raises(ValueError):
        postgres_server.create_database('bad"name')


def test_postgres_db_fixture(postgres_db: str) -> None:
    from neutrino.db.engine import Database

    db = Database(postgres_db)
    try:
        with db.write() as conn:
            conn.execute(text("CREATE TABLE t (id int PRIMARY KEY)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        with db.read() as conn:
            assert conn.execute(text("SELECT id FROM t")).scalar_one() == 1
    finally:
        db.dispose()


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_start_stop_removes_everything(postgres_server: PostgresServer) -> None:
    # (requesting postgres_server gives the same skip/fail rule when binaries are absent)
    from support.postgres import PostgresServer

    server = PostgresServer.start()
    assert server.basedir != postgres_server.basedir
    basedir = Path(server.basedir)
    pid_file = server.datadir / "postmaster.pid"
    pid = int(pid_file.read_text().splitlines()[0])
    engine = create_engine(server.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
        server.stop()
    server.stop()  # idempotent
    assert not basedir.exists()
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid)
