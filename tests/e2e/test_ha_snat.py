"""SNAT on HA gateway chassis, on the real data path: a router's SNAT is scheduled on host1
(preferred) and host2 (`lab up --gateways 2`); an instance on host3 without a floating IP
reaches the external host as the router's gateway address, through host1. When host1 fails
(its ovs-vswitchd killed, or its underlay link cut) the data path itself moves the traffic to
host2 (BFD on the tunnels; no control plane on the way); when host1 is back, the traffic
returns to it only once its flows are in, losing nothing.

The world: router `snat-router` with its gateway on `public` and an interface on `snat-net`
(10.74.0.0/24); instance sa on host3.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from e2e.support import Capture, E2ELab, lab_up, neutrino, wait_until
from neutrino.lab.pinger import ContinuousPing, PingRecord
from neutrino.lab.state import lab_prefix

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("e2e-ha-snat")]

PING_INTERVAL = 0.01  # seconds between echo requests of the continuous ping


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2ELab]:
    with lab_up(tmp_path_factory, hosts=3, gateways=2) as lab:
        yield lab


@dataclass
class World:
    lab: E2ELab
    router: Any
    gateway_ip: str
    external_ip: str

    def roles(self) -> dict[str, str]:
        return self.lab.gateway_roles(self.router.id)

    def external(self, *argv: str) -> Any:
        return neutrino(self.lab.state_dir, "lab", "exec", "external", "--state-dir",
                        str(self.lab.state_dir), "--", *argv)


@pytest.fixture(scope="module")
def world(lab: E2ELab) -> Iterator[World]:
    cloud = lab.cloud
    public = cloud.network.find_network("public")
    group = cloud.network.create_security_group(name="snat-open")
    cloud.network.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                             ethertype="IPv4", remote_ip_prefix="0.0.0.0/0")
    net = cloud.network.create_network(name="snat-net")
    subnet = cloud.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.74.0.0/24")
    router = cloud.network.create_router(name="snat-router",
                                         external_gateway_info={"network_id": public.id})
    cloud.network.add_interface_to_router(router, subnet_id=subnet.id)
    port = cloud.network.create_port(network_id=net.id, name="sa", security_group_ids=[group.id])
    lab.boot_all([("sa", "host3", port.id)])
    lab.wait_converged("host1", "host2", "host3")
    router = cloud.network.get_router(router.id)
    status = json.loads(neutrino(lab.state_dir, "lab", "status", "--json").stdout)
    gateway_ip = router.external_gateway_info["external_fixed_ips"][0]["ip_address"]
    world = World(lab, router, gateway_ip, status["external_ip"])
    wait_until(lambda: lab.ping("sa", world.external_ip), timeout=20,
               message="sa pings the external host")
    yield world


def test_an_instance_without_a_floating_ip_reaches_the_external_host_as_the_gateway(
        world: World) -> None:
    """SNAT: the external host sees the router's gateway address as the source, never the
    instance's own."""
    lab = world.lab
    with Capture({"external": f"{lab_prefix(lab.state_dir)}-external"}) as capture:
        assert lab.ping("sa", world.external_ip, count=2)
        seen = capture.matching(lambda f: f.ipv4 is not None and f.ipv4[0] == 1, seconds=0.5)
    sources = {f.ipv4[1] for f in seen["external"] if f.ipv4 is not None}
    assert sources == {world.gateway_ip}, sources


def test_the_api_shows_the_preferred_gateway_active(world: World) -> None:
    wait_until(lambda: world.roles() == {"host1": "active", "host2": "standby"}, timeout=10,
               message=f"host1 active, host2 standby (now {world.roles()})")


def test_the_external_host_resolves_the_gateway_address_to_the_gateway_port(
        world: World) -> None:
    """ARP for the gateway address is answered (by the active gateway chassis) with the MAC of
    the router's gateway port."""
    lab = world.lab
    gateway_port = next(lab.cloud.network.ports(device_id=world.router.id,
                                                device_owner="network:router_gateway"))
    world.external("ip", "neigh", "flush", "dev", "eth0")
    assert lab.ping("sa", world.external_ip)  # the reply makes the external host ask
    shown = world.external("ip", "neigh", "show", world.gateway_ip).stdout
    assert gateway_port.mac_address in shown, shown


def test_a_port_forwarding_carries_a_tcp_connection_from_outside_to_the_instance(
        world: World) -> None:
    """A floating IP with no port of its own, port 2222/tcp forwarded to sa:5301: the external
    host's connection arrives (centralized on the active gateway chassis, host1), and sa
    sees the external host's real address. Deleting the forwarding stops it."""
    lab, cloud = world.lab, world.lab.cloud
    public = cloud.network.find_network("public")
    fip = cloud.network.create_ip(floating_network_id=public.id)
    address = lab.port("sa").fixed_ips[0]["ip_address"]
    forwarding = cloud.network.create_port_forwarding(
        floatingip_id=fip.id, internal_port_id=lab.port("sa").id, internal_ip_address=address,
        internal_port=5301, external_port=2222, protocol="tcp")
    lab.wait_converged("host1", "host2", "host3")

    def deliver(line: str) -> str:
        listener = lab.instance("sa").command(["busybox", "nc", "-l", "-p", "5301"])
        server = subprocess.Popen(listener, stdout=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: "5301" in lab.exec("sa", "ss", "-ltn").stdout, timeout=5,
                       message="sa listens on 5301")
            neutrino(lab.state_dir, "lab", "exec", "external", "--state-dir",
                     str(lab.state_dir), "--", "sh", "-c",
                     f"echo {line} | busybox nc -w 2 {fip.floating_ip_address} 2222", check=False)
            out, _ = server.communicate(timeout=3)
            return out
        except subprocess.TimeoutExpired:  # nothing arrived: the listener never returns
            return ""
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()

    try:
        wait_until(lambda: "forwarded-in" in deliver("forwarded-in"), timeout=15,
                   message="a line reaches sa through the port forwarding")
        with lab.capture("sa") as capture:
            assert "seen" in deliver("seen")
            tcp = capture.matching(lambda f: f.ipv4 is not None and f.ipv4[0] == 6, seconds=0.5)
        assert {f.ipv4[1] for f in tcp["sa"] if f.ipv4 is not None} == {world.external_ip}
    finally:
        cloud.network.delete_port_forwarding(forwarding, fip.id)
    lab.wait_converged("host1", "host2", "host3")
    assert "gone" not in deliver("gone")
    cloud.network.delete_ip(fip)


def assert_none_lost(record: PingRecord) -> None:
    """Every request from the first to the last answered one got its reply (the request ping
    had in flight when it was stopped is not a loss)."""
    assert record.replies and min(seq for seq, _t in record.replies) == 1, record
    assert record.missing() == 0, record


def test_maintenance_drains_the_active_gateway_without_loss_and_lifting_it_returns(
        world: World) -> None:
    """An admin puts host1 in maintenance: its agent drains its tunnels (bfd:cpath_down), the
    data path moves SNAT to host2, and only then host1 leaves the router's schedule; lifting
    it brings host1 back first once it is ready. A continuous ping loses nothing throughout."""
    lab = world.lab

    def maintenance(on: bool) -> None:
        response = lab.cloud.network.put("/neutrino/chassis/host1/state",
                                         json={"state": {"maintenance": on}})
        assert response.status_code == 200, response.text

    wait_until(lambda: world.roles() == {"host1": "active", "host2": "standby"}, timeout=20,
               message="host1 active before maintenance")
    with ContinuousPing(lab.instance("sa").namespace, world.external_ip,
                        interval=PING_INTERVAL) as pinger:
        time.sleep(0.5)
        maintenance(True)
        wait_until(lambda: "host1" not in world.roles(), timeout=15,
                   message=f"host1 out of the router's schedule (now {world.roles()})")
        assert world.roles().get("host2") == "active"
        time.sleep(0.5)
        maintenance(False)
        wait_until(lambda: world.roles() == {"host1": "active", "host2": "standby"}, timeout=20,
                   message=f"host1 active again (now {world.roles()})")
        time.sleep(0.5)
    record = pinger.record
    print(f"\nmaintenance in and out: {record.missing()} of {record.transmitted} requests lost, "
          f"longest gap {record.gap() * 1000:.0f} ms")
    assert_none_lost(record)


@pytest.mark.parametrize("how", ["vswitchd", "link"])
def test_killing_the_active_gateway_moves_snat_to_the_standby_in_the_data_path(
        world: World, how: str) -> None:
    """A continuous ping from sa to the external host while host1 fails: it resumes by itself
    through host2 (the test reports the gap); the API then shows host2 active. When host1 is
    healed, the traffic goes back to it without losing a packet."""
    lab = world.lab
    wait_until(lambda: world.roles() == {"host1": "active", "host2": "standby"}, timeout=20,
               message="host1 active before the failure")
    with ContinuousPing(lab.instance("sa").namespace, world.external_ip,
                        interval=PING_INTERVAL) as pinger:
        time.sleep(1.0)
        failed_at = time.time()
        neutrino(lab.state_dir, "lab", "fail", "host1", "--how", how)
        time.sleep(2.0)
    record = pinger.record
    gap = record.gap(after=failed_at - 0.5)
    print(f"\nfailover gap ({how}): {gap * 1000:.0f} ms, {record.lost} of "
          f"{record.transmitted} requests lost")
    assert record.replies_between(failed_at + 1.0, failed_at + 2.0) > 0, \
        "no replies after the failure: the traffic did not move to host2"
    assert gap < 2.0
    wait_until(lambda: world.roles().get("host2") == "active", timeout=10,
               message=f"host2 active after host1 failed (now {world.roles()})")

    # recovery: host1 comes back; traffic returns to it once it is ready, losing nothing
    with ContinuousPing(lab.instance("sa").namespace, world.external_ip,
                        interval=PING_INTERVAL) as pinger:
        time.sleep(0.5)
        neutrino(lab.state_dir, "lab", "heal", "host1")
        wait_until(lambda: world.roles() == {"host1": "active", "host2": "standby"},
                   timeout=30, message=f"host1 active again (now {world.roles()})")
        time.sleep(1.0)
    back = pinger.record
    print(f"return to host1 ({how}): {back.missing()} of {back.transmitted} requests lost, "
          f"longest gap {back.gap() * 1000:.0f} ms")
    assert_none_lost(back)
