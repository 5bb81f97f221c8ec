"""What the end-to-end tests share: a lab per test module (`neutrino lab up`, torn down with
`neutrino lab down`), openstacksdk against the lab's clouds.yaml, commands in instances and
hosts, TCP and ping between instances, Ethernet frames crafted and captured inside instance
namespaces, flow dumps of a host's br-int, and waiting until an agent has applied everything.

Addresses always come from the API (IPAM picks them; DHCP ports may take the first ones), never
from the test. Instances are booted with `neutrino lab boot`, whatever way it configures them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import openstack
import pytest
import yaml

from lab.helpers import LAB_UNAVAILABLE
from neutrino.agent.dhcp import internet_checksum
from neutrino.lab import netns
from neutrino.lab.cli import api_client
from neutrino.lab.errors import LabError
from neutrino.lab.host import LabHost
from neutrino.lab.instance import LabInstance
from neutrino.lab.lab import Lab
from neutrino.lab.state import lab_prefix

BUSYBOX = "busybox"
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
BROADCAST = "ff:ff:ff:ff:ff:ff"


# --- the CLI -------------------------------------------------------------------------------------

def neutrino(state_dir: Path, *args: str, check: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`neutrino ARGS...` (with `--state-dir` for lab commands)."""
    argv = [sys.executable, "-m", "neutrino.cli.main", *args]
    if args[0] == "lab" and "--state-dir" not in args:
        argv += ["--state-dir", str(state_dir)]
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def lab_exec(state_dir: Path, name: str, *command: str, timeout: float = 60,
             ) -> subprocess.CompletedProcess[str]:
    """`neutrino lab exec NAME -- COMMAND...`."""
    argv = [sys.executable, "-m", "neutrino.cli.main", "lab", "exec", name, "--state-dir",
            str(state_dir), "--", *command]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)


def connect(state_dir: Path, **auth: str) -> Any:
    """openstacksdk on the lab's clouds.yaml (admin), or with `auth` overriding its fields."""
    entry = yaml.safe_load((state_dir / "clouds.yaml").read_text())["clouds"]["neutrino-lab"]
    return openstack.connect(auth={**entry["auth"], **auth}, region_name=entry["region_name"],
                             identity_api_version="3")


def wait_until(predicate: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.2,
               message: str = "condition") -> Any:
    """Poll `predicate` until it returns something true (returned); fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{message}: not reached after {timeout:g} s")
        time.sleep(interval)


# --- a lab for one test module -------------------------------------------------------------------

@contextlib.contextmanager
def lab_up(tmp_path_factory: pytest.TempPathFactory, *, hosts: int = 2,
           gateways: int = 0, extra: tuple[str, ...] = ()) -> Iterator[E2ELab]:
    """`neutrino lab up --hosts N [--gateways K] [extra...]` for the block; `neutrino lab
    down` afterwards, whatever happened, and no namespace of the lab may be left."""
    if LAB_UNAVAILABLE is not None:
        pytest.skip(f"lab unavailable: {LAB_UNAVAILABLE}")
    state_dir = tmp_path_factory.mktemp("lab")
    up = neutrino(state_dir, "lab", "up", "--hosts", str(hosts), "--gateways", str(gateways),
                  *extra, check=False, timeout=max(120.0, hosts * 6.0))
    try:
        assert up.returncode == 0, up.stderr
        yield E2ELab(state_dir)
    finally:
        down = neutrino(state_dir, "lab", "down", check=False)
        assert down.returncode == 0, down.stderr
        assert netns.list_namespaces(lab_prefix(state_dir) + "-") == []
        assert not (state_dir / "server").exists()  # the lab's server and its database are gone


@dataclass
class E2ELab:
    """A running lab, driven through its CLI, its Python API and openstacksdk (admin)."""

    state_dir: Path
    _cloud: Any = field(default=None, repr=False)

    # --- API ---------------------------------------------------------------------------------
    @property
    def cloud(self) -> Any:
        if self._cloud is None:
            self._cloud = connect(self.state_dir)
        return self._cloud

    def project_cloud(self, name: str) -> Any:
        """A new project `name` with a member user, and openstacksdk logged in as that user."""
        identity = self.cloud.identity
        project = identity.create_project(name=name, domain_id="default")
        password = uuid.uuid4().hex
        user = identity.create_user(name=f"{name}-user", password=password, domain_id="default",
                                    default_project_id=project.id)
        identity.assign_project_role_to_user(project, user, identity.find_role("member"))
        return connect(self.state_dir, username=f"{name}-user", password=password,
                       project_name=name)

    def port(self, name: str) -> Any:
        """The port of instance `name` (instances are named after their port)."""
        found = list(self.cloud.network.ports(name=name))
        assert len(found) == 1, f"{len(found)} ports named {name}"
        return found[0]

    def address(self, name: str) -> str:
        """The first fixed IP of port `name`, as IPAM assigned it."""
        return str(self.port(name).fixed_ips[0]["ip_address"])

    def mac(self, name: str) -> str:
        return str(self.port(name).mac_address)

    def revision(self) -> dict[str, Any]:
        """`GET /v2.0/neutrino/revision`: the store's revision, the outbox's, and each chassis's
        realised revision."""
        with api_client(self.state_dir) as client:
            response = client.get("/v2.0/neutrino/revision")
            response.raise_for_status()
            data: dict[str, Any] = response.json()
            return data

    def pending_changes(self, host: str, since: int) -> list[dict[str, Any]]:
        """The policy stream of `host` from `since`, up to its first keepalive: the items that
        changed after `since` (a snapshot line if `since` is not resumable)."""
        lines: list[dict[str, Any]] = []
        with api_client(self.state_dir) as client, client.stream(
                "GET", f"/v2.0/neutrino/chassis/{host}/policy", params={"since": str(since)},
                timeout=httpx.Timeout(10.0)) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.strip():
                    continue
                message = json.loads(line)
                if message["type"] == "keepalive":
                    break
                lines.append(message)
                if message["type"] == "snapshot":
                    break
        return lines

    def gateway_roles(self, router_id: str) -> dict[str, str]:
        """host -> HA state of the router's gateway agents, as the API reports them
        (`GET /v2.0/routers/{id}/l3-agents`)."""
        response = self.cloud.network.get(f"/routers/{router_id}/l3-agents")
        return {agent["host"]: agent["ha_state"] for agent in response.json()["agents"]}

    def converged(self, host: str) -> bool:
        """Whether the agent of `host` has applied everything: the compiler has compiled every
        write, and no item of the host changed after the revision the agent reports realised."""
        revision = self.revision()
        if revision["revision"] != revision["outbox_revision"]:
            return False
        realised = revision["chassis"].get(host, 0)
        return realised > 0 and not self.pending_changes(host, realised)

    def wait_converged(self, *hosts: str, timeout: float = 20.0) -> None:
        for host in hosts or tuple(self.lab().state.hosts):
            wait_until(partial(self.converged, host), timeout=timeout, interval=0.3,
                       message=f"the agent of {host} applies every change")

    def agent_started_at(self, host: str) -> str:
        """When the agent of `host` last registered (second precision), as the server says."""
        with api_client(self.state_dir) as client:
            response = client.get("/v2.0/agents")
            response.raise_for_status()
            agents = [a for a in response.json()["agents"] if a["host"] == host]
        assert len(agents) == 1, agents
        return str(agents[0]["started_at"])

    def restart_agent(self, host: str, *, while_down: Callable[[], object] | None = None,
                      down_for: float = 1.1) -> None:
        """Kill the agent of `host` (`neutrino lab fail HOST --how agent`: SIGKILL), run
        `while_down`, start it again (`neutrino lab heal HOST`) at least `down_for` seconds after
        the kill, and wait until the new agent has registered and applied everything."""
        started = self.agent_started_at(host)
        killed = time.monotonic()
        self.cli("lab", "fail", host, "--how", "agent")
        assert self.agent_pid(host) is None
        if while_down is not None:
            while_down()
        time.sleep(max(0.0, down_for - (time.monotonic() - killed)))
        self.cli("lab", "heal", host)
        wait_until(lambda: self.agent_started_at(host) != started, timeout=20,
                   message=f"the new agent of {host} registers")
        self.wait_converged(host)

    # --- the lab -----------------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True, timeout: float = 120,
            ) -> subprocess.CompletedProcess[str]:
        done = neutrino(self.state_dir, *args, check=False, timeout=timeout)
        if check:
            assert done.returncode == 0, f"neutrino {' '.join(args)}: {done.stderr}"
        return done

    def boot(self, name: str, host: str, *, network: str | None = None,
             port: str | None = None) -> Any:
        """`neutrino lab boot NAME --host HOST (--network N | --port P)`; the port, ACTIVE."""
        where = ["--network", network] if network is not None else ["--port", str(port)]
        self.cli("lab", "boot", name, "--host", host, *where)
        return self.port(name) if port is None else self.cloud.network.get_port(port)

    def boot_all(self, plan: Sequence[tuple[str, str, str]]) -> dict[str, Any]:
        """`boot(name, host, port=port_id)` for every (name, host, port id) of `plan`, a few at
        a time (each boot is its own `neutrino lab boot`); name -> port."""
        with ThreadPoolExecutor(4) as pool:
            booted = pool.map(lambda item: self.boot(item[0], item[1], port=item[2]), plan)
            return {item[0]: port for item, port in zip(plan, booted, strict=True)}

    def lab(self) -> Lab:
        return Lab.load(self.state_dir)

    def host(self, name: str) -> LabHost:
        return self.lab().host(name)

    def instance(self, name: str) -> LabInstance:
        return self.lab().instance(name)

    def unplug(self, name: str) -> None:
        with Lab.session(self.state_dir) as lab:
            lab.unplug(name)

    def plug(self, name: str, host: str, *, port_id: str | None = None,
             mac: str | None = None) -> LabInstance:
        """Plug an instance os-vif style without any API call (its iface-id is `port_id`)."""
        with Lab.session(self.state_dir) as lab:
            return lab.plug(name, host, port_id=port_id, mac=mac)

    def exec(self, name: str, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a command inside instance `name` (not checked)."""
        return self.instance(name).exec(list(argv), check=False, timeout=timeout)

    def agent_pid(self, host: str) -> int | None:
        return self.host(host).agent_pid()

    def agent_log(self, host: str) -> str:
        path = self.host(host).agent_log
        return path.read_text(errors="replace") if path.exists() else ""

    def flows(self, host: str) -> list[str]:
        """br-int's flows on `host`, normalised: no statistics, port numbers not names, sorted."""
        out = self.host(host).ovs.ofctl("dump-flows", options=("--no-stats", "--no-names"))
        return sorted(normalise_flow(line) for line in out.splitlines()
                      if line.strip() and "reply" not in line)

    def ofport(self, name: str) -> int:
        ofport = self.instance(name).ofport()
        assert ofport is not None, f"{name} is not on br-int"
        return ofport

    # --- traffic -----------------------------------------------------------------------------
    def ping(self, source: str, address: str, *, count: int = 1, wait: float = 1.0,
             interval: float = 0.2, from_address: str | None = None) -> bool:
        """Whether `source` gets an echo reply from `address` (`ping -c count`)."""
        argv = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait)]
        if from_address is not None:
            argv += ["-I", from_address]
        done = self.exec(source, *argv, address, timeout=count * (interval + wait) + 10)
        return done.returncode == 0

    def wait_ping(self, source: str, address: str, *, timeout: float = 10.0) -> None:
        wait_until(lambda: self.ping(source, address), timeout=timeout, interval=0.0,
                   message=f"{source} pings {address}")

    def tcp(self, client: str, server: str, address: str, port: int, *,
            timeout: float = 2.0) -> bool:
        """Whether `client` opens a TCP connection to `address`:`port` (busybox nc inside the
        client) where `server` listens (on any address), and a line goes each way."""
        token = f"hello-{uuid.uuid4().hex[:8]}"
        got: list[bytes] = []
        listener = netns.socket_in(self.instance(server).namespace)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(4)
        listener.settimeout(timeout + 3)

        def serve() -> None:
            with contextlib.suppress(OSError), listener:
                conn, _peer = listener.accept()
                with conn:
                    conn.settimeout(timeout + 3)
                    data = b""
                    while b"\n" not in data and (chunk := conn.recv(4096)):
                        data += chunk
                    got.append(data)
                    conn.sendall(b"ack " + data)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            done = self.instance(client).exec(
                [BUSYBOX, "nc", "-w", str(max(1, round(timeout))), address, str(port)],
                check=False, timeout=timeout + 5, input=token + "\n")
        except LabError:  # timed out: the connection hung
            return False
        finally:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
            thread.join(timeout + 5)
        return done.returncode == 0 and f"ack {token}" in done.stdout and got == [
            f"{token}\n".encode()]

    def tcp_ports(self, client: str, server: str, address: str, ports: Iterable[int], *,
                  timeout: float = 2.0) -> dict[int, bool]:
        """`tcp` to several ports at once: port -> connected."""
        wanted = list(ports)
        with ThreadPoolExecutor(len(wanted)) as pool:
            results = pool.map(lambda p: self.tcp(client, server, address, p, timeout=timeout), wanted)
            return dict(zip(wanted, results, strict=True))

    # --- frames ------------------------------------------------------------------------------
    def capture(self, *names: str) -> Capture:
        """Start capturing every frame that arrives on eth0 of the instances `names`."""
        return Capture({name: self.instance(name).namespace for name in names})

    def send(self, name: str, frames: Sequence[bytes], *, repeat: int = 1, gap: float = 0.05) -> None:
        """Put raw Ethernet `frames` on the wire from eth0 of instance `name`."""
        with raw_socket(self.instance(name).namespace) as sock:
            for _ in range(repeat):
                for frame in frames:
                    sock.send(frame)
                time.sleep(gap)

    def neighbour(self, name: str, address: str) -> str | None:
        """The MAC address instance `name` has for `address` in its neighbour table, if any."""
        out = self.exec(name, "ip", "-j", "neigh", "show", "to", address, "dev", "eth0").stdout
        for entry in json.loads(out or "[]"):
            if entry.get("lladdr") and entry.get("dst") == address:
                return str(entry["lladdr"])
        return None


@dataclass
class TenantNet:
    """A network of the lab, its subnet, and what the API gave the instances booted on it
    (their addresses, MACs and ports, by instance name)."""

    lab: E2ELab
    network: Any
    subnet: Any
    ip: dict[str, str]
    mac: dict[str, str]
    port: dict[str, Any]


def normalise_flow(line: str) -> str:
    """A dump-flows line without its counters and ages."""
    line = re.sub(r"\b(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]*,?\s*", "", line.strip())
    return re.sub(r"\s+", " ", line)


def mentions_ofport(flow: str, ofport: int) -> bool:
    """Whether a dump-flows line matches or acts on OpenFlow port `ofport` (in_port, reg6/reg7
    port keys, output)."""
    numbers = {str(ofport), hex(ofport)}
    pattern = r"(in_port=|reg6=|reg7=|output:|set_field:|load:)({})(?![0-9a-fx])".format(
        "|".join(re.escape(n) for n in numbers))
    for match in re.finditer(pattern, flow):
        if match.group(1) in ("set_field:", "load:"):
            rest = flow[match.end():match.end() + 12]
            if not rest.startswith(("->reg6", "->reg7", "->NXM_NX_REG6", "->NXM_NX_REG7")):
                continue
        return True
    return False


def mentions_address(flow: str, address: str) -> bool:
    return re.search(rf"(?<![0-9a-f:.]){re.escape(address)}(?![0-9a-f])", flow, re.I) is not None


def free_address(cloud: Any, subnet_id: str) -> str:
    """An address of the subnet that no port holds (the highest one), read from the API."""
    subnet = cloud.network.get_subnet(subnet_id)
    used = {ip["ip_address"] for port in cloud.network.ports(network_id=subnet.network_id)
            for ip in port.fixed_ips}
    used.add(subnet.gateway_ip)
    network = ipaddress.ip_network(subnet.cidr)
    for candidate in reversed(list(network.hosts())):
        if str(candidate) not in used:
            return str(candidate)
    raise AssertionError(f"subnet {subnet.cidr} is full")


# --- Ethernet frames -----------------------------------------------------------------------------

def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def _text_mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def ethernet(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    frame = _mac(dst) + _mac(src) + struct.pack("!H", ethertype) + payload
    return frame.ljust(60, b"\0")


def arp(*, op: int, src_mac: str, src_ip: str, dst_mac: str, dst_ip: str,
        eth_dst: str = BROADCAST, eth_src: str | None = None) -> bytes:
    """An ARP frame (op 1 request, 2 reply); a gratuitous one has dst_ip == src_ip."""
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, _mac(src_mac),
                       socket.inet_aton(src_ip), _mac(dst_mac), socket.inet_aton(dst_ip))
    return ethernet(eth_dst, eth_src or src_mac, 0x0806, body)


def udp(*, src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, payload: bytes,
        src_port: int = 40000, dst_port: int = 40000) -> bytes:
    """An IPv4/UDP frame (UDP checksum 0: none) carrying `payload`."""
    datagram = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(datagram), 0, 0x4000, 64, 17, 0,
                         socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
    return ethernet(dst_mac, src_mac, 0x0800, header + datagram)


def marker() -> bytes:
    """A payload no other frame carries."""
    return b"neutrino-e2e-" + uuid.uuid4().hex.encode()


@contextlib.contextmanager
def raw_socket(namespace: str) -> Iterator[socket.socket]:
    """An AF_PACKET socket on eth0 of `namespace`, receiving every frame."""
    sock = netns.call_in_namespace(
        namespace, lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)))
    try:
        sock.bind(("eth0", ETH_P_ALL))
        yield sock
    finally:
        sock.close()


@dataclass(frozen=True)
class Frame:
    data: bytes

    @property
    def dst(self) -> str:
        return _text_mac(self.data[:6])

    @property
    def src(self) -> str:
        return _text_mac(self.data[6:12])

    @property
    def ethertype(self) -> int:
        return int(struct.unpack("!H", self.data[12:14])[0])

    @property
    def arp(self) -> tuple[int, str, str, str, str] | None:
        """(op, sender MAC, sender IP, target MAC, target IP) of an ARP frame."""
        if self.ethertype != 0x0806:
            return None
        op, sha, spa, tha, tpa = struct.unpack("!6xH6s4s6s4s", self.data[14:42])
        return op, _text_mac(sha), socket.inet_ntoa(spa), _text_mac(tha), socket.inet_ntoa(tpa)

    @property
    def ipv4(self) -> tuple[int, str, str] | None:
        """(protocol, source, destination) of an IPv4 frame."""
        if self.ethertype != 0x0800:
            return None
        proto, src, dst = struct.unpack("!9xB2x4s4s", self.data[14:34])
        return proto, socket.inet_ntoa(src), socket.inet_ntoa(dst)


class Capture:
    """Frames arriving on eth0 of some instances (not those they send), from `start` on."""

    def __init__(self, namespaces: dict[str, str]) -> None:
        self._sockets: dict[str, socket.socket] = {}
        self._stack = contextlib.ExitStack()
        for name, namespace in namespaces.items():
            self._sockets[name] = self._stack.enter_context(raw_socket(namespace))
        self.frames: dict[str, list[Frame]] = {name: [] for name in namespaces}

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def collect(self, seconds: float = 1.0) -> dict[str, list[Frame]]:
        """Read what arrived (waiting `seconds` for late frames); every frame so far, per instance."""
        deadline = time.monotonic() + seconds
        for name, sock in self._sockets.items():
            while True:
                sock.settimeout(max(0.0, deadline - time.monotonic()) or 0.001)
                try:
                    data, address = sock.recvfrom(65535)
                except (TimeoutError, BlockingIOError):
                    break
                if address[2] != PACKET_OUTGOING:
                    self.frames[name].append(Frame(data))
        return self.frames

    def carrying(self, payload: bytes, seconds: float = 1.0) -> dict[str, int]:
        """How many frames carrying `payload` each instance received."""
        frames = self.collect(seconds)
        return {name: sum(payload in f.data for f in got) for name, got in frames.items()}

    def matching(self, predicate: Callable[[Frame], bool], seconds: float = 1.0) -> dict[str, list[Frame]]:
        frames = self.collect(seconds)
        return {name: [f for f in got if predicate(f)] for name, got in frames.items()}
