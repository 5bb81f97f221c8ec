"""The whole system on real processes: `neutrino lab up` (server + hosts with OVS and agents),
tenant networking through openstacksdk, instances booted on different hosts, real packets."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
import yaml

from lab.helpers import LAB_UNAVAILABLE
from neutrino.lab import netns
from neutrino.lab.state import lab_prefix

pytestmark = pytest.mark.root


def neutrino(state_dir: Path, *args: str, check: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "neutrino.cli.main", *args]
    if args[0] == "lab":
        argv += ["--state-dir", str(state_dir)]
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def lab_exec(state_dir: Path, name: str, *command: str, timeout: float = 60,
             ) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "neutrino.cli.main", "lab", "exec", name, "--state-dir",
            str(state_dir), "--", *command]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if LAB_UNAVAILABLE is not None:
        pytest.skip(f"lab unavailable: {LAB_UNAVAILABLE}")
    state_dir = tmp_path_factory.mktemp("lab")
    up = neutrino(state_dir, "lab", "up", "--hosts", "2", check=False)
    assert up.returncode == 0, up.stderr
    try:
        yield state_dir
    finally:
        down = neutrino(state_dir, "lab", "down", check=False)
        assert down.returncode == 0, down.stderr
        assert netns.list_namespaces(lab_prefix(state_dir) + "-") == []


@pytest.fixture(scope="module")
def cloud(lab: Path) -> Any:
    entry = yaml.safe_load((lab / "clouds.yaml").read_text())["clouds"]["neutrino-lab"]
    return openstack.connect(auth=entry["auth"], region_name=entry["region_name"],
                             identity_api_version="3")


def boot(lab: Path, name: str, host: str, network: str) -> None:
    done = neutrino(lab, "lab", "boot", name, "--host", host, "--network", network, check=False)
    assert done.returncode == 0, done.stderr


def address_of(cloud: Any, name: str) -> str:
    port = next(iter(cloud.network.ports(name=name)))
    return str(port.fixed_ips[0]["ip_address"])


def test_instances_on_different_hosts_talk_over_the_tenant_network(lab: Path, cloud: Any) -> None:
    status = json.loads(neutrino(lab, "lab", "status", "--json").stdout)
    assert {a["host"] for a in status["agents"] if a["alive"]} == {"host1", "host2"}
    net = cloud.network.create_network(name="e2e-net")
    cloud.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.77.0.0/24",
                                name="e2e-sub")
    boot(lab, "vm1", "host1", "e2e-net")
    boot(lab, "vm2", "host2", "e2e-net")
    assert cloud.network.find_port("vm1").status == "ACTIVE"
    vm2 = address_of(cloud, "vm2")
    ping = lab_exec(lab, "vm1", "ping", "-c", "3", "-i", "0.2", "-W", "2", vm2)
    assert ping.returncode == 0, ping.stdout + ping.stderr
