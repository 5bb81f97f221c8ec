"""A lab host: its bridges, its faults and their repair, and the agent hook."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import pytest

from lab.helpers import Overlay, lab_in, needs_lab, ping, wait_for_ping
from neutrino.lab import process
from neutrino.lab.errors import LabError
from neutrino.lab.host import bfd_at_full_rate, check_host_name


def blocked(overlay: Overlay) -> bool:
    return not ping(overlay.vm1, "10.0.0.2", count=2)


@needs_lab
def test_bridges_follow_the_userspace_tunnelling_layout(overlay: Overlay) -> None:
    ovs = overlay.host1.ovs
    assert ovs.bridges() == ["br-int", "br-phy"]
    assert ovs.ports("br-phy") == ["eth-ul"]
    get = lambda *args: ovs.vsctl("get", *args, wait=False).strip().strip('"')  # noqa: E731
    assert get("Bridge", "br-int", "datapath_type") == get("Bridge", "br-phy", "datapath_type") == "netdev"
    assert get("Bridge", "br-int", "fail_mode") == "secure"
    assert get("Bridge", "br-int", "protocols") == "[OpenFlow10, OpenFlow13, OpenFlow15]"
    assert get("Open_vSwitch", ".", "external_ids:system-id") == "host1"
    assert get("Open_vSwitch", ".", "external_ids:neutrino-encap-ip") == "10.250.0.11"
    assert "genev_sys_6081" in ovs.appctl("tnl/ports/show")


@needs_lab
def test_status_reports_a_healthy_host(overlay: Overlay) -> None:
    status = overlay.host2.status()
    assert status.healthy and status.link_up is True
    assert status.ovsdb_server_pid and status.ovs_vswitchd_pid
    assert status.bridges == ["br-int", "br-phy"]
    assert status.as_dict()["healthy"] is True
    lab_status = overlay.lab.status()
    assert [h["name"] for h in lab_status["hosts"]] == ["host1", "host2"]
    assert {i["name"]: i["addresses"] for i in lab_status["instances"]} == \
        {"vm1": ["10.0.0.1/24"], "vm2": ["10.0.0.2/24"]}


@needs_lab
def test_a_killed_vswitchd_stops_traffic_and_heal_restores_bridges_and_ports(overlay: Overlay) -> None:
    host2 = overlay.host2
    wait_for_ping(overlay.vm1, "10.0.0.2")
    ports_before = host2.ovs.ports("br-int")
    old_pid = host2.status().ovs_vswitchd_pid

    overlay.lab.fail("host2", "vswitchd")
    status = host2.status()
    assert status.ovs_vswitchd_pid is None and not status.healthy
    assert old_pid is not None and not process.pid_alive(old_pid)
    assert blocked(overlay)

    assert overlay.lab.heal("host2") == ["vswitchd"]
    status = host2.status()
    assert status.healthy and status.ovs_vswitchd_pid not in (None, old_pid)
    assert status.bridges == ["br-int", "br-phy"]
    assert host2.ovs.ports("br-int") == ports_before
    # OVS keeps bridges and ports in its database, but not OpenFlow flows
    assert host2.ovs.flows() == []
    assert blocked(overlay)
    overlay.install_flows(host2)  # what the agent will do after a vswitchd restart
    wait_for_ping(overlay.vm1, "10.0.0.2")


@needs_lab
def test_a_cut_link_stops_traffic_and_heal_restores_it(overlay: Overlay) -> None:
    wait_for_ping(overlay.vm1, "10.0.0.2")
    overlay.lab.fail("host1", "link")
    assert overlay.host1.status().link_up is False
    assert blocked(overlay)
    assert not ping(overlay.host1, overlay.host2.underlay_ip)
    assert overlay.lab.heal("host1") == ["link"]
    assert overlay.host1.status().healthy
    wait_for_ping(overlay.vm1, "10.0.0.2")  # flows were untouched: no reinstall needed


@needs_lab
def test_bfd_sessions_show_a_session_reaching_its_full_rate(overlay: Overlay) -> None:
    """What the fault bench waits for before cutting a link: BFD sessions up, and the peer
    transmitting at the interval asked for (30 ms), not the 1 s of a session not yet up."""
    pairs = ((overlay.host1, "tun-host2"), (overlay.host2, "tun-host1"))
    assert all(host.bfd_sessions() == {} for host, _tunnel in pairs)
    try:
        for host, tunnel in pairs:
            host.ovs.vsctl("set", "Interface", tunnel, "bfd:enable=true", "bfd:min_rx=30",
                           "bfd:min_tx=30")

        deadline = time.monotonic() + 10
        while not bfd_at_full_rate(overlay.host1.bfd_sessions()["tun-host2"]):
            assert time.monotonic() < deadline, overlay.host1.bfd_sessions()
            time.sleep(0.05)
        session = overlay.host1.bfd_sessions()["tun-host2"]
        assert session["Remote Session State"] == "up"
        assert session["Local Minimum RX Interval"] == session["Remote Minimum TX Interval"] == "30ms"
    finally:
        for host, tunnel in pairs:
            host.ovs.vsctl("clear", "Interface", tunnel, "bfd")
    assert overlay.host1.bfd_sessions() == {}


@needs_lab
def test_heal_of_a_healthy_host_does_nothing(overlay: Overlay) -> None:
    assert overlay.lab.heal("host1") == []


@needs_lab
def test_failing_what_is_not_there_is_a_clear_error(overlay: Overlay) -> None:
    with pytest.raises(LabError, match="no agent"):
        overlay.lab.fail("host1", "agent")
    with pytest.raises(LabError, match="unknown failure"):
        overlay.lab.fail("host1", cast(Any, "disk"))
    with pytest.raises(LabError, match="no host 'host9'"):
        overlay.lab.fail("host9", "link")


@needs_lab
def test_the_agent_hook_runs_a_command_per_host_and_survives_faults(tmp_path: Path) -> None:
    """No agent exists yet: `sleep` stands in for one, to prove start, crash and restart by pid."""
    with lab_in(tmp_path, hosts=1, agent_command=["sleep", "600"],
                bridge_mappings={"physnet1": "br-ex"}) as lab:
        host = lab.host("host1")
        pid = host.agent_pid()
        assert pid is not None and process.cmdline(pid) == ["sleep", "600"]
        assert process.in_namespace(host.namespace)(pid)
        assert host.status().healthy
        # provider bridges from the bridge mappings, and the mapping for the agent
        assert host.ovs.bridges() == ["br-ex", "br-int", "br-phy"]
        assert "physnet1:br-ex" in host.ovs.vsctl("get", "Open_vSwitch", ".",
                                                 "external_ids:neutrino-bridge-mappings", wait=False)

        lab.fail("host1", "agent")
        assert not process.pid_alive(pid)
        assert lab.host("host1").agent_pid() is None and not lab.host("host1").status().healthy
        assert lab.heal("host1") == ["agent"]
        new_pid = lab.host("host1").agent_pid()
        assert new_pid not in (None, pid)
    assert new_pid is not None and not process.pid_alive(new_pid)


def test_host_names_keep_namespace_names_unambiguous() -> None:
    assert check_host_name("host12") == "host12"
    for bad in ("fabric", "i-vm", "Host1", "1host", "averyveryverylongname"):
        with pytest.raises(LabError):
            check_host_name(bad)


@needs_lab
def test_stop_and_start_reboot_a_host_with_its_ovs_database(tmp_path: Path) -> None:
    with lab_in(tmp_path, hosts=2) as lab:
        host1, host2 = lab.host("host1"), lab.host("host2")
        host1.ovs.vsctl("add-port", "br-int", "tun-host2", "--", "set", "Interface", "tun-host2",
                        "type=geneve", f"options:remote_ip={host2.underlay_ip}")
        old_pids = (host1.ovs.pid("ovsdb-server"), host1.ovs.pid("ovs-vswitchd"))
        host1.stop()
        status = host1.status()
        assert not status.namespace_exists and status.link_up is None
        assert status.ovsdb_server_pid is None and status.ovs_vswitchd_pid is None
        assert not any(pid and process.pid_alive(pid) for pid in old_pids)

        host1.start()
        assert host1.status().healthy
        assert host1.ovs.ports("br-int") == ["tun-host2"]
        assert ping(host1, host2.underlay_ip)
