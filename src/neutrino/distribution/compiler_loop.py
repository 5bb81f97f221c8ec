"""The compiler loop: outbox -> compiler -> policy store, in revision order.

Each pass reads, in one read transaction (one snapshot), every outbox row after the store's
committed revision and the intent, so the intent is exactly the state at the last of those
rows. It asks the compiler which chassis the changes affect (`affected_chassis`; every chassis
on the first pass after a start, when there is no previous intent), compiles each, writes the
results with `store.apply(..., revision)` and then `store.commit(revision)`.

Passes are incremental. The first pass after a start (and any pass after a failure, a loss of
leadership or a detected drift) loads the whole intent (`load_intent`) and compiles every
chassis in full (`compile_chassis`). Every later pass makes the intent from the previous one and
the rows its changes name (`update_intent`), and compiles, for each affected chassis, only the
items those changes can alter, from the documents of the last pass (`recompile_chassis`); the
store skips the documents it was given before. A one-object change then costs a few
milliseconds whatever the size of the intent.

A safety net keeps this honest: with `check_incremental` (tests turn it on; in a server,
NEUTRINO_COMPILER_CHECK=1), every incremental pass is compared with a full load and full
compile of the same snapshot; a difference is logged as an ERROR and the full result is used.
And in the server, on a poll tick that found nothing to do, at most every
`drift_check_seconds`, the intent the passes keep is compared with a full load
(`check_drift`): a difference is logged as an ERROR and every chassis is recompiled in full.

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
import os
import threading
import time
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
    """The compiler's pure functions (neutrino.compiler), injectable for tests. Without
    `update_intent` every pass loads the whole intent, without `recompile_chassis` every
    affected chassis is compiled in full."""

    load_intent: Callable[[Connection], Any]
    compile_chassis: Callable[[Any, str], Mapping[str, Document]]
    affected_chassis: Callable[[Any, Any, list[Change]], set[str]]
    update_intent: Callable[[Connection, Any, list[Change]], Any] | None = None
    recompile_chassis: Callable[
        [Any, Any, str, Mapping[str, Document], list[Change]], Mapping[str, Document]
    ] | None = None
    #: what differs between two intents, for the checks (None: compared with ==)
    intent_differences: Callable[[Any, Any], list[str]] | None = None

    def differences(self, incremental: Any, full: Any) -> list[str]:
        if self.intent_differences is not None:
            return self.intent_differences(incremental, full)
        return [] if incremental == full else ["the intents differ"]


def default_compiler() -> Compiler | None:
    """neutrino.compiler's functions, or None while that package is not there."""
    try:
        from neutrino import compiler
        from neutrino.compiler.intent import intent_differences
    except ImportError:
        return None
    return Compiler(compiler.load_intent, compiler.compile_chassis, compiler.affected_chassis,
                    compiler.update_intent, compiler.recompile_chassis, intent_differences)


#: set to 1 to check every incremental pass against a full one (costs a full pass each time)
CHECK_ENV = "NEUTRINO_COMPILER_CHECK"


@dataclass(frozen=True)
class PassResult:
    revision: int  # the committed revision after the pass
    compiled: frozenset[str]  # chassis compiled
    changed: int  # items written or deleted


class CompilerLoop:
    def __init__(self, db: Database, store: PolicyStore, compiler: Compiler, *,
                 check_incremental: bool | None = None,
                 drift_check_seconds: float = 60.0) -> None:
        self.db = db
        self.store = store
        self.compiler = compiler
        self.check_incremental = (os.environ.get(CHECK_ENV) == "1" if check_incremental is None
                                  else check_incremental)
        self.drift_check_seconds = drift_check_seconds
        self.before: Any = None  # the intent of the last pass (None: compile every chassis)
        #: chassis -> its documents as the last pass compiled them (from `before`)
        self.documents: dict[str, Mapping[str, Document]] = {}
        self.mismatches = 0  # incremental results that differed from full ones (checks, drift)
        self._lock = threading.Lock()  # one pass at a time
        self.leadership = Leadership(db)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- one pass -----------------------------------------------------------------------------
    def run_once(self) -> PassResult:
        """Consume every pending outbox row; return where the store stands."""
        with self._lock:
            try:
                return self._run_once()
            except BaseException:
                self.before = None  # what the store holds is unknown: start afresh next time
                raise

    def _run_once(self) -> PassResult:
        position = self.store.revision()
        fresh = self.before is None
        if fresh:  # a full pass: nothing remembered from earlier passes is trusted
            self.documents = {}
            self.store.forget_cached_items()
        with self.db.read() as conn:
            head = current_revision(conn)
            changes = _pending_changes(conn, position, head)
            if not fresh and head <= position:
                return PassResult(position, frozenset(), 0)
            registered = {row[0] for row in conn.execute(select(chassis_table.c.name))}
            if not registered and not self.store.known_chassis():
                # no chassis at all: nothing to load or compile; the first chassis to register
                # gets a full pass (the intent of this pass is not kept)
                self.before = None
                self.store.commit(max(head, position))
                return PassResult(max(head, position), frozenset(), 0)
            status_only = all(c.kind == PORT_STATUS_KIND for c in changes)
            if not fresh and status_only and self.compiler.update_intent is None:
                # status reports only: no input of the compiler, not worth a full load
                self.store.commit(max(head, position))
                return PassResult(max(head, position), frozenset(), 0)
            after, fresh = self._load(conn, changes, fresh)
        revision = max(head, position)
        if fresh:
            targets = registered | self.store.known_chassis()
        else:
            targets = set(self.compiler.affected_chassis(self.before, after, changes))
            targets |= {c.id for c in changes if c.kind == CHASSIS_KIND}
            targets &= registered | self.store.known_chassis()
        changed = 0
        for name in sorted(targets):
            if name in registered:
                desired = self._compile(after, name, changes, fresh)
                self.documents[name] = desired
            else:
                desired = {}
                self.documents.pop(name, None)
            changed += len(self.store.apply(name, desired, revision))
        self.store.commit(revision)
        self.before = after
        return PassResult(revision, frozenset(targets), changed)

    def _load(self, conn: Connection, changes: list[Change], fresh: bool) -> tuple[Any, bool]:
        """The intent now, and whether the pass must compile every chassis in full (the first
        pass, or an incremental intent that was found wrong)."""
        if fresh or self.compiler.update_intent is None:
            return self.compiler.load_intent(conn), fresh
        after = self.compiler.update_intent(conn, self.before, changes)
        if not self.check_incremental:
            return after, False
        full = self.compiler.load_intent(conn)
        differences = self.compiler.differences(after, full)
        if not differences:
            return after, False
        self.mismatches += 1
        log.error("incremental intent differs from a full load after %s: %s; using the full "
                  "one and recompiling every chassis", _summary(changes), "; ".join(differences))
        return full, True

    def _compile(self, after: Any, name: str, changes: list[Change],
                 fresh: bool) -> Mapping[str, Document]:
        previous = self.documents.get(name)
        recompile = self.compiler.recompile_chassis
        if fresh or previous is None or recompile is None:
            return self.compiler.compile_chassis(after, name)
        desired = recompile(self.before, after, name, previous, changes)
        if not self.check_incremental:
            return desired
        full = self.compiler.compile_chassis(after, name)
        if desired != full:
            self.mismatches += 1
            wrong = sorted(k for k in desired.keys() | full.keys() if desired.get(k) != full.get(k))
            log.error("incremental compile of %s differs from a full one after %s: %s; using "
                      "the full one", name, _summary(changes), wrong[:20])
            return full
        return desired

    def check_drift(self) -> bool:
        """Compare the intent the incremental passes keep with a full load of the same
        revision. On a difference, log an ERROR and forget it (the next pass recompiles every
        chassis) and return True. Nothing to compare (no incremental intent, or a pass is due):
        False."""
        with self._lock:
            if self.before is None or self.compiler.update_intent is None:
                return False
            position = self.store.revision()
            with self.db.read() as conn:
                if current_revision(conn) != position:
                    return False  # changes are waiting: the next pass comes first
                full = self.compiler.load_intent(conn)
            differences = self.compiler.differences(self.before, full)
            if not differences:
                return False
            self.mismatches += 1
            log.error("the compiler's intent drifted from the database at revision %d: %s; "
                      "recompiling every chassis", position, "; ".join(differences))
            self.before = None
            return True

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
        last_drift_check = time.monotonic()
        try:
            while True:
                woken = False
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives as the event is set, and the app's shutdown would wait forever
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll_seconds):
                        woken = await self._wake.wait()
                self._wake.clear()
                try:
                    if not await asyncio.to_thread(self.leadership.acquire):
                        self.before = None  # on standby: a future leadership starts afresh
                        continue
                    result = await asyncio.to_thread(self.run_once)
                    quiet = not woken and not result.compiled
                    if quiet and time.monotonic() - last_drift_check >= self.drift_check_seconds:
                        last_drift_check = time.monotonic()
                        if await asyncio.to_thread(self.check_drift):
                            self._wake.set()  # the full pass, at once
                except Exception:
                    log.exception("compiler pass failed; retrying")
                    self.before = None  # recompile everything next time
                    await asyncio.sleep(1.0)
                    self._wake.set()
        finally:
            self.leadership.release()


def _summary(changes: list[Change], at_most: int = 20) -> str:
    """The first changes of a pass, for a log line."""
    shown = ", ".join(f"{c.kind} {c.id} {c.op}" for c in changes[:at_most])
    return shown + (f" and {len(changes) - at_most} more" if len(changes) > at_most else "")


def _pending_changes(conn: Connection, position: int, head: int) -> list[Change]:
    """Every change of the outbox rows after `position` up to `head`, in revision order."""
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
    return changes
