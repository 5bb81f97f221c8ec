"""Micro-benchmark (not a test): the server's compiler pass after one write, at 2,000 ports.

The benchmark's topology, made through the real API in-process: 50 tenants x 2 networks x 20
ports, one security group per tenant (2 egress rules, ingress IPv4 from the group itself,
ingress tcp/22), every port bound to `host1`, which is a registered chassis. Then, several
times each, one port create and one rule create, timing `CompilerLoop.run_once()` after each.

    uv run python bench/compiler_pass.py [--repeat 9] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from neutrino.api.app import create_app
from neutrino.config import Settings
from neutrino.db.engine import Database
from neutrino.db.migrate import upgrade
from neutrino.distribution.compiler_loop import CompilerLoop, default_compiler
from neutrino.distribution.store import EmbeddedPolicyStore

ADMIN = {"X-Project-Id": "admin-project", "X-Roles": "admin,member,reader"}
HOST = "host1"
TENANTS, NETWORKS, PORTS = 50, 2, 20


class Api:
    def __init__(self, http: TestClient) -> None:
        self.http = http

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.http.post(path, json=body)
        if answer.status_code >= 300:
            raise RuntimeError(f"POST {path}: {answer.status_code} {answer.text}")
        result: dict[str, Any] = answer.json()
        return result


def build_topology(api: Api) -> list[tuple[str, str, str]]:
    """Every tenant's (project, group id, network id of its first network)."""
    tenants = []
    for t in range(TENANTS):
        project = f"project-{t:02d}"
        group = api.post("/v2.0/security-groups", {"security_group": {
            "name": f"sg-{t}", "project_id": project}})["security_group"]["id"]
        api.post("/v2.0/security-group-rules", {"security_group_rules": [
            {"security_group_id": group, "project_id": project, "direction": "ingress",
             "ethertype": "IPv4", "remote_group_id": group},
            {"security_group_id": group, "project_id": project, "direction": "ingress",
             "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22,
             "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"},
        ]})
        networks = api.post("/v2.0/networks", {"networks": [
            {"name": f"net-{t}-{n}", "project_id": project} for n in range(NETWORKS)]})["networks"]
        api.post("/v2.0/subnets", {"subnets": [
            {"network_id": net["id"], "project_id": project, "ip_version": 4,
             "cidr": f"10.{t}.{n}.0/24", "enable_dhcp": False}
            for n, net in enumerate(networks)]})
        for net in networks:
            api.post("/v2.0/ports", {"ports": [
                port_body(project, net["id"], group) for _ in range(PORTS)]})
        tenants.append((project, group, networks[0]["id"]))
    return tenants


def port_body(project: str, network_id: str, group: str) -> dict[str, Any]:
    return {"network_id": network_id, "project_id": project, "security_groups": [group],
            "binding:host_id": HOST, "device_owner": "compute:nova", "device_id": "vm"}


def timed_passes(loop: CompilerLoop, write: Callable[[int], None], repeat: int,
                 profile: cProfile.Profile | None) -> list[float]:
    times = []
    for i in range(repeat):
        write(i)
        if profile is not None:
            profile.enable()
        start = time.perf_counter()
        result = loop.run_once()
        times.append((time.perf_counter() - start) * 1000)
        if profile is not None:
            profile.disable()
        assert result.compiled == {HOST}, result
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--profile", action="store_true", help="cProfile the timed passes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'neutrino.sqlite'}"
        upgrade(url)
        settings = Settings(state_dir=Path(tmp), database=url, auth="noauth",
                            compiler_enabled=False)
        db = Database(url)
        http = TestClient(create_app(settings, db), headers=ADMIN)
        api = Api(http)
        started = time.monotonic()
        api.post("/v2.0/neutrino/chassis", {"chassis": {"name": HOST, "tunnel_ip": "192.0.2.1"}})
        tenants = build_topology(api)
        print(f"built {TENANTS * NETWORKS * PORTS} ports in {time.monotonic() - started:.1f} s",
              file=sys.stderr)
        compiler = default_compiler()
        assert compiler is not None
        loop = CompilerLoop(db, EmbeddedPolicyStore(db), compiler)
        started = time.perf_counter()
        loop.run_once()
        print(f"first (full) pass: {(time.perf_counter() - started) * 1000:.0f} ms",
              file=sys.stderr)
        profile = cProfile.Profile() if args.profile else None

        def create_port(i: int) -> None:
            project, group, network = tenants[i % len(tenants)]
            api.post("/v2.0/ports", {"port": port_body(project, network, group)})

        def create_rule(i: int) -> None:
            project, group, _network = tenants[i % len(tenants)]
            api.post("/v2.0/security-group-rules", {"security_group_rule": {
                "security_group_id": group, "project_id": project, "direction": "ingress",
                "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 1000 + i,
                "port_range_max": 1000 + i}})

        for name, write in (("port create", create_port), ("rule create", create_rule)):
            times = timed_passes(loop, write, args.repeat, profile)
            print(f"{name}: median {statistics.median(times):.1f} ms, min {min(times):.1f} ms, "
                  f"max {max(times):.1f} ms over {len(times)} passes")
        if profile is not None:
            pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
        http.close()
        db.dispose()


if __name__ == "__main__":
    main()
