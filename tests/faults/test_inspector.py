"""The inspector's rules (pure) and what a host fault does through the API, on SQLite and
PostgreSQL: observations arrive as agents' heartbeats, external monitors' reports and an
admin's force_down; the fault is recorded once, the host and its ports go DOWN, its gateway
roles move, and all of it comes back when the evidence clears."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.helpers import body, network, port, subnet
from api.routing import external_network, router
from neutrino.db.engine import Database
from neutrino.db.schema import chassis as chassis_table
from neutrino.db.schema import faults as faults_table
from neutrino.faults.inspector import (
    BFD_CONFIRM,
    HostEvidence,
    Inspector,
    down_reasons,
    next_confirmation,
)

# --- the rules ----------------------------------------------------------------------------------


def evidence(**hosts: dict[str, Any]) -> dict[str, HostEvidence]:
    return {name: HostEvidence(last_heartbeat=100.0, heartbeat_interval=1.0, **fields)
            for name, fields in hosts.items()}


def test_one_peer_losing_bfd_is_not_enough_two_are() -> None:
    one = evidence(h1={}, h2={"bfd": {"h1": "down"}, "bfd_down_since": {"h1": 100.0}}, h3={})
    assert down_reasons("h1", one, now=100.5) == {}
    two = evidence(h1={}, h2={"bfd": {"h1": "down"}, "bfd_down_since": {"h1": 100.0}},
                   h3={"bfd": {"h1": "down"}, "bfd_down_since": {"h1": 100.05}})
    reasons = down_reasons("h1", two, now=100.5)
    assert list(reasons) == ["bfd"]
    assert reasons["bfd"] == pytest.approx(100.0 - 3 * 0.03)  # the first report - detection time


def test_a_bfd_session_counts_once_it_stayed_down_for_the_confirmation_time() -> None:
    """A vswitchd starved of CPU for a few BFD intervals drops its sessions for a moment: that
    blip is no host fault; the inspector looks again exactly when the evidence would count."""
    hosts = evidence(h1={}, h2={"bfd": {"h1": "down"}, "bfd_down_since": {"h1": 100.0}},
                     h3={"bfd": {"h1": "down"}, "bfd_down_since": {"h1": 100.05}})
    assert hosts["h2"].bfd_confirm == BFD_CONFIRM == 0.15  # 5 x 30 ms is less
    assert down_reasons("h1", hosts, now=100.19) == {}  # h3's report is 140 ms old
    assert next_confirmation(hosts, now=100.19) == pytest.approx(100.2)
    assert "bfd" in down_reasons("h1", hosts, now=100.2)
    assert next_confirmation(hosts, now=100.2) is None
    slow = evidence(h1={}, h2={"bfd_interval": 0.1, "bfd": {"h1": "down"},
                               "bfd_down_since": {"h1": 100.0}})
    assert slow["h2"].bfd_confirm == pytest.approx(0.5)  # 5 intervals of a slower BFD


def test_observers_that_are_down_themselves_do_not_count() -> None:
    hosts = evidence(h1={}, h2={"bfd": {"h1": "down"}, "bfd_down_since": {"h1": 100.0}},
                     h3={"bfd": {"h1": "down"}, "bfd_down_since": {"h1": 100.0},
                         "switch_down_since": 99.0})
    assert down_reasons("h1", hosts, now=100.5) == {}


def test_a_host_already_down_is_no_observer() -> None:
    """An isolated host sees every peer down: it accuses nobody."""
    hosts = evidence(h1={"bfd": {"h3": "down"}, "bfd_down_since": {"h3": 100.0}},
                     h2={"bfd": {"h3": "down"}, "bfd_down_since": {"h3": 100.0}}, h3={})
    assert "bfd" in down_reasons("h3", hosts, now=100.5)
    assert down_reasons("h3", hosts, now=100.5, down={"h1"}) == {}


def test_missed_heartbeats_only_for_agents_that_announce_their_interval() -> None:
    hosts = evidence(h1={})
    assert down_reasons("h1", hosts, now=102.9) == {}
    assert down_reasons("h1", hosts, now=103.1) == {"heartbeat": 101.0}
    silent = {"h1": HostEvidence(last_heartbeat=100.0)}
    assert down_reasons("h1", silent, now=1000.0) == {}


def test_its_own_switch_an_external_report_or_an_admin_each_suffice() -> None:
    assert "vswitchd" in down_reasons("h1", evidence(h1={"switch_down_since": 99.5}), now=100.0)
    assert "report" in down_reasons("h1", evidence(h1={"reported_down_since": 99.0}), now=100.0)
    assert "admin" in down_reasons("h1", evidence(h1={"forced_down_since": 99.0}), now=100.0)


# --- through the API ----------------------------------------------------------------------------

HOSTS = {"host1": "192.0.2.1", "host2": "192.0.2.2", "host3": "192.0.2.3"}


def register(client: TestClient, name: str, **extra: Any) -> None:
    body(client.post("/v2.0/neutrino/chassis", json={"chassis": {
        "name": name, "tunnel_ip": HOSTS[name], "bridge_mappings": {"public": "br-ex"},
        **extra}}), 201)


def beat(client: TestClient, name: str, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = body(client.put(f"/v2.0/neutrino/chassis/{name}/heartbeat",
                                             json=fields))["chassis"]
    return result


def inspector(client: TestClient) -> Inspector:
    found: Inspector = client.app.state.distribution.inspector  # type: ignore[attr-defined]
    return found


def active_port(client: TestClient, network_id: str, host: str) -> dict[str, Any]:
    made = port(client, network_id, **{"binding:host_id": host, "device_owner": "compute:nova",
                                       "device_id": f"vm-on-{host}"})
    body(client.put(f"/v2.0/neutrino/ports/{made['id']}/status",
                    json={"status": "ACTIVE", "chassis": host}))
    return made


def status(client: TestClient, port_id: str) -> str:
    result: str = body(client.get(f"/v2.0/ports/{port_id}"))["port"]["status"]
    return result


def faults(db: Database) -> list[Any]:
    with db.read() as conn:
        return conn.execute(select(faults_table).order_by(faults_table.c.detected_at)).all()


def host_state(db: Database, name: str) -> str:
    with db.read() as conn:
        state: str = conn.execute(select(chassis_table.c.state)
                                  .where(chassis_table.c.name == name)).scalar_one()
        return state


@pytest.fixture
def world(client: TestClient) -> dict[str, Any]:
    register(client, "host1", is_gateway=True, gateway_priority=2)
    register(client, "host2", is_gateway=True, gateway_priority=1)
    register(client, "host3")
    net = network(client)
    subnet(client, net["id"])
    ext = external_network(client)[0]
    gateway_router = router(client, external_gateway_info={"network_id": ext["id"]})
    return {"net": net, "on1": active_port(client, net["id"], "host1"),
            "on3": active_port(client, net["id"], "host3"), "router": gateway_router}


def l3_hosts(client: TestClient, router_id: str) -> list[str]:
    return [a["host"] for a in body(client.get(f"/v2.0/routers/{router_id}/l3-agents"))["agents"]]


def test_two_peers_losing_bfd_take_a_host_down_and_back(
        client: TestClient, db: Database, world: dict[str, Any]) -> None:
    assert l3_hosts(client, world["router"]["id"]) == ["host1", "host2"]
    # sessions that never came up, or a host draining on purpose, are no evidence
    beat(client, "host2", bfd={"host1": "down", "host3": "down"})
    beat(client, "host3", bfd={"host1": "drained", "host2": "down"})
    assert faults(db) == []
    for name, peers in (("host1", ("host2", "host3")), ("host2", ("host1", "host3")),
                        ("host3", ("host1", "host2"))):
        beat(client, name, bfd=dict.fromkeys(peers, "up"))
    beat(client, "host2", bfd={"host1": "down", "host3": "up"})
    assert faults(db) == [] and status(client, world["on1"]["id"]) == "ACTIVE"  # one observer
    beat(client, "host3", bfd={"host1": "down", "host2": "up"})
    assert faults(db) == []  # not before the sessions stayed down for the confirmation time
    deadline = time.monotonic() + 5  # the app's inspector looks again once they have
    while not faults(db) and time.monotonic() < deadline:
        time.sleep(0.01)
    (fault,) = faults(db)
    assert (fault.type, fault.state, fault.resource_id, fault.source) == (
        "host.down", "active", "host1", "bfd")
    assert fault.affected["ports"] == [world["on1"]["id"]]
    assert fault.affected["instances"] == ["vm-on-host1"]
    assert fault.affected["routers"] == [world["router"]["id"]]  # its gateway role
    assert fault.fault_time <= fault.detected_at
    assert host_state(db, "host1") == "down"
    assert status(client, world["on1"]["id"]) == "DOWN"
    assert status(client, world["on3"]["id"]) == "ACTIVE"  # another host's port
    assert l3_hosts(client, world["router"]["id"]) == ["host2"]  # the role moved
    # more evidence of the same failure is the same fault
    beat(client, "host3", bfd={"host1": "down", "host2": "up"})
    assert len(faults(db)) == 1
    # back: cleared, ports ACTIVE, the host recovering (last in the schedule) until its agent
    # has realised the policy of its recovery, then in its place again
    beat(client, "host2", bfd={"host1": "up", "host3": "up"})
    (fault,) = faults(db)
    assert fault.state == "cleared" and fault.cleared_at >= fault.detected_at
    assert status(client, world["on1"]["id"]) == "ACTIVE"
    assert host_state(db, "host1") == "recovering"
    assert l3_hosts(client, world["router"]["id"]) == ["host2", "host1"]
    wanted = inspector(client).recovering["host1"]
    beat(client, "host1", realised_revision=wanted)  # not ready for its gateway role yet
    assert host_state(db, "host1") == "recovering"
    beat(client, "host1", realised_revision=wanted, gateways={world["router"]["id"]: "standby"})
    assert host_state(db, "host1") == "up"
    assert l3_hosts(client, world["router"]["id"]) == ["host1", "host2"]


def test_its_own_agent_reporting_the_switch_gone_is_enough(
        client: TestClient, db: Database, world: dict[str, Any]) -> None:
    beat(client, "host3", switch="down")
    (fault,) = faults(db)
    assert (fault.resource_id, fault.source) == ("host3", "vswitchd")
    assert status(client, world["on3"]["id"]) == "DOWN"
    beat(client, "host3", switch="up")
    assert faults(db)[0].state == "cleared"
    assert status(client, world["on3"]["id"]) == "ACTIVE"


def test_missed_heartbeats_take_a_host_down(client: TestClient, db: Database,
                                            world: dict[str, Any]) -> None:
    beat(client, "host3", heartbeat_interval=0.5)
    checker = inspector(client)
    last = checker.hosts["host3"].last_heartbeat
    checker.tick(now=last + 1.0)
    assert faults(db) == []
    checker.tick(now=last + 1.6)
    (fault,) = faults(db)
    assert (fault.resource_id, fault.source) == ("host3", "heartbeat")
    assert fault.fault_time == pytest.approx(last + 0.5)
    beat(client, "host3", heartbeat_interval=0.5)
    assert faults(db)[0].state == "cleared"


def test_an_external_report_and_an_admin_force_down(client: TestClient, db: Database,
                                                   world: dict[str, Any]) -> None:
    accepted = client.post("/v2.0/neutrino/fault-reports",
                           json={"report": {"host": "host3", "state": "down", "time": 1.0e9}})
    assert accepted.status_code == 202, accepted.text
    (fault,) = faults(db)
    assert (fault.resource_id, fault.source, fault.fault_time) == ("host3", "report", 1.0e9)
    client.post("/v2.0/neutrino/fault-reports", json={"report": {"host": "host3", "state": "up"}})
    assert faults(db)[0].state == "cleared"

    forced = body(client.put("/v2.0/neutrino/chassis/host2/state",
                             json={"state": {"forced_down": True}}))["chassis"]
    assert forced["forced_down"] is True and forced["state"] == "down"
    assert faults(db)[-1].source == "admin" and faults(db)[-1].state == "active"
    lifted = body(client.put("/v2.0/neutrino/chassis/host2/state",
                             json={"state": {"forced_down": False}}))["chassis"]
    assert lifted["state"] == "recovering" and faults(db)[-1].state == "cleared"


@pytest.mark.parametrize(("path", "payload", "status_code"), [
    ("/v2.0/neutrino/fault-reports", {"report": {"host": "nowhere", "state": "down"}}, 404),
    ("/v2.0/neutrino/fault-reports", {"report": {"host": "host1", "state": "sideways"}}, 400),
    ("/v2.0/neutrino/fault-reports", {"report": {"host": "host1"}}, 400),
    ("/v2.0/neutrino/chassis/nowhere/state", {"state": {"forced_down": True}}, 404),
    ("/v2.0/neutrino/chassis/host1/state", {"state": {"forced_down": "maybe"}}, 400),
])
def test_bad_reports_and_states_change_nothing(client: TestClient, db: Database,
                                               world: dict[str, Any], path: str,
                                               payload: dict[str, Any], status_code: int) -> None:
    send = client.post if path.endswith("fault-reports") else client.put
    response = send(path, json=payload)
    assert response.status_code == status_code, response.text
    assert "NeutronError" in response.json()
    assert faults(db) == [] and host_state(db, "host1") == "up"


def test_a_vif_whose_link_goes_down_is_a_port_fault_until_it_is_active_again(
        client: TestClient, db: Database, world: dict[str, Any]) -> None:
    port_id = world["on3"]["id"]
    down = client.put(f"/v2.0/neutrino/ports/{port_id}/status",
                      json={"status": "DOWN", "chassis": "host3", "reason": "link_down"})
    assert down.status_code == 200, down.text
    (fault,) = faults(db)
    assert (fault.type, fault.resource_id, fault.source, fault.state) == (
        "port.down", port_id, "link", "active")
    assert fault.affected["instances"] == ["vm-on-host3"]
    assert host_state(db, "host3") == "up"  # one port, not its host
    body(client.put(f"/v2.0/neutrino/ports/{port_id}/status",
                    json={"status": "ACTIVE", "chassis": "host3"}))
    assert faults(db)[0].state == "cleared"
    # unplugged (no reason) is no fault; an unknown reason is refused
    body(client.put(f"/v2.0/neutrino/ports/{port_id}/status",
                    json={"status": "DOWN", "chassis": "host3"}))
    assert len(faults(db)) == 1
    refused = client.put(f"/v2.0/neutrino/ports/{port_id}/status",
                         json={"status": "DOWN", "chassis": "host3", "reason": "gremlins"})
    assert refused.status_code == 400
