"""`openstack network agent list --router R --long` (Neutron's l3_agent_scheduler) against a real
`neutrino server` process: the router's gateway agents in schedule order with the HA state each
reports in its heartbeats, and "unknown" for one that stopped heartbeating."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from neutrino.credentials import clouds_yaml, password_auth
from neutrino.launcher import ServerProcess, start_server

pytestmark = pytest.mark.clients
ADMIN_PASSWORD = "admin-secret"
CLOUD = "neutrino-l3-agents"
# name -> gateway priority: scheduled in this order
GATEWAYS = {"cli-gw-a": 30, "cli-gw-b": 20, "cli-gw-c": 10}


def openstack(clouds: Path, *args: str) -> Any:
    binary = shutil.which("openstack", path=str(Path(sys.executable).parent)) or "openstack"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_CLIENT_CONFIG_FILE=str(clouds), OS_CLOUD=CLOUD)
    done = subprocess.run([binary, *args, "-f", "json"], env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, f"openstack {' '.join(args)} failed:\n{done.stderr}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    running = start_server(tmp_path_factory.mktemp("l3-agents-server"), admin_password=ADMIN_PASSWORD)
    yield running
    running.stop()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    """An admin client, as an agent is (token from the Keystone subset)."""
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        response = client.post("/v3/auth/tokens", json=password_auth(ADMIN_PASSWORD))
        response.raise_for_status()
        client.headers["X-Auth-Token"] = response.headers["X-Subject-Token"]
        yield client


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code < 300, (response.status_code, response.text)
    result: dict[str, Any] = response.json()
    return result


def test_agent_list_for_a_router_shows_the_ha_state_of_its_gateways(
        server: ServerProcess, http: httpx.Client) -> None:
    ext = ok(http.post("/v2.0/networks", json={"network": {
        "name": "public", "router:external": True, "provider:network_type": "flat",
        "provider:physical_network": "public"}}))["network"]
    ok(http.post("/v2.0/subnets", json={"subnet": {
        "network_id": ext["id"], "cidr": "172.24.4.0/24", "ip_version": 4, "enable_dhcp": False}}))
    router = ok(http.post("/v2.0/routers", json={"router": {
        "name": "cli-l3-router", "external_gateway_info": {"network_id": ext["id"]}}}))["router"]
    for number, (name, priority) in enumerate(GATEWAYS.items()):
        ok(http.post("/v2.0/neutrino/chassis", json={"chassis": {
            "name": name, "tunnel_ip": f"192.0.2.{number + 1}", "bridge_mappings": {"public": "br-ex"},
            "is_gateway": True, "gateway_priority": priority}}))

    # a and b keep heartbeating (a active, b standby for the router); c stops after registering
    reports = {"cli-gw-a": "active", "cli-gw-b": "standby"}
    stop = threading.Event()

    def beat() -> None:
        with httpx.Client(base_url=server.url, headers=dict(http.headers), timeout=30.0) as client:
            while not stop.is_set():
                for name, state in reports.items():
                    client.put(f"/v2.0/neutrino/chassis/{name}/heartbeat",
                               json={"gateways": {router["id"]: state}})
                stop.wait(0.5)

    beating = threading.Thread(target=beat, daemon=True)
    beating.start()
    try:
        deadline = time.monotonic() + 30
        while ok(http.get("/v2.0/agents", params={"host": "cli-gw-c"}))["agents"][0]["alive"]:
            assert time.monotonic() < deadline, "cli-gw-c is still alive"
            time.sleep(0.5)
        clouds = server.state_dir / "clouds.yaml"
        clouds.write_text(yaml.safe_dump(clouds_yaml(server.url, CLOUD, ADMIN_PASSWORD),
                                         sort_keys=False))
        listed = openstack(clouds, "network", "agent", "list", "--router", "cli-l3-router", "--long")
    finally:
        stop.set()
        beating.join(timeout=10)
    assert [(a["Host"], a["HA State"]) for a in listed] == [
        ("cli-gw-a", "active"), ("cli-gw-b", "standby"), ("cli-gw-c", "unknown")]
