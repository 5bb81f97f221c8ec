"""Gateway scheduling as Neutron's l3_agent_scheduler shows it, on SQLite and PostgreSQL:
`GET /v2.0/routers/{id}/l3-agents` (the router's gateway agents in schedule order, with the HA
state each reports in its heartbeats), `GET /v2.0/agents/{id}/l3-routers`, and the heartbeat's
`gateways` field, whose bad values change nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.helpers import UNKNOWN_ID, body, neutron_error, snapshot
from api.routing import MEMBER, READER, external_network, router, set_gateway
from neutrino.compiler.scheduling import GATEWAYS_PER_ROUTER, gateway_chassis
from neutrino.db.engine import Database
from neutrino.db.schema import chassis as chassis_table

# name -> (tunnel IP, gateway priority); "compute" is no gateway
GATEWAYS = {"gw-low": ("192.0.2.11", 1), "gw-high": ("192.0.2.12", 10), "gw-mid": ("192.0.2.13", 5)}


def register(client: TestClient, name: str, ip: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/v2.0/neutrino/chassis", json={"chassis": {
        "name": name, "tunnel_ip": ip, "bridge_mappings": {"public": "br-ex"}, **extra}})
    result: dict[str, Any] = body(response, 201)["chassis"]
    return result


def register_gateways(client: TestClient, gateways: dict[str, tuple[str, int]] = GATEWAYS) -> None:
    register(client, "compute", "192.0.2.1")
    for name, (ip, priority) in gateways.items():
        register(client, name, ip, is_gateway=True, gateway_priority=priority)


def heartbeat(client: TestClient, name: str, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = body(client.put(f"/v2.0/neutrino/chassis/{name}/heartbeat",
                                             json=fields))["chassis"]
    return result


def l3_agents(client: TestClient, router_id: str) -> list[dict[str, Any]]:
    agents: list[dict[str, Any]] = body(client.get(f"/v2.0/routers/{router_id}/l3-agents"))["agents"]
    return agents


def states(client: TestClient, router_id: str) -> list[tuple[str, str]]:
    return [(a["host"], a["ha_state"]) for a in l3_agents(client, router_id)]


@pytest.fixture
def ext(client: TestClient) -> dict[str, Any]:
    return external_network(client)[0]


@pytest.fixture
def gw_router(client: TestClient, ext: dict[str, Any]) -> dict[str, Any]:
    """A member's router with its gateway on the external network."""
    return router(client, headers=MEMBER, external_gateway_info={"network_id": ext["id"]})


def test_gateway_agents_in_schedule_order_as_get_agents_shows_them(
        client: TestClient, gw_router: dict[str, Any]) -> None:
    register_gateways(client)
    agents = l3_agents(client, gw_router["id"])
    assert [a["host"] for a in agents] == ["gw-high", "gw-mid", "gw-low"]  # priority first
    listed = {a["host"]: a for a in body(client.get("/v2.0/agents"))["agents"]}
    for agent in agents:
        assert {k: v for k, v in agent.items() if k != "ha_state"} == listed[agent["host"]]
        assert agent["configurations"]["is_gateway"] is True
        assert agent["alive"] is True and agent["ha_state"] == "standby"  # nothing reported yet


def test_at_most_the_schedules_count_and_equal_priorities_as_the_compiler_orders_them(
        client: TestClient, gw_router: dict[str, Any]) -> None:
    equal = {f"gw-{i}": (f"192.0.2.{20 + i}", 7) for i in range(GATEWAYS_PER_ROUTER + 2)}
    register_gateways(client, equal)
    hosts = [a["host"] for a in l3_agents(client, gw_router["id"])]
    assert len(hosts) == GATEWAYS_PER_ROUTER
    assert tuple(hosts) == gateway_chassis(gw_router["id"], [(n, p) for n, (_ip, p) in equal.items()])


def test_gateways_that_are_administratively_down_are_not_scheduled(
        client: TestClient, db: Database, gw_router: dict[str, Any]) -> None:
    register_gateways(client)
    with db.write() as conn:
        conn.execute(update(chassis_table).where(chassis_table.c.name == "gw-high")
                     .values(admin_state_up=False))
    assert [a["host"] for a in l3_agents(client, gw_router["id"])] == ["gw-mid", "gw-low"]


def test_ha_state_is_what_each_alive_agent_reports(
        client: TestClient, ext: dict[str, Any], gw_router: dict[str, Any]) -> None:
    register_gateways(client)
    rid = gw_router["id"]
    other = router(client, name="r2", external_gateway_info={"network_id": ext["id"]})
    heartbeat(client, "gw-high", gateways={rid: "standby", other["id"]: "active"})
    beat = heartbeat(client, "gw-mid", gateways={rid: "active"}, bfd={"gw-high": "down"})
    assert beat["configurations"]["gateways"] == {rid: "active"}
    assert beat["configurations"]["bfd"] == {"gw-high": "down"}
    assert states(client, rid) == [("gw-high", "standby"), ("gw-mid", "active"), ("gw-low", "standby")]
    assert dict(states(client, other["id"]))["gw-high"] == "active"
    # GET /v2.0/agents shows what was reported
    [mid] = body(client.get("/v2.0/agents", params={"host": "gw-mid"}))["agents"]
    assert mid["configurations"]["gateways"] == {rid: "active"}

    # a heartbeat without gateways keeps them; one with them replaces them whole
    heartbeat(client, "gw-mid", realised_revision=4)
    heartbeat(client, "gw-mid", bfd={"gw-high": "up"})
    assert dict(states(client, rid))["gw-mid"] == "active"
    heartbeat(client, "gw-high", gateways={rid: "active"})
    beat = heartbeat(client, "gw-mid", gateways={})
    assert beat["configurations"]["gateways"] == {} and beat["configurations"]["bfd"] == {"gw-high": "up"}
    assert states(client, rid) == [("gw-high", "active"), ("gw-mid", "standby"), ("gw-low", "standby")]
    assert dict(states(client, other["id"]))["gw-high"] == "standby"  # no longer reported


def test_ha_state_is_unknown_while_the_agent_is_not_alive(
        client: TestClient, db: Database, gw_router: dict[str, Any]) -> None:
    register_gateways(client)
    rid = gw_router["id"]
    heartbeat(client, "gw-high", gateways={rid: "active"})
    with db.write() as conn:  # gw-high's last heartbeat was long ago
        conn.execute(update(chassis_table).where(chassis_table.c.name == "gw-high")
                     .values(heartbeat_at="2000-01-01T00:00:00Z"))
    agents = l3_agents(client, rid)
    assert [(a["host"], a["alive"], a["ha_state"]) for a in agents] == [
        ("gw-high", False, "unknown"), ("gw-mid", True, "standby"), ("gw-low", True, "standby")]
    heartbeat(client, "gw-high")  # alive again, what it reported is still known
    assert states(client, rid)[0] == ("gw-high", "active")


def test_routers_without_a_gateway_have_no_agents(
        client: TestClient, ext: dict[str, Any], gw_router: dict[str, Any]) -> None:
    plain = router(client, name="plain")
    assert l3_agents(client, plain["id"]) == []
    assert l3_agents(client, gw_router["id"]) == []  # no gateway chassis registered
    register_gateways(client)
    assert l3_agents(client, plain["id"]) == []
    assert len(l3_agents(client, gw_router["id"])) == 3
    set_gateway(client, gw_router["id"], None)
    assert l3_agents(client, gw_router["id"]) == []


def test_unknown_router_is_router_not_found(client: TestClient) -> None:
    error = neutron_error(client.get(f"/v2.0/routers/{UNKNOWN_ID}/l3-agents"), 404, "RouterNotFound")
    assert UNKNOWN_ID in error["message"]
    neutron_error(client.get("/v2.0/routers/bad%00id/l3-agents"), 404, "RouterNotFound")


@pytest.mark.parametrize("who", [MEMBER, READER], ids=["member", "reader"])
def test_l3_agents_are_admin_only(client: TestClient, gw_router: dict[str, Any],
                                  who: dict[str, str]) -> None:
    register_gateways(client)
    neutron_error(client.get(f"/v2.0/routers/{gw_router['id']}/l3-agents", headers=who), 403)
    neutron_error(client.get(f"/v2.0/routers/{UNKNOWN_ID}/l3-agents", headers=who), 403)
    [agent] = body(client.get("/v2.0/agents", params={"host": "gw-high"}))["agents"]
    neutron_error(client.get(f"/v2.0/agents/{agent['id']}/l3-routers", headers=who), 403)


@pytest.mark.parametrize("bad", [
    {"gateways": {"r1": "master"}},
    {"gateways": {"r1": "ACTIVE"}},
    {"gateways": {"r1": 1}},
    {"gateways": {"r1": None}},
    {"gateways": ["r1"]},
    {"gateways": "active"},
    {"gateways": {"r1": "active"}, "bfd": {"gw-mid": "sideways"}},
    {"gateways": {"r1": "active"}, "realised_revision": -1},
    {"gateways": {"r1": "active"}, "ha_state": "active"},
], ids=lambda bad: repr(bad)[:60])
def test_a_bad_heartbeat_is_refused_and_writes_nothing(
        client: TestClient, db: Database, gw_router: dict[str, Any], bad: dict[str, Any]) -> None:
    register_gateways(client)
    rid = gw_router["id"]
    heartbeat(client, "gw-high", gateways={rid: "active"})
    before = snapshot(db)
    neutron_error(client.put("/v2.0/neutrino/chassis/gw-high/heartbeat", json=bad), 400)
    neutron_error(client.put("/v2.0/neutrino/chassis/gw-high/heartbeat",
                             json={"heartbeat": bad}), 400)
    assert snapshot(db) == before
    assert states(client, rid)[0] == ("gw-high", "active")


def test_heartbeat_of_an_unknown_chassis_with_gateways_is_not_found(client: TestClient) -> None:
    neutron_error(client.put("/v2.0/neutrino/chassis/nope/heartbeat",
                             json={"gateways": {"r1": "active"}}), 404, "ChassisNotFound")


def test_the_routers_of_an_agent(client: TestClient, ext: dict[str, Any],
                                 gw_router: dict[str, Any]) -> None:
    register_gateways(client, {**GATEWAYS, "gw-top": ("192.0.2.14", 20)})
    second = router(client, name="r2", external_gateway_info={"network_id": ext["id"]})
    router(client, name="no-gateway")
    agents = {a["host"]: a["id"] for a in body(client.get("/v2.0/agents"))["agents"]}

    def routers_of(host: str) -> list[str]:
        listed = body(client.get(f"/v2.0/agents/{agents[host]}/l3-routers"))["routers"]
        return [r["id"] for r in listed]

    both = sorted([gw_router["id"], second["id"]])
    assert routers_of("gw-top") == routers_of("gw-high") == routers_of("gw-mid") == both
    assert routers_of("gw-low") == []  # the fourth gateway: not among any router's three
    assert routers_of("compute") == []
    shown = body(client.get(f"/v2.0/agents/{agents['gw-top']}/l3-routers"))["routers"]
    assert shown[both.index(second["id"])] == body(client.get(f"/v2.0/routers/{second['id']}"))["router"]
    neutron_error(client.get(f"/v2.0/agents/{UNKNOWN_ID}/l3-routers"), 404, "AgentNotFound")
    neutron_error(client.get("/v2.0/agents/bad%00id/l3-routers"), 404, "AgentNotFound")


def test_the_extension_is_advertised(client: TestClient) -> None:
    extension = body(client.get("/v2.0/extensions/l3_agent_scheduler"))["extension"]
    assert extension["alias"] == "l3_agent_scheduler"
    assert extension["name"] == "L3 Agent Scheduler"
    assert set(extension) == {"name", "alias", "description", "updated", "links"}
    aliases = [e["alias"] for e in body(client.get("/v2.0/extensions"))["extensions"]]
    assert "l3_agent_scheduler" in aliases
