"""Distribution fixtures: a migrated SQLite database, the app served by a real uvicorn (policy
streams need one), and a tiny HTTP receiver standing in for Nova."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from neutrino.api.app import create_app
from neutrino.config import Settings
from neutrino.db.engine import Database
from neutrino.db.migrate import upgrade
from neutrino.distribution.compiler_loop import CHECK_ENV
from support.live_server import LiveServer

ADMIN = {"X-Project-Id": "admin-project", "X-Roles": "admin,member,reader"}


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "neutrino.sqlite"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "neutrino.sqlite"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@dataclass
class NovaReceiver:
    url: str
    events: list[dict[str, Any]]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.events


@pytest.fixture
def nova() -> Iterator[NovaReceiver]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            received.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"events": []}')

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield NovaReceiver(f"http://127.0.0.1:{httpd.server_address[1]}", received)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server(database_url: str, tmp_path: Path, nova: NovaReceiver,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """The server, its compiler loop checking every incremental pass against a full one; no
    pass may have differed."""
    monkeypatch.setenv(CHECK_ENV, "1")
    settings = Settings(state_dir=tmp_path, database=database_url, auth="noauth",
                        compute_url=nova.url, policy_keepalive_interval=0.2)
    database = Database(database_url)
    live = LiveServer(create_app(settings, database), lifespan="on")
    live.start()
    try:
        yield live
    finally:
        live.stop()
        database.dispose()
    loop = live.app.state.distribution.loop
    assert loop is not None and loop.check_incremental and loop.mismatches == 0
