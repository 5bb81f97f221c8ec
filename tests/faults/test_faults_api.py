"""The fault management API: faults (project-scoped views), subscriptions (CRUD, validation,
policy), the stream's input checks, and the `neutrino faults` CLI against a live server.

Every refused request answers Neutron's error envelope and leaves the database unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert
from typer.testing import CliRunner

from api.helpers import ADMIN, UNKNOWN_ID, body, network, neutron_error, port, snapshot
from faults.conftest import Live, fault_row, make_event
from neutrino.api import faults as faults_api
from neutrino.cli.main import app as cli_app
from neutrino.context import RequestContext
from neutrino.db.engine import Database
from neutrino.db.schema import fault_deliveries, faults
from neutrino.faults.events import EVENT_PREFIX, FaultEvent, rfc3339

RED, BLUE = "red-project", "blue-project"
R = {"X-Project-Id": RED, "X-Roles": "member,reader"}
B = {"X-Project-Id": BLUE, "X-Roles": "member,reader"}
R_READER = {"X-Project-Id": RED, "X-Roles": "reader"}
SUBS = "/v2.0/fault-subscriptions"


def subscribe(client: TestClient, headers: dict[str, str] | None = None,
              **attrs: Any) -> dict[str, Any]:
    attrs.setdefault("url", "http://127.0.0.1:9/hook")
    result: dict[str, Any] = body(client.post(SUBS, json={"subscription": attrs},
                                              headers=headers), 201)["subscription"]
    return result


# --- subscriptions ---------------------------------------------------------------------------------

def test_create_show_list_delete(client: TestClient) -> None:
    mine = subscribe(client, R, url="https://consumer.example:8443/doctor?x=1",
                     event_types=["host.down", EVENT_PREFIX + "port.down.cleared", "host.down"],
                     resource_ids=["vm-1", "vm-1", "port-1"], description="VNFM")
    assert mine["project_id"] == mine["tenant_id"] == RED and mine["all_projects"] is False
    assert mine["url"] == "https://consumer.example:8443/doctor?x=1"
    assert mine["event_types"] == ["host.down", EVENT_PREFIX + "port.down.cleared"]
    assert mine["resource_ids"] == ["vm-1", "port-1"]
    assert mine["description"] == "VNFM" and mine["created_at"].endswith("Z")
    admins = subscribe(client)
    assert admins["project_id"] == "" and admins["all_projects"] is True
    assert admins["event_types"] == [] and admins["resource_ids"] == []
    theirs = subscribe(client, B)

    assert body(client.get(f"{SUBS}/{mine['id']}", headers=R))["subscription"] == mine
    assert [s["id"] for s in body(client.get(SUBS, headers=R))["subscriptions"]] == [mine["id"]]
    assert [s["id"] for s in body(client.get(SUBS, headers=R_READER))["subscriptions"]] == \
        [mine["id"]]
    assert {s["id"] for s in body(client.get(SUBS))["subscriptions"]} == \
        {mine["id"], admins["id"], theirs["id"]}
    assert body(client.get(f"{SUBS}/{theirs['id']}"))["subscription"] == theirs  # admin

    assert client.delete(f"{SUBS}/{mine['id']}", headers=R).status_code == 204
    neutron_error(client.get(f"{SUBS}/{mine['id']}", headers=R), 404, "FaultSubscriptionNotFound")
    assert client.delete(f"{SUBS}/{theirs['id']}").status_code == 204  # an admin may
    assert [s["id"] for s in body(client.get(SUBS))["subscriptions"]] == [admins["id"]]


def test_an_admin_may_subscribe_for_one_project(client: TestClient) -> None:
    sub = subscribe(client, project_id=BLUE)
    assert sub["project_id"] == BLUE and sub["all_projects"] is False
    assert [s["id"] for s in body(client.get(SUBS, headers=B))["subscriptions"]] == [sub["id"]]
    assert subscribe(client, R, tenant_id=RED)["project_id"] == RED  # one's own: fine


BAD_SUBSCRIPTIONS: list[tuple[str, Any]] = [
    ("no wrapper", {"url": "http://127.0.0.1/"}),
    ("two keys", {"subscription": {"url": "http://127.0.0.1/"}, "other": 1}),
    ("not an object", {"subscription": ["http://127.0.0.1/"]}),
    ("no url", {"subscription": {}}),
    ("empty url", {"subscription": {"url": ""}}),
    ("url not a string", {"subscription": {"url": 80}}),
    ("ftp", {"subscription": {"url": "ftp://127.0.0.1/"}}),
    ("no scheme", {"subscription": {"url": "127.0.0.1:8080/hook"}}),
    ("no host", {"subscription": {"url": "http:///hook"}}),
    ("only a scheme", {"subscription": {"url": "http://"}}),
    ("bad port", {"subscription": {"url": "http://127.0.0.1:99999/"}}),
    ("port not a number", {"subscription": {"url": "http://127.0.0.1:http/"}}),
    ("space", {"subscription": {"url": "http://127.0.0.1/a b"}}),
    ("newline", {"subscription": {"url": "http://127.0.0.1/\r\nX-Evil: 1"}}),
    ("NUL", {"subscription": {"url": "http://127.0.0.1/\u0000"}}),
    ("too long", {"subscription": {"url": "http://127.0.0.1/" + "a" * 2048}}),
    ("unknown type", {"subscription": {"url": "http://127.0.0.1/", "event_types": ["host.up"]}}),
    ("unknown full type", {"subscription": {"url": "http://127.0.0.1/",
                                            "event_types": [EVENT_PREFIX + "host.gone"]}}),
    ("types not a list", {"subscription": {"url": "http://127.0.0.1/", "event_types": "host.down"}}),
    ("type not a string", {"subscription": {"url": "http://127.0.0.1/", "event_types": [1]}}),
    ("resources not a list", {"subscription": {"url": "http://127.0.0.1/", "resource_ids": "x"}}),
    ("empty resource", {"subscription": {"url": "http://127.0.0.1/", "resource_ids": [""]}}),
    ("too many resources", {"subscription": {"url": "http://127.0.0.1/",
                                             "resource_ids": [str(i) for i in range(101)]}}),
    ("long description", {"subscription": {"url": "http://127.0.0.1/", "description": "d" * 256}}),
    ("unknown attribute", {"subscription": {"url": "http://127.0.0.1/", "secret": "x"}}),
    ("null url", {"subscription": {"url": None}}),
    ("project ids differ", {"subscription": {"url": "http://127.0.0.1/", "project_id": RED,
                                             "tenant_id": BLUE}}),
]


@pytest.mark.parametrize(("case", "payload"), BAD_SUBSCRIPTIONS, ids=[c for c, _ in BAD_SUBSCRIPTIONS])
def test_bad_subscriptions_are_refused(client: TestClient, db: Database, case: str,
                                       payload: Any) -> None:
    before = snapshot(db)
    neutron_error(client.post(SUBS, json=payload, headers=R), 400)
    assert snapshot(db) == before, case


def test_malformed_and_missing_bodies_are_refused(client: TestClient, db: Database) -> None:
    before = snapshot(db)
    neutron_error(client.post(SUBS, content=b"{nope", headers=R), 400)
    neutron_error(client.post(SUBS, headers=R), 400)
    assert snapshot(db) == before


def test_readers_and_other_projects_may_not_write(client: TestClient, db: Database) -> None:
    mine = subscribe(client, R)
    theirs = subscribe(client, B)
    admins = subscribe(client)
    before = snapshot(db)
    neutron_error(client.post(SUBS, json={"subscription": {"url": "http://127.0.0.1/"}},
                              headers=R_READER), 403)
    neutron_error(client.delete(f"{SUBS}/{mine['id']}", headers=R_READER), 403)
    neutron_error(client.post(SUBS, json={"subscription": {"url": "http://127.0.0.1/",
                                                           "project_id": BLUE}}, headers=R), 403)
    for sub_id in (theirs["id"], admins["id"], UNKNOWN_ID, "x" * 40):
        neutron_error(client.get(f"{SUBS}/{sub_id}", headers=R), 404, "FaultSubscriptionNotFound")
        neutron_error(client.delete(f"{SUBS}/{sub_id}", headers=R), 404,
                      "FaultSubscriptionNotFound")
    neutron_error(client.delete(f"{SUBS}/{theirs['id']}", headers=R_READER), 404)
    neutron_error(client.get(SUBS, params={"project_id": BLUE}, headers=R), 400)
    assert snapshot(db) == before


def test_subscriptions_per_project_are_limited(client: TestClient, db: Database,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults_api, "MAX_SUBSCRIPTIONS", 2)
    subscribe(client, R)
    subscribe(client, R)
    subscribe(client, B)  # another project has its own allowance
    before = snapshot(db)
    neutron_error(client.post(SUBS, json={"subscription": {"url": "http://127.0.0.1/"}},
                              headers=R), 409, "OverQuota")
    assert snapshot(db) == before


def test_deleting_a_subscription_deletes_its_deliveries(client: TestClient, db: Database) -> None:
    sub = subscribe(client, R, url="http://127.0.0.1:9/")  # nothing listens on port 9
    event = make_event(owned={"port-r": RED})
    with db.write() as conn:
        conn.execute(insert(faults).values(**fault_row(event)))
        conn.execute(insert(fault_deliveries).values(
            subscription_id=sub["id"], event_id=event.id, event=event.for_project(RED),
            attempts=0, next_attempt_at=4e9))  # not due: the worker leaves it alone
    assert client.delete(f"{SUBS}/{sub['id']}", headers=R).status_code == 204
    assert snapshot(db)["fault_deliveries"] == []


def test_a_caller_without_a_project_is_refused() -> None:
    assert faults_api.scope(RequestContext.admin()) is None
    assert faults_api.scope(RequestContext(user_id="u", project_id=RED, roles=("member",))) == RED
    with pytest.raises(faults_api.Forbidden):
        faults_api.scope(RequestContext(user_id="u", project_id=None, roles=("member",)))


# --- faults ----------------------------------------------------------------------------------------

def store(db: Database, *events: FaultEvent, with_projects: bool = False) -> None:
    with db.write() as conn:
        for event in events:
            conn.execute(insert(faults).values(**fault_row(event, with_projects=with_projects)))


@pytest.fixture
def owned_ports(client: TestClient) -> dict[str, dict[str, Any]]:
    """A port of red's (on an instance) and one of blue's, on each project's network."""
    red_net = network(client, R)
    blue_net = network(client, B)
    return {
        "red": port(client, red_net["id"], R, device_id="vm-red", device_owner="compute:nova"),
        "red2": port(client, red_net["id"], R),
        "blue": port(client, blue_net["id"], B, device_id="vm-blue", device_owner="compute:nova"),
    }


def test_members_see_their_faults_cut_to_their_resources(
        client: TestClient, db: Database, owned_ports: dict[str, dict[str, Any]]) -> None:
    red, red2, blue = (owned_ports[k]["id"] for k in ("red", "red2", "blue"))
    host_down = make_event(owned={red: RED, "vm-red": RED, blue: BLUE, "vm-blue": BLUE},
                           instances=("vm-red", "vm-blue"))
    port_down = make_event("port.down", red2, hosts=(), owned={red2: RED},
                           detected_at=host_down.detected_at + 5)
    link_down = make_event("link.down", "host1-host2", hosts=("host1", "host2"),
                           detected_at=host_down.detected_at + 10)
    store(db, host_down, port_down, link_down)  # ownership looked up now (no affected.projects)

    everything = body(client.get("/v2.0/faults"))["faults"]
    assert [f["id"] for f in everything] == [link_down.fault_id, port_down.fault_id,
                                             host_down.fault_id]  # newest first
    full = everything[2]
    assert full == {
        "id": host_down.fault_id, "type": "host.down", "severity": "critical", "state": "active",
        "resource_type": "host", "resource_id": "host2", "source": "heartbeat",
        "fault_time": rfc3339(host_down.fault_time), "detected_at": rfc3339(host_down.detected_at),
        "cleared_at": None,
        "affected": {"hosts": ["host2"], "ports": [red, blue], "instances": ["vm-red", "vm-blue"],
                     "routers": []},
    }
    reds = body(client.get("/v2.0/faults", headers=R))["faults"]
    assert [f["id"] for f in reds] == [port_down.fault_id, host_down.fault_id]
    assert reds[1] == {**full, "affected": {"hosts": [], "ports": [red], "instances": ["vm-red"],
                                            "routers": []}}
    blues = body(client.get("/v2.0/faults", headers=B))["faults"]
    assert [f["affected"] for f in blues] == [
        {"hosts": [], "ports": [blue], "instances": ["vm-blue"], "routers": []}]
    assert body(client.get("/v2.0/faults", headers={"X-Project-Id": "nobody",
                                                    "X-Roles": "member"}))["faults"] == []

    assert body(client.get(f"/v2.0/faults/{host_down.fault_id}", headers=R))["fault"] == reds[1]
    for headers, fault_id in ((B, port_down.fault_id), (R, link_down.fault_id),
                              (R, UNKNOWN_ID), (R, "%00"), (ADMIN, UNKNOWN_ID)):
        neutron_error(client.get(f"/v2.0/faults/{fault_id}", headers=headers), 404, "FaultNotFound")


def test_stored_owners_are_used_when_the_fault_has_them(client: TestClient, db: Database) -> None:
    event = make_event(owned={"gone-port": RED, "router-r": RED, "port-b": BLUE},
                       routers=("router-r",))
    store(db, event, with_projects=True)
    reds = body(client.get("/v2.0/faults", headers=R))["faults"]
    assert [f["affected"] for f in reds] == [
        {"hosts": [], "ports": ["gone-port"], "instances": [], "routers": ["router-r"]}]


def test_fault_filters(client: TestClient, db: Database) -> None:
    host_down = make_event()
    cleared = make_event("port.down", "port-9", hosts=(), state="cleared")
    vswitchd = make_event("vswitchd.down", "host3", hosts=("host3",))
    store(db, host_down, cleared, vswitchd)

    def ids(params: Any) -> set[str]:
        return {f["id"] for f in body(client.get("/v2.0/faults", params=params))["faults"]}

    assert ids({"state": "active"}) == {host_down.fault_id, vswitchd.fault_id}
    assert ids({"state": "cleared"}) == {cleared.fault_id}
    assert ids({"type": "port.down"}) == {cleared.fault_id}
    assert ids([("type", "port.down"), ("type", "vswitchd.down")]) == {cleared.fault_id,
                                                                      vswitchd.fault_id}
    assert ids({"resource_id": "host3"}) == {vswitchd.fault_id}
    assert ids({"resource_type": "port", "state": "active"}) == set()
    assert ids({"severity": "critical"}) == {host_down.fault_id, vswitchd.fault_id}
    shown = body(client.get(f"/v2.0/faults/{cleared.fault_id}"))["fault"]
    assert shown["state"] == "cleared" and shown["cleared_at"] == rfc3339(cleared.cleared_at)


@pytest.mark.parametrize("params", [{"state": "down"}, {"type": "host.up"},
                                    {"type": EVENT_PREFIX + "host.down"}, {"project_id": RED},
                                    {"resource_id": "\u0000"}])
def test_bad_fault_filters_are_refused(client: TestClient, params: dict[str, str]) -> None:
    neutron_error(client.get("/v2.0/faults", params=params), 400)


@pytest.mark.parametrize("params", [{"type": "host.up"}, {"state": "active"}])
def test_bad_stream_filters_are_refused(client: TestClient, params: dict[str, str]) -> None:
    neutron_error(client.get("/v2.0/faults/stream", params=params, headers=R), 400)


def test_the_routes_are_not_in_the_openapi_document(client: TestClient) -> None:
    paths = body(client.get("/openapi.json"))["paths"]
    assert not [p for p in paths if "fault" in p]


# --- the CLI ---------------------------------------------------------------------------------------

def run_cli(live: Live, *args: str) -> Any:
    result = CliRunner().invoke(cli_app, ["faults", *args, "--server", live.url],
                                env={"COLUMNS": "240"})  # room for the tables
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_subscribe_list_unsubscribe(live: Live) -> None:
    created = json.loads(run_cli(live, "subscribe", "--url", "http://127.0.0.1:9/hook",
                                 "--type", "host.down", "--resource", "vm-1", "--json"))
    assert created["event_types"] == ["host.down"] and created["resource_ids"] == ["vm-1"]
    assert created["all_projects"] is True  # noauth: an admin
    listed = json.loads(run_cli(live, "subscriptions", "--json"))
    assert [s["id"] for s in listed] == [created["id"]]
    assert created["id"] in run_cli(live, "subscriptions")  # the table

    event = make_event()
    with live.db.write() as conn:
        conn.execute(insert(faults).values(**fault_row(event)))
    assert [f["id"] for f in json.loads(run_cli(live, "list", "--state", "active", "--json"))] == \
        [event.fault_id]
    assert json.loads(run_cli(live, "list", "--state", "cleared", "--json")) == []
    assert "host.down" in run_cli(live, "list")

    run_cli(live, "unsubscribe", created["id"])
    assert json.loads(run_cli(live, "subscriptions", "--json")) == []


def test_cli_errors_are_one_line(live: Live) -> None:
    runner = CliRunner()
    result = runner.invoke(cli_app, ["faults", "subscribe", "--url", "ftp://x/", "--server",
                                     live.url])
    assert result.exit_code == 1 and "400" in result.output and "Traceback" not in result.output
    result = runner.invoke(cli_app, ["faults", "unsubscribe", UNKNOWN_ID, "--server", live.url])
    assert result.exit_code == 1 and "could not be found" in result.output
    result = runner.invoke(cli_app, ["faults", "list", "--state", "gone", "--server", live.url])
    assert result.exit_code == 1 and "--state" in result.output


def test_cli_authenticates_with_clouds_yaml(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the admin of a server with the built-in Keystone, found through clouds.yaml."""
    from neutrino.config import Settings
    from neutrino.credentials import clouds_yaml
    from neutrino.server import build_server
    from support.live_server import LiveServer

    settings = Settings(state_dir=tmp_path / "server", auth="keystone", admin_password="s3cret",
                        compiler_enabled=False)
    built = build_server(settings)
    server = LiveServer(built.app, lifespan="on")
    server.start()
    try:
        path = tmp_path / "clouds.yaml"
        import yaml

        path.write_text(yaml.safe_dump(clouds_yaml(server.url, "mine", "s3cret")))
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
        monkeypatch.setenv("OS_CLOUD", "mine")
        result = CliRunner().invoke(cli_app, ["faults", "subscribe", "--url",
                                              "http://127.0.0.1:9/", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["all_projects"] is True
        result = CliRunner().invoke(cli_app, ["faults", "subscriptions", "--os-cloud", "other"])
        assert result.exit_code == 1 and "no cloud 'other'" in result.output
    finally:
        server.stop()
        built.db.dispose()
