"""Compiler leadership: with several servers on one database exactly one compiles, and another
takes over as soon as the leader's lock goes away (no lease to wait out)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from distribution.test_compiler_loop import add_chassis
from neutrino.db.engine import Database
from neutrino.db.migrate import upgrade
from neutrino.distribution.compiler_loop import CompilerLoop, default_compiler
from neutrino.distribution.leader import Leadership
from neutrino.distribution.store import EmbeddedPolicyStore


def _contenders(url: str) -> tuple[Database, Database]:
    return Database(url), Database(url)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_one_leader_at_a_time_and_the_next_takes_over_when_it_goes(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'neutrino.sqlite'}" if backend == "sqlite"
           else request.getfixturevalue("postgres_db"))
    first_db, second_db = _contenders(url)
    first, second = Leadership(first_db), Leadership(second_db)
    try:
        assert first.acquire()
        assert first.acquire()  # still ours
        assert not second.acquire()
        first.release()
        assert second.acquire()
        assert not first.acquire()
    finally:
        first.release()
        second.release()
        first_db.dispose()
        second_db.dispose()


def test_a_leader_whose_database_session_dies_is_replaced(postgres_db: str) -> None:
    """The advisory lock lives in the leader's session: when the session ends (the server
    crashed, the connection was cut), the lock is free as soon as its backend has exited
    (pg_terminate_backend only signals it), with no lease to wait out."""
    first_db, second_db = _contenders(postgres_db)
    first, second = Leadership(first_db), Leadership(second_db)
    try:
        assert first.acquire()
        assert not second.acquire()
        with second_db.engine.connect() as conn:  # an operator (or a crash) ends its session
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_locks "
                              "WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"))
        deadline = time.monotonic() + 5.0
        while not second.acquire():
            assert time.monotonic() < deadline, "the lock of a terminated session stayed taken"
            time.sleep(0.02)
        assert not first.acquire()  # it notices it lost the lock
    finally:
        first.release()
        second.release()
        first_db.dispose()
        second_db.dispose()


def test_a_standby_loop_does_not_compile(tmp_path: Path) -> None:
    """Two compiler loops on one SQLite file: only the leader's passes write policy."""
    url = f"sqlite:///{tmp_path / 'neutrino.sqlite'}"
    upgrade(url)
    compiler = default_compiler()
    assert compiler is not None
    first_db, second_db = _contenders(url)
    add_chassis(first_db, "hv1", "192.0.2.1")  # something to compile
    leader = CompilerLoop(first_db, EmbeddedPolicyStore(first_db), compiler)
    standby = CompilerLoop(second_db, EmbeddedPolicyStore(second_db), compiler)

    async def scenario() -> None:
        leading = asyncio.create_task(leader.run_forever(poll_seconds=0.05))
        await asyncio.sleep(0.3)
        waiting = asyncio.create_task(standby.run_forever(poll_seconds=0.05))
        await asyncio.sleep(0.3)
        assert leader.leadership.held and not standby.leadership.held
        assert standby.before is None  # it never ran a pass
        leading.cancel()
        await asyncio.gather(leading, return_exceptions=True)
        await asyncio.sleep(0.3)
        assert standby.leadership.held  # took over at its next poll
        assert standby.before is not None  # and compiled
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        first_db.dispose()
        second_db.dispose()
