"""Helpers for the lab tests: real namespaces and real Open vSwitch (userspace datapath).

Tests that need them carry `LAB_MARKS` / `@needs_lab` (the `root` marker plus a skip that gives
the reason when the machine cannot run a lab).  `lab_in` tears its lab down in a `finally`, and
if that teardown fails it still deletes the lab's namespaces by prefix.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from neutrino.lab import netns
from neutrino.lab.errors import LabError, require_lab_prerequisites
from neutrino.lab.host import LabHost
from neutrino.lab.instance import LabInstance
from neutrino.lab.lab import Lab


def lab_unavailable_reason() -> str | None:
    """Why this machine cannot run a lab, or None."""
    try:
        require_lab_prerequisites()
    except LabError as error:
        return str(error)
    return None


LAB_UNAVAILABLE = lab_unavailable_reason()
skip_without_lab = pytest.mark.skipif(LAB_UNAVAILABLE is not None,
                                      reason=f"lab unavailable: {LAB_UNAVAILABLE}")
LAB_MARKS = [pytest.mark.root, skip_without_lab]  # for `pytestmark = LAB_MARKS`

F = TypeVar("F", bound=Callable[..., object])


def needs_lab(test: F) -> F:
    """Decorator form of LAB_MARKS, for modules that also hold tests without root."""
    return pytest.mark.root(skip_without_lab(test))


@contextlib.contextmanager
def lab_in(state_dir: Path, *, hosts: int = 2, agent_command: list[str] | None = None,
           bridge_mappings: dict[str, str] | None = None) -> Iterator[Lab]:
    """A lab that is up for the duration of the block, then torn down whatever happened."""
    lab = Lab.up(state_dir, hosts=hosts, agent_command=agent_command, bridge_mappings=bridge_mappings)
    try:
        yield lab
    finally:
        try:
            Lab.down(state_dir)
        finally:
            for name in netns.list_namespaces(lab.state.prefix + "-"):
                with contextlib.suppress(LabError):
                    netns.delete_namespace(name)


# --- traffic helpers ---------------------------------------------------------------------------

def ping(instance: LabInstance | LabHost, address: str, *, count: int = 1, wait: float = 1.0) -> bool:
    result = instance.exec(["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", str(wait), address],
                           check=False, timeout=count * wait + 10)
    return result.returncode == 0


def wait_for_ping(instance: LabInstance | LabHost, address: str, *, timeout: float = 10.0) -> float:
    """Ping until one reply arrives; the seconds it took (fails the test after `timeout`)."""
    start = time.monotonic()
    while not ping(instance, address):
        if time.monotonic() - start > timeout:
            pytest.fail(f"{instance!r} cannot ping {address} after {timeout:g} s")
    return time.monotonic() - start


def tcp_transfer(client: LabInstance, server: LabInstance, server_ip: str, *, size: int = 4 << 20,
                 port: int = 5001, timeout: float = 10.0) -> bool:
    """Send `size` random bytes over one TCP connection from `client` to `server`; whether
    they all arrived intact."""
    payload = os.urandom(size)
    received = hashlib.sha256()
    count = [0]
    listener = netns.socket_in(server.namespace)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((server_ip, port))
    listener.listen(1)
    listener.settimeout(timeout)

    def serve() -> None:
        with contextlib.suppress(OSError), listener, listener.accept()[0] as conn:
            conn.settimeout(timeout)
            while chunk := conn.recv(1 << 16):
                received.update(chunk)
                count[0] += len(chunk)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with netns.socket_in(client.namespace) as sock:
            sock.settimeout(timeout)
            sock.connect((server_ip, port))
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            thread.join(timeout + 5)
    except OSError:
        thread.join(timeout + 5)
        return False
    return count[0] == size and received.digest() == hashlib.sha256(payload).digest()


# --- a two-host overlay: geneve tunnels and static flows ---------------------------------------

TUNNEL_KEY = 100


@dataclass
class Overlay:
    """Two hosts joined by geneve tunnels, one instance on each, 10.0.0.1 <-> 10.0.0.2."""

    lab: Lab
    host1: LabHost
    host2: LabHost
    vm1: LabInstance
    vm2: LabInstance

    def install_flows(self, host: LabHost) -> None:
        """The static "agent": in_port=vm -> tunnel (key 100), tunnel with key 100 -> vm.
        Everything, ARP included, takes these two flows."""
        peer = self.host2 if host is self.host1 else self.host1
        vm = self.vm1 if host is self.host1 else self.vm2
        tunnel = host.ovs.ofport(f"tun-{peer.name}")
        vif = vm.ofport()
        host.ovs.ofctl("add-flows", "-", options=("--bundle",), input=(
            f"in_port={vif},actions=set_field:{TUNNEL_KEY}->tun_id,output:{tunnel}\n"
            f"in_port={tunnel},tun_id={TUNNEL_KEY},actions=output:{vif}\n"))


def build_overlay(lab: Lab) -> Overlay:
    host1, host2 = lab.host("host1"), lab.host("host2")
    for local, remote in ((host1, host2), (host2, host1)):
        port = f"tun-{remote.name}"
        local.ovs.vsctl("add-port", "br-int", port, "--", "set", "Interface", port, "type=geneve",
                        f"options:remote_ip={remote.underlay_ip}", "options:key=flow")
    vm1 = lab.plug("vm1", "host1")
    vm2 = lab.plug("vm2", "host2")
    vm1.configure(["10.0.0.1/24"])
    vm2.configure(["10.0.0.2/24"])
    overlay = Overlay(lab, host1, host2, vm1, vm2)
    overlay.install_flows(host1)
    overlay.install_flows(host2)
    return overlay


def root_links() -> set[str]:
    """Link names in the root namespace (the lab must never add any)."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def geneve_tunnel(local: LabHost, remote: LabHost) -> int:
    """A geneve tunnel port `tun-<remote>` on `local`'s br-int towards `remote` (key=flow), made
    by hand as a test without an agent needs it; its ofport."""
    name = f"tun-{remote.name}"
    local.ovs.vsctl("add-port", "br-int", name, "--", "set", "Interface", name, "type=geneve",
                    f"options:remote_ip={remote.underlay_ip}", "options:key=flow")
    return int(local.ovs.ofport(name))
