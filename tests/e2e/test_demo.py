"""`make demo` end to end: `python -m neutrino.demo` brings up a lab of three hosts (two of them
gateways), builds two projects through openstacksdk, probes with real ping and TCP, prints the
summary table, fails the router's active gateway host over and back, and tears everything
down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.helpers import LAB_UNAVAILABLE
from neutrino.demo import PROBES
from neutrino.lab import netns
from neutrino.lab.state import lab_prefix

pytestmark = pytest.mark.root


def test_the_demo_runs_end_to_end_and_leaves_nothing_behind(tmp_path: Path) -> None:
    if LAB_UNAVAILABLE is not None:
        pytest.skip(f"lab unavailable: {LAB_UNAVAILABLE}")
    state_dir = tmp_path / "demo"
    try:
        done = subprocess.run([sys.executable, "-m", "neutrino.demo", "--state-dir", str(state_dir)],
                              capture_output=True, text=True, check=False, timeout=400,
                              env={**os.environ, "COLUMNS": "160"})
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        assert "Who reaches whom, and why" in output
        for probe in PROBES:  # one row per probe in the table
            assert any(line.lstrip().startswith(f"{probe.number} ") and probe.reason in line
                       for line in output.splitlines()), f"no row for probe {probe.number}"
        assert f"All {len(PROBES)} probes matched their expectations." in output
        # the gateway failover: its steps are shown and went as expected (the exit status says
        # so too); the measured gap and loss are printed, not judged
        assert "$ neutrino lab fail host1 --how vswitchd" in output
        assert "$ neutrino lab heal host1" in output
        assert "red-router's gateway address" in output
        assert "the API now shows host2 active" in output
        assert "requests lost on the return" in output
        # ... and the host failure reached a VNF manager's webhook, raised and cleared
        assert "the VNF manager got org.neutrino.fault.host.down for host1" in output
        assert "the VNF manager got org.neutrino.fault.host.down.cleared for host1" in output
        assert "The gateway failover did not go as expected." not in output
        assert "$ neutrino lab down" in output
        assert not state_dir.exists()
    finally:
        left = netns.list_namespaces(lab_prefix(state_dir) + "-")
        if left:  # do not leave a broken run's lab on the machine
            subprocess.run([sys.executable, "-m", "neutrino.cli.main", "lab", "down",
                            "--state-dir", str(state_dir)], check=False, timeout=120)
    assert left == [], f"namespaces left behind: {left}"
