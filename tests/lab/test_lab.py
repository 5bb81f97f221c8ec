"""The lab as a whole: one per state directory, and `down` leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.helpers import LAB_MARKS, lab_in, ping, root_links
from neutrino.lab import netns, process
from neutrino.lab.errors import LabError
from neutrino.lab.host import LabHost
from neutrino.lab.lab import Lab
from neutrino.lab.state import lab_prefix

pytestmark = LAB_MARKS


def lab_pids(lab: Lab) -> list[int]:
    """Every pid the lab's daemons and namespaces hold right now."""
    pids = []
    for host in lab.hosts:
        pids += [pid for pid in (host.ovs.pid("ovsdb-server"), host.ovs.pid("ovs-vswitchd"),
                                 host.agent_pid()) if pid]
    for name in netns.list_namespaces(lab.state.prefix + "-"):
        pids += netns.namespace_pids(name)
    return sorted(set(pids))


def assert_nothing_left(state_dir: Path, pids: list[int], links_before: set[str]) -> None:
    assert netns.list_namespaces(lab_prefix(state_dir) + "-") == []
    assert [pid for pid in pids if process.pid_alive(pid)] == []
    assert not (state_dir / "run").exists()
    assert not (state_dir / "lab.json").exists()
    assert root_links() == links_before


def test_down_removes_every_namespace_process_and_run_dir(tmp_path: Path) -> None:
    links_before = root_links()
    lab = Lab.up(tmp_path, hosts=2, agent_command=["sleep", "600"])
    try:
        lab.plug("vm1", "host1").configure(["10.0.0.1/24"])
        lab.plug("vm2", "host2")
        pids = lab_pids(lab)
        assert len(pids) >= 6  # 2 x (ovsdb-server, ovs-vswitchd, agent)
        assert len(netns.list_namespaces(lab.state.prefix + "-")) == 5
    finally:
        report = Lab.down(tmp_path)
    assert len(report.namespaces) == 5 and set(pids) <= set(report.pids)
    assert_nothing_left(tmp_path, pids, links_before)


def test_down_copes_with_a_half_broken_lab_and_a_lost_state_file(tmp_path: Path) -> None:
    links_before = root_links()
    lab = Lab.up(tmp_path, hosts=2)
    try:
        lab.plug("vm1", "host1")
        lab.plug("vm2", "host2")
        pids = lab_pids(lab)
        lab.fail("host1", "vswitchd")
        lab.fail("host2", "link")
        netns.delete_namespace(lab.state.instance_namespace("vm2"))  # gone behind the lab's back
        (tmp_path / "lab.json").unlink()  # and the state with it
    finally:
        Lab.down(tmp_path)
    assert_nothing_left(tmp_path, pids, links_before)
    Lab.down(tmp_path)  # a second down is harmless


def test_a_second_up_in_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    with lab_in(tmp_path, hosts=1):
        with pytest.raises(LabError, match=r"already up.*neutrino lab down"):
            Lab.up(tmp_path, hosts=1)
        assert Lab.load(tmp_path).host("host1").status().healthy


def test_a_failed_up_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    links_before = root_links()
    real_start = LabHost.start

    def start(self: LabHost) -> None:
        real_start(self)
        if self.name == "host2":
            raise LabError("injected failure")

    monkeypatch.setattr(LabHost, "start", start)
    with pytest.raises(LabError, match="injected failure"):
        Lab.up(tmp_path, hosts=2)
    assert_nothing_left(tmp_path, [], links_before)


def test_commands_find_the_lab_from_its_state_dir_alone(tmp_path: Path) -> None:
    with lab_in(tmp_path, hosts=2):
        with Lab.session(tmp_path) as lab:  # a later `neutrino lab ...` command
            lab.plug("vm1", "host2")
        again = Lab.load(tmp_path)
        assert again.instance("vm1").host.name == "host2"
        assert ping(again.host("host1"), again.host("host2").underlay_ip)


def test_two_labs_side_by_side_do_not_collide(tmp_path: Path) -> None:
    """Same underlay subnet, same host names: only the prefixes differ."""
    with lab_in(tmp_path / "a", hosts=1) as a, lab_in(tmp_path / "b", hosts=1) as b:
        assert a.state.prefix != b.state.prefix
        for lab in (a, b):
            assert ping(lab.host("host1"), str(lab.fabric.gateway.ip))
        a.fail("host1", "link")
        assert not ping(a.host("host1"), str(a.fabric.gateway.ip))
        assert ping(b.host("host1"), str(b.fabric.gateway.ip))


def test_bad_arguments_fail_before_anything_is_made(tmp_path: Path) -> None:
    for kwargs, message in (({"hosts": 0}, "between 1 and"), ({"underlay": "10.250.0.0/30", "hosts": 1},
                            "does not fit"), ({"underlay": "nonsense"}, "invalid underlay"),
                            ({"bridge_mappings": {"physnet1": "br-int"}}, "invalid bridge mapping")):
        with pytest.raises(LabError, match=message):
            Lab.up(tmp_path, **kwargs)
        assert netns.list_namespaces(lab_prefix(tmp_path) + "-") == []
    assert not (tmp_path / "lab.json").exists()
    assert os.listdir(tmp_path) in ([], ["lab.lock"])
