"""Namespace helpers: veths born in their namespaces, tx checksum offload, sockets inside."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from lab.helpers import needs_lab, root_links
from neutrino.lab import netns
from neutrino.lab.errors import LabError


@pytest.fixture
def two_namespaces(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    base = f"nltest{abs(hash(request.node.nodeid)) % 10**6:06d}"
    names = (f"{base}-a", f"{base}-b")
    try:
        for name in names:
            netns.create_namespace(name)
        yield names
    finally:
        for name in names:
            netns.delete_namespace(name)


@needs_lab
def test_veth_ends_are_created_in_their_namespaces_only(two_namespaces: tuple[str, str]) -> None:
    a, b = two_namespaces
    before = root_links()
    netns.create_veth("tapx", a, "eth0", b, mtu=1400, peer_mac="fa:16:3e:00:00:05")
    assert root_links() == before
    end_a, end_b = netns.link_info(a, "tapx"), netns.link_info(b, "eth0")
    assert end_a is not None and end_b is not None
    assert (end_a.mtu, end_b.mtu, end_b.mac) == (1400, 1400, "fa:16:3e:00:00:05")
    assert netns.link_info(a, "eth0") is None


@needs_lab
def test_tx_checksum_offload_can_be_turned_off_without_ethtool(two_namespaces: tuple[str, str]) -> None:
    a, b = two_namespaces
    netns.create_veth("tapx", a, "eth0", b)
    assert netns.tx_checksum_enabled(b, "eth0")  # veth default: on
    netns.set_tx_checksum(b, "eth0", False)
    assert not netns.tx_checksum_enabled(b, "eth0")
    assert netns.tx_checksum_enabled(a, "tapx")  # only the end we asked for


@needs_lab
def test_a_socket_opened_in_a_namespace_talks_there(two_namespaces: tuple[str, str]) -> None:
    a, b = two_namespaces
    netns.create_veth("veth-a", a, "veth-b", b)
    netns.add_address(a, "veth-a", "192.0.2.1/24")
    netns.add_address(b, "veth-b", "192.0.2.2/24")
    netns.set_link(a, "veth-a", up=True)
    netns.set_link(b, "veth-b", up=True)
    with netns.socket_in(b, socket.AF_INET, socket.SOCK_DGRAM) as server, \
            netns.socket_in(a, socket.AF_INET, socket.SOCK_DGRAM) as client:
        server.bind(("192.0.2.2", 9999))
        server.settimeout(5)
        client.sendto(b"hello", ("192.0.2.2", 9999))
        assert server.recvfrom(100) == (b"hello", ("192.0.2.1", client.getsockname()[1]))
    assert [str(x) for x in netns.addresses(a, "veth-a")] == ["192.0.2.1/24"]


def test_interface_names_must_fit_ifnamsiz() -> None:
    assert netns.check_ifname("a" * 15)
    with pytest.raises(LabError, match="at most 15"):
        netns.check_ifname("a" * 16)


@needs_lab
def test_deleting_a_namespace_stops_its_processes(two_namespaces: tuple[str, str]) -> None:
    a, _ = two_namespaces

    sleeper = subprocess.Popen(netns.exec_argv(a, ["sleep", "600"]))
    try:
        deadline = time.monotonic() + 5
        while netns.namespace_pids(a) != [sleeper.pid] and time.monotonic() < deadline:
            time.sleep(0.01)  # `ip netns exec` has not entered the namespace yet
        assert netns.namespace_pids(a) == [sleeper.pid]
        assert netns.delete_namespace(a)
        assert sleeper.wait(5) is not None
        assert not netns.namespace_exists(a)
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
