"""The whole system on real processes: `neutrino lab up` (server + hosts with OVS and agents),
tenant networking through openstacksdk, instances booted on different hosts, real packets."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from e2e.support import E2ELab, connect, lab_exec, neutrino

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab(lab: E2ELab) -> Path:
    """These tests drive the lab (tests/e2e/conftest.py) by its state directory."""
    return lab.state_dir


@pytest.fixture(scope="module")
def cloud(lab: Path) -> Any:
    return connect(lab)


def boot(lab: Path, name: str, host: str, network: str) -> None:
    done = neutrino(lab, "lab", "boot", name, "--host", host, "--network", network, check=False)
    assert done.returncode == 0, done.stderr


def address_of(cloud: Any, name: str) -> str:
    port = next(iter(cloud.network.ports(name=name)))
    return str(port.fixed_ips[0]["ip_address"])


@pytest.fixture(scope="module")
def tenant(lab: Path, cloud: Any) -> dict[str, str]:
    """A network with a subnet, and instances vm1 on host1 and vm2 on host2 (both in the
    project's default security group). Each xdist worker that runs tests of this module has
    its own lab, so no test depends on another having run."""
    net = cloud.network.create_network(name="e2e-net")
    cloud.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.77.0.0/24",
                                name="e2e-sub")
    boot(lab, "vm1", "host1", "e2e-net")
    boot(lab, "vm2", "host2", "e2e-net")
    return {"network": net.id, "vm1": address_of(cloud, "vm1"), "vm2": address_of(cloud, "vm2")}


def test_instances_on_different_hosts_talk_over_the_tenant_network(
    lab: Path, cloud: Any, tenant: dict[str, str]
) -> None:
    status = json.loads(neutrino(lab, "lab", "status", "--json").stdout)
    assert {a["host"] for a in status["agents"] if a["alive"]} == {"host1", "host2"}
    assert cloud.network.find_port("vm1").status == "ACTIVE"
    ping = lab_exec(lab, "vm1", "ping", "-c", "3", "-i", "0.2", "-W", "2", tenant["vm2"])
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_security_groups_decide_what_reaches_an_instance(
    lab: Path, cloud: Any, tenant: dict[str, str]
) -> None:
    """vm3 (host2) is in a group that admits only TCP 8080 from anywhere; vm1 (host1) is in
    the project's default group, which admits only members of the default group. vm1 reaches
    vm3 on 8080 and gets vm3's answer back although nothing admits vm3 into vm1 (stateful:
    replies of an allowed connection pass); ping and other ports to vm3 are dropped, and vm3
    cannot open anything towards vm1 (remote group: vm3 is not in the default group)."""
    web = cloud.network.create_security_group(name="e2e-web")
    cloud.network.create_security_group_rule(security_group_id=web.id, direction="ingress",
                                             ethertype="IPv4", protocol="tcp",
                                             port_range_min=8080, port_range_max=8080)
    port = cloud.network.create_port(network_id=tenant["network"], name="vm3",
                                     security_group_ids=[web.id])
    done = neutrino(lab, "lab", "boot", "vm3", "--host", "host2", "--port", port.id, check=False)
    assert done.returncode == 0, done.stderr
    vm1, vm3 = address_of(cloud, "vm1"), address_of(cloud, "vm3")
    listener = subprocess.Popen(
        [sys.executable, "-m", "neutrino.cli.main", "lab", "exec", "vm3", "--state-dir", str(lab),
         "--", "nc", "-l", "-p", "8080"], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(20):  # until the listener is up
            sent = lab_exec(lab, "vm1", "sh", "-c", f"echo hello-8080 | nc -w 3 -q 1 {vm3} 8080")
            if sent.returncode == 0:
                break
            time.sleep(0.25)
        assert sent.returncode == 0, sent.stderr
        assert listener.communicate(timeout=10)[0].strip() == "hello-8080"
    finally:
        listener.kill()
    blocked = lab_exec(lab, "vm1", "ping", "-c", "2", "-i", "0.2", "-W", "1", vm3)
    assert blocked.returncode != 0, "ping to vm3 must be dropped: its group admits only TCP 8080"
    refused = lab_exec(lab, "vm1", "nc", "-z", "-w", "2", vm3, "22")
    assert refused.returncode != 0
    outbound = lab_exec(lab, "vm3", "ping", "-c", "2", "-i", "0.2", "-W", "1", vm1)
    assert outbound.returncode != 0, "vm1's default group admits only its own members"
    # vm2 is in the default group, like vm1: admitted
    assert lab_exec(lab, "vm2", "ping", "-c", "1", "-W", "2", vm1).returncode == 0


def test_a_port_goes_down_when_its_vif_is_unplugged(
    lab: Path, cloud: Any, tenant: dict[str, str]
) -> None:
    port = cloud.network.create_port(network_id=tenant["network"], name="vm4")
    done = neutrino(lab, "lab", "boot", "vm4", "--host", "host1", "--port", port.id, check=False)
    assert done.returncode == 0, done.stderr
    assert cloud.network.get_port(port.id).status == "ACTIVE"
    from neutrino.lab.lab import Lab

    with Lab.session(lab) as running:
        running.unplug("vm4")
    deadline = time.monotonic() + 15
    while cloud.network.get_port(port.id).status != "DOWN":
        assert time.monotonic() < deadline, "port stayed ACTIVE after unplug"
        time.sleep(0.2)


def test_trace_shows_the_stages_and_the_verdict(
    lab: Path, cloud: Any, tenant: dict[str, str]
) -> None:
    vm1 = next(iter(cloud.network.ports(name="vm1")))
    vm2 = next(iter(cloud.network.ports(name="vm2")))
    packet = (f"icmp,dl_src={vm1.mac_address},dl_dst={vm2.mac_address},"
              f"nw_src={vm1.fixed_ips[0]['ip_address']},nw_dst={vm2.fixed_ips[0]['ip_address']}")
    out = neutrino(lab, "trace", "--host", "host1", "--port", "vm1", packet, "--state-dir",
                   str(lab)).stdout
    stages = [line.split()[0] for line in out.splitlines() if line and not line[0].isspace()]
    assert stages[:2] == ["classify", "port_security_ingress_from_vif"]
    assert "l2_lookup" in stages
    assert "verdict: forwarded" in out and "tnl_push" in out  # into the tunnel to host2
    spoofed = packet.replace(f"nw_src={vm1.fixed_ips[0]['ip_address']}", "nw_src=10.77.0.250")
    out = neutrino(lab, "trace", "--host", "host1", "--port", "vm1", spoofed, "--state-dir",
                   str(lab)).stdout
    assert "verdict: dropped in port_security_ingress_from_vif" in out
