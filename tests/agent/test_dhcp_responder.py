"""The DHCP responder: its decisions per frame (no root), then real clients (busybox udhcpc and
ISC dhclient) getting leases from it over a veth pair between two fresh namespaces (root).

No OVS here: a client's UDP source port is 68, so the key is 68 and the reply goes to port 68.
The responder runs in this process: `start()` is called on a thread that has entered the
server namespace (netns.call_in_namespace), so its socket lives there.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import secrets
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from neutrino.agent.dhcp import ACK, DECLINE, DISCOVER, REQUEST, Lease, lease_for
from neutrino.agent.dhcp_responder import DhcpResponder
from neutrino.lab import netns, process
from neutrino.lab.errors import find_binary
from neutrino.policy.model import DhcpOption, FixedIp, HostRoute, NetworkPolicy, PortPolicy, SubnetPolicy

CLIENT_MAC = "fa:16:3e:12:34:56"
SERVER_MAC = "fa:16:3e:00:00:02"
SERVER_IFACE_MAC = "02:00:00:00:00:aa"  # the interface's own MAC is not the server's
EXPLODING_KEY = 666  # the lookup raises for this key

SUBNET = SubnetPolicy(id="s4", cidr="10.0.0.0/24", ip_version=4, gateway_ip="10.0.0.1",
                      dns_nameservers=("8.8.8.8", "1.1.1.1"),
                      host_routes=(HostRoute(destination="172.16.0.0/12", nexthop="10.0.0.254"),),
                      dhcp_server_ip="10.0.0.2", dhcp_server_mac=SERVER_MAC)
NETWORK = NetworkPolicy(id="net", network_type="geneve", segmentation_id=5, mtu=1442, tunnel_key=3,
                        subnets=(SUBNET,))
PORT = PortPolicy(id="p", network_id="net", mac_address=CLIENT_MAC,
                  fixed_ips=(FixedIp(subnet_id="s4", ip_address="10.0.0.5"),),
                  extra_dhcp_opts=(DhcpOption(opt_name="ntp-server", opt_value="10.0.0.3"),))
_lease = lease_for(PORT, NETWORK)
assert _lease is not None
LEASE: Lease = _lease


def frame(message: int, *, mac: str = CLIENT_MAC, src_port: int = 68, ciaddr: str = "0.0.0.0",
          dst_mac: str = "ff:ff:ff:ff:ff:ff", dst_ip: str = "255.255.255.255",
          options: bytes = b"") -> bytes:
    """A client message in an Ethernet frame (checksums left 0: the responder does not check)."""
    chaddr = bytes.fromhex(mac.replace(":", ""))
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, 0xCAFE, 0, 0,
                        ipaddress.IPv4Address(ciaddr).packed, bytes(4), bytes(4), bytes(4), chaddr,
                        b"", b"") + b"\x63\x82\x53\x63" + bytes([53, 1, message]) + options + b"\xff"
    udp = struct.pack("!HHHH", src_port, 67, 8 + len(bootp), 0) + bootp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     ipaddress.IPv4Address(ciaddr).packed, ipaddress.IPv4Address(dst_ip).packed)
    return bytes.fromhex(dst_mac.replace(":", "")) + chaddr + b"\x08\x00" + ip + udp


# --- decisions per frame (no sockets) -----------------------------------------------------------

def responder_for(lookup: Callable[[int], Lease | None]) -> DhcpResponder:
    return DhcpResponder("unused0", lookup)


def test_answers_with_the_key_as_destination_port(caplog: pytest.LogCaptureFixture) -> None:
    responder = responder_for(lambda key: LEASE if key == 7 else None)
    with caplog.at_level(logging.INFO, logger="neutrino.agent.dhcp"):
        reply = responder.handle_frame(frame(DISCOVER, src_port=7))
    assert reply is not None
    assert struct.unpack_from("!HH", reply, 34) == (67, 7)
    assert f"DHCPOFFER 10.0.0.5 to {CLIENT_MAC} (key 7)" in caplog.text


def test_ignores_unknown_ports_other_macs_and_non_dhcp(caplog: pytest.LogCaptureFixture) -> None:
    responder = responder_for(lambda key: LEASE if key == 68 else None)
    with caplog.at_level(logging.INFO, logger="neutrino.agent.dhcp"):
        assert responder.handle_frame(frame(DISCOVER, src_port=9)) is None
        assert responder.handle_frame(frame(DISCOVER, mac="fa:16:3e:99:99:99")) is None
        assert responder.handle_frame(b"\x00" * 64) is None
    assert responder.ignored == 2
    assert "no lease for this port" in caplog.text and "the port's MAC is" in caplog.text


def test_decline_is_logged_and_not_answered(caplog: pytest.LogCaptureFixture) -> None:
    responder = responder_for(lambda key: LEASE)
    with caplog.at_level(logging.INFO, logger="neutrino.agent.dhcp"):
        assert responder.handle_frame(frame(DECLINE, options=bytes([50, 4, 10, 0, 0, 5]))) is None
    assert "DHCPDECLINE" in caplog.text and "10.0.0.5 is in use" in caplog.text


def test_lookup_errors_propagate_to_the_receive_loop() -> None:
    def lookup(key: int) -> Lease | None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        responder_for(lookup).handle_frame(frame(DISCOVER))


def test_stop_is_idempotent_and_start_fails_on_a_missing_interface() -> None:
    responder = DhcpResponder(f"ndh{secrets.token_hex(4)}", lambda key: None)
    responder.stop()
    with pytest.raises(OSError):
        responder.start()
    responder.stop()
    assert not responder.running


# --- real clients over a veth (root) --------------------------------------------------------------

def _root_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (namespaces, veth pairs, raw sockets)"
    for name in ("ip", "busybox", "dhclient"):
        if find_binary(name) is None:
            return f"{name} is not installed"
    return None


ROOT_UNAVAILABLE = _root_unavailable()
F = TypeVar("F", bound=Callable[..., object])


def needs_root(test: F) -> F:
    """The `root` marker plus a skip that says why (as lab.helpers.needs_lab; no OVS needed)."""
    return pytest.mark.root(pytest.mark.skipif(ROOT_UNAVAILABLE is not None,
                                               reason=f"unavailable: {ROOT_UNAVAILABLE}")(test))


@dataclass
class Veth:
    server_ns: str
    client_ns: str
    responder: DhcpResponder
    tmp: Path

    def run(self, argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return netns.run_in(self.client_ns, argv, check=False, timeout=timeout)

    def udhcpc(self, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str] | None]:
        """Run busybox udhcpc once; its result and the environment of its `bound` event."""
        out = self.tmp / f"udhcpc-{secrets.token_hex(3)}.env"
        script = self.tmp / "udhcpc.sh"
        script.write_text(f'#!/bin/sh\n{{ echo "event=$1"; env; echo "--"; }} >> {out}\n')
        script.chmod(0o755)
        busybox = find_binary("busybox")
        assert busybox is not None
        result = self.run([busybox, "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-s", str(script), *args])
        bound = None
        if out.exists():
            for block in out.read_text().split("--\n"):
                lines = block.strip().splitlines()
                if lines and lines[0] == "event=bound":
                    bound = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
        return result, bound


@pytest.fixture
def veth(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Veth]:
    caplog.set_level(logging.INFO, logger="neutrino.agent.dhcp")
    base = f"ndh{secrets.token_hex(4)}"
    server_ns, client_ns = f"{base}-s", f"{base}-c"

    def lookup(key: int) -> Lease | None:
        if key == EXPLODING_KEY:
            raise RuntimeError("lookup exploded")
        return LEASE if key == 68 else None

    responder = DhcpResponder("srv0", lookup)
    try:
        netns.create_namespace(server_ns)
        netns.create_namespace(client_ns)
        netns.create_veth("srv0", server_ns, "eth0", client_ns, peer_mac=CLIENT_MAC)
        netns.set_link(server_ns, "srv0", address=SERVER_IFACE_MAC, up=True)
        netns.set_link(client_ns, "eth0", up=True)
        netns.call_in_namespace(server_ns, responder.start)
        yield Veth(server_ns, client_ns, responder, tmp_path)
    finally:
        responder.stop()
        netns.delete_namespace(client_ns)
        netns.delete_namespace(server_ns)


@needs_root
@pytest.mark.parametrize("broadcast", [False, True], ids=["unicast", "broadcast-flag"])
def test_udhcpc_gets_the_lease(veth: Veth, caplog: pytest.LogCaptureFixture, broadcast: bool) -> None:
    result, env = veth.udhcpc("-t", "3", "-T", "2", *(["-B"] if broadcast else []))
    assert result.returncode == 0, result.stderr
    assert env is not None, result.stderr
    assert {key: env.get(key) for key in ("interface", "ip", "mask", "subnet", "broadcast", "router",
                                          "dns", "domain", "mtu", "staticroutes", "lease", "serverid",
                                          "ntpsrv", "siaddr")} == {
        "interface": "eth0", "ip": "10.0.0.5", "mask": "24", "subnet": "255.255.255.0",
        "broadcast": "10.0.0.255", "router": "10.0.0.1", "dns": "8.8.8.8 1.1.1.1",
        "domain": "openstacklocal", "mtu": "1442",
        "staticroutes": "172.16.0.0/12 10.0.0.254 0.0.0.0/0 10.0.0.1",
        "lease": "86400", "serverid": "10.0.0.2", "ntpsrv": "10.0.0.3", "siaddr": "10.0.0.2"}
    assert veth.responder.served == 2
    assert f"DHCPOFFER 10.0.0.5 to {CLIENT_MAC} (key 68)" in caplog.text
    assert f"DHCPACK 10.0.0.5 to {CLIENT_MAC} (key 68)" in caplog.text


@needs_root
def test_dhclient_gets_the_lease(veth: Veth) -> None:
    conf, leases = veth.tmp / "dhclient.conf", veth.tmp / "dhclient.leases"
    pidfile = veth.tmp / "dhclient.pid"
    conf.write_text("timeout 20;\n"
                    "option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;\n"
                    "request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers,\n"
                    "        interface-mtu, rfc3442-classless-static-routes, ntp-servers;\n")
    dhclient = find_binary("dhclient")
    assert dhclient is not None
    try:
        result = veth.run([dhclient, "-1", "-v", "-cf", str(conf), "-lf", str(leases), "-sf", "/bin/true",
                           "-pf", str(pidfile), "eth0"], timeout=40)
        assert result.returncode == 0, result.stderr
    finally:
        process.stop_pid(process.read_pidfile(pidfile), process.cmdline_contains(str(pidfile)))
    text = leases.read_text()
    for line in ("fixed-address 10.0.0.5;", "option subnet-mask 255.255.255.0;", "option routers 10.0.0.1;",
                 "option interface-mtu 1442;", "option domain-name-servers 8.8.8.8,1.1.1.1;",
                 'option domain-name "openstacklocal";', "option dhcp-server-identifier 10.0.0.2;",
                 "option broadcast-address 10.0.0.255;", "option dhcp-lease-time 86400;",
                 "option ntp-servers 10.0.0.3;",
                 "option rfc3442-classless-static-routes 12,172,16,10,0,0,254,0,10,0,0,1;"):
        assert line in text, f"{line!r} not in the lease file:\n{text}"
    assert veth.responder.served == 2


@needs_root
def test_no_answer_for_another_mac(veth: Veth, caplog: pytest.LogCaptureFixture) -> None:
    netns.set_link(veth.client_ns, "eth0", address="fa:16:3e:99:99:99")
    result, env = veth.udhcpc("-t", "2", "-T", "1")
    assert result.returncode != 0 and env is None
    assert veth.responder.served == 0
    assert veth.responder.ignored >= 2
    assert "the port's MAC is fa:16:3e:12:34:56, ignored" in caplog.text


def _receive_reply(sock: socket.socket, timeout: float) -> bytes | None:
    """The first frame from UDP port 67 on `sock`, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return None
        if len(data) > 42 and data[23] == 17 and struct.unpack_from("!H", data, 34)[0] == 67:
            return data
    return None


@needs_root
def test_garbage_does_not_kill_it_and_unicast_renewals_are_answered(veth: Veth,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    sock = netns.call_in_namespace(veth.client_ns, lambda: socket.socket(
        socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800)))
    with sock:
        sock.bind(("eth0", 0x0800))
        rng = random.Random(1234)
        header = b"\xff" * 6 + bytes.fromhex(CLIENT_MAC.replace(":", "")) + b"\x08\x00"
        valid = frame(REQUEST, options=bytes([50, 4, 10, 0, 0, 5]))
        for _ in range(300):  # random IPv4 payloads, then mutated DHCP requests
            sock.send(header + rng.randbytes(rng.randrange(0, 600)))
            mutated = bytearray(valid)
            for _ in range(rng.randrange(1, 6)):
                mutated[rng.randrange(14, len(mutated))] = rng.randrange(256)
            sock.send(bytes(mutated[:rng.randrange(14, len(mutated) + 1)]))
        time.sleep(0.5)
        sock.send(frame(DISCOVER, src_port=EXPLODING_KEY))
        time.sleep(0.2)
        assert veth.responder.running
        assert veth.responder.last_error == "RuntimeError: lookup exploded"
        assert "Traceback" in caplog.text and "lookup exploded" in caplog.text

        # RENEWING: unicast to the server's MAC and IP (not the interface's MAC: promiscuous)
        sock.send(frame(REQUEST, ciaddr="10.0.0.5", dst_mac=SERVER_MAC, dst_ip="10.0.0.2"))
        reply = _receive_reply(sock, 5.0)
        assert reply is not None, "no answer to a unicast renewal"
        assert reply[0:6].hex(":") == CLIENT_MAC and reply[6:12].hex(":") == SERVER_MAC
        assert (str(ipaddress.IPv4Address(reply[26:30])), str(ipaddress.IPv4Address(reply[30:34]))) == (
            "10.0.0.2", "10.0.0.5")
        assert struct.unpack_from("!H", reply, 36)[0] == 68
        assert reply[42 + 16:42 + 20] == ipaddress.IPv4Address("10.0.0.5").packed  # yiaddr
        assert bytes([53, 1, ACK]) in reply[42 + 240:]

    served = veth.responder.served
    result, env = veth.udhcpc("-t", "3", "-T", "2")
    assert result.returncode == 0 and env is not None and env["ip"] == "10.0.0.5", result.stderr
    assert veth.responder.served == served + 2
    assert veth.responder.running
    assert [record.getMessage() for record in caplog.records[-2:]] == [
        f"DHCPOFFER 10.0.0.5 to {CLIENT_MAC} (key 68)", f"DHCPACK 10.0.0.5 to {CLIENT_MAC} (key 68)"]

