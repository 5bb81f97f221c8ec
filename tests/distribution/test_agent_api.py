"""The agent-facing API over a real server: chassis registration, the policy stream (snapshot,
live changes, resume, resync after compaction), port status with Nova events, agents, revision."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from distribution.conftest import ADMIN, LiveServer, NovaReceiver
from neutrino.db.schema import chassis as chassis_table
from neutrino.distribution.store import EmbeddedPolicyStore


def client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=ADMIN, timeout=10)


def register(http: httpx.Client, name: str, ip: str, **extra: Any) -> httpx.Response:
    return http.post("/v2.0/neutrino/chassis", json={"chassis": {
        "name": name, "tunnel_ip": ip, "bridge_mappings": {"physnet1": "br-ex"}, **extra}})


def make_network(http: httpx.Client) -> tuple[str, str]:
    net = http.post("/v2.0/networks", json={"network": {"name": "n1"}}).json()["network"]
    subnet = http.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "cidr": "10.1.0.0/24", "ip_version": 4}}).json()["subnet"]
    return net["id"], subnet["id"]


def make_port(http: httpx.Client, network_id: str, host: str, device: str = "vm-1") -> dict[str, Any]:
    response = http.post("/v2.0/ports", json={"port": {
        "network_id": network_id, "binding:host_id": host, "device_owner": "compute:nova",
        "device_id": device}})
    assert response.status_code == 201, response.text
    port: dict[str, Any] = response.json()["port"]
    return port


class Stream:
    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines
        self.seen: list[dict[str, Any]] = []

    def until(self, done: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for line in self.lines:
            message: dict[str, Any] = json.loads(line)
            self.seen.append(message)
            if done(message):
                return message
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"not seen in time; got {self.seen[-5:]}")


@contextmanager
def policy_stream(http: httpx.Client, name: str, since: int | None = None) -> Iterator[Stream]:
    params = {"since": str(since)} if since is not None else {}
    with http.stream("GET", f"/v2.0/neutrino/chassis/{name}/policy", params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        yield Stream(response.iter_lines())


def port_key(host: str, port_id: str) -> str:
    return f"/chassis/{host}/port/{port_id}"


def test_register_stream_resume_and_resync(server: LiveServer) -> None:
    with client(server) as http:
        first = register(http, "h1", "192.0.2.1")
        assert first.status_code == 201
        assert first.json()["chassis"]["tunnel_ip"] == "192.0.2.1"
        assert register(http, "h1", "192.0.2.1").status_code == 200  # refresh
        assert register(http, "h2", "192.0.2.2").status_code == 201
        assert register(http, "bad", "not-an-ip").status_code == 400
        net_id, _ = make_network(http)
        p1 = make_port(http, net_id, "h1")

        with policy_stream(http, "h1") as stream:
            snap = stream.until(lambda m: m["type"] == "snapshot" or port_key("h1", p1["id"]) in
                                m.get("key", ""))
            if snap["type"] == "snapshot" and port_key("h1", p1["id"]) not in snap["items"]:
                stream.until(lambda m: m.get("key") == port_key("h1", p1["id"]))
            p2 = make_port(http, net_id, "h2", "vm-2")  # h1 learns of the remote port
            network = stream.until(lambda m: m.get("key") == f"/chassis/h1/network/{net_id}"
                                   and p2["id"] in json.dumps(m["document"]))
            assert network["type"] == "change"
            stream.until(lambda m: m.get("key") == "/chassis/h1/tunnel/h2")
            keepalive = stream.until(lambda m: m["type"] == "keepalive")
            last = keepalive["revision"]

        http.delete(f"/v2.0/ports/{p2['id']}")
        with policy_stream(http, "h1", since=last) as stream:  # resume: only what changed
            deleted = stream.until(lambda m: m.get("key") == "/chassis/h1/tunnel/h2")
            assert deleted["type"] == "change" and deleted["document"] is None
            assert all(m["type"] != "snapshot" for m in stream.seen)
            last = stream.until(lambda m: m["type"] == "keepalive")["revision"]

        revision = http.get("/v2.0/neutrino/revision").json()
        assert revision["revision"] == last == revision["outbox_revision"]
        assert set(revision["chassis"]) == {"h1", "h2"}

        store: EmbeddedPolicyStore = server.app.state.distribution.store
        store.compact(last + 1)
        with policy_stream(http, "h1", since=1) as stream:  # compacted away: full resync
            snap = stream.until(lambda m: True)
            assert snap["type"] == "snapshot" and snap["revision"] == last
            assert port_key("h1", p1["id"]) in snap["items"]
            assert "/chassis/h1/tunnel/h2" not in snap["items"]

        assert http.get("/v2.0/neutrino/chassis/nope/policy").status_code == 404


def test_port_status_reaches_the_api_and_nova(server: LiveServer, nova: NovaReceiver) -> None:
    with client(server) as http:
        register(http, "h1", "192.0.2.1")
        net_id, _ = make_network(http)
        port = make_port(http, net_id, "h1", "vm-42")
        assert port["status"] == "DOWN"
        url = f"/v2.0/neutrino/ports/{port['id']}/status"
        assert http.put(url, json={"status": "ACTIVE", "chassis": "h2"}).status_code == 409
        assert http.put(url, json={"status": "UP"}).status_code == 400
        answer = http.put(url, json={"status": "ACTIVE", "chassis": "h1"})
        assert answer.status_code == 200 and answer.json()["port"]["status"] == "ACTIVE"
        shown = http.get(f"/v2.0/ports/{port['id']}").json()["port"]
        assert shown["status"] == "ACTIVE"
        assert shown["revision_number"] == port["revision_number"] + 1
        http.put(url, json={"status": "ACTIVE", "chassis": "h1"})  # no change: no event
        http.put(url, json={"status": "DOWN", "chassis": "h1"})
        events = nova.wait_for(2)
        assert [e["path"] for e in events] == ["/v2.1/os-server-external-events"] * 2
        assert [e["body"] for e in events] == [
            {"events": [{"name": name, "server_uuid": "vm-42", "tag": port["id"],
                         "status": "completed"}]}
            for name in ("network-vif-plugged", "network-vif-unplugged")]
        assert http.put("/v2.0/neutrino/ports/nope/status",
                        json={"status": "ACTIVE"}).status_code == 404
        member = {"X-Project-Id": "p", "X-Roles": "member,reader"}
        assert http.put(url, json={"status": "ACTIVE"}, headers=member).status_code == 403


def test_agents_alive_by_heartbeat_age(server: LiveServer) -> None:
    with client(server) as http:
        register(http, "h1", "192.0.2.1", availability_zone="az1")
        register(http, "h2", "192.0.2.2")
        agents = http.get("/v2.0/agents").json()["agents"]
        assert [(a["host"], a["alive"], a["agent_type"], a["binary"]) for a in agents] == [
            ("h1", True, "Open vSwitch agent", "neutrino-agent"),
            ("h2", True, "Open vSwitch agent", "neutrino-agent")]
        assert agents[0]["configurations"]["tunneling_ip"] == "192.0.2.1"
        assert agents[0]["availability_zone"] == "az1"

        db = server.app.state.networking.db
        with db.write() as conn:  # h2's last heartbeat was a minute ago
            conn.execute(update(chassis_table).where(chassis_table.c.name == "h2")
                         .values(heartbeat_at="2000-01-01T00:00:00Z"))
        alive = http.get("/v2.0/agents", params={"alive": "true"}).json()["agents"]
        assert [a["host"] for a in alive] == ["h1"]
        dead = http.get("/v2.0/agents", params={"alive": "false", "fields": "host"}).json()
        assert dead == {"agents": [{"host": "h2"}]}
        beat = http.put("/v2.0/neutrino/chassis/h2/heartbeat", json={"realised_revision": 3})
        assert beat.status_code == 200
        assert http.get("/v2.0/agents", params={"host": "h2"}).json()["agents"][0]["alive"] is True
        assert http.get("/v2.0/neutrino/revision").json()["chassis"]["h2"] == 3
        assert http.put("/v2.0/neutrino/chassis/zz/heartbeat").status_code == 404
        assert http.get("/v2.0/agents", params={"bogus": "1"}).status_code == 400

        h1 = agents[0]
        assert http.get(f"/v2.0/agents/{h1['id']}").json()["agent"]["host"] == "h1"
        assert http.get("/v2.0/agents/nope").status_code == 404
        assert http.delete(f"/v2.0/agents/{h1['id']}").status_code == 204
        assert [a["host"] for a in http.get("/v2.0/agents").json()["agents"]] == ["h2"]


@pytest.mark.parametrize("path", ["/v2.0/agents", "/v2.0/neutrino/revision"])
def test_agent_routes_are_admin_only(server: LiveServer, path: str) -> None:
    with client(server) as http:
        assert http.get(path, headers={"X-Roles": "member,reader"}).status_code == 403
