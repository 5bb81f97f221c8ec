"""Fault management on a real lab (OPNFV Doctor's loop): a host fails (its ovs-vswitchd killed,
its underlay link cut, its agent stopped); the inspector detects it, the ports bound there go
DOWN, the gateway roles it held move, and a VNF manager's webhook receives a CloudEvents
`host.down` event naming the affected port and instance; when the host comes back, everything
returns and a `host.down.cleared` event follows. A tenant's subscription sees only its own.

The world: `lab up --hosts 3 --gateways 2`; router `doc-router` (gateway on public) with an
interface on `doc-net`; instance vnf1 on host1 (the preferred gateway), vnf2 on host3.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from e2e.support import E2ELab, lab_up, neutrino, wait_until
from neutrino.lab import netns

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("e2e-faults")]


@dataclass
class Receiver:
    """A VNF manager's webhook endpoint on 127.0.0.1: every event it got, with when."""

    server: ThreadingHTTPServer
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/doctor"

    def of_type(self, event_type: str, subject: str) -> list[dict[str, Any]]:
        return [e for _t, e in self.events if e["type"] == event_type and e["subject"] == subject]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    got: list[tuple[float, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            got.append((time.time(), json.loads(self.rfile.read(length))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(server, got)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2ELab]:
    with lab_up(tmp_path_factory, hosts=3, gateways=2) as lab:
        yield lab


@dataclass
class World:
    lab: E2ELab
    router: Any
    port: Any
    receiver: Receiver

    def roles(self) -> dict[str, str]:
        return self.lab.gateway_roles(self.router.id)

    def port_status(self) -> str:
        status: str = self.lab.cloud.network.get_port(self.port.id).status
        return status


@pytest.fixture(scope="module")
def world(lab: E2ELab, receiver: Receiver) -> Iterator[World]:
    cloud = lab.cloud
    public = cloud.network.find_network("public")
    net = cloud.network.create_network(name="doc-net")
    subnet = cloud.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.75.0.0/24")
    router = cloud.network.create_router(name="doc-router",
                                         external_gateway_info={"network_id": public.id})
    cloud.network.add_interface_to_router(router, subnet_id=subnet.id)
    port = cloud.network.create_port(network_id=net.id, name="vnf1")
    peer = cloud.network.create_port(network_id=net.id, name="vnf2")
    # vnf2 on host3: host2 (the router's standby gateway) and host3 both have tunnels to
    # host1, so two peers watch it by BFD
    lab.boot_all([("vnf1", "host1", port.id), ("vnf2", "host3", peer.id)])
    port = cloud.network.get_port(port.id)  # (lab boot made it an instance's: device_id)
    lab.wait_converged("host1", "host2", "host3")
    subscribed = cloud.network.post("/fault-subscriptions", json={"subscription": {
        "url": receiver.url, "event_types": ["host.down"]}})
    assert subscribed.status_code == 201, subscribed.text
    world = World(lab, router, port, receiver)
    wait_until(lambda: world.roles() == {"host1": "active", "host2": "standby"}, timeout=20,
               message="host1 the active gateway")
    wait_until(lambda: world.port_status() == "ACTIVE", message="vnf1 ACTIVE")
    yield world


@pytest.mark.parametrize("how", ["vswitchd", "link", "agent"])
def test_a_failed_host_is_detected_notified_acted_on_and_recovered(world: World, how: str) -> None:
    lab, receiver = world.lab, world.receiver
    raised_before = len(receiver.of_type("org.neutrino.fault.host.down", "host1"))
    cleared_before = len(receiver.of_type("org.neutrino.fault.host.down.cleared", "host1"))
    failed_at = time.time()
    neutrino(lab.state_dir, "lab", "fail", "host1", "--how", how)
    try:
        wait_until(lambda: len(receiver.of_type("org.neutrino.fault.host.down", "host1"))
                   > raised_before, timeout=15, message=f"the webhook gets host1's fault ({how})")
        received_at, event = next((t, e) for t, e in receiver.events
                                  if e["type"] == "org.neutrino.fault.host.down"
                                  and e["subject"] == "host1" and t >= failed_at)
        data = event["data"]
        print(f"\n{how}: fault injected -> webhook delivered in "
              f"{(received_at - failed_at) * 1000:.0f} ms (source {data['source']})")
        assert event["specversion"] == "1.0" and data["state"] == "active"
        assert world.port.id in data["affected"]["ports"]
        assert world.port.device_id in data["affected"]["instances"]
        assert world.router.id in data["affected"]["routers"]
        wait_until(lambda: world.port_status() == "DOWN", timeout=5, message="vnf1 DOWN")
        wait_until(lambda: "host1" not in world.roles(), timeout=10,
                   message=f"host1's gateway role moved (now {world.roles()})")
    finally:
        neutrino(lab.state_dir, "lab", "heal", "host1")
    wait_until(lambda: len(receiver.of_type("org.neutrino.fault.host.down.cleared", "host1"))
               > cleared_before, timeout=30, message="the webhook gets the fault cleared")
    wait_until(lambda: world.port_status() == "ACTIVE", timeout=15, message="vnf1 ACTIVE again")
    wait_until(lambda: world.roles() == {"host1": "active", "host2": "standby"}, timeout=30,
               message=f"host1 active again (now {world.roles()})")


def test_a_vif_link_going_down_is_a_port_fault_for_the_port_alone(world: World) -> None:
    """The host side of vnf2's VIF goes down: a port.down event naming vnf2's port and instance
    (not a host fault), the port DOWN; link up again: cleared, ACTIVE."""
    lab, receiver = world.lab, world.receiver
    subscribed = lab.cloud.network.post("/fault-subscriptions", json={"subscription": {
        "url": receiver.url, "event_types": ["port.down"]}})
    assert subscribed.status_code == 201, subscribed.text
    vnf2 = lab.instance("vnf2")
    port = lab.cloud.network.get_port(vnf2.record.port_id)
    host_ns, tap = vnf2.host.namespace, vnf2.record.host_ifname
    downed_at = time.time()
    netns.set_link(host_ns, tap, up=False)
    try:
        wait_until(lambda: receiver.of_type("org.neutrino.fault.port.down", port.id), timeout=10,
                   message="the webhook gets vnf2's port fault")
        (event,) = receiver.of_type("org.neutrino.fault.port.down", port.id)
        assert event["data"]["affected"]["instances"] == [port.device_id]
        wait_until(lambda: lab.cloud.network.get_port(port.id).status == "DOWN", timeout=5,
                   message="vnf2's port DOWN")
        # (a port fault, not its host's: no host.down for host3 since the link went down)
        assert not [e for t, e in receiver.events if t >= downed_at
                    and e["type"] == "org.neutrino.fault.host.down" and e["subject"] == "host3"]
    finally:
        netns.set_link(host_ns, tap, up=True)
    wait_until(lambda: receiver.of_type("org.neutrino.fault.port.down.cleared", port.id),
               timeout=10, message="the port fault cleared")
    wait_until(lambda: lab.cloud.network.get_port(port.id).status == "ACTIVE", timeout=5,
               message="vnf2's port ACTIVE again")
