"""`make demo`: two projects on a lab of three hosts, and real packets that show who reaches whom.

1. `neutrino lab up --hosts 3 --gateways 2`: a server and host1..host3, each a network namespace
   with its own Open vSwitch and agent; host1 (preferred) and host2 are gateway hosts.
2. Through the API (openstacksdk): as admin, projects `demo-red` and `demo-blue` with a user
   each (role member); then, as each project's user, a network, a subnet (both projects use
   10.0.0.0/24: overlapping tenants are fine), security groups and ports.  `neutrino lab boot`
   plugs an instance into each port on the host it names.
3. Real ping and TCP (`busybox nc`) between the instances, each with the result the security
   groups and networks predict and why; a summary table.  Exit status 1 if any probe did not
   match its expectation.
4. A gateway failover (HA SNAT): red-client (host3, no floating IP) goes out as red-router's
   gateway address through the active gateway host1 (the external host sees that address); the
   API shows host1 active and host2 standby; host1's ovs-vswitchd is killed while red-client
   pings the external host every 10 ms (`neutrino.lab.failover.measure_failover`): the traffic
   moves to host2 by itself (the gap is printed) and the API shows host2 active; host1 is
   healed, takes the traffic back, and the requests lost on that return are printed (0
   expected; reported, not judged: the exit status only fails if the traffic does not move or
   the API does not follow).
5. `neutrino lab down`, also after an error or Ctrl-C; `--keep` leaves the lab up for exploring
   with the `openstack` CLI (clouds `neutrino-lab` for admin, `demo-red` and `demo-blue` for the
   projects' users).

    python -m neutrino.demo [--keep] [--state-dir D]      (default D: ~/.neutrino/demo)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import httpx
import yaml
from rich import box
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from neutrino.lab import netns
from neutrino.lab.cli import api_client
from neutrino.lab.errors import LabError, require_lab_prerequisites
from neutrino.lab.failover import PING_INTERVAL, FailoverPhase, measure_failover
from neutrino.lab.state import LabState, lab_prefix

CLOUD = "neutrino-lab"  # the admin cloud `neutrino lab up` writes into clouds.yaml
MARKER = ".neutrino-demo"  # marks a state directory as the demo's own (safe to clear)
CIDR = "10.0.0.0/24"  # both projects use it
BACK_CIDR = "10.0.1.0/24"  # red-back, behind red-router
PUBLIC_NETWORK = "public"  # the lab's external network (neutrino lab up makes it)
EXTERNAL = "external"  # the lab's upstream namespace (`neutrino lab exec external -- ...`)
HOSTS = 3
GATEWAYS = 2  # host1 (preferred) and host2 are gateway hosts: red-router's SNAT lives there
ACTIVE_GATEWAY, STANDBY_GATEWAY = "host1", "host2"
SNAT_CLIENT = "red-client"  # no floating IP, on host3: its traffic out goes through the gateway
SNAT_PORT = 7000  # the external host's listener that reports the source address it sees
PING_DEADLINE = 3  # seconds: a blocked ping costs this much
PING = ("ping", "-n", "-q", "-c", "1", "-i", "0.2", "-w", str(PING_DEADLINE))  # done at the 1st reply
CONNECT_TIMEOUT = 3  # seconds, for `busybox nc -w`: two SYNs (the kernel resends after 1 s)
CONNECTED_NO_LINE = "connected, but the line did not arrive"
T = TypeVar("T")
R = TypeVar("R")
# not on a terminal (a log, a test): wide enough for the summary table, unless COLUMNS says otherwise
console = Console(emoji=False, highlight=False,
                  width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 132)


# --- the story ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProjectSpec:
    name: str  # the Keystone project
    short: str  # red / blue: prefix of its resources
    user: str
    color: str
    pool: tuple[str, str]  # its subnet's allocation pool, so that addresses tell whose they are
    # security group -> ingress rules: (protocol, port or None, "group NAME" or None = anywhere)
    groups: dict[str, list[tuple[str, int | None, str | None]]]
    back_cidr: str | None = None  # a second network `<short>-back`, joined by `<short>-router`


@dataclass(frozen=True)
class InstanceSpec:
    name: str
    project: str  # ProjectSpec.short
    host: str
    groups: tuple[str, ...]
    same_address_as: str | None = None  # request the address of this (other project's) instance
    network: str = "net"  # its project's "net" or "back" network


PROJECTS = (
    ProjectSpec("demo-red", "red", "red-user", "red", ("10.0.0.10", "10.0.0.99"), {
        "web": [("icmp", None, None), ("tcp", 80, None)],
        "db": [("tcp", 5432, "group web")],
    }, back_cidr=BACK_CIDR),
    ProjectSpec("demo-blue", "blue", "blue-user", "blue", ("10.0.0.100", "10.0.0.199"), {
        "web": [("icmp", None, None), ("tcp", 80, None)],
    }),
)

INSTANCES = (
    InstanceSpec("red-web", "red", "host1", ("web",)),
    InstanceSpec("red-db", "red", "host2", ("db",)),
    InstanceSpec("red-client", "red", "host3", ("default",)),
    InstanceSpec("blue-web", "blue", "host2", ("web",)),
    InstanceSpec("blue-client", "blue", "host3", ("default",), same_address_as="red-client"),
    InstanceSpec("red-batch", "red", "host1", ("web",), network="back"),
)


@dataclass(frozen=True)
class Probe:
    number: int
    source: str
    target: str
    kind: str  # "ping" or "tcp"
    port: int | None
    expect_reached: bool
    reason: str

    @property
    def label(self) -> str:
        return "ping" if self.kind == "ping" else f"tcp/{self.port}"


PROBES = (
    Probe(1, "red-client", "red-web", "ping", None, True, "allowed: web admits ICMP from anywhere"),
    Probe(2, "red-client", "red-web", "tcp", 80, True, "allowed: web admits tcp/80 from anywhere"),
    Probe(3, "red-client", "red-web", "tcp", 22, False, "blocked: web has no rule for tcp/22"),
    Probe(4, "red-web", "red-db", "tcp", 5432, True, "allowed: db admits tcp/5432 from group web"),
    Probe(5, "red-client", "red-db", "tcp", 5432, False, "blocked: red-client is not in group web"),
    Probe(6, "red-web", "red-client", "ping", None, False,
          "blocked: default admits only group default"),
    Probe(7, "blue-client", "blue-web", "tcp", 80, True, "allowed: blue's web admits tcp/80"),
    Probe(8, "blue-client", "red-web", "tcp", 80, False, "isolated: red-web is on another network"),
    Probe(9, "red-client", "blue-web", "ping", None, False,
          "isolated: blue-web is on another network"),
    Probe(10, "red-db", "blue-web", "tcp", 80, False, "isolated: another network (same host)"),
    Probe(11, "red-client", "red-batch", "ping", None, True,
          "routed: red-router joins red-net and red-back (on red-client's host)"),
    Probe(12, "red-batch", "red-db", "tcp", 5432, True,
          "routed: db admits group web, from the other subnet too"),
    Probe(13, "blue-client", "red-batch", "ping", None, False,
          "isolated: no router joins blue-net to red-back"),
    Probe(14, "external", "red-web-fip", "ping", None, True,
          "floating IP: DNAT on red-web's own host"),
    Probe(15, "red-web", "external", "ping", None, True,
          "out as its floating IP: SNAT on its own host"),
    Probe(16, "red-client", "external", "ping", None, True,
          "no floating IP: SNAT on the active gateway host1"),
)

LESSONS = (
    "same network, across hosts (Geneve between the hosts' Open vSwitches): 1, 2, 4",
    "security groups decide by port (2 vs 3) and by group membership: db admits members of web "
    "(4) and nobody else (5); default admits only its own members (6)",
    "stateful: red-client's default group does not admit red-web, yet the replies to "
    "red-client's own traffic come back (1, 2)",
    "projects: both use 10.0.0.0/24 and blue-client even has red-client's address (7), yet "
    "nothing crosses between their networks, even where a group admits anyone (8, 9) or both "
    "sit on one host (10)",
    "routing is distributed: red-client's own host routes its packets to red-back and sends "
    "them straight to red-batch's host (11); groups still decide after routing (12); a router "
    "joins only the networks it has interfaces on (13)",
    "floating IPs are distributed too: the upstream network (the lab's external namespace) "
    "reaches red-web by its floating IP, and red-web goes out as it, both translated on "
    "red-web's own host (14, 15)",
    "an instance without a floating IP goes out as its router's gateway address, translated on "
    "the router's active gateway host (16; step 4 shows it failing over)",
)


# --- running things -----------------------------------------------------------------------------

def neutrino_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "neutrino.cli.main", *args]


def shown(args: Sequence[str]) -> str:
    return "$ neutrino " + shlex.join(args)


def lab_env(state_dir: Path) -> dict[str, str]:
    """The environment of the `neutrino` commands: NEUTRINO_LAB_STATE_DIR names the lab."""
    return {**os.environ, "NEUTRINO_LAB_STATE_DIR": str(state_dir)}


def neutrino(state_dir: Path, *args: str, timeout: float = 180.0, show: bool = True,
             detach: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a `neutrino` command on the lab in `state_dir`; a DemoError with its output if it
    fails.  `detach`: in a session of its own, so that the daemons it leaves running (`lab up`:
    the server) do not get the terminal's Ctrl-C meant for the demo."""
    if show:
        console.print(shown(args), style="dim", markup=False)
    done = subprocess.run(neutrino_argv(*args), capture_output=True, text=True, check=False,
                          timeout=timeout, env=lab_env(state_dir), start_new_session=detach)
    if done.returncode != 0:
        raise DemoError(f"`neutrino {shlex.join(args)}` failed (exit {done.returncode}):\n"
                        + (done.stderr or done.stdout).strip())
    return done


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


@dataclass
class Instance:
    spec: InstanceSpec
    port_id: str = ""
    address: str = ""
    mac: str = ""
    namespace: str = ""

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Outcome:
    probe: Probe
    reached: bool
    detail: str
    seconds: float

    @property
    def matched(self) -> bool:
        return self.reached == self.probe.expect_reached


@dataclass
class Demo:
    state_dir: Path
    instances: dict[str, Instance] = field(default_factory=dict)
    floating: dict[str, str] = field(default_factory=dict)  # instance -> its floating IP
    router_id: str = ""  # red-router (its gateway on public: SNAT on the gateway hosts)
    listeners: set[subprocess.Popen[str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def lab(self, *args: str, timeout: float = 180.0, show: bool = True,
            detach: bool = False) -> subprocess.CompletedProcess[str]:
        return neutrino(self.state_dir, "lab", *args, timeout=timeout, show=show, detach=detach)

    def run(self, argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout,
                              env=lab_env(self.state_dir))

    # --- step 1 -----------------------------------------------------------------------------

    def up(self) -> None:
        started = time.monotonic()
        console.print(f"$ export NEUTRINO_LAB_STATE_DIR={self.state_dir}", style="dim", markup=False)
        self.lab("up", "--hosts", str(HOSTS), "--gateways", str(GATEWAYS), detach=True)
        console.print(f"  host1..host3 are up, each a network namespace with its own Open vSwitch "
                      f"and a neutrino agent, on one underlay; {ACTIVE_GATEWAY} (preferred) and "
                      f"{STANDBY_GATEWAY} are gateway hosts ({time.monotonic() - started:.1f} s)")

    # --- step 2 -----------------------------------------------------------------------------

    def build(self) -> None:
        clouds_file = self.state_dir / "clouds.yaml"
        clouds = yaml.safe_load(clouds_file.read_text())
        admin_entry = clouds["clouds"][CLOUD]
        admin = connect(admin_entry["auth"], admin_entry["region_name"])
        member = admin.identity.find_role("member", ignore_missing=False)
        console.print("  [bold]as admin[/] (cloud neutrino-lab): two projects, a user each with "
                      "role member")
        conns: dict[str, Any] = {}
        for spec in PROJECTS:
            project = admin.identity.create_project(
                name=spec.name, domain_id="default", description=f"the demo's {spec.short} tenant")
            password = secrets.token_urlsafe(12)
            user = admin.identity.create_user(name=spec.user, password=password,
                                              domain_id="default", default_project_id=project.id)
            admin.identity.assign_project_role_to_user(project, user, member)
            auth = {**admin_entry["auth"], "username": spec.user, "password": password,
                    "project_name": spec.name}
            clouds["clouds"][spec.name] = {**admin_entry, "auth": auth}
            conns[spec.short] = connect(auth, admin_entry["region_name"])
            console.print(f"    project [{spec.color}]{spec.name}[/] {project.id}, user "
                          f"{spec.user} (member, random password)")
        clouds_file.write_text(yaml.safe_dump(clouds, sort_keys=False))  # mode stays 0600

        trees = []
        for spec in PROJECTS:
            console.print(f"  [bold]as {spec.user}[/] (cloud {spec.name}): a network, a subnet, "
                          f"security groups and ports, all owned by {spec.name}")
            trees.append(self.build_project(spec, conns[spec.short], admin))
        for tree in trees:
            console.print(tree)

        console.print("  [bold]instances[/]: `neutrino lab boot` binds each port to its host, plugs "
                      "an instance into br-int, waits for ACTIVE")
        for _ in concurrently(self.boot, list(self.instances.values()), workers=3):
            pass
        lab_state = LabState.load(self.state_dir)
        for inst in self.instances.values():
            port = admin.network.get_port(inst.port_id)
            inst.address = str(port.fixed_ips[0]["ip_address"])  # what the API gave the port
            inst.mac = str(port.mac_address)
            inst.namespace = lab_state.instances[inst.name].namespace
            if port.status != "ACTIVE":
                raise DemoError(f"port of {inst.name} is {port.status}, not ACTIVE")
        console.print(self.instance_table())
        # the probes' other ends: the upstream namespace, and red-web by its floating IP
        public = admin.network.find_network(PUBLIC_NETWORK, ignore_missing=False)
        upstream = next(iter(admin.network.subnets(network_id=public.id))).gateway_ip
        self.instances[EXTERNAL] = Instance(InstanceSpec(EXTERNAL, "world", "upstream", ()),
                                            address=str(upstream))
        for name, address in self.floating.items():
            inst = self.instances[name]
            self.instances[f"{name}-fip"] = Instance(
                InstanceSpec(f"{name}-fip", inst.spec.project, inst.spec.host, ()), address=address)

    def build_project(self, spec: ProjectSpec, conn: Any, admin: Any) -> Tree:
        net = conn.network.create_network(name=f"{spec.short}-net")
        subnet = conn.network.create_subnet(
            network_id=net.id, name=f"{spec.short}-subnet", ip_version=4, cidr=CIDR,
            allocation_pools=[{"start": spec.pool[0], "end": spec.pool[1]}])
        seen_by_admin = admin.network.get_network(net.id)  # provider attributes are admin-only
        tree = Tree(f"[{spec.color} bold]{spec.name}[/] (user {spec.user})")
        tree.add(f"network {net.name}: {seen_by_admin.provider_network_type} segment "
                 f"{seen_by_admin.provider_segmentation_id} (admin's view), mtu {net.mtu}")
        tree.add(f"subnet {subnet.name}: {subnet.cidr}, gateway {subnet.gateway_ip}, pool "
                 f"{spec.pool[0]}-{spec.pool[1]}")
        groups = {sg.name: sg for sg in conn.network.security_groups()}  # creates `default`
        for name, rules in spec.groups.items():
            group = conn.network.create_security_group(name=name, description=f"{spec.short} {name}")
            groups[name] = group
            for protocol, port, remote in rules:
                conn.network.create_security_group_rule(
                    security_group_id=group.id, direction="ingress", ethertype="IPv4",
                    protocol=protocol, port_range_min=port, port_range_max=port,
                    remote_group_id=groups[remote.split()[1]].id if remote else None)
        names = {g.id: n for n, g in groups.items()}
        for name in ("default", *spec.groups):
            group = conn.network.get_security_group(groups[name].id)
            ingress = sorted(describe_rule(r, names) for r in group.security_group_rules
                             if r["direction"] == "ingress" and r["ethertype"] == "IPv4")
            tree.add(f"group {name}: " + ("; ".join(ingress) or "no ingress rule")
                     + ("  (made by the server)" if name == "default" else ""))
        tree.add("[dim](every group also lets everything out: egress rules the server adds)[/]")
        where = {"net": (net, subnet)}
        if spec.back_cidr is not None:
            where["back"] = self.build_back(spec, conn, net, subnet, tree)
        for inst_spec in INSTANCES:
            if inst_spec.project != spec.short:
                continue
            on_net, on_subnet = where[inst_spec.network]
            fixed: dict[str, str] = {"subnet_id": on_subnet.id}
            if inst_spec.same_address_as:
                fixed["ip_address"] = self.instances[inst_spec.same_address_as].address
            port = conn.network.create_port(
                network_id=on_net.id, name=inst_spec.name, fixed_ips=[fixed],
                security_group_ids=[groups[g].id for g in inst_spec.groups])
            inst = Instance(inst_spec, port_id=port.id, address=port.fixed_ips[0]["ip_address"])
            self.instances[inst.name] = inst
        tree.add(f"ports: {', '.join(i.name for i in INSTANCES if i.project == spec.short)}")
        if spec.back_cidr is not None:  # red-web gets a floating IP on the external network
            web = self.instances[f"{spec.short}-web"]
            public = conn.network.find_network(PUBLIC_NETWORK, ignore_missing=False)
            fip = conn.network.create_ip(floating_network_id=public.id, port_id=web.port_id)
            self.floating[web.name] = str(fip.floating_ip_address)
            tree.add(f"floating IP {fip.floating_ip_address} on {PUBLIC_NETWORK} for {web.name}")
        return tree

    def build_back(self, spec: ProjectSpec, conn: Any, net: Any, subnet: Any,
                   tree: Tree) -> tuple[Any, Any]:
        """The project's second network and a router joining it to the first."""
        assert spec.back_cidr is not None
        back = conn.network.create_network(name=f"{spec.short}-back")
        back_subnet = conn.network.create_subnet(network_id=back.id, name=f"{spec.short}-back-subnet",
                                                 ip_version=4, cidr=spec.back_cidr)
        public = conn.network.find_network(PUBLIC_NETWORK, ignore_missing=False)
        router = conn.network.create_router(name=f"{spec.short}-router",
                                            external_gateway_info={"network_id": public.id})
        for joined in (subnet, back_subnet):
            conn.network.add_interface_to_router(router, subnet_id=joined.id)
        self.router_id = str(router.id)
        tree.add(f"network {back.name}, subnet {back_subnet.cidr} (gateway {back_subnet.gateway_ip})")
        tree.add(f"router {router.name}: interfaces {subnet.gateway_ip} on {net.name}, "
                 f"{back_subnet.gateway_ip} on {back.name} (distributed: every host routes); "
                 f"gateway on the lab's external network {PUBLIC_NETWORK}")
        return back, back_subnet

    def boot(self, inst: Instance) -> None:
        args = ("boot", inst.name, "--host", inst.spec.host, "--port", inst.port_id)
        started = time.monotonic()
        self.lab(*args, show=False)
        console.print(f"    {shown(('lab', *args))}  [dim]({time.monotonic() - started:.1f} s)[/]")

    def instance_table(self) -> Table:
        table = Table(title="Instances", title_justify="left", box=box.SIMPLE_HEAD)
        for column in ("instance", "project", "host", "address (from the API)", "security groups"):
            table.add_column(column)
        colors = {p.short: p.color for p in PROJECTS}
        for inst in self.instances.values():
            project = next(p for p in PROJECTS if p.short == inst.spec.project)
            same = inst.spec.same_address_as
            table.add_row(f"[{colors[inst.spec.project]}]{inst.name}[/]", project.name,
                          inst.spec.host, inst.address + (f" (= {same}'s)" if same else ""),
                          ", ".join(inst.spec.groups))
        return table

    # --- step 3 -----------------------------------------------------------------------------

    def wait_converged(self, timeout: float = 15.0) -> None:
        """Until every agent has installed everything the API has said so far (its realised
        revision reaches the committed one): ACTIVE only says the port's own host is ready, not
        that the other hosts know its address (remote groups)."""
        with api_client(self.state_dir) as client:
            deadline = time.monotonic() + timeout
            target: int | None = None
            while time.monotonic() < deadline:
                state = client.get("/v2.0/neutrino/revision").json()
                if state["revision"] >= state["outbox_revision"]:
                    target = target or state["revision"]
                    if all(realised >= target for realised in state["chassis"].values()):
                        return
                time.sleep(0.2)
        console.print("  [yellow]not every agent reported the newest revision in time; probing "
                      "anyway[/]")

    def probe_all(self) -> list[Outcome]:
        """Run the probes: those that listen on the same instance and port one after the
        other, the rest concurrently."""
        batches: dict[tuple[str, ...], list[Probe]] = {}
        for probe in PROBES:
            key = (probe.target, str(probe.port)) if probe.kind == "tcp" else (str(probe.number),)
            batches.setdefault(key, []).append(probe)
        outcomes = [o for done in concurrently(self.run_batch, list(batches.values()), workers=4)
                    for o in done]
        return sorted(outcomes, key=lambda o: o.probe.number)

    def run_batch(self, probes: list[Probe]) -> list[Outcome]:
        done = []
        for probe in probes:
            started = time.monotonic()
            reached, detail = self.ping(probe) if probe.kind == "ping" else self.tcp(probe)
            outcome = Outcome(probe, reached, detail, time.monotonic() - started)
            self.report(outcome)
            done.append(outcome)
        return done

    def report(self, outcome: Outcome) -> None:
        probe = outcome.probe
        target = self.instances[probe.target]
        mark = "[green]✓[/]" if outcome.matched else "[bold red]✗[/]"
        console.print(f"  {mark} {probe.number:2d} {probe.source} → {probe.target} "
                      f"({target.address}) {probe.label}: {result_text(outcome.reached)}"
                      + (", as expected" if outcome.matched else
                         f", [bold red]expected {plain_result(probe.expect_reached)}[/]")
                      + f" [dim]({outcome.detail}, {outcome.seconds:.1f} s)[/]")

    def exec_args(self, name: str, *command: str) -> list[str]:
        return ["lab", "exec", name, "--", *command]

    def ping(self, probe: Probe) -> tuple[bool, str]:
        target = self.instances[probe.target]
        args = self.exec_args(probe.source, *PING, target.address)
        done = self.run(neutrino_argv(*args))
        sent = next((line.split()[0] for line in done.stdout.splitlines() if "transmitted" in line),
                    "?")
        if done.returncode == 0:
            return True, "answered"
        return False, f"{sent} sent, no reply in {PING_DEADLINE} s"

    def tcp(self, probe: Probe) -> tuple[bool, str]:
        """A listener in the target (`busybox nc -l`), a client in the source that sends a line:
        reached if the line arrived at the target's listener. A connection whose line did not
        arrive is tried once more (seen rarely on a loaded machine; the detail says so)."""
        reached, detail = self.tcp_once(probe)
        if not reached and detail == CONNECTED_NO_LINE:
            reached, again = self.tcp_once(probe)
            detail = f"{again} on the second attempt (the first: {detail})"
        return reached, detail

    def tcp_once(self, probe: Probe) -> tuple[bool, str]:
        target = self.instances[probe.target]
        payload = f"probe{probe.number}-{probe.source}-{secrets.token_hex(4)}"
        listen = neutrino_argv(*self.exec_args(probe.target, "busybox", "nc", "-l", "-p",
                                               str(probe.port), "-w", "30"))
        listener = subprocess.Popen(listen, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    text=True, start_new_session=True, env=lab_env(self.state_dir))
        with self.lock:
            self.listeners.add(listener)
        try:
            self.wait_listening(target, probe.port or 0, listener)
            send = self.exec_args(probe.source, "sh", "-c", f"echo {payload} | busybox nc -w "
                                  f"{CONNECT_TIMEOUT} {target.address} {probe.port}")
            client = self.run(neutrino_argv(*send))
            try:
                received, _ = listener.communicate(timeout=5 if client.returncode == 0 else 0.5)
            except subprocess.TimeoutExpired:
                stop(listener)
                received, _ = listener.communicate()
        finally:
            stop(listener)
            with self.lock:
                self.listeners.discard(listener)
        if payload in (received or ""):
            return True, "the line arrived"
        error = (client.stderr.strip().splitlines() or [""])[-1].removeprefix("nc: ")
        if client.returncode == 0:
            return False, CONNECTED_NO_LINE
        if not error or "timed out" in error:
            return False, f"no connection in {CONNECT_TIMEOUT} s"
        return False, f"no connection: {error}"

    def wait_listening(self, target: Instance, port: int, listener: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done = subprocess.run(netns.exec_argv(target.namespace, ["ss", "-Hltn", f"sport = :{port}"]),
                                  capture_output=True, text=True, check=False, timeout=10)
            if done.stdout.strip():
                return
            if listener.poll() is not None:
                raise DemoError(f"the listener on {target.name}:{port} exited "
                                f"(status {listener.returncode})")
            time.sleep(0.1)
        raise DemoError(f"no listener on {target.name}:{port} after 20 s")

    def stop_listeners(self) -> None:
        with self.lock:
            for listener in list(self.listeners):
                stop(listener)

    # --- step 4 -----------------------------------------------------------------------------

    def gateway_failover(self) -> bool:
        """SNAT through the active gateway host, the API's HA state, host1's switch killed and
        healed while red-client pings the external host; whether the SNAT source, the traffic
        and the API all behaved (the gap and the loss on return are printed, not judged)."""
        client, external = self.instances[SNAT_CLIENT], self.instances[EXTERNAL]
        with api_client(self.state_dir) as api:
            router = api.get(f"/v2.0/routers/{self.router_id}").json()["router"]
            gateway_ip = str(router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"])
            console.print(f"$ openstack network agent list --router {router['name']} --long   "
                          f"(GET /v2.0/routers/{{id}}/l3-agents)", style="dim", markup=False)
            steady = {ACTIVE_GATEWAY: "active", STANDBY_GATEWAY: "standby"}
            deadline = time.monotonic() + 20
            while (roles := self.roles(api)) != steady and time.monotonic() < deadline:
                time.sleep(0.2)
        ok = roles == steady
        console.print(f"  {mark(ok)} {router['name']}'s SNAT is on its gateway hosts: "
                      f"{roles_text(roles)}")

        seen = self.snat_source(client, external)
        snat_ok = seen == gateway_ip
        console.print(
            f"  {mark(snat_ok)} {client.name} ({client.address} on {client.spec.host}, no floating "
            f"IP) → external {external.address}:{SNAT_PORT} (tcp): the external host sees "
            f"{seen or 'no connection'},\n    "
            + (f"which is red-router's gateway address (translated on {ACTIVE_GATEWAY})"
               if snat_ok else f"[bold red]not red-router's gateway address {gateway_ip}[/]"))

        console.print(f"  {client.name} pings the external host every {PING_INTERVAL * 1000:.0f} ms "
                      f"while {ACTIVE_GATEWAY}'s ovs-vswitchd is killed (SIGKILL), then healed:")
        ping = ("ping", "-n", "-D", "-O", "-i", f"{PING_INTERVAL:g}", external.address)
        console.print(shown(self.exec_args(client.name, *ping)) + "   (in the background)",
                      style="dim", markup=False)

        def moved(out: FailoverPhase) -> None:
            standby = out.roles.get(STANDBY_GATEWAY)
            failed = out.roles.get(ACTIVE_GATEWAY)
            console.print(
                f"  {mark(standby == 'active')} the traffic moved to {STANDBY_GATEWAY} by itself: "
                f"[bold]{out.gap_ms:.0f} ms[/] without a reply, {out.lost} of {out.transmitted} "
                f"requests lost\n"
                f"    the API now shows {STANDBY_GATEWAY} {standby}"
                + (f" ({ACTIVE_GATEWAY}'s own agent still reports {failed})" if failed else ""))

        def command(line: str) -> None:
            console.print(f"$ {line}", style="dim", markup=False)

        with VnfManager() as manager:
            with api_client(self.state_dir) as api:
                subscribed = api.post("/v2.0/fault-subscriptions", json={"subscription": {
                    "url": manager.url, "event_types": ["host.down"],
                    "description": "a VNF manager"}})
            console.print(f"$ neutrino faults subscribe --url {manager.url} --type host.down   "
                          "(a tiny VNF manager: a webhook receiver on 127.0.0.1)",
                          style="dim", markup=False)
            try:
                result = measure_failover(self.state_dir, client.name, ACTIVE_GATEWAY, "vswitchd",
                                          router_id=self.router_id, target=external.address,
                                          log=command, on_failover=moved)
            except LabError as error:
                console.print(f"  [bold red]✗ the failover did not complete:[/] {error}")
                return False
            finally:
                with api_client(self.state_dir) as api:
                    if subscribed.status_code == 201:
                        api.delete("/v2.0/fault-subscriptions/"
                                   + subscribed.json()["subscription"]["id"])
            notified = manager.report(ACTIVE_GATEWAY)
        back = result.back
        returned = back.roles == steady
        console.print(
            f"  {mark(returned)} {ACTIVE_GATEWAY} took the traffic back once its flows were in: "
            + (f"[bold]{back.lost}[/] of {back.transmitted} requests lost"
               if back.lost == 0 else
               f"[bold yellow]{back.lost}[/] of {back.transmitted} requests lost (0 expected)")
            + f" on the return, longest gap {back.gap_ms:.0f} ms\n"
            f"    the API {back.seconds:.1f} s after the heal: {roles_text(back.roles)}")
        return (ok and snat_ok and returned and notified
                and result.failover.roles.get(STANDBY_GATEWAY) == "active")

    def roles(self, api: httpx.Client) -> dict[str, str]:
        """host -> ha_state of red-router's gateway agents, as the API reports them."""
        response = api.get(f"/v2.0/routers/{self.router_id}/l3-agents")
        response.raise_for_status()
        return {agent["host"]: agent["ha_state"] for agent in response.json()["agents"]}

    def snat_source(self, client: Instance, external: Instance) -> str | None:
        """The source address the external host sees on a TCP connection from `client`: a
        listener in the external namespace, `busybox nc` in the client."""
        namespace = LabState.load(self.state_dir).external_namespace
        listener = netns.socket_in(namespace)
        with listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((external.address, SNAT_PORT))
            listener.listen(1)
            listener.settimeout(CONNECT_TIMEOUT + 2)
            send = self.exec_args(client.name, "sh", "-c", f"echo snat | busybox nc -w "
                                  f"{CONNECT_TIMEOUT} {external.address} {SNAT_PORT}")
            console.print(shown(send), style="dim", markup=False)
            sender = subprocess.Popen(neutrino_argv(*send), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, env=lab_env(self.state_dir))
            try:
                connection, peer = listener.accept()
                connection.close()
                return str(peer[0])
            except TimeoutError:
                return None
            finally:
                try:
                    sender.wait(CONNECT_TIMEOUT + 5)
                except subprocess.TimeoutExpired:
                    sender.kill()
                    sender.wait()

    def summary(self, outcomes: list[Outcome]) -> Table:
        table = Table(title="Who reaches whom, and why", title_justify="left",
                      box=box.SIMPLE_HEAD, collapse_padding=True, show_edge=False)
        table.add_column("#", style="dim", justify="right")
        table.add_column("from", no_wrap=True)
        table.add_column("to", no_wrap=True)
        table.add_column("probe", no_wrap=True)
        table.add_column("expected", no_wrap=True)
        table.add_column("result", no_wrap=True)
        table.add_column("why")
        colors = {p.short: p.color for p in PROJECTS} | {"world": "magenta"}
        for outcome in outcomes:
            probe = outcome.probe
            source, target = self.instances[probe.source], self.instances[probe.target]
            table.add_row(
                str(probe.number),
                f"[{colors[source.spec.project]}]{source.name}[/] {source.spec.host}",
                f"[{colors[target.spec.project]}]{target.name}[/] {target.spec.host} "
                f"{target.address}",
                probe.label, plain_result(probe.expect_reached),
                result_text(outcome.reached) + ("" if outcome.matched else " [bold red]✗[/]"),
                probe.reason)
        return table


class VnfManager:
    """A tiny VNF manager: a webhook receiver on 127.0.0.1 that keeps every fault event it gets
    (CloudEvents, neutrino.faults.events) with the time it arrived, and prints them."""

    def __init__(self) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        got = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the http.server API
                length = int(self.headers.get("Content-Length", "0"))
                got.append((time.time(), json.loads(self.rfile.read(length))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/vnfm"

    def __enter__(self) -> VnfManager:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def report(self, host: str) -> bool:
        """Print what it got about `host`; whether it got the fault and its clearing."""
        kinds = set()
        for arrived, event in self.events:
            data = event.get("data", {})
            if event.get("subject") != host:
                continue
            kinds.add(data.get("state"))
            detected = _epoch(data.get("detected_at"))
            cleared = _epoch(data.get("cleared_at"))
            since = cleared if data.get("state") == "cleared" and cleared else detected
            latency = f"{(arrived - since) * 1000:.0f} ms after the inspector decided" \
                if since else "?"
            affected = data.get("affected", {})
            console.print(
                f"  {mark(True)} the VNF manager got [bold]{event.get('type')}[/] for {host} "
                f"({data.get('source')}), {latency}: {len(affected.get('ports', []))} port(s), "
                f"instances {', '.join(affected.get('instances', [])) or 'none'}, gateway role of "
                f"{len(affected.get('routers', []))} router(s)")
        ok = {"active", "cleared"} <= kinds
        if not ok:
            console.print(f"  [bold red]✗ the VNF manager did not get {host}'s fault and its "
                          "clearing[/]")
        return ok


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def concurrently(work: Callable[[T], R], items: list[T], workers: int) -> Iterator[R]:
    """`work(item)` for every item on `workers` threads, results as they come; on an error or
    Ctrl-C, what has not started yet is dropped (what runs finishes on its own)."""
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for future in as_completed([pool.submit(work, item) for item in items]):
            yield future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def connect(auth: dict[str, str], region: str) -> Any:
    """An openstacksdk connection from `auth` alone (no OS_* variables, no other clouds.yaml)."""
    import openstack  # a development dependency: only the demo needs it

    return openstack.connect(auth=auth, region_name=region, identity_api_version="3",
                             load_yaml_config=False, load_envvars=False)


def describe_rule(rule: dict[str, Any], group_names: dict[str, str]) -> str:
    protocol = rule.get("protocol") or "any"
    low, high = rule.get("port_range_min"), rule.get("port_range_max")
    ports = "" if low is None else f"/{low}" if low == high else f"/{low}-{high}"
    if rule.get("remote_group_id"):
        remote = f"members of {group_names.get(rule['remote_group_id'], rule['remote_group_id'])}"
    else:
        remote = rule.get("remote_ip_prefix") or "anywhere"
    return f"in {protocol}{ports} from {remote}"


def mark(ok: bool) -> str:
    return "[green]✓[/]" if ok else "[bold red]✗[/]"


def roles_text(roles: dict[str, str]) -> str:
    return ", ".join(f"{host} {state}" for host, state in sorted(roles.items())) or "none"


def plain_result(reached: bool) -> str:
    return "reached" if reached else "blocked"


def result_text(reached: bool) -> str:
    return "[green]reached[/]" if reached else "[yellow]blocked[/]"


def stop(listener: subprocess.Popen[str]) -> None:
    """Stop a listener started in its own session: `neutrino lab exec` and its nc."""
    if listener.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(listener.pid, signal.SIGTERM)
        try:
            listener.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(listener.pid, signal.SIGKILL)
            listener.wait(5)


# --- the state directory --------------------------------------------------------------------------

def prepare_state_dir(state_dir: Path) -> None:
    """Refuse a directory with a lab up (it is not ours to tear down); clear the leftovers of an
    earlier demo (its server database); refuse a non-empty directory that is not the demo's."""
    prefix = lab_prefix(state_dir)
    if LabState.exists(state_dir) or netns.list_namespaces(prefix + "-"):
        raise DemoError(f"a lab is already up in {state_dir} (an earlier `--keep`?): run "
                        f"`neutrino lab down --state-dir {state_dir}` first, or give another "
                        "--state-dir")
    if state_dir.exists() and any(state_dir.iterdir()):
        if not (state_dir / MARKER).exists():
            raise DemoError(f"{state_dir} is not empty and not a demo state directory; give an "
                            "empty or new --state-dir")
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / MARKER).write_text("state directory of `python -m neutrino.demo`; "
                                    "cleared by its next run\n")


def keep_hints(demo: Demo) -> None:
    d = demo.state_dir
    web, db, blue_web = (demo.instances.get(name) for name in ("red-web", "red-db", "blue-web"))
    if not (web and db and blue_web and web.mac and db.mac and blue_web.mac):
        console.print(f"\nThe lab is left up (--keep): remove it with "
                      f"`uv run neutrino lab down --state-dir {d}`", markup=False)
        return
    packet = (f"tcp,dl_src={db.mac},dl_dst={blue_web.mac},nw_src={db.address},"
              f"nw_dst={blue_web.address},tp_dst=80")
    console.print(f"\nThe lab is still up (state in {d}). Explore it:\n"
                  f"  export OS_CLIENT_CONFIG_FILE={d}/clouds.yaml OS_CLOUD={CLOUD}   # admin\n"
                  f"  export NEUTRINO_LAB_STATE_DIR={d}\n"
                  "  uv run openstack port list --long\n"
                  "  OS_CLOUD=demo-red uv run openstack security group rule list db   # as red-user\n"
                  f"  uv run neutrino lab exec red-client -- ping -c 2 {web.address}\n"
                  "  # probe 10 stage by stage: red-db's packet stays in red-net's segment\n"
                  f"  uv run neutrino trace --host {db.spec.host} --port red-db '{packet}'\n"
                  "  uv run openstack network agent list --router red-router --long   # HA state\n"
                  "  uv run neutrino lab fail host1 --how link; uv run neutrino lab heal host1\n"
                  "  uv run neutrino lab status\n"
                  f"and remove it with:\n  uv run neutrino lab down --state-dir {d}",
                  markup=False)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m neutrino.demo",
        description="Two projects on a lab of three hosts; real ping and TCP show who reaches "
                    "whom and why, then the router's active gateway host fails over. Needs root "
                    "and Open vSwitch.")
    parser.add_argument("--keep", action="store_true",
                        help="leave the lab up for exploring with the openstack CLI")
    parser.add_argument("--state-dir", type=Path, default=Path("~/.neutrino/demo"),
                        help="the lab's state directory (default ~/.neutrino/demo)")
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.expanduser().resolve()
    started = time.monotonic()
    console.rule("[bold]Neutrino demo: two projects, three hosts, real packets")
    try:
        require_lab_prerequisites()
        prepare_state_dir(state_dir)
    except (LabError, DemoError) as error:
        console.print(f"[red]error:[/] {error}")
        return 1

    signal.signal(signal.SIGTERM, _interrupt)  # tear down on SIGTERM too
    demo = Demo(state_dir)
    status, lab_up = 1, False
    try:
        console.rule("Step 1: a lab of three hosts", align="left")
        lab_up = True  # from here on the lab may (partly) exist: always tear down
        demo.up()
        console.rule("Step 2: two projects through the API (openstacksdk)", align="left")
        demo.build()
        console.rule(f"Step 3: who reaches whom ({len(PROBES)} probes: real ping and TCP)",
                     align="left")
        console.print(
            f"  ping: neutrino lab exec FROM -- {shlex.join(PING)} ADDRESS   (reached: a reply)\n"
            "  tcp:  neutrino lab exec TO -- busybox nc -l -p PORT -w 30        (in the background)\n"
            f"        neutrino lab exec FROM -- sh -c 'echo LINE | busybox nc -w {CONNECT_TIMEOUT} "
            "ADDRESS PORT'\n"
            "        reached if LINE arrived at TO's listener (a listener is up for blocked probes "
            "too)", style="dim", markup=False)
        demo.wait_converged()
        outcomes = demo.probe_all()
        console.print(demo.summary(outcomes))
        lessons = Table.grid(padding=(0, 1))
        lessons.add_column(no_wrap=True)
        lessons.add_column()
        for lesson in LESSONS:
            lessons.add_row("  -", lesson)
        console.print("What this shows:")
        console.print(lessons)
        misses = [o for o in outcomes if not o.matched]
        if misses:
            console.print(f"[bold red]{len(misses)} of {len(outcomes)} probes did not match "
                          f"their expectation: {', '.join(str(o.probe.number) for o in misses)}[/]")
        else:
            console.print(f"[bold green]All {len(outcomes)} probes matched their expectations.[/]")
        console.rule(f"Step 4: the active gateway fails (SNAT of {SNAT_CLIENT}, HA on "
                     f"{ACTIVE_GATEWAY} and {STANDBY_GATEWAY})", align="left")
        failover_ok = demo.gateway_failover()
        if not failover_ok:
            console.print("[bold red]The gateway failover did not go as expected.[/]")
        status = 1 if misses or not failover_ok else 0
    except KeyboardInterrupt:
        console.print("\n[yellow]interrupted[/]")
        status = 130
    except DemoError as error:
        console.print(f"[red]error:[/] {error}")
    except Exception as error:  # an API error from openstacksdk, a timeout, ...
        console.print(f"[red]error:[/] {type(error).__name__}: {error}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the teardown finish
        demo.stop_listeners()
        if lab_up:
            if args.keep:
                keep_hints(demo)
            else:
                status = teardown(state_dir) or status
    console.print(f"[dim]{time.monotonic() - started:.0f} s[/]")
    return status


def teardown(state_dir: Path) -> int:
    """`neutrino lab down`, then drop the state directory; 1 if something was left over."""
    console.rule("Step 5: tear down", align="left")
    try:
        neutrino(state_dir, "lab", "down", timeout=120)
    except (DemoError, subprocess.TimeoutExpired) as error:
        console.print(f"[red]error:[/] {error}")
        return 1
    left = netns.list_namespaces(lab_prefix(state_dir) + "-")
    if left:
        console.print(f"[red]error:[/] namespaces left behind: {', '.join(left)}")
        return 1
    shutil.rmtree(state_dir, ignore_errors=True)
    console.print("  every namespace, Open vSwitch, agent and the server are gone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
