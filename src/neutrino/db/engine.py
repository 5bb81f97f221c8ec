"""Database engine and transactions.

SQLite (the embedded default) runs in WAL mode with one writer at a time: every write
transaction takes `Database.write_lock` first, so writers queue in-process instead of
failing with "database is locked". PostgreSQL uses the same lock inside one server process
and relies on unique constraints between processes.

`Database.write()` yields a connection inside one transaction: intent rows and the outbox
row are committed together or not at all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    """Writers take SQLite's write lock at BEGIN (IMMEDIATE), so the reads a write transaction
    makes before its first INSERT are already inside it; readers get one snapshot (DEFERRED)."""
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            in_memory = not parsed.database or parsed.database == ":memory:"
            if parsed.database and not in_memory:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            pool: dict[str, Any] = (
                {"poolclass": StaticPool} if in_memory else {"pool_size": 8, "max_overflow": 8}
            )
            self.engine: Engine = create_engine(
                url, connect_args={"check_same_thread": False}, json_deserializer=orjson.loads,
                **pool,
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True,
                                        json_deserializer=orjson.loads)
        self.write_lock = threading.RLock()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One serialised write transaction (commit on success, rollback on any error)."""
        with self.write_lock, self.engine.connect() as conn:
            conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction: every query in it sees the same snapshot."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
