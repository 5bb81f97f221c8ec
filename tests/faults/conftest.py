"""Fault management fixtures: the app served by a real uvicorn (the delivery worker runs in its
lifespan; SSE needs a real server), a webhook receiver on 127.0.0.1 that can be down, answer
errors or be slow, and helpers that publish an event the way the inspector does (the fault row
and `Notifier.publish` in one write transaction, then `wake`).

The app runs on every database of `database_url` (SQLite, and PostgreSQL when available)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import insert, select, update

from neutrino.api.app import create_app
from neutrino.config import Settings
from neutrino.db.engine import Database
from neutrino.db.schema import fault_deliveries, faults
from neutrino.faults.events import SEVERITY, Affected, FaultEvent, new_id
from neutrino.faults.notifier import Notifier
from support.api_app import ADMIN
from support.live_server import LiveServer

T = TypeVar("T")
WAIT = 15.0  # seconds any bounded wait may take at most


def wait_for(check: Callable[[], T], timeout: float = WAIT, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy (bounded: fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


# --- the webhook receiver -----------------------------------------------------------------------

@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    status: int  # what the receiver answered


@dataclass
class Receiver:
    """An HTTP server recording every POST. `script` holds the statuses of the next answers
    (200 once it is empty); `delay` makes it answer late. `stop()` then `start()` takes it
    down and back up on the same port."""

    port: int = 0
    script: list[int] = field(default_factory=list)
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    _httpd: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                with receiver._lock:
                    status = receiver.script.pop(0) if receiver.script else 200
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                with receiver._lock:
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in
                                                                  self.headers.items()},
                                                      body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def reserve(self) -> Receiver:
        """Pick a free port without listening on it (the receiver is down)."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        return self

    def accepted(self, path: str | None = None) -> list[Received]:
        """The requests answered 2xx (to `path`), in arrival order."""
        with self._lock:
            return [r for r in self.received
                    if 200 <= r.status < 300 and (path is None or r.path == path)]

    def ids(self, path: str | None = None) -> list[str]:
        return [r.body["id"] for r in self.accepted(path)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    up = Receiver().start()
    yield up
    up.stop()


@pytest.fixture
def down_receiver() -> Iterator[Receiver]:
    """A receiver that is down until the test calls `start()`."""
    down = Receiver().reserve()
    yield down
    down.stop()


# --- the server -----------------------------------------------------------------------------------

@dataclass
class Live:
    server: LiveServer
    db: Database

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def notifier(self) -> Notifier:
        notifier: Notifier = self.server.app.state.notifier
        return notifier

    def http(self, headers: dict[str, str] | None = None, timeout: float = WAIT) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers or ADMIN, timeout=timeout)

    def subscribe(self, headers: dict[str, str] | None = None, **attrs: Any) -> dict[str, Any]:
        with self.http(headers) as http:
            response = http.post("/v2.0/fault-subscriptions", json={"subscription": attrs})
        assert response.status_code == 201, response.text
        sub: dict[str, Any] = response.json()["subscription"]
        return sub

    def publish(self, event: FaultEvent) -> None:
        publish(self.db, self.notifier, event)

    def deliveries(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return [dict(r._mapping) for r in
                    conn.execute(select(fault_deliveries).order_by(fault_deliveries.c.id))]


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[Live]:
    settings = Settings(state_dir=tmp_path, database=database_url, auth="noauth",
                        compiler_enabled=False)
    database = Database(database_url)
    server = LiveServer(create_app(settings, database), lifespan="on")
    server.start()
    try:
        yield Live(server, database)
    finally:
        server.stop()
        database.dispose()


# --- events ---------------------------------------------------------------------------------------

def make_event(fault_type: str = "host.down", resource_id: str = "host2", *,
               hosts: tuple[str, ...] = ("host2",), owned: dict[str, str] | None = None,
               instances: tuple[str, ...] = (), routers: tuple[str, ...] = (),
               state: str = "active", fault_id: str | None = None,
               detected_at: float | None = None) -> FaultEvent:
    """An event; `owned` maps each affected port (and instance, router) to its project; ports
    are the keys of `owned` that are not instances or routers."""
    owned = owned or {}
    now = time.time() if detected_at is None else detected_at
    ports = tuple(r for r in owned if r not in instances and r not in routers)
    resource_type = fault_type.split(".")[0] if fault_type != "vswitchd.down" else "host"
    return FaultEvent(
        id=new_id(), fault_id=fault_id or new_id(), fault_type=fault_type,
        state="cleared" if state == "cleared" else "active",
        severity=SEVERITY[fault_type], resource_type=resource_type, resource_id=resource_id,
        source="heartbeat", fault_time=now - 0.05, detected_at=now,
        cleared_at=now + 1 if state == "cleared" else None,
        affected=Affected(hosts=hosts, ports=ports, instances=instances, routers=routers,
                          projects=owned),
    )


def fault_row(event: FaultEvent, *, with_projects: bool = False) -> dict[str, Any]:
    """The `faults` row of an event (what the inspector stores); `with_projects` also keeps
    the owner of each affected resource in `affected.projects`."""
    affected: dict[str, Any] = event.affected.as_dict()
    if with_projects:
        affected["projects"] = dict(event.affected.projects)
    return {"id": event.fault_id, "type": event.fault_type, "severity": event.severity,
            "state": event.state, "resource_type": event.resource_type,
            "resource_id": event.resource_id, "source": event.source,
            "fault_time": event.fault_time, "detected_at": event.detected_at,
            "cleared_at": event.cleared_at, "affected": affected,
            "project_ids": list(event.affected.project_ids)}


def publish(db: Database, notifier: Notifier, event: FaultEvent) -> None:
    """What the inspector does: the fault row and the notifier's outbox rows in one write
    transaction, then `wake` after the commit."""
    row = fault_row(event)
    with db.write() as conn:
        exists = conn.execute(select(faults.c.id).where(faults.c.id == event.fault_id)).first()
        if exists is None:
            conn.execute(insert(faults).values(**row))
        else:
            conn.execute(update(faults).where(faults.c.id == event.fault_id).values(**row))
        notifier.publish(conn, event)
    notifier.wake()
