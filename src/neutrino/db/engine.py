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

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                url, connect_args={"check_same_thread": False}, pool_size=8, max_overflow=8
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
        self.write_lock = threading.RLock()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One serialised write transaction (commit on success, rollback on any error)."""
        with self.write_lock, self.engine.begin() as conn:
            if self.is_sqlite:
                # take the write lock at BEGIN, so a read-then-write never upgrades and fails
                conn.exec_driver_sql("SELECT 1")
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
