"""An instance: a network namespace plugged into a host's br-int the way os-vif plugs a VIF.

May touch: the instance namespace (`<prefix>-i-<name>`) and everything in it, the br-int end of
its veth in the host namespace and that port's row in the host's OVS database, and its run
directory (DHCP client script).

Plugging, as Nova's os-vif `ovs` plugin does for a veth/tap VIF: a veth whose br-int end
(`tap` + the first 11 characters of the port id, in the host namespace) is added to br-int
with external_ids iface-id=<port id>, attached-mac=<mac>, vm-uuid=<device id>,
iface-status=active; the other end is `eth0` in the instance namespace with the port's MAC
and MTU.  Tx checksum offload is off on eth0: without that, TCP through the userspace tunnel
arrives with bad checksums (see `netns.set_tx_checksum`).  The MTU must leave room for the
tunnel header (1450 for geneve/vxlan over a 1500 underlay), or OVS drops the large frames.

Addresses come from `configure` (static) or `dhcp` (busybox udhcpc with a script of ours that
only touches eth0 and the namespace's routes: dhclient-script would rewrite the machine's
/etc/resolv.conf).
"""

from __future__ import annotations

import ipaddress
import random
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from neutrino.lab import netns, process
from neutrino.lab.errors import LabError, require_binary
from neutrino.lab.host import INTEGRATION_BRIDGE, LabHost
from neutrino.lab.state import InstanceRecord

INSTANCE_IFNAME = "eth0"
DEFAULT_MTU = 1450  # what Neutron gives a geneve/vxlan network over a 1500-byte underlay
TAP_PREFIX = "tap"
_PORT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

_UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc hook written by `neutrino lab`: apply the lease to $interface and the routes, nothing else
case "$1" in
deconfig)
    ip -4 address flush dev "$interface"
    ip link set dev "$interface" up
    ;;
bound|renew)
    ip -4 address flush dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    ip address add "$ip/${mask:-24}" dev "$interface"
    if [ -n "$staticroutes" ]; then          # option 121 wins over option 3 (RFC 3442)
        set -- $staticroutes
        while [ $# -ge 2 ]; do
            if [ "$2" = 0.0.0.0 ]; then ip route replace "$1" dev "$interface"
            else ip route replace "$1" via "$2" dev "$interface"; fi
            shift 2
        done
    elif [ -n "$router" ]; then
        for gw in $router; do ip route replace default via "$gw" dev "$interface"; break; done
    fi
    ;;
esac
exit 0
"""


def check_instance_name(name: str) -> str:
    if not _INSTANCE_NAME.match(name):
        raise LabError(f"invalid instance name {name!r}: up to 40 letters, digits, '.', '_' or '-'")
    return name


def random_mac() -> str:
    """A locally administered MAC with Neutron's default base (fa:16:3e)."""
    return "fa:16:3e:" + ":".join(f"{random.randint(0, 255):02x}" for _ in range(3))


def tap_name(port_id: str) -> str:
    """os-vif's name for the host end of a VIF: "tap" + the first 11 characters of the port id."""
    if not _PORT_ID.match(port_id):
        raise LabError(f"invalid port id {port_id!r}")
    return TAP_PREFIX + port_id[:11]


def new_instance_record(*, name: str, host: LabHost, namespace: str, run_dir: Path,
                        port_id: str | None = None, mac: str | None = None,
                        mtu: int = DEFAULT_MTU, device_id: str | None = None) -> InstanceRecord:
    """The record of an instance to plug: fills in a port id, MAC and device id when not given."""
    check_instance_name(name)
    port_id = port_id or str(uuid.uuid4())
    mac = (mac or random_mac()).lower()
    if not _MAC.match(mac) or int(mac[:2], 16) & 1:
        raise LabError(f"invalid unicast MAC address {mac!r}")
    if not 68 <= mtu <= 65535:
        raise LabError(f"invalid MTU {mtu}")
    return InstanceRecord(name=name, host=host.name, namespace=namespace, port_id=port_id,
                          device_id=device_id or str(uuid.uuid4()), mac=mac, mtu=mtu,
                          host_ifname=tap_name(port_id), run_dir=str(run_dir))


@dataclass(frozen=True)
class InstanceStatus:
    name: str
    host: str
    namespace_exists: bool
    port_id: str
    mac: str
    mtu: int
    addresses: list[str]  # global addresses on eth0 right now
    ofport: int | None  # None: not on br-int (or vswitchd down)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LabInstance:
    """One instance namespace and its VIF on `host`'s br-int."""

    def __init__(self, record: InstanceRecord, host: LabHost) -> None:
        if record.host != host.name:
            raise LabError(f"instance {record.name} belongs to {record.host}, not {host.name}")
        self.record = record
        self.host = host

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def namespace(self) -> str:
        return self.record.namespace

    @property
    def run_dir(self) -> Path:
        return Path(self.record.run_dir)

    def __repr__(self) -> str:
        return f"LabInstance({self.name} on {self.host.name}, port {self.record.port_id})"

    # --- plug / unplug ----------------------------------------------------------------------

    def plug(self) -> None:
        """Create the namespace and the veth, and add the host end to br-int, os-vif style."""
        rec = self.record
        if netns.link_info(self.host.namespace, rec.host_ifname) is not None:
            raise LabError(f"{rec.host_ifname} already exists on {self.host.name} "
                           f"(is port {rec.port_id} plugged already?)")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        netns.create_namespace(rec.namespace)
        netns.create_veth(rec.host_ifname, self.host.namespace, INSTANCE_IFNAME, rec.namespace,
                          mtu=rec.mtu, peer_mac=rec.mac)
        netns.set_tx_checksum(rec.namespace, INSTANCE_IFNAME, False)
        netns.set_link(rec.namespace, INSTANCE_IFNAME, up=True)
        netns.set_link(self.host.namespace, rec.host_ifname, up=True)
        self.host.ovs.vsctl(
            "--may-exist", "add-port", INTEGRATION_BRIDGE, rec.host_ifname,
            "--", "set", "Interface", rec.host_ifname,
            f'external_ids:iface-id="{rec.port_id}"', f'external_ids:attached-mac="{rec.mac}"',
            f'external_ids:vm-uuid="{rec.device_id}"', "external_ids:iface-status=active")

    def unplug(self) -> None:
        """Remove the br-int port, the namespace (and so the veth) and the run directory.
        Works when parts are already gone, and while vswitchd is down."""
        rec = self.record
        if self.host.ovs.running("ovsdb-server"):
            self.host.ovs.vsctl("--if-exists", "del-port", INTEGRATION_BRIDGE, rec.host_ifname,
                                wait=False)
        # the veth first: a deleted namespace's devices (and their peers) go away asynchronously
        if netns.namespace_exists(self.host.namespace):
            netns.delete_link(self.host.namespace, rec.host_ifname)
        netns.delete_namespace(rec.namespace)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # --- addresses --------------------------------------------------------------------------

    def configure(self, addresses: Sequence[str], gateway: str | None = None) -> None:
        """Put static `addresses` (CIDRs) on eth0 and, with `gateway`, a default route."""
        for address in addresses:
            netns.add_address(self.namespace, INSTANCE_IFNAME, address)
        if gateway:
            version = ipaddress.ip_address(gateway).version
            netns.ip(f"-{version}", "route", "replace", "default", "via", gateway, "dev", INSTANCE_IFNAME,
                     namespace=self.namespace)
        self.record.addresses = [str(a) for a in self.addresses()]

    def dhcp(self, *, timeout: float = 10.0) -> list[ipaddress.IPv4Interface]:
        """Get an IPv4 lease on eth0 with busybox udhcpc (one shot: no renewals); the addresses.

        Requests option 26 (MTU) and 121 (classless static routes), which Neutron's DHCP sends.
        """
        busybox = require_binary("busybox", "busybox")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        script = self.run_dir / "udhcpc.sh"
        script.write_text(_UDHCPC_SCRIPT)
        script.chmod(0o755)
        tries = max(1, int(timeout))  # one DISCOVER a second
        result = self.exec([busybox, "udhcpc", "-i", INSTANCE_IFNAME, "-f", "-q", "-n",
                            "-t", str(tries), "-T", "1", "-A", "1", "-s", str(script),
                            "-O", "mtu", "-O", "staticroutes"], check=False, timeout=timeout + 10)
        found = [a for a in self.addresses() if isinstance(a, ipaddress.IPv4Interface)]
        if result.returncode != 0 or not found:
            detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise LabError(f"instance {self.name} got no DHCP lease on {INSTANCE_IFNAME}"
                           + (": " + " / ".join(detail) if detail else ""))
        self.record.addresses = [str(a) for a in self.addresses()]
        return found

    def solicit_router(self) -> None:
        """Restart IPv6 on eth0: the kernel makes its link-local address again and sends router
        solicitations right away (instead of at its next back-off, up to minutes later)."""
        for value in ("1", "0"):
            netns.run_in(self.namespace, ["sysctl", "-qw",
                                          f"net/ipv6/conf/{INSTANCE_IFNAME}/disable_ipv6={value}"])

    def slaac(self, expected: Sequence[str], *, timeout: float = 10.0) -> list[str]:
        """Wait until eth0 has made every address of `expected` (CIDRs) from router
        advertisements (SLAAC), and their default route; the addresses (LabError after
        `timeout` seconds, saying which are missing)."""
        wanted = {ipaddress.ip_interface(a) for a in expected}
        deadline = time.monotonic() + timeout
        while True:
            found = {a for a in self.addresses() if isinstance(a, ipaddress.IPv6Interface)}
            routes = netns.ip("-6", "route", "show", "default", namespace=self.namespace).stdout
            if wanted <= found and routes.strip():
                self.record.addresses = [str(a) for a in self.addresses()]
                return sorted(str(a) for a in wanted)
            if time.monotonic() > deadline:
                missing = ", ".join(str(a) for a in sorted(wanted - found, key=str)) or "a default route"
                raise LabError(f"instance {self.name} made no {missing} by SLAAC in {timeout:.0f} s "
                               "(no router advertisement: is the subnet on a router?)")
            time.sleep(0.1)

    def addresses(self) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        """Global addresses on eth0 right now."""
        return netns.addresses(self.namespace, INSTANCE_IFNAME)

    # --- use --------------------------------------------------------------------------------

    def command(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` inside the instance (for the CLI to exec)."""
        return netns.exec_argv(self.namespace, argv)

    def exec(self, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the instance and wait for it."""
        if not netns.namespace_exists(self.namespace):
            raise LabError(f"instance {self.name} is not plugged (no namespace {self.namespace})")
        return process.run(self.command(argv), check=check, timeout=timeout, input=input)

    def ofport(self) -> int | None:
        """The br-int OpenFlow port of the VIF, or None."""
        try:
            return self.host.ovs.ofport(self.record.host_ifname)
        except LabError:
            return None

    def status(self) -> InstanceStatus:
        rec = self.record
        exists = netns.namespace_exists(rec.namespace)
        ofport = self.ofport() if self.host.ovs.running("ovsdb-server") else None
        return InstanceStatus(name=rec.name, host=rec.host, namespace_exists=exists, port_id=rec.port_id,
                              mac=rec.mac, mtu=rec.mtu, addresses=[str(a) for a in self.addresses()],
                              ofport=ofport)
