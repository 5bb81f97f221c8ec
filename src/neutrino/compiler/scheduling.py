"""Which gateway chassis carry a router's centralized part (SNAT), in which order.  PURE.

A router with a gateway port is scheduled onto up to `GATEWAYS_PER_ROUTER` chassis whose agent
was started with `--gateway` (and whose agent is administratively up): the highest
`--gateway-priority` first; among equal priorities, the order of sha256(router id, chassis
name), so routers spread their active roles over equal gateways, and a router keeps its order
when unrelated gateways come or go.  The first chassis of the list is the router's preferred
(active) gateway; each chassis after it takes over, in the data path, when every chassis
before it is unreachable (BFD; see `neutrino.pipeline.render`, stage gateway_redirect).

A gateway chassis that is down (neutrino.faults), in maintenance (once its agent has drained
its tunnels, so moving its roles loses nothing), or administratively down is not scheduled.
One that is *recovering* (back up, its flows not yet confirmed) is scheduled after all the
others, so it first receives the routers' policy as the last standby and moves to its place
only once its agent has realised it: traffic never goes to a gateway before its flows are in.

The compiler (policy `RouterGateway.chassis`) and the API (`GET /v2.0/routers/{id}/l3-agents`)
both read the schedule from here, so they always agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

GATEWAYS_PER_ROUTER = 3


def _spread(router_id: str, chassis: str) -> bytes:
    return hashlib.sha256(f"{router_id}/{chassis}".encode()).digest()


def gateway_chassis(router_id: str, candidates: Iterable[tuple[str, int]],
                    count: int = GATEWAYS_PER_ROUTER,
                    recovering: Iterable[tuple[str, int]] = ()) -> tuple[str, ...]:
    """The router's gateway chassis in priority order, given the gateway chassis as
    (name, gateway priority) pairs; `recovering` ones come after them (all of them)."""
    ranked = sorted(candidates, key=lambda c: (-c[1], _spread(router_id, c[0]), c[0]))
    last = sorted(recovering, key=lambda c: (-c[1], _spread(router_id, c[0]), c[0]))
    return tuple(name for name, _priority in ranked[:count]) + tuple(name for name, _ in last)


def gateway_role(is_gateway: bool, admin_state_up: bool, state: str, maintenance: bool) -> str:
    """How a chassis takes part in gateway scheduling: "ready", "recovering" (scheduled last)
    or "none" (not a gateway, administratively down, down, or in maintenance: its state is
    "maintenance" once its agent has drained it; the `maintenance` flag alone, the admin's
    request, does not move anything yet)."""
    del maintenance  # (the request; the state says when it took effect)
    if not is_gateway or not admin_state_up or state in ("down", "maintenance"):
        return "none"
    return "recovering" if state == "recovering" else "ready"


def schedule_from_rows(rows: Iterable[Any]) -> Callable[[str], tuple[str, ...]]:
    """router id -> its gateway chassis, given chassis rows (with name, is_gateway,
    admin_state_up, state, maintenance, gateway_priority), as the compiler schedules."""
    ready: list[tuple[str, int]] = []
    recovering: list[tuple[str, int]] = []
    for row in rows:
        role = gateway_role(bool(row.is_gateway), bool(row.admin_state_up), row.state,
                            bool(row.maintenance))
        if role != "none":
            (ready if role == "ready" else recovering).append(
                (row.name, int(row.gateway_priority or 0)))
    return lambda router_id: gateway_chassis(router_id, ready, recovering=recovering)
