"""The compiler loop with a fake compiler: outbox order, affected chassis only, every chassis
after a restart, chassis registration and removal, and the real compiler end to end."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import Connection, delete, insert, select

from distribution.conftest import ADMIN
from neutrino.db.engine import Database
from neutrino.db.outbox import PORT_STATUS_KIND, Change, current_revision, record_changes
from neutrino.db.schema import chassis, outbox
from neutrino.distribution.compiler_loop import Compiler, CompilerLoop, default_compiler
from neutrino.distribution.store import EmbeddedPolicyStore
from neutrino.policy.model import Document, TunnelPolicy, item_key
from neutrino.timeutil import now_iso


class FakeCompiler:
    """Intent: {chassis: peer ip} read from outbox rows; each chassis holds a tunnel item per
    peer. Records what it was asked to compile."""

    def __init__(self) -> None:
        self.compiled: list[str] = []
        self.affected_calls: list[list[Change]] = []

    def load_intent(self, conn: Connection) -> dict[str, str]:
        rows = conn.execute(select(chassis.c.name, chassis.c.tunnel_ip))
        return {name: ip for name, ip in rows}

    def compile_chassis(self, intent: dict[str, str], name: str) -> Mapping[str, Document]:
        self.compiled.append(name)
        return {item_key(name, "tunnel", peer): TunnelPolicy(id=peer, ip=ip)
                for peer, ip in intent.items() if peer != name}

    def affected_chassis(self, before: dict[str, str], after: dict[str, str],
                         changes: list[Change]) -> set[str]:
        self.affected_calls.append(changes)
        return set(after) if any(c.kind == "chassis" for c in changes) else set()

    def functions(self) -> Compiler:
        return Compiler(self.load_intent, self.compile_chassis, self.affected_chassis)


def add_chassis(db: Database, name: str, ip: str) -> None:
    now = now_iso()
    with db.write() as conn:
        conn.execute(insert(chassis).values(
            name=name, agent_id=f"agent-{name}", tunnel_ip=ip, bridge_mappings={},
            is_gateway=False, gateway_priority=0, availability_zone="nova", configurations={},
            admin_state_up=True, created_at=now, started_at=now, heartbeat_at=now,
            realised_revision=0))
        record_changes(conn, [Change("chassis", name, "create")])


def outbox_row(db: Database, *changes: Change) -> None:
    with db.write() as conn:
        record_changes(conn, list(changes))


def test_loop_compiles_affected_chassis_in_revision_order(db: Database) -> None:
    fake = FakeCompiler()
    store = EmbeddedPolicyStore(db)
    loop = CompilerLoop(db, store, fake.functions())
    assert loop.run_once().revision == 0  # empty outbox, no chassis
    add_chassis(db, "h1", "10.0.0.1")
    add_chassis(db, "h2", "10.0.0.2")
    result = loop.run_once()  # the first pass (no previous intent) compiles every chassis
    assert result.revision == 2 and result.compiled == {"h1", "h2"}
    assert store.snapshot("h1") == (2, {item_key("h1", "tunnel", "h2"):
                                         {"id": "h2", "ip": "10.0.0.2", "encap": "geneve"}})
    outbox_row(db, Change("port", "p1", "create"))  # the fake says: affects nobody
    fake.compiled.clear()
    result = loop.run_once()
    assert result.revision == 3 and result.compiled == frozenset() and fake.compiled == []
    assert store.revision() == 3  # the position moves even when nothing changed
    assert loop.run_once().revision == 3  # nothing new: no pass
    add_chassis(db, "h3", "10.0.0.3")
    outbox_row(db, Change("port", "p2", "create"))
    result = loop.run_once()  # both rows in one pass, compiled at the last revision
    assert result.revision == 5 and result.compiled == {"h1", "h2", "h3"}
    assert fake.affected_calls[-1] == [Change("chassis", "h3", "create"),
                                       Change("port", "p2", "create")]
    assert [(k, r) for k, r, _d in store.changes_since("h1", 3)] == [
        (item_key("h1", "tunnel", "h3"), 5)]


def test_restart_compiles_every_chassis_and_removed_chassis_lose_their_items(db: Database) -> None:
    fake = FakeCompiler()
    store = EmbeddedPolicyStore(db)
    add_chassis(db, "h1", "10.0.0.1")
    add_chassis(db, "h2", "10.0.0.2")
    CompilerLoop(db, store, fake.functions()).run_once()
    with db.write() as conn:  # h2 goes away while no loop runs
        conn.execute(delete(chassis).where(chassis.c.name == "h2"))
        record_changes(conn, [Change("chassis", "h2", "delete")])
    fake.compiled.clear()
    result = CompilerLoop(db, store, fake.functions()).run_once()  # a restarted server
    assert result.compiled == {"h1", "h2"}
    assert fake.compiled == ["h1"]  # h2 is not registered: its items are deleted, not compiled
    assert store.snapshot("h2") == (3, {})
    assert store.snapshot("h1") == (3, {})
    assert store.known_chassis() == set()


def test_loop_with_the_real_compiler(db: Database) -> None:
    compiler = default_compiler()
    assert compiler is not None
    store = EmbeddedPolicyStore(db)
    loop = CompilerLoop(db, store, compiler)
    add_chassis(db, "h1", "10.0.0.1")
    result = loop.run_once()
    assert result.compiled == {"h1"}
    with db.read() as conn:
        head = conn.execute(select(outbox.c.revision).order_by(outbox.c.revision.desc())).first()
    assert head is not None and store.revision() == head[0]




def test_the_app_runs_the_loop_and_stops_it_cleanly(database_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from neutrino.api.app import create_app
    from neutrino.config import Settings

    settings = Settings(state_dir=tmp_path, database=database_url, auth="noauth")
    database = Database(database_url)
    try:
        for _ in range(3):  # writes racing the shutdown must not keep the loop alive
            with TestClient(create_app(settings, database), headers=ADMIN) as http:
                http.post("/v2.0/neutrino/chassis",
                          json={"chassis": {"name": "h1", "tunnel_ip": "192.0.2.1"}})
                for _ in range(5):
                    http.post("/v2.0/networks", json={"network": {}})
                store = http.app.state.distribution.store  # type: ignore[attr-defined]
                deadline = time.monotonic() + 10
                while http.get("/v2.0/neutrino/revision").json()["revision"] < store_head(database):
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                assert store.revision() == store_head(database)
    finally:
        database.dispose()


def store_head(db: Database) -> int:
    with db.read() as conn:
        return current_revision(conn)


def test_status_reports_move_the_revision_without_loading_or_compiling(db: Database) -> None:
    """An agent's ACTIVE / DOWN report is no input of the compiler: its outbox row is consumed
    (the store's revision moves on) without reading the intent or compiling anything."""
    fake = FakeCompiler()
    loads: list[int] = []
    compiler = fake.functions()
    counting = Compiler(lambda conn: loads.append(1) or fake.load_intent(conn),
                        compiler.compile_chassis, compiler.affected_chassis)
    store = EmbeddedPolicyStore(db)
    loop = CompilerLoop(db, store, counting)
    add_chassis(db, "hv1", "192.0.2.1")
    loop.run_once()
    assert len(loads) == 1
    outbox_row(db, Change(PORT_STATUS_KIND, "p1", "update"), Change(PORT_STATUS_KIND, "p2", "update"))
    result = loop.run_once()
    with db.read() as conn:
        assert result.revision == current_revision(conn)
    assert (len(loads), result.compiled, store.revision()) == (1, frozenset(), result.revision)
    outbox_row(db, Change(PORT_STATUS_KIND, "p1", "update"), Change("port", "p1", "update"))
    loop.run_once()
    assert len(loads) == 2  # anything else in the batch: a normal pass


def test_without_any_chassis_nothing_is_loaded_and_the_first_chassis_gets_everything(
        db: Database) -> None:
    """API writes on a server no agent has joined yet cost no compiler pass; the first chassis
    to register is compiled in full."""
    fake = FakeCompiler()
    loads: list[int] = []
    compiler = fake.functions()
    counting = Compiler(lambda conn: loads.append(1) or fake.load_intent(conn),
                        compiler.compile_chassis, compiler.affected_chassis)
    loop = CompilerLoop(db, EmbeddedPolicyStore(db), counting)
    outbox_row(db, Change("port", "p1", "create"))
    assert loop.run_once().compiled == frozenset()
    assert loads == []
    add_chassis(db, "hv1", "192.0.2.1")
    add_chassis(db, "hv2", "192.0.2.2")
    result = loop.run_once()
    assert (len(loads), result.compiled) == (1, frozenset({"hv1", "hv2"}))
