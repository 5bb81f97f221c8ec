"""The agent reads VIFs plugged os-vif style from its host's real OVSDB and keeps br-int's
tunnel ports one per peer chassis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.helpers import LAB_UNAVAILABLE, lab_in
from neutrino.agent.ovsdb import HostOvsdb, TunnelSpec, tunnel_port_name
from neutrino.lab.lab import Lab

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if LAB_UNAVAILABLE is not None:
        pytest.skip(f"lab unavailable: {LAB_UNAVAILABLE}")
    with lab_in(tmp_path_factory.mktemp("lab"), hosts=1) as running:
        yield running


def wait_until(check: Callable[[], bool], timeout: float = 10.0, show: object = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in time: {show() if callable(show) else ''}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def ovsdb(lab: Lab) -> Iterator[tuple[HostOvsdb, threading.Event]]:
    """One client for the module, as the agent keeps one for its whole life."""
    changed = threading.Event()
    host = lab.host("host1")
    client = HostOvsdb(f"unix:{Path(host.ovs.db_socket)}", on_change=changed.set)
    yield client, changed
    client.close()


def test_a_vif_plugged_os_vif_style_is_seen_with_its_ofport(
    lab: Lab, ovsdb: tuple[HostOvsdb, threading.Event]
) -> None:
    client, changed = ovsdb
    changed.clear()
    lab.plug("vm-a", "host1", port_id="11111111-2222-3333-4444-555555555555",
             mac="fa:16:3e:00:00:0a")
    wait_until(lambda: "11111111-2222-3333-4444-555555555555" in client.vifs()
               and client.vifs()["11111111-2222-3333-4444-555555555555"].ofport > 0,
               show=lambda: (client.vifs(), [i.name for i in client._bridge_interfaces()]))
    vif = client.vifs()["11111111-2222-3333-4444-555555555555"]
    assert vif.mac == "fa:16:3e:00:00:0a"
    # the IDL updates its rows before it calls back (from its own thread)
    assert changed.wait(timeout=5), "no change callback"
    lab.unplug("vm-a")
    wait_until(lambda: "11111111-2222-3333-4444-555555555555" not in client.vifs(),
               show=client.vifs)


def test_tunnel_ports_follow_the_peer_set(ovsdb: tuple[HostOvsdb, threading.Event]) -> None:
    client, _ = ovsdb
    client.ensure_tunnels({"host7": TunnelSpec("10.250.0.17"), "host8": TunnelSpec("10.250.0.18")})
    wait_until(lambda: set(client.tunnel_ofports()) == {"host7", "host8"},
               show=lambda: [(i.name, list(i.ofport)) for i in client._bridge_interfaces()])
    client.ensure_tunnels({"host8": TunnelSpec("10.250.0.28", "vxlan")})
    wait_until(lambda: set(client.tunnel_ofports()) == {"host8"})
    names = {i.name: i for i in client._bridge_interfaces()}
    iface = names[tunnel_port_name("host8")]
    assert iface.type == "vxlan" and dict(iface.options)["remote_ip"] == "10.250.0.28"
    client.ensure_tunnels({})
    wait_until(lambda: client.tunnel_ofports() == {})


def test_conntrack_zones_are_stable_and_reused(ovsdb: tuple[HostOvsdb, threading.Event]) -> None:
    client, _ = ovsdb
    first = client.ct_zones({"net-a", "net-b"})
    assert sorted(first.values()) == [1, 2]
    wait_until(lambda: client.ct_zones({"net-a", "net-b"}) == first)
    # net-a leaves, net-c arrives: net-b keeps its zone, net-c reuses the freed one
    wait_until(lambda: client.ct_zones({"net-b", "net-c"}) == {"net-b": first["net-b"],
                                                               "net-c": first["net-a"]})


def test_several_clients_in_one_process_each_see_their_own_host(tmp_path: Path) -> None:
    """ovsdbapp keeps one connection per API class; each HostOvsdb has its own, so two of them
    in one process (and a new one after another was closed) read their own host's database."""
    if LAB_UNAVAILABLE is not None:
        pytest.skip(f"lab unavailable: {LAB_UNAVAILABLE}")
    with lab_in(tmp_path, hosts=2) as running:
        first, second = (HostOvsdb(f"unix:{running.host(h).ovs.db_socket}")
                         for h in ("host1", "host2"))
        try:
            assert first.host_config()["system-id"] == "host1"
            assert second.host_config()["system-id"] == "host2"
        finally:
            first.close()
        again = HostOvsdb(f"unix:{running.host('host1').ovs.db_socket}")
        try:
            assert again.host_config()["system-id"] == "host1"
            assert second.host_config()["system-id"] == "host2"
        finally:
            again.close()
            second.close()
