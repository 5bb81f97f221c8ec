"""Floating IPs on the real data path, distributed: the host of the instance translates its
floating IP itself and talks to the external network through its own provider bridge.

The world (the shared two-host lab, whose `lab up` made the external network `public` on
physnet1 and the `external` namespace, the upstream router at its gateway address): router
`fip-router` with its gateway on `public` and an interface on `fip-net` (10.73.0.0/24);
instances fa (host1, with a floating IP) and fb (host2, without).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from e2e.support import Capture, E2ELab, neutrino, wait_until
from neutrino.lab.state import lab_prefix

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("e2e-floating-ips")]


@dataclass
class World:
    lab: E2ELab
    router: Any
    fip: Any
    external_ip: str
    ip: dict[str, str]

    def external(self, *argv: str, check: bool = False) -> Any:
        return neutrino(self.lab.state_dir, "lab", "exec", "external", "--state-dir",
                        str(self.lab.state_dir), "--", *argv, check=check)

    def external_pings(self, address: str, count: int = 1) -> bool:
        return self.external("ping", "-n", "-c", str(count), "-W", "1", address).returncode == 0


@pytest.fixture(scope="module")
def world(lab: E2ELab) -> Iterator[World]:
    cloud = lab.cloud
    public = cloud.network.find_network("public")
    group = cloud.network.create_security_group(name="fip-open")
    cloud.network.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                             ethertype="IPv4", remote_ip_prefix="0.0.0.0/0")
    net = cloud.network.create_network(name="fip-net")
    subnet = cloud.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.73.0.0/24")
    router = cloud.network.create_router(name="fip-router",
                                         external_gateway_info={"network_id": public.id})
    cloud.network.add_interface_to_router(router, subnet_id=subnet.id)
    ports = {name: cloud.network.create_port(network_id=net.id, name=name,
                                             security_group_ids=[group.id]) for name in ("fa", "fb")}
    booted = lab.boot_all([("fa", "host1", ports["fa"].id), ("fb", "host2", ports["fb"].id)])
    fip = cloud.network.create_ip(floating_network_id=public.id, port_id=ports["fa"].id)
    lab.wait_converged("host1", "host2")
    status = json.loads(neutrino(lab.state_dir, "lab", "status", "--json").stdout)
    yield World(lab, router, fip, status["external_ip"],
                {name: port.fixed_ips[0]["ip_address"] for name, port in booted.items()})


def test_the_external_host_reaches_an_instance_by_its_floating_ip(world: World) -> None:
    """The external host pings the floating IP; the instance sees the external host's own
    address as the source (DNAT only), and its replies come back from the floating IP."""
    lab = world.lab
    wait_until(lambda: world.external_pings(world.fip.floating_ip_address), timeout=15,
               message="the external host pings the floating IP")
    with lab.capture("fa") as capture:
        assert world.external_pings(world.fip.floating_ip_address, count=2)
        seen = capture.matching(lambda f: f.ipv4 is not None and f.ipv4[0] == 1, seconds=0.5)
    sources = {f.ipv4[1] for f in seen["fa"] if f.ipv4 is not None}
    assert world.external_ip in sources, sources


def test_an_instance_with_a_floating_ip_reaches_the_external_host_as_the_floating_ip(
        world: World) -> None:
    """SNAT on the instance's own host: the external host sees the floating IP as source."""
    lab = world.lab
    namespace = f"{lab_prefix(lab.state_dir)}-external"
    wait_until(lambda: lab.ping("fa", world.external_ip), timeout=15,
               message="fa pings the external host")
    with Capture({"external": namespace}) as capture:
        assert lab.ping("fa", world.external_ip, count=2)
        seen = capture.matching(lambda f: f.ipv4 is not None and f.ipv4[0] == 1, seconds=0.5)
    sources = {f.ipv4[1] for f in seen["external"] if f.ipv4 is not None}
    assert sources == {world.fip.floating_ip_address}, sources
    assert world.ip["fa"] not in sources  # the fixed address never leaves the host


def test_tcp_works_both_ways_through_the_floating_ip(world: World) -> None:
    """A TCP connection from the external host to the floating IP carries a line in (busybox
    nc on both sides)."""
    lab = world.lab
    listener = lab.instance("fa").command(["busybox", "nc", "-l", "-p", "5301"])
    server = subprocess.Popen(listener, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: "5301" in lab.exec("fa", "ss", "-ltn").stdout, timeout=5,
                   message="fa listens on 5301")
        sent = world.external("sh", "-c", f"echo hello-from-outside | busybox nc -w 2 "
                              f"{world.fip.floating_ip_address} 5301")
        assert sent.returncode == 0, sent.stderr
        out, _ = server.communicate(timeout=5)
        assert "hello-from-outside" in out
    finally:
        if server.poll() is None:
            server.kill()


def test_disassociating_the_floating_ip_stops_it(world: World) -> None:
    lab, cloud = world.lab, world.lab.cloud
    wait_until(lambda: world.external_pings(world.fip.floating_ip_address), timeout=15,
               message="the external host pings the floating IP")
    port_id = world.fip.port_id
    cloud.network.update_ip(world.fip, port_id=None)
    try:
        lab.wait_converged("host1", "host2")
        wait_until(lambda: not world.external_pings(world.fip.floating_ip_address), timeout=10,
                   message="the floating IP no longer answers")
        assert not lab.ping("fa", world.external_ip, wait=0.5)  # and fa has no way out
    finally:
        cloud.network.update_ip(world.fip, port_id=port_id)
    lab.wait_converged("host1", "host2")
    wait_until(lambda: world.external_pings(world.fip.floating_ip_address), timeout=15,
               message="the floating IP answers again")
