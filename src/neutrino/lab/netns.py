"""Thin helpers over `ip` for network namespaces, veth pairs, links and addresses.

May touch: network namespaces (create, delete, run commands in them, signal the processes that
live in the namespaces it is asked to delete) and the links and addresses inside them.  Every
function takes the namespace explicitly; nothing here touches the root namespace unless a
caller passes `namespace=None` on purpose.

Two things `ip` cannot do are done with a socket opened inside the namespace (a short-lived
thread `setns()`s into it; the socket keeps that namespace after the thread is gone): the
SIOCETHTOOL call that turns tx checksum offload off (`ethtool -K IF tx off` without needing
the ethtool package), and sockets for tests that talk TCP from inside an instance.
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import json
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from neutrino.lab import process
from neutrino.lab.errors import LabError

NETNS_RUN_DIR = Path("/run/netns")  # where `ip netns add` mounts namespaces
IFNAMSIZ = 16  # including the terminating NUL: names have at most 15 characters

T = TypeVar("T")


def check_ifname(name: str) -> str:
    """`name` if it is a valid Linux interface name, else a LabError."""
    if not name or len(name) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name) \
            or name in (".", ".."):
        raise LabError(f"invalid interface name {name!r} (at most {IFNAMSIZ - 1} characters, "
                       "no '/' or spaces)")
    return name


def ip(*args: str, namespace: str | None = None, check: bool = True,
       timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    """Run `ip [-n namespace] args...`."""
    argv = ["ip"] + (["-n", namespace] if namespace else []) + list(args)
    return process.run(argv, check=check, timeout=timeout)


def exec_argv(namespace: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` inside `namespace` (`ip netns exec` execs it, keeping the pid)."""
    return ["ip", "netns", "exec", namespace, *argv]


def run_in(namespace: str, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `argv` inside `namespace` and wait for it."""
    return process.run(exec_argv(namespace, argv), check=check, timeout=timeout, input=input)


# --- namespaces -------------------------------------------------------------------------------

def namespace_exists(name: str) -> bool:
    return (NETNS_RUN_DIR / name).exists()


def list_namespaces(prefix: str = "") -> list[str]:
    """Names of the namespaces `ip netns` knows, optionally only those starting with `prefix`."""
    result = ip("netns", "list", check=False)
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    return sorted(name for name in names if name.startswith(prefix))


def create_namespace(name: str) -> None:
    """Create namespace `name` with its loopback up; a LabError if it already exists."""
    if namespace_exists(name):
        raise LabError(f"network namespace {name} already exists")
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", namespace=name)


def namespace_pids(name: str) -> list[int]:
    """Pids of the processes living in namespace `name` (empty if it does not exist)."""
    if not namespace_exists(name):
        return []
    result = ip("netns", "pids", name, check=False)
    return [int(word) for word in result.stdout.split() if word.isdigit()]


def stop_namespace_processes(name: str, *, timeout: float = 3.0) -> list[int]:
    """SIGTERM, then SIGKILL, every process in namespace `name`; the pids signalled."""
    return process.stop_pids(namespace_pids(name), process.in_namespace(name), timeout=timeout)


def delete_namespace(name: str) -> bool:
    """Stop the processes in namespace `name` and delete it; whether it existed.

    Deleting a namespace destroys the links in it (and the peers of its veths, wherever they
    are), including persistent taps such as OVS internal ports of a netdev bridge.
    """
    if not namespace_exists(name):
        return False
    stop_namespace_processes(name)
    ip("netns", "delete", name)
    return True


# --- links and addresses -----------------------------------------------------------------------

def create_veth(name: str, namespace: str, peer: str, peer_namespace: str, *,
                mtu: int | None = None, peer_mac: str | None = None) -> None:
    """Create veth `name` in `namespace` whose peer `peer` is created directly in `peer_namespace`.

    Both ends are born in their namespaces, so neither name ever appears in the root namespace.
    """
    check_ifname(name)
    check_ifname(peer)
    mtu_args = ["mtu", str(mtu)] if mtu else []
    peer_args = ["name", peer, *mtu_args]
    if peer_mac:
        peer_args += ["address", peer_mac]
    ip("link", "add", name, *mtu_args, "type", "veth", "peer", *peer_args, "netns", peer_namespace,
       namespace=namespace)


def set_link(namespace: str | None, ifname: str, *, up: bool | None = None, mtu: int | None = None,
             address: str | None = None, master: str | None = None) -> None:
    """`ip link set` in one call: state, MTU, MAC address, bridge master."""
    args: list[str] = []
    if address:
        args += ["address", address]
    if mtu:
        args += ["mtu", str(mtu)]
    if master:
        args += ["master", master]
    if up is not None:
        args.append("up" if up else "down")
    if args:
        ip("link", "set", "dev", ifname, *args, namespace=namespace)


def delete_link(namespace: str, ifname: str) -> bool:
    """Delete link `ifname` (a veth takes its peer with it); whether it existed.

    A link may vanish on its own at any moment: the kernel destroys the devices of a deleted
    namespace (and their veth peers elsewhere) asynchronously, after `ip netns delete` returns.
    """
    if link_info(namespace, ifname) is None:
        return False
    result = ip("link", "delete", "dev", ifname, namespace=namespace, check=False)
    if result.returncode != 0 and link_info(namespace, ifname) is not None:
        raise LabError(f"cannot delete {ifname} in {namespace}: {result.stderr.strip()}")
    return True


@dataclass(frozen=True)
class LinkInfo:
    """What `ip -j link show` says about one link."""

    name: str
    admin_up: bool  # the UP flag
    operstate: str  # "UP", "DOWN", "LOWERLAYERDOWN", "UNKNOWN" (taps), ...
    carrier: bool  # the LOWER_UP flag
    mtu: int
    mac: str | None


def link_info(namespace: str | None, ifname: str) -> LinkInfo | None:
    """The state of `ifname` in `namespace`, or None if the link (or the namespace) is missing."""
    if namespace is not None and not namespace_exists(namespace):
        return None
    result = ip("-j", "link", "show", "dev", ifname, namespace=namespace, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        return None
    (data,) = json.loads(result.stdout)
    flags = data.get("flags", [])
    return LinkInfo(name=data["ifname"], admin_up="UP" in flags, operstate=data.get("operstate", ""),
                    carrier="LOWER_UP" in flags, mtu=int(data.get("mtu", 0)),
                    mac=data.get("address"))


def add_address(namespace: str, ifname: str, address: str) -> None:
    """Add `address` (CIDR notation, v4 or v6) to `ifname`."""
    ipaddress.ip_interface(address)  # validate before asking ip
    ip("address", "add", address, "dev", ifname, namespace=namespace)


def addresses(namespace: str, ifname: str, *, version: int | None = None,
              scope: str = "global") -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The addresses of `ifname` with the given scope (all IP versions unless `version`)."""
    if not namespace_exists(namespace):
        return []
    family = [f"-{version}"] if version else []
    result = ip("-j", *family, "address", "show", "dev", ifname, namespace=namespace, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        return []
    found: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = []
    for link in json.loads(result.stdout):
        for info in link.get("addr_info", []):
            if info.get("scope") == scope:
                found.append(ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}"))
    return found


# --- things ip cannot do: a socket inside the namespace -----------------------------------------

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def call_in_namespace(namespace: str, function: Callable[[], T]) -> T:
    """Call `function` on a short-lived thread that has entered `namespace`.

    Only network-namespace membership changes, and only for that thread, so the caller's
    threads are never moved.  Sockets created by `function` stay in `namespace`.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(NETNS_RUN_DIR / namespace, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            failure.append(LabError(f"network namespace {namespace} is not available: "
                                    f"{error.strerror}"))
            return
        try:
            if _libc.setns(fd, _CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                failure.append(LabError(f"setns({namespace}) failed: {os.strerror(errno)}"))
                return
            outcome.append(function())
        except BaseException as error:  # re-raised on the caller's thread
            failure.append(error)
        finally:
            os.close(fd)

    thread = threading.Thread(target=body, name=f"netns-{namespace}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def socket_in(namespace: str, family: int = socket.AF_INET,
              kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new socket that lives in `namespace` (connect/bind it from any thread)."""
    return call_in_namespace(namespace, lambda: socket.socket(family, kind))


_SIOCETHTOOL = 0x8946
_ETHTOOL_GTXCSUM = 0x16
_ETHTOOL_STXCSUM = 0x17


def _ethtool_value(namespace: str, ifname: str, command: int, value: int = 0) -> int:
    check_ifname(ifname)
    with socket_in(namespace, socket.AF_INET, socket.SOCK_DGRAM) as sock:
        # struct ethtool_value {u32 cmd; u32 data;}, pointed to by ifreq.ifr_data
        buffer = ctypes.create_string_buffer(struct.pack("II", command, value))
        ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(buffer)).ljust(40, b"\0")
        try:
            fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, ifreq)
        except OSError as error:
            raise LabError(f"SIOCETHTOOL on {ifname} in {namespace} failed: {error.strerror}") from None
        return int(struct.unpack("II", buffer.raw[:8])[1])


def set_tx_checksum(namespace: str, ifname: str, enabled: bool) -> None:
    """`ethtool -K ifname tx on|off` inside `namespace` (no ethtool binary needed).

    Why the lab turns it off on instance veths: a veth hands OVS's AF_PACKET socket TCP segments
    whose checksum is left to the NIC, and the userspace datapath encapsulates them as they
    are, so the far side drops every TCP segment (ICMP is unaffected).
    """
    _ethtool_value(namespace, ifname, _ETHTOOL_STXCSUM, 1 if enabled else 0)


def tx_checksum_enabled(namespace: str, ifname: str) -> bool:
    """Whether tx checksum offload is on for `ifname` (`ethtool -k ifname | grep tx-checksumming`)."""
    return bool(_ethtool_value(namespace, ifname, _ETHTOOL_GTXCSUM))

