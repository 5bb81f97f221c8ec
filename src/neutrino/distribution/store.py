"""The policy store: compiled per-chassis documents under keys, each with the revision that last
changed it, readable as a snapshot or as the changes after a revision.

`PolicyStore` is the interface (an etcd backend will implement it later); `EmbeddedPolicyStore`
keeps the items in the `policy_items` table of the server's own database and its position in
`compiler_state`:

- `compiled_revision`: the last outbox revision whose policy is fully in the store (`commit`).
  Snapshots and keepalives carry it: an agent that has every change up to it is in sync.
- `compacted_revision`: every change after it is still known. A deletion is kept as an item with
  a NULL document until `compact` drops it; `changes_since(chassis, N)` for `N` below the horizon
  raises `RevisionTooOld` and the agent does a full resync from `snapshot`.

Revisions are the global (outbox) revisions, so "revision N is live on chassis C" means the
agent of C has applied every change of its items up to N.

Items that `apply` wrote become visible to `changes_since` when their revision is committed, so
a reader never sees half of a revision. Waiting for changes (`wait_for`) uses an in-process
notifier: `commit` wakes the waiters of the chassis that `apply` changed. Servers sharing one
PostgreSQL do not see each other's notifications; waiters still wake at their timeout (the
stream's keepalive) and read the table again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Mapping
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, delete, insert, select, update

from neutrino.db.engine import Database
from neutrino.db.schema import compiler_state, policy_items
from neutrino.policy.model import Document

COMPILED = "compiled_revision"
COMPACTED = "compacted_revision"

Change = tuple[str, int, dict[str, Any] | None]  # key, revision, document (None: deleted)


class RevisionTooOld(Exception):
    """The changes after this revision were compacted away: resync from a snapshot."""

    def __init__(self, revision: int, horizon: int) -> None:
        super().__init__(f"revision {revision} is older than the compaction horizon {horizon}")
        self.revision = revision
        self.horizon = horizon


class PolicyStore(Protocol):
    def apply(self, chassis: str, desired: Mapping[str, Document], revision: int) -> list[str]:
        """Make the chassis's items equal `desired` (full keys): write only the items whose
        document changed and mark removed keys deleted, all at `revision`; return the changed
        keys."""
        ...

    def commit(self, revision: int) -> None:
        """Every change up to `revision` (an outbox revision) is now in the store."""
        ...

    def forget_cached_items(self) -> None:
        """Forget what `apply` remembers of the stored items, so that the next `apply` of each
        chassis reads them again (someone else, another server, may have written them)."""
        ...

    def revision(self) -> int:
        """The last committed revision (0 before the first commit)."""
        ...

    def known_chassis(self) -> set[str]:
        """Chassis that have live items."""
        ...

    def snapshot(self, chassis: str) -> tuple[int, dict[str, dict[str, Any]]]:
        """The committed revision and every live item of the chassis."""
        ...

    def changes_since(self, chassis: str, revision: int) -> list[Change]:
        """Changes of the chassis's items after `revision`, oldest first; raise `RevisionTooOld`
        when `revision` is before the compaction horizon (or after the committed revision)."""
        ...

    def compact(self, before_revision: int) -> None:
        """Forget deletions older than `before_revision`."""
        ...

    async def wait_for(self, chassis: str, revision: int, timeout: float) -> bool:
        """Wait until the chassis has a change after `revision`; False on timeout."""
        ...


class Notifier:
    """Wakes asyncio waiters (on any event loop) when a chassis's items change; thread-safe, so
    `apply` may run in a worker thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    def notify(self, chassis: str, revision: int) -> None:
        with self._lock:
            self._latest[chassis] = max(self._latest.get(chassis, 0), revision)
            waiters = self._waiters.pop(chassis, [])
        for loop, future in waiters:
            # a closed loop (RuntimeError) has nobody waiting any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self, chassis: str, revision: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            if self._latest.get(chassis, 0) > revision:
                return True
            self._waiters.setdefault(chassis, []).append(entry)
        try:
            async with asyncio.timeout(timeout):  # not wait_for: see CompilerLoop.run_forever
                await future
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                waiting = self._waiters.get(chassis, [])
                if entry in waiting:
                    waiting.remove(entry)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@functools.lru_cache(maxsize=1 << 16)
def encode(document: Document) -> str:
    """Canonical JSON of a document (sorted keys), so equal documents compare equal as text.
    Memoised: a pass re-encodes only the documents that changed (documents are frozen values)."""
    return orjson.dumps(document.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS).decode()


#: a live item as `apply` last saw it: the document it was given, or the stored text when it
#: read the item from the table
Held = Document | str


class EmbeddedPolicyStore:
    """`PolicyStore` on the server's database (`policy_items`, `compiler_state`).

    `apply` remembers, per chassis, the live items it wrote or read (the document object, or
    the stored text), so a later `apply` of the same chassis neither reads the table nor
    encodes a document it was given before (the same object): its cost is a dictionary walk
    plus the writes. This holds while the store's owner is the only writer of the items (the
    compiling server); `forget_cached_items` drops it (a server taking over the compiling)."""

    def __init__(self, db: Database, notifier: Notifier | None = None) -> None:
        self.db = db
        self.notifier = notifier or Notifier()
        self._lock = threading.Lock()
        self._pending: set[str] = set()  # chassis changed by `apply` since the last `commit`
        self._held: dict[str, dict[str, Held]] = {}  # chassis -> key -> its live item
        self._known: set[str] | None = None  # chassis with live items, once read

    # --- writing ------------------------------------------------------------------------------
    def apply(self, chassis: str, desired: Mapping[str, Document], revision: int) -> list[str]:
        prefix = f"/chassis/{chassis}/"
        for key in desired:
            if not key.startswith(prefix):
                raise ValueError(f"{key!r} is not a key of chassis {chassis!r}")
        changed: list[str] = []
        with self.db.write() as conn:
            held = self._held.get(chassis)
            deleted: set[str] | None = None  # keys of deletion markers, when read just now
            if held is None:
                held, deleted = _stored_items(conn, chassis)
            now = dict(held)
            for key, doc in desired.items():
                old = held.get(key)
                if old is doc:  # given before: unchanged
                    continue
                now[key] = doc
                text = encode(doc)
                if old is not None and (old if isinstance(old, str) else encode(old)) == text:
                    continue
                if old is None and deleted is not None and key not in deleted:
                    conn.execute(insert(policy_items).values(
                        key=key, chassis=chassis, revision=revision, document=text))
                else:
                    _write(conn, chassis, key, revision, text)
                changed.append(key)
            for key in held.keys() - desired.keys():
                del now[key]
                _write(conn, chassis, key, revision, None)
                changed.append(key)
        self._held[chassis] = now  # only once the transaction is committed
        if self._known is not None:
            if now:
                self._known.add(chassis)
            else:
                self._known.discard(chassis)
        if changed:
            with self._lock:
                self._pending.add(chassis)
        return sorted(changed)

    def forget_cached_items(self) -> None:
        self._held = {}
        self._known = None

    def commit(self, revision: int) -> None:
        with self.db.write() as conn:
            _set_state(conn, COMPILED, revision)
        with self._lock:
            pending, self._pending = self._pending, set()
        for chassis in pending:
            self.notifier.notify(chassis, revision)

    def compact(self, before_revision: int) -> None:
        with self.db.write() as conn:
            conn.execute(delete(policy_items).where(policy_items.c.document.is_(None),
                                                    policy_items.c.revision < before_revision))
            horizon = before_revision - 1
            if horizon > _state(conn, COMPACTED):
                _set_state(conn, COMPACTED, horizon)

    # --- reading ------------------------------------------------------------------------------
    def revision(self) -> int:
        with self.db.read() as conn:
            return _state(conn, COMPILED)

    def compacted_revision(self) -> int:
        with self.db.read() as conn:
            return _state(conn, COMPACTED)

    def known_chassis(self) -> set[str]:
        if self._known is not None:  # kept up to date by `apply` (see the class's docstring)
            return set(self._known)
        with self.db.read() as conn:
            rows = conn.execute(select(policy_items.c.chassis).distinct()
                                .where(policy_items.c.document.is_not(None)))
            known = {row[0] for row in rows}
        self._known = known
        return set(known)

    def snapshot(self, chassis: str) -> tuple[int, dict[str, dict[str, Any]]]:
        with self.db.read() as conn:
            revision = _state(conn, COMPILED)
            rows = conn.execute(
                select(policy_items.c.key, policy_items.c.document)
                .where(policy_items.c.chassis == chassis, policy_items.c.document.is_not(None))
                .order_by(policy_items.c.key)
            )
            return revision, {key: orjson.loads(document) for key, document in rows}

    def changes_since(self, chassis: str, revision: int) -> list[Change]:
        with self.db.read() as conn:
            return self._changes(conn, chassis, revision)

    def position(self, chassis: str, revision: int) -> tuple[int, list[Change]]:
        """`changes_since` and the committed revision, read from one snapshot of the database:
        an agent that applies these changes is in sync up to max(committed, last change)."""
        with self.db.read() as conn:
            committed = _state(conn, COMPILED)
            return committed, self._changes(conn, chassis, revision, committed)

    def _changes(
        self, conn: Connection, chassis: str, revision: int, committed: int | None = None
    ) -> list[Change]:
        horizon = _state(conn, COMPACTED)
        committed = _state(conn, COMPILED) if committed is None else committed
        if revision < horizon or revision > committed:
            raise RevisionTooOld(revision, horizon)
        rows = conn.execute(
            select(policy_items.c.key, policy_items.c.revision, policy_items.c.document)
            .where(policy_items.c.chassis == chassis, policy_items.c.revision > revision,
                   policy_items.c.revision <= committed)
            .order_by(policy_items.c.revision, policy_items.c.key)
        )
        return [(key, int(rev), orjson.loads(doc) if doc is not None else None)
                for key, rev, doc in rows]

    async def wait_for(self, chassis: str, revision: int, timeout: float) -> bool:
        return await self.notifier.wait(chassis, revision, timeout)


def _stored_items(conn: Connection, chassis: str) -> tuple[dict[str, Held], set[str]]:
    """The chassis's live items and the keys of its deletion markers."""
    live: dict[str, Held] = {}
    deleted: set[str] = set()
    rows = conn.execute(select(policy_items.c.key, policy_items.c.document)
                        .where(policy_items.c.chassis == chassis))
    for key, document in rows:
        if document is None:
            deleted.add(key)
        else:
            live[key] = document
    return live, deleted


def _write(conn: Connection, chassis: str, key: str, revision: int, text: str | None) -> None:
    """Store an item's document (None: mark it deleted) at `revision`. The row may be there
    already: live, or a deletion not compacted yet."""
    updated = conn.execute(update(policy_items).where(policy_items.c.key == key)
                           .values(revision=revision, document=text))
    if updated.rowcount == 0 and text is not None:
        conn.execute(insert(policy_items).values(
            key=key, chassis=chassis, revision=revision, document=text))


def _state(conn: Connection, name: str) -> int:
    value = conn.execute(select(compiler_state.c.value).where(compiler_state.c.name == name))
    found = value.scalar_one_or_none()
    return int(found) if found is not None else 0


def _set_state(conn: Connection, name: str, value: int) -> None:
    updated = conn.execute(update(compiler_state).where(compiler_state.c.name == name)
                           .values(value=value))
    if updated.rowcount == 0:
        conn.execute(insert(compiler_state).values(name=name, value=value))
