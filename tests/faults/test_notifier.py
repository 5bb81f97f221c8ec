"""The notifier: outbox rows per subscription (filters, project scoping), webhook delivery
(envelope, headers, retries, order, at least once), live listeners and the SSE stream.

Nothing here asserts a duration: every wait is bounded polling (`wait_for`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import insert, select

from faults.conftest import WAIT, Live, Receiver, make_event, publish, wait_for
from neutrino.api import faults as faults_api
from neutrino.config import Settings
from neutrino.db.engine import Database
from neutrino.db.schema import fault_deliveries, fault_subscriptions
from neutrino.faults.events import EVENT_PREFIX, rfc3339
from neutrino.faults.notifier import (
    ALL_PROJECTS,
    BACKOFF,
    BACKOFF_CAP,
    CLOUDEVENTS_JSON,
    ListenerOverflow,
    Notifier,
    event_epoch,
)
from neutrino.timeutil import backoff_delay, now_iso
from support.api_app import as_project

RED, BLUE = "red-project", "blue-project"


# --- pure helpers ----------------------------------------------------------------------------------

def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    assert [backoff_delay(n, BACKOFF, BACKOFF_CAP) for n in (1, 2, 3, 4)] == [0.2, 0.4, 0.8, 1.6]
    assert backoff_delay(8, BACKOFF, BACKOFF_CAP) == 25.6
    assert backoff_delay(9, BACKOFF, BACKOFF_CAP) == backoff_delay(1000, BACKOFF, BACKOFF_CAP) == 30.0
    assert backoff_delay(3, base=1.0, cap=3.0) == 3.0


def test_event_time_round_trips() -> None:
    now = 1_800_000_000.123456
    assert event_epoch({"time": rfc3339(now)}) == pytest.approx(now, abs=1e-6)
    assert event_epoch({"time": "yesterday"}) is None
    assert event_epoch({}) is None


# --- publish: the outbox rows ----------------------------------------------------------------------

@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.dispose()


def add_subscription(db: Database, project_id: str, url: str = "http://127.0.0.1:9/",
                     event_types: list[str] | None = None,
                     resource_ids: list[str] | None = None) -> str:
    sub_id = str(uuid.uuid4())
    with db.write() as conn:
        conn.execute(insert(fault_subscriptions).values(
            id=sub_id, project_id=project_id, url=url, event_types=event_types or [],
            resource_ids=resource_ids or [], description="", created_at=now_iso()))
    return sub_id


def outbox(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Envelopes queued per subscription."""
    rows: dict[str, list[dict[str, Any]]] = {}
    with db.read() as conn:
        for row in conn.execute(select(fault_deliveries).order_by(fault_deliveries.c.id)):
            assert row.attempts == 0 and row.delivered_at is None
            assert row.event_id == row.event["id"]
            rows.setdefault(row.subscription_id, []).append(row.event)
    return rows


def test_publish_queues_each_subscription_its_own_view(database: Database, tmp_path: Any) -> None:
    notifier = Notifier(database, Settings(state_dir=tmp_path))
    admin = add_subscription(database, ALL_PROJECTS)
    red = add_subscription(database, RED)
    blue = add_subscription(database, BLUE)
    red_ports = add_subscription(database, RED, event_types=["port.down"])
    red_cleared = add_subscription(database, RED,
                                   event_types=[EVENT_PREFIX + "host.down.cleared"])
    red_other_port = add_subscription(database, RED, resource_ids=["port-r2"])
    by_host = add_subscription(database, RED, resource_ids=["host2"])
    # another project's resource selects nothing: filters see the project's own view
    by_foreign_port = add_subscription(database, RED, resource_ids=["port-x"])

    event = make_event(owned={"port-r1": RED, "vm-r1": RED, "port-x": "other"},
                       instances=("vm-r1",))
    publish(database, notifier, event)
    queued = outbox(database)
    assert set(queued) == {admin, red, by_host}
    assert queued[admin] == [event.envelope()]
    red_view = queued[red][0]
    assert red_view == event.for_project(RED)
    assert red_view["data"]["affected"] == {"hosts": [], "ports": ["port-r1"],
                                            "instances": ["vm-r1"], "routers": []}
    assert queued[by_host] == [red_view]
    assert blue not in queued and red_ports not in queued and red_other_port not in queued
    assert by_foreign_port not in queued

    cleared = make_event(owned={"port-r1": RED}, state="cleared", fault_id=event.fault_id)
    publish(database, notifier, cleared)
    queued = outbox(database)
    assert [e["type"] for e in queued[red_cleared]] == [EVENT_PREFIX + "host.down.cleared"]
    assert [e["id"] for e in queued[red]] == [event.id, cleared.id]


def test_publish_twice_queues_once(database: Database, tmp_path: Any) -> None:
    notifier = Notifier(database, Settings(state_dir=tmp_path))
    sub = add_subscription(database, ALL_PROJECTS)
    event = make_event()
    publish(database, notifier, event)
    with database.write() as conn:
        notifier.publish(conn, event)
    assert [e["id"] for e in outbox(database)[sub]] == [event.id]


def test_rolled_back_events_reach_no_one(database: Database, tmp_path: Any) -> None:
    notifier = Notifier(database, Settings(state_dir=tmp_path))
    add_subscription(database, ALL_PROJECTS)

    async def scenario() -> list[dict[str, Any]]:
        async with notifier.listen(None) as listener:
            with pytest.raises(RuntimeError), database.write() as conn:
                notifier.publish(conn, make_event(resource_id="rolled-back"))
                raise RuntimeError("the inspector failed")
            notifier.wake()
            kept = make_event(resource_id="committed")
            publish(database, notifier, kept)
            got = [await listener.get(5.0)]
            got.append(await listener.get(0.05))
            return [g for g in got if g is not None]

    seen = asyncio.run(scenario())
    assert [e["subject"] for e in seen] == ["committed"]
    assert [e["subject"] for rows in outbox(database).values() for e in rows] == ["committed"]


def test_live_listeners_are_project_scoped_and_filtered(database: Database, tmp_path: Any) -> None:
    notifier = Notifier(database, Settings(state_dir=tmp_path))
    blue_event = make_event(owned={"port-b": BLUE})
    red_event = make_event("port.down", "port-r", hosts=(), owned={"port-r": RED})

    async def scenario() -> dict[str, list[dict[str, Any]]]:
        seen: dict[str, list[dict[str, Any]]] = {"red": [], "admin": [], "ports": []}
        async with notifier.listen(RED) as red, notifier.listen(None) as admin, \
                notifier.listen(None, ["port.down"]) as ports:
            for event in (blue_event, red_event):
                publish(database, notifier, event)
            for name, listener in (("red", red), ("admin", admin), ("ports", ports)):
                while (got := await listener.get(0.2)) is not None:
                    seen[name].append(got)
        assert notifier.listener_count == 0
        return seen

    seen = asyncio.run(scenario())
    assert seen["red"] == [red_event.for_project(RED)]
    assert seen["admin"] == [blue_event.envelope(), red_event.envelope()]
    assert seen["ports"] == [red_event.envelope()]


def test_a_listener_that_falls_behind_is_ended(database: Database, tmp_path: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from neutrino.faults import notifier as notifier_module

    monkeypatch.setattr(notifier_module, "LIVE_QUEUE", 2)
    notifier = Notifier(database, Settings(state_dir=tmp_path))

    async def scenario() -> int:
        async with notifier.listen(None) as listener:
            for _ in range(3):
                publish(database, notifier, make_event())
            await asyncio.sleep(0)  # let the offers run
            with pytest.raises(ListenerOverflow):
                await listener.get(1.0)
            return listener.queue.qsize()

    assert asyncio.run(scenario()) == 2


# --- webhooks through the running server -----------------------------------------------------------

def test_delivered_with_the_envelope_and_headers(live: Live, receiver: Receiver) -> None:
    sub = live.subscribe(url=receiver.url + "/hook?x=1")
    event = make_event(owned={"port-r": RED})
    live.publish(event)
    got = wait_for(receiver.accepted, what="the webhook")[0]
    assert got.path == "/hook?x=1"
    assert got.body == event.envelope()
    assert got.headers["content-type"] == CLOUDEVENTS_JSON
    assert got.headers["ce-id"] == got.headers["idempotency-key"] == event.id
    assert got.headers["ce-type"] == EVENT_PREFIX + "host.down"
    assert got.headers["ce-specversion"] == "1.0"
    row = wait_for(lambda: [d for d in live.deliveries() if d["delivered_at"]], what="delivered_at")[0]
    assert row["subscription_id"] == sub["id"] and row["attempts"] == 1
    assert row["last_error"] is None


def test_a_receiver_that_was_down_gets_every_event_in_order_once(
        live: Live, down_receiver: Receiver) -> None:
    live.subscribe(url=down_receiver.url)
    events = [make_event(resource_id=f"host{i}") for i in range(3)]
    for event in events:
        live.publish(event)
    # refused connections are retried with backoff; the later events wait behind the first
    rows = wait_for(lambda: [d for d in live.deliveries() if d["attempts"] >= 2],
                    what="a second attempt")
    assert rows[0]["event_id"] == events[0].id and rows[0]["last_error"]
    assert all(d["attempts"] == 0 for d in live.deliveries()[1:])
    down_receiver.start()
    wait_for(lambda: len(down_receiver.accepted()) >= 3, what="three deliveries")
    wait_for(lambda: all(d["delivered_at"] for d in live.deliveries()), what="all delivered")
    assert down_receiver.ids() == [e.id for e in events]  # in order, each once


def test_error_answers_are_retried_until_accepted(live: Live, receiver: Receiver) -> None:
    receiver.script = [503, 500, 404]
    live.subscribe(url=receiver.url)
    event = make_event()
    live.publish(event)
    wait_for(receiver.accepted, what="an accepted delivery")
    assert [r.status for r in receiver.received] == [503, 500, 404, 200]
    assert {r.body["id"] for r in receiver.received} == {event.id}
    row = wait_for(lambda: [d for d in live.deliveries() if d["delivered_at"]], what="delivered")[0]
    assert row["attempts"] == 4


def test_a_lost_success_is_the_only_duplicate(live: Live, receiver: Receiver) -> None:
    """At least once: an answer that comes after the timeout is a failure for the notifier, so
    the event is sent again: duplicates carry the same id (the idempotency key)."""
    live.notifier.timeout = 0.3
    receiver.delay = 1.0
    live.subscribe(url=receiver.url)
    event = make_event()
    live.publish(event)
    wait_for(lambda: [d for d in live.deliveries() if d["last_error"]], what="a timeout")
    assert "Timeout" in live.deliveries()[0]["last_error"]
    receiver.delay = 0.0
    wait_for(lambda: all(d["delivered_at"] for d in live.deliveries()), what="the delivery")
    assert live.deliveries()[0]["attempts"] >= 2
    # the late answers are recorded when the receiver finally sends them
    wait_for(lambda: len(receiver.accepted()) >= 2, what="the lost 2xx")
    assert set(receiver.ids()) == {event.id}


def test_an_event_too_old_to_deliver_is_dropped(live: Live, down_receiver: Receiver) -> None:
    live.notifier.max_age = 0.5
    live.subscribe(url=down_receiver.url)
    live.publish(make_event())
    wait_for(lambda: [d for d in live.deliveries() if d["attempts"] >= 1], what="an attempt")
    wait_for(lambda: not live.deliveries(), what="the row to be dropped")


def test_tenants_receive_only_their_own_events(live: Live, receiver: Receiver) -> None:
    live.subscribe(as_project(RED), url=receiver.url + "/red")
    live.subscribe(as_project(BLUE), url=receiver.url + "/blue")
    live.subscribe(url=receiver.url + "/admin")  # an admin's: every project
    red_only = make_event(owned={"port-r": RED, "vm-r": RED}, instances=("vm-r",))
    both = make_event("host.down", "host3", hosts=("host3",),
                      owned={"port-r2": RED, "port-b": BLUE, "router-b": BLUE},
                      routers=("router-b",))
    nobody = make_event("link.down", "host1-host2", hosts=("host1", "host2"))
    for event in (red_only, both, nobody):
        live.publish(event)
    wait_for(lambda: len(receiver.accepted()) >= 6, what="six deliveries")
    time.sleep(0.3)  # nothing more may come (not a timing assertion: a settle before counting)
    red = receiver.accepted("/red")
    assert [r.body for r in red] == [red_only.for_project(RED), both.for_project(RED)]
    assert red[1].body["data"]["affected"] == {"hosts": [], "ports": ["port-r2"],
                                               "instances": [], "routers": []}
    blue = receiver.accepted("/blue")
    assert [r.body["data"]["affected"] for r in blue] == [
        {"hosts": [], "ports": ["port-b"], "instances": [], "routers": ["router-b"]}]
    assert [r.body for r in receiver.accepted("/admin")] == [
        red_only.envelope(), both.envelope(), nobody.envelope()]


def test_subscriptions_filter_by_type_and_resource(live: Live, receiver: Receiver) -> None:
    live.subscribe(url=receiver.url + "/ports", event_types=["port.down"])
    live.subscribe(url=receiver.url + "/cleared",
                   event_types=[EVENT_PREFIX + "host.down.cleared"])
    live.subscribe(url=receiver.url + "/vm", resource_ids=["vm-1"])
    host_down = make_event(owned={"port-1": RED, "vm-1": RED}, instances=("vm-1",))
    port_down = make_event("port.down", "port-9", hosts=(), owned={"port-9": RED})
    host_up = make_event(owned={"port-1": RED}, state="cleared", fault_id=host_down.fault_id)
    for event in (host_down, port_down, host_up):
        live.publish(event)
    wait_for(lambda: len(receiver.accepted()) >= 3, what="three deliveries")
    time.sleep(0.3)  # settle before counting
    assert receiver.ids("/ports") == [port_down.id]
    assert receiver.ids("/cleared") == [host_up.id]
    assert receiver.ids("/vm") == [host_down.id]


def test_deleting_a_subscription_drops_its_undelivered_events(
        live: Live, down_receiver: Receiver) -> None:
    sub = live.subscribe(url=down_receiver.url)
    live.publish(make_event())
    wait_for(lambda: [d for d in live.deliveries() if d["attempts"] >= 1], what="an attempt")
    with live.http() as http:
        assert http.delete(f"/v2.0/fault-subscriptions/{sub['id']}").status_code == 204
    assert live.deliveries() == []


def test_two_deliverers_send_each_event_once(database: Database, tmp_path: Any,
                                             receiver: Receiver) -> None:
    """Two servers' workers on one database: rows are claimed, never sent twice."""
    first = Notifier(database, Settings(state_dir=tmp_path))
    second = Notifier(database, Settings(state_dir=tmp_path))
    for path in ("/a", "/b", "/c"):
        add_subscription(database, ALL_PROJECTS, url=receiver.url + path)
    events = [make_event(resource_id=f"host{i}") for i in range(5)]

    async def scenario() -> None:
        async with first.running(), second.running():
            for event in events:
                await asyncio.to_thread(publish, database, first, event)
                second.wake()
            await asyncio.to_thread(wait_for, lambda: len(receiver.accepted()) >= 15,
                                    what="fifteen deliveries")
            await asyncio.sleep(0.3)  # settle before counting

    asyncio.run(scenario())
    for path in ("/a", "/b", "/c"):
        assert receiver.ids(path) == [e.id for e in events]


# --- the SSE stream ------------------------------------------------------------------------------

class Sse:
    """Reads one SSE stream: comments and events."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def next_block(self) -> list[str]:
        block: list[str] = []
        for line in self.lines:
            if line == "" and block:
                return block
            if line:
                block.append(line)
        raise AssertionError("the stream ended")

    def next_event(self) -> dict[str, Any]:
        while True:
            block = self.next_block()
            fields = dict(line.split(": ", 1) for line in block if not line.startswith(":"))
            if "data" in fields:
                envelope: dict[str, Any] = orjson.loads(fields["data"])
                assert fields["id"] == envelope["id"] and fields["event"] == envelope["type"]
                return envelope


def open_stream(http: httpx.Client, params: dict[str, Any] | None = None) -> Any:
    return http.stream("GET", "/v2.0/faults/stream", params=params)


def test_the_stream_is_project_scoped(live: Live) -> None:
    blue_event = make_event(owned={"port-b": BLUE})
    red_event = make_event(owned={"port-r": RED})
    with live.http(as_project(RED), timeout=WAIT) as http, open_stream(http) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Sse(response)
        assert ": connected" in stream.next_block()  # listening from here on
        live.publish(blue_event)
        live.publish(red_event)
        # the first event the stream carries is red's: blue's (published first) was not sent
        assert stream.next_event() == red_event.for_project(RED)


def test_the_admin_stream_filters_by_type_and_keeps_alive(live: Live,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults_api, "KEEPALIVE", 0.1)
    port_down = make_event("port.down", "port-1", hosts=(), owned={"port-1": RED})
    with live.http(timeout=WAIT) as http, open_stream(http, {"type": "port.down"}) as response:
        stream = Sse(response)
        assert ": connected" in stream.next_block()
        assert stream.next_block() == [": keepalive"]
        live.publish(make_event(owned={"port-1": RED}))
        live.publish(port_down)
        assert stream.next_event() == port_down.envelope()
    wait_for(lambda: live.notifier.listener_count == 0, what="the listener to go")


# --- end to end: the inspector publishes through the notifier --------------------------------------

def test_a_host_forced_down_reaches_subscribers_and_the_stream(live: Live,
                                                               receiver: Receiver) -> None:
    """The admin forces a host down (Nova's force_down): the inspector raises the fault and
    publishes it; webhooks and the SSE stream get it, each project its own cut; lifting it
    sends the cleared event."""
    with live.http() as http:
        assert http.post("/v2.0/neutrino/chassis", json={"chassis": {
            "name": "host2", "tunnel_ip": "192.0.2.2"}}).status_code == 201
        net = http.post("/v2.0/networks", json={"network": {"name": "n", "project_id": RED}})
        red_port = http.post("/v2.0/ports", json={"port": {
            "network_id": net.json()["network"]["id"], "project_id": RED,
            "binding:host_id": "host2", "device_id": "vm-red",
            "device_owner": "compute:nova"}}).json()["port"]
    live.subscribe(url=receiver.url + "/admin", event_types=[EVENT_PREFIX + "host.down"])
    live.subscribe(as_project(RED), url=receiver.url + "/red")
    live.subscribe(as_project(BLUE), url=receiver.url + "/blue")

    with live.http(as_project(RED)) as red_http, open_stream(red_http) as response:
        stream = Sse(response)
        assert ": connected" in stream.next_block()
        with live.http() as http:
            assert http.put("/v2.0/neutrino/chassis/host2/state",
                            json={"state": {"forced_down": True}}).status_code == 200
        live_event = stream.next_event()
    assert live_event["type"] == EVENT_PREFIX + "host.down" and live_event["subject"] == "host2"
    assert live_event["data"]["affected"] == {"hosts": [], "ports": [red_port["id"]],
                                              "instances": ["vm-red"], "routers": []}
    admin = wait_for(lambda: receiver.accepted("/admin"), what="the admin's webhook")[0].body
    red = wait_for(lambda: receiver.accepted("/red"), what="red's webhook")[0].body
    assert red == live_event and admin["id"] == red["id"]
    assert admin["data"]["affected"]["hosts"] == ["host2"]
    assert admin["data"]["source"] == "admin" and admin["data"]["severity"] == "critical"

    with live.http(as_project(RED)) as http:
        shown = http.get("/v2.0/faults", params={"state": "active"}).json()["faults"]
    assert [(f["id"], f["resource_id"]) for f in shown] == [(red["data"]["fault_id"], "host2")]
    assert shown[0]["affected"] == red["data"]["affected"]

    with live.http() as http:
        assert http.put("/v2.0/neutrino/chassis/host2/state",
                        json={"state": {"forced_down": False}}).status_code == 200
    cleared = wait_for(lambda: receiver.accepted("/red")[1:], what="the cleared event")[0].body
    assert cleared["type"] == EVENT_PREFIX + "host.down.cleared"
    assert cleared["data"]["fault_id"] == red["data"]["fault_id"]
    assert [r.body["type"] for r in receiver.accepted("/admin")] == [EVENT_PREFIX + "host.down"]
    assert receiver.accepted("/blue") == []
