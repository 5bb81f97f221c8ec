"""The notifier: fault events to subscribers (webhooks, at least once) and live listeners (SSE).

Subscriptions are rows of `fault_subscriptions`. A subscription belongs to a project and sees
an event only when one of the affected resources is that project's, with `affected` cut down
to its own resources (`FaultEvent.for_project`). A subscription made by an admin is stored
with `project_id` = `ALL_PROJECTS` (the empty string, which no Keystone project id can be):
it sees every event unfiltered by project. A subscription's `resource_ids` filter is matched
against the view its project gets (another project's resources select nothing).

Flow (the inspector owns the transaction):

    with db.write() as conn:
        ...write the fault row...
        notifier.publish(conn, event)   # one fault_deliveries row per matching subscription
    notifier.wake()                     # after commit: deliver now, push to SSE listeners

`fault_deliveries` is the webhook outbox: committed with the fault or not at all. The delivery
worker (`run`, a task of the app's lifespan) picks due rows and POSTs each envelope (CloudEvents
1.0, structured mode: `Content-Type: application/cloudevents+json`, plus `ce-id`, `ce-type`,
`ce-source`, `ce-specversion` and `Idempotency-Key` = the event id) with one shared
httpx.AsyncClient and a short timeout. Subscriptions are served concurrently; one
subscription's rows go strictly in order (a row waits while an older one of the same
subscription is undelivered). A 2xx answer delivers the row (`delivered_at`); anything else
(status, connection error, timeout) counts an attempt, records `last_error` and retries after
a backoff (`backoff` seconds doubling per attempt, capped at `backoff_cap`) until the event is
`max_age` old, when the row is dropped (deleted, with a warning). Delivered rows are purged
once they are `max_age` old.

At least once: a row is claimed by an UPDATE guarded by its attempt count (which also pushes
`next_attempt_at` a lease ahead), so two servers never POST the same row at the same time and a
server that dies mid-POST leaves the row to be retried when the lease runs out. A duplicate is
only sent when a 2xx answer was lost (or not recorded): receivers deduplicate on the id.

Live listeners (`listen`, `stream`) get events from memory: `publish` keeps the events of a
transaction aside, they become pending when it commits (dropped if it rolls back), and `wake`
hands them to the listeners. Live delivery is best effort: a listener that falls more than
`LIVE_QUEUE` events behind is ended (`ListenerOverflow`) and should re-read `GET /v2.0/faults`.

`wake` and `publish` may be called from any thread; `run`, `listen` and `stream` run on an
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from sqlalchemy import Connection, and_, delete, event, func, insert, select, update

from neutrino.config import Settings
from neutrino.db.engine import Database
from neutrino.db.schema import fault_deliveries, fault_subscriptions
from neutrino.faults.events import SOURCE, FaultEvent
from neutrino.timeutil import backoff_delay

log = logging.getLogger(__name__)

#: `fault_subscriptions.project_id` of a subscription that sees every project's events (one
#: an admin made)
ALL_PROJECTS = ""
CLOUDEVENTS_JSON = "application/cloudevents+json"
DELIVERY_TIMEOUT = 2.0  # seconds per POST
BACKOFF = 0.2  # seconds before the first retry, doubling per attempt...
BACKOFF_CAP = 30.0  # ...up to this
MAX_AGE = 24 * 3600.0  # an event not delivered this long after it happened is dropped
TICK = 1.0  # the worker looks for due rows at least this often
LEASE_MARGIN = 5.0  # a claimed row is retried this long after the POST's timeout
CONCURRENCY = 64  # POSTs in flight at most
LIVE_QUEUE = 1000  # events a live listener may fall behind before it is ended
PURGE_INTERVAL = 60.0  # seconds between purges of old delivered rows


def event_epoch(envelope: dict[str, Any]) -> float | None:
    """The envelope's `time` (RFC 3339, as `events.rfc3339` writes it) as epoch seconds."""
    text = envelope.get("time")
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        return None


def names_any(envelope: dict[str, Any], resource_ids: Iterable[str]) -> bool:
    """Whether the envelope (as its receiver sees it: a project's view names only that
    project's resources) names one of `resource_ids` as the faulty or an affected resource;
    no ids: any envelope."""
    wanted = set(resource_ids)
    if not wanted:
        return True
    data = envelope["data"]
    named = {data["resource_id"], *(r for ids in data["affected"].values() for r in ids)}
    return bool(wanted & named)


def scope_of(project_id: str) -> str | None:
    """The project a subscription's events are cut for (None: all projects, unfiltered)."""
    return None if project_id == ALL_PROJECTS else project_id


class ListenerOverflow(Exception):
    """A live listener fell too far behind: it missed events and is ended."""


@dataclass(eq=False)
class LiveListener:
    """One live consumer (an SSE stream): the events its project may see, of its types."""

    loop: asyncio.AbstractEventLoop
    project_id: str | None  # None: an admin, everything
    event_types: frozenset[str]
    queue: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=LIVE_QUEUE))
    overflowed: bool = False

    def view(self, fault_event: FaultEvent) -> dict[str, Any] | None:
        if not fault_event.matches(self.event_types, ()):
            return None
        return fault_event.for_project(self.project_id)

    def offer(self, envelope: dict[str, Any]) -> None:
        """(On the listener's loop.) Queue an envelope, or mark the listener overflowed."""
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(envelope)
        except asyncio.QueueFull:  # (no get() is blocked: the queue is full)
            self.overflowed = True
            log.warning("a live fault listener fell %d events behind: ending it", LIVE_QUEUE)

    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next envelope, or None after `timeout` seconds without one; raises
        ListenerOverflow once the listener missed events."""
        if self.overflowed:
            raise ListenerOverflow
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            if self.overflowed:
                raise ListenerOverflow from None
            return None


@dataclass(frozen=True)
class _Claim:
    delivery_id: int
    subscription_id: str
    url: str
    envelope: dict[str, Any]
    attempts: int  # including the one being made


class Notifier:
    """Subscriptions' webhooks and live listeners. One per server (`app.state.notifier`)."""

    def __init__(self, db: Database, settings: Settings, *, timeout: float = DELIVERY_TIMEOUT,
                 backoff: float = BACKOFF, backoff_cap: float = BACKOFF_CAP,
                 max_age: float = MAX_AGE, tick: float = TICK,
                 concurrency: int = CONCURRENCY) -> None:
        self.db = db
        self.settings = settings
        self.timeout = timeout
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.max_age = max_age
        self.tick = tick
        self.concurrency = concurrency
        self._lock = threading.Lock()
        # events of transactions still open (by connection), and of committed ones not yet
        # handed to the live listeners
        self._open: dict[int, list[FaultEvent]] = {}
        self._committed: list[FaultEvent] = []
        self._listeners: set[LiveListener] = set()
        # the worker's loop and state (while `run` runs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._last_purge = 0.0

    # --- inside the inspector's transaction ---------------------------------------------------
    def publish(self, conn: Connection, fault_event: FaultEvent) -> None:
        """Queue `fault_event` for every subscription that takes it (filters) and may see it
        (project), as that subscription's project sees it: one `fault_deliveries` row each, in
        the caller's transaction. The event reaches live listeners once it commits (`wake`)."""
        now = time.time()
        subscriptions = conn.execute(select(
            fault_subscriptions.c.id, fault_subscriptions.c.project_id,
            fault_subscriptions.c.event_types, fault_subscriptions.c.resource_ids,
        ).order_by(fault_subscriptions.c.created_at, fault_subscriptions.c.id)).all()
        already = set(conn.execute(select(fault_deliveries.c.subscription_id)
                                   .where(fault_deliveries.c.event_id == fault_event.id)).scalars())
        rows = []
        for sub in subscriptions:
            if sub.id in already or not fault_event.matches(sub.event_types or (), ()):
                continue
            envelope = fault_event.for_project(scope_of(sub.project_id))
            if envelope is None or not names_any(envelope, sub.resource_ids or ()):
                continue
            rows.append({"subscription_id": sub.id, "event_id": fault_event.id, "event": envelope,
                         "attempts": 0, "next_attempt_at": now, "delivered_at": None,
                         "last_error": None})
        if rows:
            conn.execute(insert(fault_deliveries), rows)
        with self._lock:
            key = id(conn)
            if key not in self._open:
                self._open[key] = []
                if not event.contains(conn, "commit", self._on_commit):
                    event.listen(conn, "commit", self._on_commit)
                    event.listen(conn, "rollback", self._on_rollback)
            self._open[key].append(fault_event)

    def _on_commit(self, conn: Connection) -> None:
        with self._lock:
            self._committed.extend(self._open.pop(id(conn), ()))

    def _on_rollback(self, conn: Connection) -> None:
        with self._lock:
            self._open.pop(id(conn), None)

    # --- after commit -------------------------------------------------------------------------
    def wake(self) -> None:
        """After the inspector's commit: deliver the new rows now and push the committed events
        to the live listeners. Thread-safe; cheap when there is nothing to do."""
        self._flush_live()
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(wakeup.set)

    def _flush_live(self) -> None:
        with self._lock:
            events, self._committed = self._committed, []
            listeners = list(self._listeners)
        for fault_event in events:
            for listener in listeners:
                envelope = listener.view(fault_event)
                if envelope is None:
                    continue
                with contextlib.suppress(RuntimeError):  # its loop is gone
                    listener.loop.call_soon_threadsafe(listener.offer, envelope)

    # --- live listeners -----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def listen(self, project_id: str | None,
                     event_types: Iterable[str] = ()) -> AsyncIterator[LiveListener]:
        """A live listener for as long as the context lasts: events published (and committed)
        from now on that `project_id` may see (None: an admin, everything), of `event_types`
        (fault or event types; empty: all)."""
        listener = LiveListener(asyncio.get_running_loop(), project_id, frozenset(event_types))
        with self._lock:
            self._listeners.add(listener)
        try:
            yield listener
        finally:
            with self._lock:
                self._listeners.discard(listener)

    async def stream(self, project_id: str | None,
                     event_types: list[str]) -> AsyncIterator[dict[str, Any]]:
        """Live envelopes as `project_id` sees them (None: an admin), until the consumer stops
        (or falls too far behind: ListenerOverflow)."""
        async with self.listen(project_id, event_types) as listener:
            while True:
                envelope = await listener.get()
                if envelope is not None:
                    yield envelope

    @property
    def listener_count(self) -> int:
        with self._lock:
            return len(self._listeners)

    # --- the delivery worker ------------------------------------------------------------------
    async def run(self) -> None:
        """Deliver due rows until cancelled: right away when woken, else every `tick` seconds
        or when the next retry is due, whichever is first."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = wakeup = asyncio.Event()
        semaphore = asyncio.Semaphore(self.concurrency)
        limits = httpx.Limits(max_connections=self.concurrency,
                              max_keepalive_connections=self.concurrency)
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False,
                                         limits=limits) as client:
                while True:
                    wakeup.clear()
                    self._flush_live()
                    try:
                        delay = await self._dispatch(client, semaphore)
                    except Exception:
                        log.exception("fault delivery: could not read the outbox")
                        delay = self.tick
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wakeup.wait(), timeout=max(0.0, delay))
        finally:
            self._loop = self._wakeup = None
            tasks = list(self._inflight.values())
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5.0)
            self._inflight.clear()

    async def _dispatch(self, client: httpx.AsyncClient, semaphore: asyncio.Semaphore) -> float:
        """Start a drain for every subscription whose oldest undelivered row is due; the
        seconds until the next check."""
        now = time.time()
        if now - self._last_purge >= PURGE_INTERVAL:
            self._last_purge = now
            await asyncio.to_thread(self._purge, now)
        heads = await asyncio.to_thread(self._heads)
        now = time.time()
        next_check = now + self.tick
        for subscription_id, due in heads:
            if subscription_id in self._inflight:
                continue
            if due <= now:
                task = asyncio.get_running_loop().create_task(
                    self._drain(client, semaphore, subscription_id))
                self._inflight[subscription_id] = task
            else:
                next_check = min(next_check, due)
        return next_check - time.time()

    def _heads(self) -> list[tuple[str, float]]:
        """(subscription, next_attempt_at) of each subscription's oldest undelivered row."""
        oldest = (select(func.min(fault_deliveries.c.id))
                  .where(fault_deliveries.c.delivered_at.is_(None))
                  .group_by(fault_deliveries.c.subscription_id))
        with self.db.read() as conn:
            rows = conn.execute(select(fault_deliveries.c.subscription_id,
                                       fault_deliveries.c.next_attempt_at)
                                .where(fault_deliveries.c.id.in_(oldest.scalar_subquery())))
            return [(sub, float(due)) for sub, due in rows]

    def _purge(self, now: float) -> None:
        with self.db.write() as conn:
            conn.execute(delete(fault_deliveries).where(
                fault_deliveries.c.delivered_at.is_not(None),
                fault_deliveries.c.delivered_at < now - self.max_age))

    async def _drain(self, client: httpx.AsyncClient, semaphore: asyncio.Semaphore,
                     subscription_id: str) -> None:
        """Deliver one subscription's due rows in order; stop at the first failure."""
        try:
            while True:
                claim = await asyncio.to_thread(self._claim, subscription_id)
                if claim is None:
                    return
                async with semaphore:
                    ok, error = await self._post(client, claim)
                await asyncio.to_thread(self._record, claim, ok, error)
                if not ok:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("fault delivery to subscription %s failed", subscription_id)
        finally:
            self._inflight.pop(subscription_id, None)
            if self._wakeup is not None:
                self._wakeup.set()  # look again: rows may have come while this one was busy

    def _claim(self, subscription_id: str) -> _Claim | None:
        """Claim the subscription's oldest undelivered row if it is due (dropping rows too old
        to deliver): one attempt more, retried after a lease if nothing is recorded."""
        with self.db.write() as conn:
            while True:
                row = conn.execute(
                    select(fault_deliveries, fault_subscriptions.c.url)
                    .join(fault_subscriptions,
                          fault_subscriptions.c.id == fault_deliveries.c.subscription_id)
                    .where(fault_deliveries.c.subscription_id == subscription_id,
                           fault_deliveries.c.delivered_at.is_(None))
                    .order_by(fault_deliveries.c.id).limit(1)).first()
                now = time.time()
                if row is None or row.next_attempt_at > now:
                    return None
                happened = event_epoch(row.event)
                if happened is not None and now - happened > self.max_age:
                    log.warning("fault event %s dropped for subscription %s (%s): undelivered "
                                "after %d attempts in %.0f s; last error: %s", row.event_id,
                                subscription_id, row.url, row.attempts, now - happened,
                                row.last_error)
                    conn.execute(delete(fault_deliveries).where(fault_deliveries.c.id == row.id))
                    continue
                claimed = conn.execute(
                    update(fault_deliveries)
                    .where(and_(fault_deliveries.c.id == row.id,
                                fault_deliveries.c.attempts == row.attempts,
                                fault_deliveries.c.delivered_at.is_(None)))
                    .values(attempts=row.attempts + 1,
                            next_attempt_at=now + self.timeout + LEASE_MARGIN))
                if claimed.rowcount != 1:
                    return None  # another deliverer has it
                return _Claim(row.id, subscription_id, row.url, row.event, row.attempts + 1)

    async def _post(self, client: httpx.AsyncClient, claim: _Claim) -> tuple[bool, str | None]:
        envelope = claim.envelope
        headers = {
            "Content-Type": CLOUDEVENTS_JSON,
            "ce-specversion": str(envelope.get("specversion", "1.0")),
            "ce-id": str(envelope["id"]),
            "ce-type": str(envelope["type"]),
            "ce-source": str(envelope.get("source", SOURCE)),
            "Idempotency-Key": str(envelope["id"]),
        }
        try:
            response = await client.post(claim.url, content=orjson.dumps(envelope),
                                         headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}"[:1024]
        except ValueError as exc:  # e.g. an URL httpx refuses
            return False, f"invalid URL: {exc}"[:1024]
        if 200 <= response.status_code < 300:
            return True, None
        return False, f"HTTP {response.status_code}"

    def _record(self, claim: _Claim, ok: bool, error: str | None) -> None:
        now = time.time()
        values: dict[str, Any]
        if ok:
            values = {"delivered_at": now, "last_error": None}
        else:
            delay = backoff_delay(claim.attempts, self.backoff, self.backoff_cap)
            values = {"last_error": error, "next_attempt_at": now + delay}
            log.info("fault event %s to %s failed (attempt %d, next in %.1f s): %s",
                     claim.envelope.get("id"), claim.url, claim.attempts, delay, error)
        with self.db.write() as conn:
            conn.execute(update(fault_deliveries)
                         .where(fault_deliveries.c.id == claim.delivery_id,
                                fault_deliveries.c.delivered_at.is_(None))
                         .values(**values))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The delivery worker as a background task while the context lasts (the app's
        lifespan)."""
        task = asyncio.get_running_loop().create_task(self.run())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.wait({task}, timeout=10.0)
