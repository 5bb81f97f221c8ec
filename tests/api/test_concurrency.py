"""Concurrency against a real server: uvicorn on a free loopback port and 8 client threads
creating ports on one subnet at once. Every request is answered, none with a 5xx, and no
address or MAC is ever handed out twice (on SQLite and on PostgreSQL); subnets created at once
on one network share its one DHCP port."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.helpers import ADMIN, as_project
from neutrino.api.app import create_app
from neutrino.config import Settings
from neutrino.db.engine import Database
from support.live_server import LiveServer

CLIENTS = 8


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    db = Database(database_url)
    live = LiveServer(create_app(Settings(state_dir=tmp_path, database=database_url, auth="noauth"),
                                 db))
    live.start()
    try:
        yield live
    finally:
        live.stop()
        db.dispose()


def http(server: LiveServer, headers: dict[str, str] = ADMIN) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=headers, timeout=120, trust_env=False)


def setup_subnet(server: LiveServer, cidr: str, headers: dict[str, str] = ADMIN) -> str:
    """A shared network with one subnet, without DHCP: every pool address is left for the
    racing clients (the network's DHCP port would hold the lowest one)."""
    with http(server) as client:
        net = client.post("/v2.0/networks", json={"network": {"name": "busy", "shared": True}})
        assert net.status_code == 201, net.text
        net_id: str = net.json()["network"]["id"]
        sub = client.post("/v2.0/subnets", json={"subnet": {"network_id": net_id, "cidr": cidr,
                                                            "enable_dhcp": False}})
        assert sub.status_code == 201, sub.text
    return net_id


def hammer(server: LiveServer, net_id: str, per_client: int,
           headers: dict[str, str] = ADMIN) -> list[httpx.Response]:
    """CLIENTS threads, each creating `per_client` ports with its own connection, at once."""
    start = threading.Barrier(CLIENTS)

    def worker(_: int) -> list[httpx.Response]:
        with http(server, headers) as client:
            start.wait()
            return [client.post("/v2.0/ports", json={"port": {"network_id": net_id}})
                    for _ in range(per_client)]

    with ThreadPoolExecutor(CLIENTS) as pool:
        return [r for batch in pool.map(worker, range(CLIENTS)) for r in batch]


def addresses(ports: list[dict[str, Any]]) -> list[str]:
    return [f["ip_address"] for p in ports for f in p["fixed_ips"]]


def test_200_ports_created_at_once_get_distinct_addresses(server: LiveServer) -> None:
    net_id = setup_subnet(server, "10.50.0.0/24")
    responses = hammer(server, net_id, 25)
    assert len(responses) == 200
    assert Counter(r.status_code for r in responses) == {201: 200}, [
        r.text for r in responses if r.status_code != 201][:3]
    ports = [r.json()["port"] for r in responses]
    assert len(set(addresses(ports))) == 200
    assert len({p["mac_address"] for p in ports}) == 200
    with http(server) as client:
        listed = client.get(f"/v2.0/ports?network_id={net_id}").json()["ports"]
    assert sorted(addresses(listed)) == sorted(addresses(ports))


def test_racing_for_the_last_addresses_gives_409_not_duplicates(server: LiveServer) -> None:
    net_id = setup_subnet(server, "10.60.0.0/26")  # 61 addresses: .2-.62
    responses = hammer(server, net_id, 10)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 61, 409: 19}, statuses
    assert {r.json()["NeutronError"]["type"] for r in responses if r.status_code == 409} == {
        "IpAddressGenerationFailure"}
    created = [r.json()["port"] for r in responses if r.status_code == 201]
    assert len(set(addresses(created))) == 61


def test_a_new_projects_concurrent_first_ports_share_one_default_group(server: LiveServer) -> None:
    net_id = setup_subnet(server, "10.70.0.0/24")
    newcomer = as_project("newcomer")
    responses = hammer(server, net_id, 2, newcomer)
    assert Counter(r.status_code for r in responses) == {201: 16}
    groups = {g for r in responses for g in r.json()["port"]["security_groups"]}
    assert len(groups) == 1
    with http(server, newcomer) as client:
        listed = client.get("/v2.0/security-groups").json()["security_groups"]
    assert [g["id"] for g in listed] == list(groups)


@contextmanager
def two_servers(postgres_template: str, postgres_server: Any, tmp_path: Path,
                name: str) -> Iterator[list[LiveServer]]:
    """Two servers (two write locks) on one fresh PostgreSQL database."""
    from psycopg import sql

    with postgres_server._admin_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(postgres_template)))
    url = postgres_server.url_for(name)
    settings = Settings(state_dir=tmp_path, database=url, auth="noauth")
    dbs = [Database(url), Database(url)]
    servers = [LiveServer(create_app(settings, db)) for db in dbs]
    for live in servers:
        live.start()
    try:
        yield servers
    finally:
        for live in servers:
            live.stop()
        for db in dbs:
            db.dispose()


@pytest.mark.postgres
def test_two_servers_on_one_postgres_never_hand_out_an_address_twice(
    postgres_template: str, postgres_server: Any, tmp_path: Path
) -> None:
    with two_servers(postgres_template, postgres_server, tmp_path, "api_two_servers") as servers:
        net_id = setup_subnet(servers[0], "10.80.0.0/24")
        start = threading.Barrier(CLIENTS)

        def worker(n: int) -> list[httpx.Response]:
            with http(servers[n % 2]) as client:
                start.wait()
                return [client.post("/v2.0/ports", json={"port": {"network_id": net_id}})
                        for _ in range(25)]

        with ThreadPoolExecutor(CLIENTS) as pool:
            responses = [r for batch in pool.map(worker, range(CLIENTS)) for r in batch]
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {201: 200}, (statuses, [r.text for r in responses if r.status_code != 201][:3])
        assert len(set(addresses([r.json()["port"] for r in responses]))) == 200


def dhcp_ports_after_racing_subnets(servers: list[LiveServer], networks: int) -> list[list[list[str]]]:
    """For each of `networks` new networks, two IPv4 subnets created at once (the first through
    servers[0], the second through servers[-1]); the DHCP ports each network ends with, as the
    sorted addresses of each."""
    found = []
    with http(servers[0]) as admin:
        for i in range(networks):
            net = admin.post("/v2.0/networks", json={"network": {"name": f"race{i}"}})
            assert net.status_code == 201, net.text
            net_id = net.json()["network"]["id"]
            start = threading.Barrier(2)

            def create(n: int, net_id: str = net_id, start: threading.Barrier = start) -> Any:
                with http(servers[-n]) as client:
                    start.wait()
                    return client.post("/v2.0/subnets", json={"subnet": {
                        "network_id": net_id, "cidr": f"10.{n}.0.0/24"}})

            with ThreadPoolExecutor(2) as pool:
                responses = list(pool.map(create, range(2)))
            assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
            dhcp = admin.get(f"/v2.0/ports?network_id={net_id}&device_owner=network:dhcp")
            found.append([sorted(addresses([p])) for p in dhcp.json()["ports"]])
    return found


ONE_DHCP_PORT = [["10.0.0.2", "10.1.0.2"]]  # one port, with the .2 of each subnet


def test_subnets_created_at_once_share_the_networks_dhcp_port(server: LiveServer) -> None:
    assert dhcp_ports_after_racing_subnets([server], 10) == [ONE_DHCP_PORT] * 10


@pytest.mark.postgres
def test_two_servers_on_one_postgres_keep_one_dhcp_port_per_network(
    postgres_template: str, postgres_server: Any, tmp_path: Path
) -> None:
    with two_servers(postgres_template, postgres_server, tmp_path, "api_two_servers_dhcp") as servers:
        assert dhcp_ports_after_racing_subnets(servers, 30) == [ONE_DHCP_PORT] * 30
