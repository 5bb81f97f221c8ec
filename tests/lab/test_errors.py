"""Every lab command fails with a plain message, not a traceback, when the machine cannot run it."""

from __future__ import annotations

from pathlib import Path

import pytest

from neutrino.lab import errors
from neutrino.lab.errors import LabError
from neutrino.lab.lab import Lab


def test_not_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(errors.os, "geteuid", lambda: 1000)
    for command in (lambda: Lab.up(tmp_path, hosts=1), lambda: Lab.load(tmp_path),
                    lambda: Lab.down(tmp_path)):
        with pytest.raises(LabError, match="needs root"):
            command()
    assert not (tmp_path / "lab.json").exists()


def test_missing_open_vswitch_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(errors.os, "geteuid", lambda: 0)
    real_which = errors.shutil.which
    monkeypatch.setattr(errors.shutil, "which",
                        lambda name, path=None: None if name.startswith("ovs") else real_which(name))
    with pytest.raises(LabError, match=r"Open vSwitch is not installed.*openvswitch-switch") as caught:
        Lab.up(tmp_path, hosts=1)
    assert "ovs-vswitchd" in str(caught.value)
    assert "ovsdb-server" in str(caught.value)


def test_missing_iproute2_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(errors.os, "geteuid", lambda: 0)
    monkeypatch.setattr(errors.shutil, "which", lambda name, path=None: None)
    with pytest.raises(LabError, match=r"ip not found.*iproute2"):
        errors.require_lab_prerequisites()


def test_a_failed_command_shows_the_command_and_its_stderr() -> None:
    from neutrino.lab.process import run

    with pytest.raises(LabError, match=r"exit 2\): ls /nonexistent-neutrino-path\n.*No such file"):
        run(["ls", "/nonexistent-neutrino-path"])
    with pytest.raises(LabError, match="cannot run no-such-program-neutrino"):
        run(["no-such-program-neutrino"])
    with pytest.raises(LabError, match=r"timed out after 0\.2 s: sleep 5"):
        run(["sleep", "5"], timeout=0.2)
