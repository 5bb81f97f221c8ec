"""Which gateway chassis carry a router's centralized part (SNAT), in which order.  PURE.

A router with a gateway port is scheduled onto up to `GATEWAYS_PER_ROUTER` chassis whose agent
was started with `--gateway` (and whose agent is administratively up): the highest
`--gateway-priority` first; among equal priorities, the order of sha256(router id, chassis
name), so routers spread their active roles over equal gateways, and a router keeps its order
when unrelated gateways come or go.  The first chassis of the list is the router's preferred
(active) gateway; each chassis after it takes over, in the data path, when every chassis
before it is unreachable (BFD; see `neutrino.pipeline.render`, stage gateway_redirect).

The compiler (policy `RouterGateway.chassis`) and the API (`GET /v2.0/routers/{id}/l3-agents`)
both read the schedule from here, so they always agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

GATEWAYS_PER_ROUTER = 3


def _spread(router_id: str, chassis: str) -> bytes:
    return hashlib.sha256(f"{router_id}/{chassis}".encode()).digest()


def gateway_chassis(router_id: str, candidates: Iterable[tuple[str, int]],
                    count: int = GATEWAYS_PER_ROUTER) -> tuple[str, ...]:
    """The router's gateway chassis in priority order, given the gateway chassis as
    (name, gateway priority) pairs."""
    ranked = sorted(candidates, key=lambda c: (-c[1], _spread(router_id, c[0]), c[0]))
    return tuple(name for name, _priority in ranked[:count])
