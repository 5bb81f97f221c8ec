"""One gateway failover and its recovery, measured on a running lab (HA SNAT).

An instance without a floating IP pings the external host continuously (`ContinuousPing`,
`ping -D -O` every 10 ms) through its router's active gateway host.  That host is made to fail
(`Lab.fail`: its ovs-vswitchd killed, its underlay link cut, or its agent killed); the data path
moves the traffic to the standby by itself (BFD on the tunnels).  Pinging goes on until replies
have flowed again without a pause for `resumed_for` seconds and the API shows a standby active.
Then the host is healed (`Lab.heal`) while a second continuous ping runs, until the API shows it
active again with every other gateway standby and the instance's host sees its BFD session to it
up, and `resumed_for` seconds more.

    result = measure_failover(state_dir, "sa", "host1", "vswitchd")
    result.failover.gap_ms    # longest time between two replies around the failure
    result.failover.lost      # requests without a reply during the failover
    result.back.lost          # ... during the return to the healed host (target 0)

The gap is what an application sees: from the last reply before the failure to the first one
after it (detection + switchover, plus at most one ping interval).  Losses are counted from
icmp_seq (`PingRecord.missing`), so the request in flight when ping is stopped is not one.

`bench/failover.py` repeats this; `make demo` (neutrino.demo) shows it once.

May touch: the lab in `state_dir` (the failed host is healed again, also after an error or
Ctrl-C), one `ping` process at a time in the instance's namespace, and the lab's server (admin
GETs only).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from neutrino.lab.cli import api_client
from neutrino.lab.errors import LabError
from neutrino.lab.host import FailureMode
from neutrino.lab.lab import Lab
from neutrino.lab.pinger import ContinuousPing, PingRecord
from neutrino.lab.state import LabState

PING_INTERVAL = 0.01  # seconds between echo requests
SETTLE = 1.0  # seconds of steady replies before the failure (and before the heal: half of it)
RESUMED_FOR = 1.0  # seconds replies must flow again without a pause to call it over
TIMEOUT = 30.0  # seconds for each wait (traffic back, API roles); then FailoverError
POLL = 0.1  # seconds between API polls


class FailoverError(LabError):
    """The lab is not in a state to measure (no traffic, the host is not the active gateway)
    or it did not recover in time; the message says which."""


@dataclass(frozen=True)
class FailoverPhase:
    """From steady traffic through the active gateway, over its failure, to steady traffic
    through another gateway."""

    gap_ms: float  # longest time between two consecutive replies around the failure
    lost: int  # requests without a reply
    transmitted: int  # requests ping sent
    resumed_ms: float  # failure injected -> the reply that ended the longest gap
    # failure injected -> the API showed another gateway active (None for `agent`: killing
    # the agent leaves the host's data path as it was, nothing fails over)
    standby_active_s: float | None
    roles: dict[str, str]  # host -> ha_state (API) once another gateway was active


@dataclass(frozen=True)
class ReturnPhase:
    """From steady traffic through the standby, over the heal, until the healed host is the
    active gateway again (and `resumed_for` seconds more)."""

    lost: int  # requests without a reply (target 0)
    transmitted: int
    gap_ms: float  # longest time between two consecutive replies
    seconds: float  # heal -> the API showed the host active again (and its peers standby)
    roles: dict[str, str]


@dataclass(frozen=True)
class FailoverResult:
    """One failure of the active gateway host and its return, as the instance's ping saw it."""

    host: str  # the gateway host that failed (active before)
    how: str  # vswitchd | link | agent
    instance: str
    target: str  # the address pinged (the external host)
    router_id: str
    interval_ms: float  # ping's interval
    failover: FailoverPhase
    back: ReturnPhase

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_failover(state_dir: Path, instance: str, host: str, how: FailureMode, *,
                     router_id: str | None = None, target: str | None = None,
                     interval: float = PING_INTERVAL, settle: float = SETTLE,
                     resumed_for: float = RESUMED_FOR, timeout: float = TIMEOUT,
                     log: Callable[[str], None] | None = None,
                     on_failover: Callable[[FailoverPhase], None] | None = None,
                     ) -> FailoverResult:
    """Fail `host` (the active gateway of the router `instance` goes out through) the way `how`
    says while `instance` pings `target` (default: the lab's external host), heal it, and
    measure both transitions.  `router_id` defaults to the router with a gateway that has an
    interface on the instance's network.  `log` gets a line for each step (the command a user
    would type for it); `on_failover` the failover's numbers before the heal.

    A FailoverError if `host` is not the active gateway with every other gateway standby at
    the start, if no reply comes before the failure, or if a wait times out.  The host is
    healed before returning or raising."""
    say = log or (lambda _line: None)
    state = LabState.load(state_dir)
    try:
        record = state.instances[instance]
    except KeyError:
        raise FailoverError(f"no instance {instance!r} in the lab in {state_dir}") from None
    if record.host == host:
        raise FailoverError(f"{instance} is on {host}: failing it would cut the instance off too")
    if target is None:
        if state.external_address is None:
            raise FailoverError("the lab has no external host; give a target address")
        target = state.external_address.split("/")[0]

    with api_client(state_dir) as client:
        api = _Api(client)
        router_id = router_id or api.router_of_port(record.port_id)
        steady = {name: ("active" if name == host else "standby")
                  for name in api.roles(router_id)}
        if host not in steady:
            raise FailoverError(f"{host} is not a gateway host of router {router_id} "
                                f"(those are {', '.join(steady) or 'none'})")
        _wait(lambda: api.roles(router_id) == steady, timeout,
              lambda: f"{host} active with its peers standby before the failure (API: "
                      f"{api.roles(router_id)})")

        healed = False
        try:
            # --- the failover ---------------------------------------------------------------
            with ContinuousPing(record.namespace, target, interval=interval) as pinger:
                time.sleep(settle)
                if not pinger.record.snapshot():
                    raise FailoverError(f"{instance} gets no reply from {target} before the "
                                        "failure")
                say(f"neutrino lab fail {host} --how {how}")
                failed_at = time.time()
                with Lab.session(state_dir) as lab:
                    lab.fail(host, how)
                _wait_resumed(pinger.record, failed_at, resumed_for, interval, timeout)
                standby_active: float | None = None
                if how != "agent":  # without its agent, the host's data path goes on as it was
                    _wait(lambda: any(role == "active" for name, role in
                                      api.roles(router_id).items() if name != host), timeout,
                          lambda: f"another gateway active after {host} failed (API: "
                                  f"{api.roles(router_id)})")
                    standby_active = time.time() - failed_at
                roles_failed = api.roles(router_id)
            seen = pinger.record
            gap, resumed_at = _gap_across(seen, failed_at)
            failover = FailoverPhase(
                gap_ms=gap * 1000, lost=seen.missing(), transmitted=_sent(seen),
                resumed_ms=(resumed_at - failed_at) * 1000, standby_active_s=standby_active,
                roles=roles_failed)
            if on_failover is not None:
                on_failover(failover)

            # --- the return -----------------------------------------------------------------
            with ContinuousPing(record.namespace, target, interval=interval) as pinger:
                time.sleep(settle / 2)
                say(f"neutrino lab heal {host}")
                healed_at = time.time()
                with Lab.session(state_dir) as lab:
                    lab.heal(host)
                healed = True
                _wait(lambda: api.roles(router_id) == steady
                      and api.bfd(record.host).get(host) == "up", timeout,
                      lambda: f"{host} active again with its peers standby and "
                              f"{record.host}'s BFD session to it up (API: "
                              f"{api.roles(router_id)}, BFD {api.bfd(record.host)})")
                returned = time.time() - healed_at
                roles_returned = api.roles(router_id)
                time.sleep(resumed_for)
            seen = pinger.record
            back = ReturnPhase(lost=seen.missing(), transmitted=_sent(seen),
                               gap_ms=seen.gap() * 1000, seconds=returned, roles=roles_returned)
        finally:
            if not healed:
                with contextlib.suppress(LabError), Lab.session(state_dir) as lab:
                    lab.heal(host)

    return FailoverResult(host=host, how=how, instance=instance, target=target,
                          router_id=router_id, interval_ms=interval * 1000, failover=failover,
                          back=back)


# --- helpers ----------------------------------------------------------------------------------

class _Api:
    """The admin GETs the measurement needs."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def get(self, path: str, **params: str) -> dict[str, Any]:
        response = self.client.get(path, params=params)
        if response.status_code >= 400:
            raise FailoverError(f"GET {path}: {response.status_code} {response.text[:200]}")
        body: dict[str, Any] = response.json()
        return body

    def roles(self, router_id: str) -> dict[str, str]:
        """host -> ha_state of the router's gateway agents (GET .../l3-agents)."""
        agents = self.get(f"/v2.0/routers/{router_id}/l3-agents")["agents"]
        return {str(agent["host"]): str(agent["ha_state"]) for agent in agents}

    def bfd(self, host: str) -> dict[str, str]:
        """peer -> "up"/"down": the BFD sessions `host`'s agent last reported."""
        for agent in self.get("/v2.0/agents", host=host)["agents"]:
            reported = (agent.get("configurations") or {}).get("bfd")
            if isinstance(reported, dict):
                return {str(peer): str(state) for peer, state in reported.items()}
        return {}

    def router_of_port(self, port_id: str) -> str:
        """The router with an external gateway that has an interface on the port's network."""
        network = self.get(f"/v2.0/ports/{port_id}")["port"]["network_id"]
        for router in self.get("/v2.0/routers")["routers"]:
            if not router.get("external_gateway_info"):
                continue
            ports = self.get("/v2.0/ports", device_id=router["id"], network_id=network)["ports"]
            if any(p["device_owner"].startswith(("network:router_interface",
                                                  "network:ha_router_replicated_interface"))
                   for p in ports):
                return str(router["id"])
        raise FailoverError(f"no router with an external gateway on the network of port "
                            f"{port_id}")


def _wait(predicate: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise FailoverError(f"not within {timeout:g} s: {what()}")
        time.sleep(POLL)


def _wait_resumed(record: PingRecord, since: float, hold: float, interval: float,
                  timeout: float) -> None:
    """Until the replies after `since` end in a run of at least `hold` seconds without a pause
    (a pause: more than 10 intervals, at least 100 ms, between two replies)."""
    pause = max(0.1, 10 * interval)
    deadline = time.monotonic() + timeout
    while True:
        times = [t for _seq, t in record.snapshot() if t > since]
        if times:
            start = times[-1]
            for earlier, later in reversed(list(itertools.pairwise(times))):
                if later - earlier > pause:
                    break
                start = earlier
            if times[-1] - start >= hold:
                return
        if time.monotonic() > deadline:
            raise FailoverError(f"no steady replies within {timeout:g} s of the failure "
                                f"({len(times)} replies since)")
        time.sleep(POLL)


def _gap_across(record: PingRecord, moment: float) -> tuple[float, float]:
    """The longest time between two consecutive replies where the later one came after
    `moment` (so the pause that spans `moment` counts from the last reply before it), and the
    time of the reply that ended it."""
    times = [t for _seq, t in record.snapshot()]
    pairs = [(b - a, b) for a, b in itertools.pairwise(times) if b > moment]
    return max(pairs, default=(0.0, moment))


def _sent(record: PingRecord) -> int:
    """Requests ping sent (its summary), or from icmp_seq if it printed none."""
    if record.transmitted:
        return record.transmitted
    seqs = [seq for seq, _t in record.snapshot()]
    return max(seqs) - min(seqs) + 1 if seqs else 0
