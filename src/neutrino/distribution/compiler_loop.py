"""The compiler loop: outbox -> compiler -> policy store, in revision order.

Each pass reads, in one read transaction (one snapshot), every outbox row after the store's
committed revision and the intent (`load_intent`), so the intent is exactly the state at the
last of those rows. It asks the compiler which chassis the changes affect (`affected_chassis`;
every chassis on the first pass after a start, when there is no previous intent), compiles each
(`compile_chassis`), writes the results with `store.apply(..., revision)` and then
`store.commit(revision)`.

Where the loop stands is the store's committed revision (`compiler_state.compiled_revision`,
migration 0003), not max(policy_items.revision): a batch that changes no item must still move
the position, and deletions are forgotten by compaction. A crash between `apply` and `commit`
re-runs the batch after restart; `apply` only writes what differs, so that is harmless.

Chassis are the registered ones (the `chassis` table). Registering, changing or removing one
writes an outbox row of kind `chassis` (see `neutrino.api.agents`); the loop compiles that
chassis whatever `affected_chassis` says, and a chassis that is no longer registered gets its
items deleted.

In the server the loop is an asyncio task (`run_forever`) woken by every committed write; the
blocking database and compiler work runs in a worker thread. Tests call `run_once()`.
With several servers on one database only the leader runs passes (`neutrino.distribution.leader`:
a PostgreSQL advisory lock, or a lock file beside an SQLite database); the others stand by and
take over, with a full recompile, when the leader's lock goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from neutrino.db.engine import Database
from neutrino.db.outbox import PORT_STATUS_KIND, Change, changes_since, current_revision
from neutrino.db.schema import chassis as chassis_table
from neutrino.distribution.leader import Leadership
from neutrino.distribution.store import PolicyStore
from neutrino.policy.model import Document

log = logging.getLogger(__name__)

CHASSIS_KIND = "chassis"  # outbox change kind written by chassis registration / removal


@dataclass(frozen=True)
class Compiler:
    """The compiler's three pure functions (neutrino.compiler), injectable for tests."""

    load_intent: Callable[[Connection], Any]
    compile_chassis: Callable[[Any, str], Mapping[str, Document]]
    affected_chassis: Callable[[Any, Any, list[Change]], set[str]]


def default_compiler() -> Compiler | None:
    """neutrino.compiler's functions, or None while that package is not there."""
    try:
        from neutrino import compiler
    except ImportError:
        return None
    return Compiler(compiler.load_intent, compiler.compile_chassis, compiler.affected_chassis)


@dataclass(frozen=True)
class PassResult:
    revision: int  # the committed revision after the pass
    compiled: frozenset[str]  # chassis compiled
    changed: int  # items written or deleted


class CompilerLoop:
    def __init__(self, db: Database, store: PolicyStore, compiler: Compiler) -> None:
        self.db = db
        self.store = store
        self.compiler = compiler
        self.before: Any = None  # the intent of the last pass (None: compile every chassis)
        self._lock = threading.Lock()  # one pass at a time
        self.leadership = Leadership(db)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- one pass -----------------------------------------------------------------------------
    def run_once(self) -> PassResult:
        """Consume every pending outbox row; return where the store stands."""
        with self._lock:
            return self._run_once()

    def _run_once(self) -> PassResult:
        position = self.store.revision()
        with self.db.read() as conn:
            head = current_revision(conn)
            changes: list[Change] = []
            cursor = position
            while cursor < head:
                batch = changes_since(conn, cursor)
                if not batch:
                    break
                for revision, items in batch:
                    if revision > head:
                        break
                    changes.extend(items)
                    cursor = revision
            if self.before is not None and head <= position:
                return PassResult(position, frozenset(), 0)
            registered = {row[0] for row in conn.execute(select(chassis_table.c.name))}
            # nothing to load or compile: status reports only (no input of the compiler), or
            # no chassis at all (the first chassis to register gets a full compile: before=None)
            status_only = self.before is not None and all(
                c.kind == PORT_STATUS_KIND for c in changes)
            idle = status_only or (not registered and not self.store.known_chassis())
            after = self.before if idle else self.compiler.load_intent(conn)
        revision = max(head, position)
        if idle:
            self.store.commit(revision)
            return PassResult(revision, frozenset(), 0)
        if self.before is None:
            targets = registered | self.store.known_chassis()
        else:
            targets = set(self.compiler.affected_chassis(self.before, after, changes))
            targets |= {c.id for c in changes if c.kind == CHASSIS_KIND}
            targets &= registered | self.store.known_chassis()
        changed = 0
        for name in sorted(targets):
            desired = self.compiler.compile_chassis(after, name) if name in registered else {}
            changed += len(self.store.apply(name, desired, revision))
        self.store.commit(revision)
        self.before = after
        return PassResult(revision, frozenset(targets), changed)

    # --- in the server ------------------------------------------------------------------------
    def wake(self) -> None:
        """Ask for a pass soon; safe from any thread (called after every committed write)."""
        loop, event = self._loop, self._wake
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def run_forever(self, poll_seconds: float = 5.0) -> None:
        """Pass after each wake-up (and every `poll_seconds`, for writes of other servers)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._wake.set()  # the first pass compiles every chassis
        try:
            while True:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives as the event is set, and the app's shutdown would wait forever
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll_seconds):
                        await self._wake.wait()
                self._wake.clear()
                try:
                    if not await asyncio.to_thread(self.leadership.acquire):
                        self.before = None  # on standby: a future leadership starts afresh
                        continue
                    await asyncio.to_thread(self.run_once)
                except Exception:
                    log.exception("compiler pass failed; retrying")
                    self.before = None  # recompile everything next time
                    await asyncio.sleep(1.0)
                    self._wake.set()
        finally:
            self.leadership.release()
