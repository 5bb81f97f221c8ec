"""The lab's saved state: names that never collide, a file that round-trips, one command at a time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from neutrino.lab.errors import LabError
from neutrino.lab.state import HostRecord, InstanceRecord, LabState, lab_prefix, locked


def test_prefix_is_short_stable_and_differs_per_state_dir(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert lab_prefix(a) == lab_prefix(a) == lab_prefix(tmp_path / "x" / ".." / "a")
    assert lab_prefix(a) != lab_prefix(b)
    assert len(lab_prefix(a)) == 8 and lab_prefix(a).startswith("nl")


def test_namespace_names_carry_the_prefix(tmp_path: Path) -> None:
    state = LabState.new(tmp_path)
    assert state.fabric_namespace == f"{state.prefix}-fabric"
    assert state.host_namespace("host1") == f"{state.prefix}-host1"
    assert state.instance_namespace("vm1") == f"{state.prefix}-i-vm1"


def test_state_round_trips_through_lab_json(tmp_path: Path) -> None:
    state = LabState.new(tmp_path, underlay="10.251.0.0/24")
    state.hosts["host1"] = HostRecord("host1", 1, "p-host1", "10.251.0.11/24", str(tmp_path / "run/host1"),
                                      {"physnet1": "br-ex"}, ["sleep", "60"], 1234)
    state.instances["vm1"] = InstanceRecord("vm1", "host1", "p-i-vm1", "port", "device", "fa:16:3e:00:00:01",
                                            1450, "tapport", str(tmp_path / "run/i-vm1"), ["10.0.0.1/24"])
    state.save()
    assert LabState.load(tmp_path) == state


def test_loading_without_a_lab_says_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(LabError, match=r"no lab is up.*neutrino lab up"):
        LabState.load(tmp_path)
    bare = LabState.load_or_bare(tmp_path)
    assert bare.prefix == lab_prefix(tmp_path) and not bare.hosts


def test_a_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "lab.json").write_text("{not json")
    with pytest.raises(LabError, match="cannot read"):
        LabState.load(tmp_path)


def test_lock_admits_one_command_at_a_time(tmp_path: Path) -> None:
    order: list[str] = []

    def second() -> None:
        with locked(tmp_path):
            order.append("second")

    with locked(tmp_path):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first")
    thread.join(5)
    assert order == ["first", "second"]


def test_lock_gives_up_with_a_message(tmp_path: Path) -> None:
    with locked(tmp_path):
        errors: list[LabError] = []

        def contender() -> None:
            try:
                with locked(tmp_path, timeout=0.2):
                    pass
            except LabError as error:
                errors.append(error)

        thread = threading.Thread(target=contender)
        thread.start()
        thread.join(5)
    assert errors and "another lab command" in str(errors[0])
