"""The lab's one exception type and the checks every lab command runs first.

`LabError` carries a message meant for a human at a shell: what went wrong and what to do.
The CLI prints it without a traceback.  The checks here only look at the process's user id and
at the PATH; they touch nothing.
"""

from __future__ import annotations

import os
import shutil


class LabError(Exception):
    """A lab operation failed; `str(error)` says why and, where possible, what to do."""


# Where Debian puts the daemons; a non-login root shell may not have sbin on its PATH.
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")

OPENVSWITCH_BINARIES = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl")


def find_binary(name: str) -> str | None:
    """The absolute path of `name` on PATH or in the sbin directories, or None."""
    found = shutil.which(name)
    if found:
        return found
    extra = os.pathsep.join(_SBIN_DIRS)
    return shutil.which(name, path=extra)


def require_binary(name: str, package: str) -> str:
    """The absolute path of `name`, or a LabError naming the Debian package that provides it."""
    path = find_binary(name)
    if path is None:
        raise LabError(f"{name} not found: install the Debian package {package!r} "
                       f"(apt-get install {package}, or run scripts/install-deps.sh)")
    return path


def require_root() -> None:
    """Raise a LabError unless running as root (namespaces, veths and OVS need it)."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root: it creates network namespaces, veth pairs and runs "
                       "Open vSwitch daemons; run it as root (e.g. with sudo)")


def require_openvswitch() -> None:
    """Raise a LabError unless every Open vSwitch program the lab runs is installed."""
    missing = [name for name in OPENVSWITCH_BINARIES if find_binary(name) is None]
    if missing:
        raise LabError("Open vSwitch is not installed (missing: " + ", ".join(missing) + "): "
                       "install the Debian package 'openvswitch-switch' "
                       "(apt-get install openvswitch-switch, or run scripts/install-deps.sh)")


def require_lab_prerequisites() -> None:
    """Everything a lab command needs before it touches anything: root, iproute2, Open vSwitch."""
    require_root()
    require_binary("ip", "iproute2")
    require_openvswitch()
