"""Which server runs the compiler loop when several share one database.

Every server serves the API and the agents' policy streams, but only one may compile: two
loops would race over the same policy items and revisions. Leadership is a lock that dies with
its holder, so a crashed leader is replaced without any lease timing:

- PostgreSQL: a session advisory lock (`pg_try_advisory_lock`) held on a dedicated connection;
  it goes away when that connection or its server process does.
- SQLite file: an exclusive `flock` on `<database>.compiler-leader` beside the database; the
  kernel drops it when the process exits.
- SQLite in memory: one process only, so always the leader.

`acquire()` never blocks: the loop calls it before every pass, and a server that is not the
leader stays on standby and tries again at its next poll. A new leader recompiles every
chassis (it cannot know what the last leader did after its last committed revision).
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from neutrino.db.engine import Database

log = logging.getLogger(__name__)

#: the advisory lock key (any constant 64-bit value shared by every Neutrino server)
ADVISORY_KEY = 0x6E65757472696E6F  # "neutrino"


class Leadership:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: Connection | None = None  # PostgreSQL: the connection holding the lock
        self._fd: int | None = None  # SQLite: the locked file
        self.held = False

    def acquire(self) -> bool:
        """Whether this process is the leader now (taking the lock if it is free)."""
        if self.db.is_sqlite:
            self.held = self._acquire_file()
        else:
            self.held = self._acquire_advisory()
        return self.held

    def _acquire_file(self) -> bool:
        database = make_url(self.db.url).database
        if not database or database == ":memory:":
            return True
        if self._fd is not None:
            return True
        path = Path(f"{database}.compiler-leader")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        log.info("this server is the compiler leader (lock %s)", path)
        return True

    def _acquire_advisory(self) -> bool:
        if self._conn is not None:
            try:  # still ours? (the connection may have died with its lock)
                self._conn.execute(text("SELECT 1")).scalar()
                return True
            except SQLAlchemyError:
                self._drop_connection()
                log.warning("lost the compiler leadership (its database connection died)")
        try:
            conn = self.db.engine.connect()
        except SQLAlchemyError as exc:
            log.warning("cannot reach the database to take the compiler leadership: %s", exc)
            return False
        try:
            got: Any = conn.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                    {"key": ADVISORY_KEY}).scalar()
            conn.commit()  # the lock is session-level; end the transaction that took it
        except SQLAlchemyError as exc:
            conn.close()
            log.warning("cannot take the compiler leadership: %s", exc)
            return False
        if not got:
            conn.close()
            return False
        self._conn = conn
        log.info("this server is the compiler leader (advisory lock %#x)", ADVISORY_KEY)
        return True

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()  # never back into the pool: its session held the lock
                self._conn.close()
            except SQLAlchemyError:
                pass
            self._conn = None

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
                self._conn.commit()
            except SQLAlchemyError:
                pass
            self._drop_connection()
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
        self.held = False
