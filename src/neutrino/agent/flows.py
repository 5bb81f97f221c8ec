"""Desired vs installed flows of one bridge, converged atomically with ovs-ofctl bundles.

May touch: the flows of one OpenFlow bridge, through `ovs-ofctl -O OpenFlow15` against that
bridge's management socket.  Nothing else (no OVSDB, no groups, no other bridges).

`FlowTable.apply(desired)` is the main interface:
- the first call (agent start or restart) never flushes the bridge: `ovs-ofctl --bundle
  replace-flows` dumps what is installed, diffs it against `desired`, and sends only the
  difference in one bundle; flows that are already right are not touched, so traffic keeps
  flowing across an agent restart or upgrade;
- later calls diff `desired` against what this table installed (keyed by table, priority,
  match) and send one bundle of `delete_strict` / `add` lines: an OpenFlow bundle is atomic,
  so the datapath sees either the old flows or the new ones.
`apply_changes(changes)` sends only the flows an incremental renderer reports changed
(`neutrino.pipeline.render.ChassisRenderer`), without diffing the whole table.
`resync()` forces the replace-flows path again (after a vswitchd restart, or to repair drift).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from neutrino.pipeline.flows import Flow, FlowKey

OPENFLOW_VERSION = "OpenFlow15"
# ovs-ofctl accepts port and table names in flows unless told not to, and to do so it first
# fetches the switch's table features (about 1 MB with OpenFlow 1.5): 12 ms of a 4 ms call here.
# Our flows name ports and tables by number only.
NO_NAMES = "--no-names"


class OfctlError(RuntimeError):
    """ovs-ofctl failed (its stderr is in the message)."""


class SwitchLike(Protocol):
    """What FlowTable needs of a switch (neutrino.lab.ovs.OpenVSwitch has it)."""

    def mgmt_socket(self, bridge: str) -> Path: ...

    @property
    def env(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Ofctl:
    """`ovs-ofctl -O OpenFlow15 --no-names <options> <command> <target> <args>` for one bridge."""

    target: str  # e.g. "unix:/run/.../br-int.mgmt"
    env: Mapping[str, str] = field(default_factory=dict)
    binary: str = "ovs-ofctl"
    timeout: float = 30.0

    @classmethod
    def for_switch(cls, switch: SwitchLike, bridge: str = "br-int") -> Ofctl:
        return cls(f"unix:{switch.mgmt_socket(bridge)}", dict(switch.env))

    def run(self, command: str, *args: str, options: Sequence[str] = (), input: str | None = None) -> str:
        binary = shutil.which(self.binary) or self.binary
        argv = [binary, "-O", OPENFLOW_VERSION, NO_NAMES, *options, command, self.target, *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=self.timeout,
                                env={**os.environ, **self.env}, check=False)
        if result.returncode != 0:
            raise OfctlError(f"{' '.join(argv[:5])} ... failed ({result.returncode}): "
                             f"{result.stderr.strip()}")
        return result.stdout


@dataclass(frozen=True)
class FlowDelta:
    """What one apply changed."""

    added: tuple[Flow, ...] = ()
    removed: tuple[Flow, ...] = ()
    resynced: bool = False  # went through replace-flows (the diff was done by ovs-ofctl)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.resynced)


class FlowTable:
    """The flows one agent keeps on one bridge."""

    def __init__(self, ofctl: Ofctl) -> None:
        self.ofctl = ofctl
        self._installed: dict[FlowKey, Flow] = {}
        self._synced = False  # False until the first replace-flows: what is installed is unknown

    @property
    def synced(self) -> bool:
        """Whether the table knows what is installed (a replace-flows has happened)."""
        return self._synced

    @property
    def installed(self) -> list[Flow]:
        """What this table believes is installed (after the first apply)."""
        return list(self._installed.values())

    def installed_by_cookie(self, cookie: int) -> list[Flow]:
        """The installed flows one policy item produced."""
        return [f for f in self._installed.values() if f.cookie == cookie]

    def dump(self) -> list[str]:
        """The bridge's flows as the switch reports them (`dump-flows --no-stats`)."""
        out = self.ofctl.run("dump-flows", options=("--no-stats",))
        return [line.strip() for line in out.splitlines() if line.strip() and "reply" not in line]

    def apply(self, desired: Iterable[Flow]) -> FlowDelta:
        """Make the bridge hold exactly `desired`, in one atomic bundle."""
        wanted = _by_key(desired)
        if not self._synced:
            return self._replace(wanted)
        removed = [f for k, f in self._installed.items() if k not in wanted]
        installed = self._installed
        added = [f for k, f in wanted.items()  # (rendering reuses unchanged Flow objects)
                 if (old := installed.get(k)) is not f and old != f]
        if not removed and not added:
            return FlowDelta()
        self._send(removed, added)
        self._installed = wanted
        return FlowDelta(tuple(added), tuple(removed))

    def apply_changes(self, changes: Mapping[FlowKey, Flow | None]) -> FlowDelta:
        """Change only these flows (key -> its new flow, or None to delete it), in one atomic
        bundle; keys whose installed flow is already right are left alone. The table must be
        synced (`apply` first): an incremental renderer's changes are relative to what is
        installed."""
        if not self._synced:
            raise RuntimeError("apply_changes before the table is synced: use apply")
        installed = self._installed
        removed = [installed[k] for k, f in changes.items() if f is None and k in installed]
        added = [f for k, f in changes.items() if f is not None and installed.get(k) != f]
        if not removed and not added:
            return FlowDelta()
        self._send(removed, added)
        for flow in removed:
            del installed[flow.key]
        for flow in added:
            installed[flow.key] = flow
        return FlowDelta(tuple(added), tuple(removed))

    def _send(self, removed: Iterable[Flow], added: Iterable[Flow]) -> None:
        lines = [f"delete_strict {f.ofctl_key()}" for f in removed]
        lines += [f"add {f.ofctl()}" for f in added]  # add replaces a flow with the same match
        try:
            self.ofctl.run("add-flows", "-", options=("--bundle",), input="\n".join(lines) + "\n")
        except OfctlError:
            self._synced = False  # the bundle was rolled back; what is installed is the old set
            raise

    def forget(self) -> None:
        """What is installed is unknown again (the switch restarted): the next apply replaces
        the bridge's flows."""
        self._synced = False

    def resync(self, desired: Iterable[Flow]) -> FlowDelta:
        """Converge through replace-flows (ovs-ofctl dumps the bridge and diffs)."""
        return self._replace(_by_key(desired))

    def _replace(self, wanted: dict[FlowKey, Flow]) -> FlowDelta:
        text = "".join(f.ofctl() + "\n" for f in wanted.values())
        self.ofctl.run("replace-flows", "-", options=("--bundle",), input=text)
        self._installed = wanted
        self._synced = True
        return FlowDelta(added=tuple(wanted.values()), resynced=True)


def _by_key(flows: Iterable[Flow]) -> dict[FlowKey, Flow]:
    out: dict[FlowKey, Flow] = {}
    for flow in flows:
        if flow.key in out and out[flow.key] != flow:
            raise ValueError(f"two desired flows with one match: {flow.describe()}")
        out[flow.key] = flow
    return out
