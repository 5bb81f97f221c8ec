"""Provider networks on real processes: flat and VLAN networks reach other hosts through a
bridge mapping (br-int -> patch -> provider bridge -> the lab's shared physnet segment), not
through the Geneve underlay.

`neutrino lab up --bridge-mapping physnet1:br-physnet1`: every host has br-physnet1 with a NIC
on the fabric namespace's `pn-physnet1` bridge; its agent patches br-int to it. Captures are taken
on host1's port of that bridge (`host1-physnet1`) and on its underlay port (`ul-host1`), inside
the fabric namespace.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.support import E2ELab, connect, lab_exec, neutrino
from lab.helpers import tcp_transfer
from neutrino.lab.lab import Lab
from neutrino.lab.state import lab_prefix

pytestmark = pytest.mark.root

PHYSNET_PORT = "host1-physnet1"  # host1's port on the physnet bridge of the fabric namespace
UNDERLAY_PORT = "ul-host1"  # host1's port on the underlay bridge


@pytest.fixture(scope="module")
def lab(lab: E2ELab) -> Path:
    """These tests drive the lab (tests/e2e/conftest.py) by its state directory."""
    return lab.state_dir


@pytest.fixture(scope="module")
def cloud(lab: Path) -> Any:
    return connect(lab)


def boot(lab: Path, name: str, host: str, *, network: str | None = None,
         port: str | None = None) -> None:
    how = ["--network", network] if network else ["--port", str(port)]
    done = neutrino(lab, "lab", "boot", name, "--host", host, *how, check=False)
    assert done.returncode == 0, done.stderr


def address_of(cloud: Any, name: str) -> str:
    port = next(iter(cloud.network.ports(name=name)))
    return str(port.fixed_ips[0]["ip_address"])


def ping(lab: Path, name: str, address: str, *extra: str, count: int = 3) -> bool:
    done = lab_exec(lab, name, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", *extra, address)
    return done.returncode == 0


@contextlib.contextmanager
def capture(lab: Path, interface: str, bpf: str) -> Iterator[list[str]]:
    """tcpdump -e on `interface` of the fabric namespace while the block runs; the list is filled
    with its lines (link-level headers included) when the block ends."""
    namespace = f"{lab_prefix(lab)}-fabric"
    tcpdump = subprocess.Popen(["ip", "netns", "exec", namespace, "tcpdump", "-i", interface, "-e",
                                "-nn", "-l", "-U", *bpf.split()],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert tcpdump.stderr is not None
    lines: list[str] = []
    try:
        said: list[str] = []
        while not said or "listening on" not in said[-1]:  # once it captures
            said.append(tcpdump.stderr.readline())
            assert said[-1] and len(said) < 10, said
        yield lines
    finally:
        time.sleep(0.5)
        tcpdump.terminate()
        out, _ = tcpdump.communicate(timeout=10)
        lines.extend(line for line in out.splitlines() if line.strip())


def data_frames(geneve: list[str]) -> list[str]:
    """The captured Geneve packets that carry traffic: without the tunnels' own BFD packets
    (UDP 3784 inside, between link-local addresses), which run whatever the networks."""
    return [line for line in geneve if ".3784:" not in line]


def provider_network(cloud: Any, name: str, network_type: str, cidr: str,
                     segmentation_id: int | None = None) -> Any:
    attributes: dict[str, Any] = {"provider_network_type": network_type,
                                  "provider_physical_network": "physnet1"}
    if segmentation_id is not None:
        attributes["provider_segmentation_id"] = segmentation_id
    network = cloud.network.create_network(name=name, **attributes)
    cloud.network.create_subnet(network_id=network.id, ip_version=4, cidr=cidr, name=f"{name}-sub")
    return network


@pytest.fixture(scope="module")
def vlan123(lab: Path, cloud: Any) -> dict[str, str]:
    """VLAN 123 on physnet1 with vm1 on host1 and vm2 on host2; and a geneve network with a
    port bound on each host, so that host1 and host2 also have a tunnel the provider network
    must NOT use."""
    network = provider_network(cloud, "vlan123", "vlan", "10.88.0.0/24", 123)
    assert (network.provider_network_type, network.provider_segmentation_id, network.mtu) == (
        "vlan", 123, 1500)
    overlay = cloud.network.create_network(name="overlay")
    cloud.network.create_subnet(network_id=overlay.id, ip_version=4, cidr="10.99.0.0/24")
    for host in ("host1", "host2"):
        cloud.network.create_port(network_id=overlay.id, name=f"overlay-{host}",
                                  binding_host_id=host)
    boot(lab, "vm1", "host1", network="vlan123")
    boot(lab, "vm2", "host2", network="vlan123")
    running = Lab.load(lab)
    deadline = time.monotonic() + 30
    while not any(p.startswith("tn-") for p in running.host("host1").ovs.ports("br-int")):
        assert time.monotonic() < deadline, "host1 never got its tunnel to host2"
        time.sleep(0.2)
    return {"network": network.id, "vm1": address_of(cloud, "vm1"), "vm2": address_of(cloud, "vm2")}


def test_a_vlan_provider_network_works_through_a_bridge_mapping(
    lab: Path, cloud: Any, vlan123: dict[str, str]
) -> None:
    running = Lab.load(lab)
    host1 = running.host("host1")
    assert "int-br-physnet1" in host1.ovs.ports("br-int")
    assert "phy-br-physnet1" in host1.ovs.ports("br-physnet1")
    # full 1500-byte packets (no tunnel header to make room for), both ways, tagged with VLAN 123
    # on the physical network and never through the Geneve underlay
    with capture(lab, PHYSNET_PORT, "icmp or (vlan and icmp)") as tagged, \
            capture(lab, UNDERLAY_PORT, "udp port 6081") as tunnelled:
        assert ping(lab, "vm1", vlan123["vm2"], "-s", "1472", "-M", "do")
        assert ping(lab, "vm2", vlan123["vm1"])
    requests = [line for line in tagged if "ICMP echo request" in line]
    assert len(requests) >= 6, tagged
    assert all("ethertype 802.1Q (0x8100)" in line and "vlan 123," in line for line in tagged), tagged
    assert any("length 1518" in line for line in tagged), tagged  # 1500 + 14 + the 4-byte tag
    assert data_frames(tunnelled) == []
    # TCP: 4 MiB over one connection, intact
    vm1, vm2 = running.instance("vm1"), running.instance("vm2")
    assert tcp_transfer(vm1, vm2, vlan123["vm2"])
    assert tcp_transfer(vm2, vm1, vlan123["vm1"], port=5002)
    # and the lab still tells what it has
    status = json.loads(neutrino(lab, "lab", "status", "--json").stdout)
    assert status["fabric"]["physnet_bridges"] == ["pn-physnet1"]
    assert {h["name"]: h["provider_links"] for h in status["hosts"]} == {
        "host1": {"physnet1": True}, "host2": {"physnet1": True}}
    assert {a["host"] for a in status["agents"] if a["alive"]} == {"host1", "host2"}


def test_a_flat_provider_network_is_untagged(lab: Path, cloud: Any, vlan123: dict[str, str]) -> None:
    # physnet1 has one flat network: the lab's external network `public` (lab up made it)
    public = cloud.network.find_network("public")
    assert public.provider_network_type == "flat" and public.provider_physical_network == "physnet1"
    boot(lab, "vm3", "host1", network="public")
    boot(lab, "vm4", "host2", network="public")
    vm3, vm4 = address_of(cloud, "vm3"), address_of(cloud, "vm4")
    with capture(lab, PHYSNET_PORT, "icmp or (vlan and icmp)") as frames, \
            capture(lab, UNDERLAY_PORT, "udp port 6081") as tunnelled:
        assert ping(lab, "vm3", vm4)
        assert ping(lab, "vm4", vm3)
    assert len([line for line in frames if "ICMP echo request" in line]) >= 6, frames
    assert not any("802.1Q" in line or "vlan" in line for line in frames), frames
    assert data_frames(tunnelled) == []
    running = Lab.load(lab)
    assert tcp_transfer(running.instance("vm3"), running.instance("vm4"), vm4)


def test_two_vlan_networks_are_isolated(lab: Path, cloud: Any, vlan123: dict[str, str]) -> None:
    """VLAN 124 with the same CIDR as VLAN 123: its instances talk to each other (tagged 124),
    never to those of VLAN 123, although they share the physnet and the addresses look local."""
    network = provider_network(cloud, "vlan124", "vlan", "10.88.0.0/24", 124)
    subnet = next(iter(cloud.network.subnets(network_id=network.id)))
    for name, host, ip in (("vm5", "host2", "10.88.0.200"), ("vm6", "host1", "10.88.0.201")):
        port = cloud.network.create_port(network_id=network.id, name=name,
                                         fixed_ips=[{"subnet_id": subnet.id, "ip_address": ip}])
        boot(lab, name, host, port=port.id)
    with capture(lab, PHYSNET_PORT, "vlan") as frames:
        assert ping(lab, "vm5", "10.88.0.201")
        assert not ping(lab, "vm1", "10.88.0.200", count=2)
        assert not ping(lab, "vm5", vlan123["vm2"], count=2)
        assert not ping(lab, "vm6", vlan123["vm1"], count=2)
    vlans = {line.split("vlan ")[1].split(",")[0] for line in frames if "vlan " in line}
    assert vlans <= {"123", "124"} and "124" in vlans, frames
    # vm1's ARP for vm5's address stays in VLAN 123, where nobody has it
    asked = [line for line in frames if f"who-has 10.88.0.200 tell {vlan123['vm1']}," in line]
    assert asked and all("vlan 123," in line for line in asked), frames
    # VLAN 123 still works
    assert ping(lab, "vm1", vlan123["vm2"])
