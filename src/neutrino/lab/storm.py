"""An attach storm, measured on a running lab: the server restarts and every agent reconnects
at once (registration, policy stream resume, heartbeats), or every agent restarts at once (each
needs a full snapshot), while a client keeps using the API.

    populate(state_dir, networks=5)       # a port bound to every host, hosts spread over networks
    result = measure_attach_storm(state_dir)
    result.converged_s      # server answering again -> every agent realised a change made then
    result.idle.p99_ms, result.storm.p99_ms, result.p99_ratio

Steps: the API client runs for `idle` seconds against the settled lab (the idle latencies);
the server is restarted (`restart_lab_server`: SIGTERM, `down` seconds stopped, started again
on the same port, socket and database), or every agent (`restart_agents`); as soon as that is
done, one change that concerns every host is written (a rule added to the default security
group of the ports' project: every chassis's port documents change), and the client runs again
until every agent reports that revision realised (the storm latencies), for at least
`min_storm` seconds.

The client's requests, one at a time, in a fixed cycle: list networks, list ports, show a port,
update that port's name (a write with its outbox row and a compile). Each latency is the whole
HTTP round trip as a client sees it.

Agents report their realised revision with their heartbeats (every second by default), so
`converged_s` is late by up to one heartbeat interval.

`bench/storm.py` reports this against the targets (p99 within 2x of idle; every agent
converges); tests/e2e/test_attach_storm.py checks convergence with 50 agents.

May touch: the lab in `state_dir`: its server (restarted; its database is kept), networks,
subnets and ports it creates (named `storm-*`), and a rule in a default security group.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from neutrino.lab import process
from neutrino.lab.cli import api_client, restart_lab_server
from neutrino.lab.errors import LabError
from neutrino.lab.lab import Lab
from neutrino.lab.state import LabState

StormKind = Literal["server", "agents"]

IDLE = 5.0  # seconds of API latencies before the restart
DOWN = 1.0  # seconds the server stays stopped
MIN_STORM = 3.0  # seconds of API latencies after the restart, at least
TIMEOUT = 120.0  # seconds for every agent to converge; then StormError
POLL = 0.2  # seconds between convergence checks
PREFIX = "storm"


class StormError(LabError):
    """The lab did not settle before the restart, or the agents did not converge in time."""


@dataclass(frozen=True)
class Latencies:
    """What the API client saw in one phase (milliseconds)."""

    requests: int
    errors: int  # answers >= 500 and connection errors
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, samples: list[float], errors: int) -> Latencies:
        ordered = sorted(samples) or [0.0]
        return cls(requests=len(samples), errors=errors,
                   p50_ms=statistics.median(ordered) * 1000,
                   p99_ms=percentile(ordered, 0.99) * 1000, max_ms=ordered[-1] * 1000)


@dataclass(frozen=True)
class StormResult:
    how: str  # server | agents: what restarted
    agents: int
    revision: int  # the change every agent had to realise
    restart_s: float  # SIGTERM -> the server answers again / every agent started (with `down`)
    converged_s: float  # then -> every agent reports `revision` realised
    idle: Latencies
    storm: Latencies

    @property
    def p99_ratio(self) -> float:
        return self.storm.p99_ms / self.idle.p99_ms if self.idle.p99_ms else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "p99_ratio": self.p99_ratio}


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted values."""
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def populate(state_dir: Path, networks: int = 5, ports_per_host: int = 1) -> list[str]:
    """Networks storm-1..N with a subnet each and `ports_per_host` ports bound to every host of
    the lab (host i on network i mod N); the ids of each host's first port, in host order.
    Idempotent: existing storm networks and ports are reused."""
    hosts = [record.name for record in
             sorted(LabState.load(state_dir).hosts.values(), key=lambda record: record.index)]
    ports = []
    with api_client(state_dir) as client:
        existing = {n["name"]: n["id"] for n in
                    _json(client.get("/v2.0/networks"))["networks"]}
        ids = []
        for number in range(1, networks + 1):
            name = f"{PREFIX}-{number}"
            if name not in existing:
                made = _json(client.post("/v2.0/networks", json={"network": {"name": name}}))
                existing[name] = made["network"]["id"]
                _json(client.post("/v2.0/subnets", json={"subnet": {
                    "network_id": existing[name], "ip_version": 4,
                    "cidr": f"10.{100 + number}.0.0/16", "name": name}}))
            ids.append(existing[name])
        bound: dict[tuple[str, str], list[str]] = {}
        for made in _json(client.get("/v2.0/ports", params={"device_owner": "compute:nova"}))["ports"]:
            bound.setdefault((made["binding:host_id"], made["network_id"]), []).append(made["id"])
        for index, host in enumerate(hosts):
            network_id = ids[index % networks]
            have = bound.setdefault((host, network_id), [])
            for number in range(len(have), ports_per_host):
                have.append(_json(client.post("/v2.0/ports", json={"port": {
                    "network_id": network_id, "name": f"{PREFIX}-{host}-{number}",
                    "device_owner": "compute:nova", "device_id": f"{PREFIX}-vm-{host}-{number}",
                    "binding:host_id": host}}))["port"]["id"])
            ports.append(have[0])
    return ports


def measure_attach_storm(state_dir: Path, *, how: StormKind = "server", idle: float = IDLE,
                         down: float = DOWN, min_storm: float = MIN_STORM,
                         timeout: float = TIMEOUT,
                         log: Callable[[str], None] | None = None) -> StormResult:
    """Restart the lab's server (`how="server"`: every agent resumes its stream) or every
    agent at once (`how="agents"`: every agent starts from a snapshot) under API load, and
    measure (see the module doc). A StormError if the lab's agents have not all realised the
    current revision before, or do not realise the change after the restart within
    `timeout`."""
    say = log or (lambda _line: None)
    agents = sorted(LabState.load(state_dir).hosts)
    with api_client(state_dir) as client:
        current = _json(client.get("/v2.0/neutrino/revision"))["revision"]
        _wait(lambda: _lagging(client, agents, current) == [], timeout,
              lambda: f"agents behind revision {current} before the restart: "
                      f"{_lagging(client, agents, current)}")
        port = _json(client.get("/v2.0/ports", params={"device_owner": "compute:nova",
                                                       "limit": "1"}))["ports"]
        if not port:
            raise StormError("no compute port in the lab: run populate() first")
        port_id, project = port[0]["id"], port[0]["project_id"]
        group = _default_group(client, project)

    say(f"API client for {idle:g} s (idle)")
    idle_latencies = _run_client(state_dir, port_id, lambda: False, idle)
    started = time.monotonic()
    if how == "server":
        say(f"neutrino lab restart-server --down {down:g}   # {len(agents)} agents reconnect")
        restart_lab_server(state_dir, down)
    else:
        say(f"every agent stopped and started again ({len(agents)}): each needs a snapshot")
        restart_agents(state_dir, down)
    back = time.monotonic()
    with api_client(state_dir) as client:
        rule = _json(client.post("/v2.0/security-group-rules", json={"security_group_rule": {
            "security_group_id": group, "direction": "ingress", "ethertype": "IPv4",
            "protocol": "tcp", "port_range_min": 4000 + int(back) % 1000,
            "port_range_max": 4000 + int(back) % 1000}}))["security_group_rule"]
        revision = _wait_revision(client, timeout)
        done = threading.Event()
        converged: list[float] = []

        def watch() -> None:
            with api_client(state_dir) as watcher:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if not _lagging(watcher, agents, revision):
                        converged.append(time.monotonic() - back)
                        break
                    time.sleep(POLL)
            done.set()

        threading.Thread(target=watch, daemon=True, name="storm-watch").start()
        storm_started = time.monotonic()
        storm_latencies = _run_client(
            state_dir, port_id,
            lambda: done.is_set() and time.monotonic() - storm_started >= min_storm, timeout)
        done.wait(timeout)
        if not converged:
            raise StormError(f"agents still behind revision {revision} after {timeout:g} s: "
                             f"{_lagging(client, agents, revision)}")
        client.delete(f"/v2.0/security-group-rules/{rule['id']}")
    result = StormResult(how=how, agents=len(agents), revision=revision, restart_s=back - started,
                         converged_s=converged[0], idle=idle_latencies, storm=storm_latencies)
    say(f"every agent realised revision {revision} {result.converged_s:.1f} s after the "
        f"server answered again; API p99 {result.storm.p99_ms:.1f} ms (idle "
        f"{result.idle.p99_ms:.1f} ms, x{result.p99_ratio:.2f})")
    return result


def restart_agents(state_dir: Path, down: float = 0.0) -> None:
    """Stop every agent of the lab together (SIGTERM, by pid), wait `down` seconds, and start
    them all again together (as hosts restarting their agents at the same time would)."""
    with Lab.session(state_dir) as lab:
        hosts = lab.hosts
        pids = {pid for pid in (host.agent_pid() for host in hosts) if pid is not None}
        process.stop_pids(sorted(pids), lambda pid: pid in pids)
        for host in hosts:
            host.record.agent_pid = None
        time.sleep(down)
        launched = [(host, host.spawn_agent()) for host in hosts]
        for host, child in launched:
            host.await_agent(child)


# --- helpers ------------------------------------------------------------------------------------

def _json(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise StormError(f"{response.request.method} {response.request.url.path}: "
                         f"{response.status_code} {response.text[:200]}")
    data: dict[str, Any] = response.json()
    return data


def _lagging(client: httpx.Client, agents: list[str], revision: int) -> list[str]:
    """The agents that have not reported `revision` realised."""
    realised = _json(client.get("/v2.0/neutrino/revision"))["chassis"]
    return [name for name in agents if realised.get(name, 0) < revision]


def _wait_revision(client: httpx.Client, timeout: float) -> int:
    """The store's revision once the compiler has compiled every write (outbox)."""
    result: list[int] = []

    def compiled() -> bool:
        state = _json(client.get("/v2.0/neutrino/revision"))
        result[:] = [state["revision"]]
        return bool(state["revision"] == state["outbox_revision"])

    _wait(compiled, timeout, lambda: "the compiler did not catch up with the writes")
    return result[0]


def _default_group(client: httpx.Client, project: str) -> str:
    groups = _json(client.get("/v2.0/security-groups",
                              params={"name": "default", "project_id": project}))
    if not groups["security_groups"]:
        raise StormError(f"project {project} has no default security group")
    return str(groups["security_groups"][0]["id"])


def _wait(check: Callable[[], bool], timeout: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise StormError(why())
        time.sleep(POLL)


def _run_client(state_dir: Path, port_id: str, finished: Callable[[], bool],
                limit: float) -> Latencies:
    """The API client's cycle, one request at a time, until `finished()` (checked after each
    request) or `limit` seconds."""
    samples: list[float] = []
    errors = 0
    with api_client(state_dir) as client:
        requests: list[Callable[[int], httpx.Response]] = [
            lambda _n: client.get("/v2.0/networks"),
            lambda _n: client.get("/v2.0/ports"),
            lambda _n: client.get(f"/v2.0/ports/{port_id}"),
            lambda n: client.put(f"/v2.0/ports/{port_id}",
                                 json={"port": {"description": f"storm probe {n}"}}),
        ]
        deadline = time.monotonic() + limit
        count = 0
        while time.monotonic() < deadline and not finished():
            send = requests[count % len(requests)]
            started = time.perf_counter()
            try:
                status = send(count).status_code
            except httpx.HTTPError:
                status = 599
            samples.append(time.perf_counter() - started)
            errors += status >= 500
            count += 1
    return Latencies.of(samples, errors)
