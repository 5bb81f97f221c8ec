"""The agent-facing API: chassis registration and heartbeats, the policy stream, port status,
Neutron's agents API and "is revision N live everywhere?".

Every route here is admin-only: agents authenticate as an admin (in noauth mode, the default
roles are admin). Routes:

- `POST /v2.0/neutrino/chassis` `{"chassis": {name, tunnel_ip, bridge_mappings, is_gateway,
  gateway_priority, availability_zone, configurations, realised_revision}}` registers (201) or
  refreshes (200) a chassis; it is also a heartbeat and sets `started_at`. A new chassis or a
  change of what the compiler uses writes an outbox row of kind `chassis`, so the compiler loop
  compiles that chassis.
- `PUT /v2.0/neutrino/chassis/{name}/heartbeat` `{"realised_revision": N, "bfd": {peer:
  "up"|"down"}, "gateways": {router_id: "active"|"standby"}}` (body and each field optional):
  the BFD state of each tunnel lands in the agent's `configurations.bfd`, and a gateway
  chassis's role for each router scheduled on it (active: it does the router's SNAT now, as it
  decided from BFD) in `configurations.gateways`; each is replaced whole when reported and kept
  when not. A bad body is a 400 that writes nothing (not even the heartbeat).
- `GET /v2.0/neutrino/chassis/{name}/policy?since=N`: `application/x-ndjson`, one JSON object
  per line: a `snapshot` (when `since` is absent, 0, compacted away or unknown) or the `change`s
  after N, then changes as they are committed, and a `keepalive` carrying the committed
  revision when idle (every `Settings.policy_keepalive_interval` seconds) or when the committed
  revision moved past the last change sent. An agent resumes with `since=` the last revision
  it saw (of a change, snapshot or keepalive).
- `PUT /v2.0/neutrino/ports/{port_id}/status` `{"status": "ACTIVE"|"DOWN", "chassis": name}`:
  the only way a port's status changes (one transaction with its outbox row). When
  `Settings.compute_url` is set, a status change of a port with a `compute:*` owner and a
  device_id is sent to Nova (`os-server-external-events`), in the background, best effort.
- `GET /v2.0/agents`, `GET /v2.0/agents/{id}`, `DELETE /v2.0/agents/{id}`: Neutron's agents
  API, one "Open vSwitch agent" per chassis; deleting one unregisters its chassis (and the
  compiler then deletes its policy items).
- `GET /v2.0/routers/{router_id}/l3-agents` (Neutron's l3_agent_scheduler; `openstack network
  agent list --router R --long`): `{"agents": [...]}`, the agents of the router's gateway
  chassis in schedule order (`neutrino.compiler.scheduling.gateway_chassis` over the chassis
  that are gateways and administratively up; preferred first), each as `GET /v2.0/agents`
  shows it plus `ha_state`: what the agent last reported for the router in
  `configurations.gateways` ("active" or "standby"; "standby" when it reported nothing for it)
  while it is alive, "unknown" when it is not. No agents for a router without a gateway port;
  404 RouterNotFound for an unknown router.
- `GET /v2.0/agents/{id}/l3-routers`: `{"routers": [...]}`, the routers (as `GET
  /v2.0/routers` shows them) scheduled on that agent's chassis, by id. Routers are scheduled
  automatically: Neutron's manual `POST /v2.0/agents/{id}/l3-routers` and `DELETE
  /v2.0/agents/{id}/l3-routers/{router_id}` are not offered.
- `GET /v2.0/neutrino/revision`: `{"revision": R, "outbox_revision": H, "chassis":
  {name: realised_revision}}`; R is the store's committed revision, H the newest write.

These routes are left out of the OpenAPI document for now (the schemathesis fuzz of
tests/test_openapi_fuzz.py would need their error responses declared, and must not open the
never-ending policy stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import anyio
import httpx
import orjson
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Connection, delete, insert, select, update
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from neutrino.api.auth import Authenticator
from neutrino.api.controller import NetworkingApi
from neutrino.api.errors import BadRequest, Conflict, Forbidden, NotFound
from neutrino.api.routes import (
    json_response,
    read_json,
    run_with_lifespan,
    stopping_event,
    until_stopping,
)
from neutrino.compiler.scheduling import schedule_from_rows
from neutrino.config import Settings
from neutrino.context import RequestContext
from neutrino.db.outbox import PORT_STATUS_KIND, Change, current_revision
from neutrino.db.schema import chassis as chassis_table
from neutrino.db.schema import ports as ports_table
from neutrino.db.schema import routers as routers_table
from neutrino.distribution.compiler_loop import CHASSIS_KIND, CompilerLoop, default_compiler
from neutrino.distribution.store import EmbeddedPolicyStore, RevisionTooOld
from neutrino.faults.inspector import Inspector
from neutrino.timeutil import now_iso

log = logging.getLogger(__name__)
T = TypeVar("T")

AGENT_TYPE = "Open vSwitch agent"
AGENT_BINARY = "neutrino-agent"
NDJSON = "application/x-ndjson"
NOVA_TIMEOUT = 3.0  # seconds
# the stored heartbeat has second precision: allow the second it was truncated to
HEARTBEAT_SLACK = 1.0
# threads building the first answer of policy streams: resumes (cheap) and snapshots apart
RESUME_WORKERS = 2
SNAPSHOT_WORKERS = 2
AGENT_WORKERS = 2  # threads for agents' registrations, heartbeats and status reports
# attributes of a chassis the compiler uses: changing one recompiles the chassis
COMPILED_FIELDS = ("tunnel_ip", "bridge_mappings", "is_gateway", "gateway_priority",
                   "availability_zone", "admin_state_up")
AGENT_FILTERS = {"id", "agent_type", "binary", "topic", "host", "admin_state_up", "alive",
                 "availability_zone"}


class ChassisBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255, pattern=r"^[^/\s]+$")
    tunnel_ip: str
    bridge_mappings: dict[str, str] = Field(default_factory=dict)
    is_gateway: bool = False
    gateway_priority: int = 0
    availability_zone: str = Field(default="nova", max_length=255)
    configurations: dict[str, Any] = Field(default_factory=dict)
    realised_revision: int = Field(default=0, ge=0)

    @field_validator("tunnel_ip")
    @classmethod
    def _ip(cls, value: str) -> str:
        return str(ipaddress.ip_address(value))


class HeartbeatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    realised_revision: int | None = Field(default=None, ge=0)
    # peer chassis -> state of the BFD session on the tunnel to it, as this agent sees it
    # ("drained": the peer signals concatenated path down on purpose, it is not failed)
    bfd: dict[str, Literal["up", "down", "drained"]] | None = None
    # router id -> this gateway chassis's role for the router, as the agent decided it (BFD)
    gateways: dict[str, Literal["active", "standby"]] | None = None
    # its ovs-vswitchd, as the agent sees it (OpenFlow connection); sent at once on a change
    switch: Literal["up", "down"] | None = None
    heartbeat_interval: float | None = Field(default=None, gt=0, le=3600)  # seconds
    drained: bool | None = None  # in maintenance, every tunnel drained and the peers noticed
    bfd_interval: int | None = Field(default=None, ge=0, le=60000)  # ms


class HostStateBody(BaseModel):
    """An admin's say on a host (Nova's os-services force_down; maintenance)."""

    model_config = ConfigDict(extra="forbid")

    forced_down: bool | None = None
    maintenance: bool | None = None


class FaultReportBody(BaseModel):
    """An external monitor's report (e.g. a hardware monitor): host H is down or up again."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, max_length=255)
    state: Literal["down", "up"]
    time: float | None = Field(default=None, gt=0)  # when it happened (epoch seconds), if known


class PortStatusBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str = Field(pattern="^(ACTIVE|DOWN)$")
    chassis: str | None = None
    # why it is DOWN: its VIF is plugged but the link is down (the inspector's port.down)
    reason: Literal["link_down"] | None = None


def _parse(model: type[BaseModel], body: Any, wrapper: str | None = None) -> Any:
    if wrapper and isinstance(body, dict) and set(body) == {wrapper}:
        body = body[wrapper]
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                             for e in exc.errors())
        raise BadRequest(f"Invalid input: {problems}") from None


def _admin(ctx: RequestContext) -> None:
    if not ctx.is_admin:
        raise Forbidden("This operation is restricted to administrators (agents authenticate "
                        "as admin)")


def _neutron_time(iso: str) -> str:
    """Neutron renders agent timestamps as "2026-11-21 07:30:00"."""
    return iso.replace("T", " ").removesuffix("Z")


def _age(iso: str, now: float) -> float:
    then = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    return now - then


class Distribution:
    """The distribution side of the server: the policy store, the compiler loop, Nova
    notifications. Lives in `app.state.distribution`."""

    def __init__(self, settings: Settings, api: NetworkingApi) -> None:
        self.settings = settings
        self.api = api
        self.db = api.db
        self.store = EmbeddedPolicyStore(api.db)
        compiler = default_compiler() if settings.compiler_enabled else None
        self.loop: CompilerLoop | None = (
            CompilerLoop(api.db, self.store, compiler) if compiler is not None else None)
        if self.loop is not None:
            api.on_commit.append(self.loop.wake)
        self._tasks: set[asyncio.Task[None]] = set()
        self.inspector = Inspector(api)  # fault management: its publisher is set by the notifier
        self._agent_work: anyio.CapacityLimiter | None = None
        self._resumes = ThreadPoolExecutor(max_workers=RESUME_WORKERS, thread_name_prefix="resume")
        self._snapshots = ThreadPoolExecutor(max_workers=SNAPSHOT_WORKERS,
                                             thread_name_prefix="snapshot")
        # Nova must see a port's events in the order they happened (plugged before unplugged):
        # posts take this FIFO lock in the order their tasks were created
        self._nova_order: asyncio.Lock | None = None

    # --- chassis ------------------------------------------------------------------------------
    async def off_loop(self, work: Callable[..., T], *args: Any) -> T:
        """Run an agent's request's database work in a worker thread, at most AGENT_WORKERS at
        once: never on the event loop (it serves every other request and stream), and never
        more of the API's worker threads than that however many agents report at once."""
        if self._agent_work is None:
            self._agent_work = anyio.CapacityLimiter(AGENT_WORKERS)
        return await anyio.to_thread.run_sync(functools.partial(work, *args),
                                              limiter=self._agent_work)

    def register(self, body: ChassisBody) -> tuple[dict[str, Any], bool]:
        now = now_iso()
        values = {
            "tunnel_ip": body.tunnel_ip, "bridge_mappings": body.bridge_mappings,
            "is_gateway": body.is_gateway, "gateway_priority": body.gateway_priority,
            "availability_zone": body.availability_zone, "configurations": body.configurations,
            "started_at": now, "heartbeat_at": now, "realised_revision": body.realised_revision,
        }

        def work(conn: Connection) -> tuple[tuple[dict[str, Any], bool], list[Change]]:
            row = conn.execute(select(chassis_table).where(chassis_table.c.name == body.name)).first()
            if row is None:
                conn.execute(insert(chassis_table).values(
                    name=body.name, agent_id=str(uuid.uuid4()), admin_state_up=True,
                    created_at=now, **values))
                changes = [Change(CHASSIS_KIND, body.name, "create")]
            else:
                old = row._mapping
                conn.execute(update(chassis_table).where(chassis_table.c.name == body.name)
                             .values(**values))
                moved = any(old[f] != values[f] for f in COMPILED_FIELDS if f in values)
                changes = [Change(CHASSIS_KIND, body.name, "update")] if moved else []
            return (self._chassis(conn, body.name), row is None), changes

        return self.api.write(work)

    def heartbeat(self, name: str, body: HeartbeatBody) -> dict[str, Any]:
        values: dict[str, Any] = {"heartbeat_at": now_iso()}
        if body.realised_revision is not None:
            values["realised_revision"] = body.realised_revision
        # what the agent reports about itself is kept in configurations (GET /v2.0/agents), each
        # field replaced whole when reported (and written only when it changed)
        reported = {key: value for key, value in (("bfd", body.bfd), ("gateways", body.gateways))
                    if value is not None}
        with self.db.write() as conn:
            if reported:
                known = conn.execute(select(chassis_table.c.configurations)
                                     .where(chassis_table.c.name == name)).scalar_one_or_none()
                if known is not None and any(known.get(k) != v for k, v in reported.items()):
                    values["configurations"] = {**known, **reported}
            done = conn.execute(update(chassis_table).where(chassis_table.c.name == name)
                                .values(**values))
            if done.rowcount == 0:
                raise NotFound(f"Chassis {name} could not be found.", type="ChassisNotFound")
        self.inspector.heartbeat(name, body.model_dump(exclude_none=True))
        with self.db.read() as conn:
            view = self._chassis(conn, name)
        if view["maintenance"] != (view["state"] == "maintenance"):
            self.inspector.maintenance(name, view["maintenance"], bool(body.drained))
            with self.db.read() as conn:
                view = self._chassis(conn, name)
        return view

    def set_host_state(self, name: str, body: HostStateBody) -> dict[str, Any]:
        """Force a host down / lift it (the inspector raises or clears its fault), or set its
        maintenance flag (its agent drains its tunnels; gateway roles move off once drained)."""
        values = {k: v for k, v in body.model_dump(exclude_none=True).items()}

        def work(conn: Connection) -> tuple[None, list[Change]]:
            self._chassis(conn, name)  # 404 for an unknown host
            if values:
                conn.execute(update(chassis_table).where(chassis_table.c.name == name)
                             .values(**values))
            return None, []

        self.api.write(work)
        if body.forced_down is not None:
            self.inspector.force(name, body.forced_down)
        if body.maintenance is False:  # out of maintenance at once (recovering first)
            self.inspector.maintenance(name, False, False)
        with self.db.read() as conn:
            return self._chassis(conn, name)

    def unregister(self, agent_id: str) -> None:
        def work(conn: Connection) -> tuple[str, list[Change]]:
            name = conn.execute(select(chassis_table.c.name)
                                .where(chassis_table.c.agent_id == agent_id)).scalar_one_or_none()
            if name is None:
                raise _agent_not_found(agent_id)
            conn.execute(delete(chassis_table).where(chassis_table.c.name == name))
            return name, [Change(CHASSIS_KIND, name, "delete")]

        self.inspector.forget(self.api.write(work))

    @staticmethod
    def _chassis(conn: Connection, name: str) -> dict[str, Any]:
        row = conn.execute(select(chassis_table).where(chassis_table.c.name == name)).first()
        if row is None:
            raise NotFound(f"Chassis {name} could not be found.", type="ChassisNotFound")
        return _plain(row._asdict())

    def chassis(self, name: str) -> dict[str, Any]:
        with self.db.read() as conn:
            return self._chassis(conn, name)

    # --- agents view --------------------------------------------------------------------------
    def agent_view(self, row: dict[str, Any], now: float) -> dict[str, Any]:
        window = 3 * self.settings.agent_heartbeat_interval + HEARTBEAT_SLACK
        configurations = {
            **row["configurations"],
            "tunneling_ip": row["tunnel_ip"],
            "bridge_mappings": row["bridge_mappings"],
            "is_gateway": row["is_gateway"],
            "gateway_priority": row["gateway_priority"],
            "realised_revision": row["realised_revision"],
        }
        return {
            "id": row["agent_id"],
            "agent_type": AGENT_TYPE,
            "binary": AGENT_BINARY,
            "topic": "N/A",
            "host": row["name"],
            "admin_state_up": row["admin_state_up"],
            "alive": _age(row["heartbeat_at"], now) <= window,
            "heartbeat_timestamp": _neutron_time(row["heartbeat_at"]),
            "created_at": _neutron_time(row["created_at"]),
            "started_at": _neutron_time(row["started_at"]),
            "configurations": configurations,
            "availability_zone": row["availability_zone"],
            "description": None,
            "resources_synced": None,
        }

    def agents(self) -> list[dict[str, Any]]:
        now = time.time()
        with self.db.read() as conn:
            rows = conn.execute(select(chassis_table).order_by(chassis_table.c.name))
            return [self.agent_view(_plain(r._asdict()), now) for r in rows]

    # --- gateway scheduling (l3_agent_scheduler) ----------------------------------------------
    @staticmethod
    def _schedule(conn: Connection) -> Callable[[str], tuple[str, ...]]:
        """router id -> its gateway chassis, as the compiler schedules them."""
        return schedule_from_rows(conn.execute(select(chassis_table)))

    def l3_agents(self, router_id: str) -> list[dict[str, Any]]:
        """The agents of the router's gateway chassis, preferred first, with their `ha_state`."""
        now = time.time()
        with self.db.read() as conn:
            router = None if "\x00" in router_id else conn.execute(
                select(routers_table.c.id, ports_table.c.id.label("gw_port"))
                .select_from(routers_table.outerjoin(
                    ports_table, ports_table.c.id == routers_table.c.gw_port_id))
                .where(routers_table.c.id == router_id)).first()
            if router is None:
                raise self.api.resource("routers").not_found(router_id)
            if router.gw_port is None:  # no gateway: nothing to schedule
                return []
            names = self._schedule(conn)(router_id)
            rows = {row.name: _plain(row._asdict()) for row in conn.execute(
                select(chassis_table).where(chassis_table.c.name.in_(names)))}
        agents = []
        for name in names:
            agent = self.agent_view(rows[name], now)
            agent["ha_state"] = _ha_state(agent, router_id)
            agents.append(agent)
        return agents

    def l3_routers(self, agent_id: str) -> list[dict[str, Any]]:
        """The routers scheduled on the agent's chassis, by id."""
        routers = self.api.resource("routers")
        with self.db.read() as conn:
            name = None if "\x00" in agent_id else conn.execute(
                select(chassis_table.c.name).where(chassis_table.c.agent_id == agent_id)
            ).scalar_one_or_none()
            if name is None:
                raise _agent_not_found(agent_id)
            schedule = self._schedule(conn)
            with_gateway = conn.execute(
                select(routers_table.c.id).select_from(routers_table.join(
                    ports_table, ports_table.c.id == routers_table.c.gw_port_id)))
            ids = [router_id for (router_id,) in with_gateway if name in schedule(router_id)]
            if not ids:
                return []
            return routers.load(conn, routers_table.c.id.in_(ids), order_by=[routers_table.c.id])

    # --- port status --------------------------------------------------------------------------
    def set_port_status(self, port_id: str, body: PortStatusBody) -> tuple[dict[str, Any], bool]:
        """An agent's report: the port's status (and whether it changed), then the inspector
        hears whether its link is down (port.down)."""
        ports = self.api.resource("ports")

        def work(conn: Connection) -> tuple[tuple[dict[str, Any], bool], list[Change]]:
            row = conn.execute(select(ports_table.c.status, ports_table.c.binding_host_id)
                               .where(ports_table.c.id == port_id)).first()
            if row is None:
                raise self.api.not_found("ports", port_id)
            if body.chassis is not None and row.binding_host_id != body.chassis:
                raise Conflict(f"Port {port_id} is bound to {row.binding_host_id!r}, not to "
                               f"{body.chassis!r}", type="PortBoundElsewhere")
            changed = row.status != body.status
            changes: list[Change] = []
            if changed:
                ports.touch(conn, port_id, {"status": body.status})
                # status is no input of the compiler: a kind it knows to skip
                changes = [Change(PORT_STATUS_KIND, port_id, "update")]
            return (ports.get(conn, RequestContext.admin(), port_id), changed), changes

        port, changed = self.api.write(work)
        self.inspector.port_link(port, body.reason == "link_down" and body.status == "DOWN")
        return port, changed

    def fault_report(self, body: FaultReportBody) -> None:
        """An external monitor's report, for a host this server knows (else 404)."""
        self.chassis(body.host)
        self.inspector.report(body.host, body.state == "down", body.time)

    def notify_compute(self, port: dict[str, Any]) -> None:
        """Tell Nova a port went up or down (in the background; failures are logged)."""
        if not self.settings.compute_url or not port["device_id"]:
            return
        if not port["device_owner"].startswith("compute:"):
            return
        name = "network-vif-plugged" if port["status"] == "ACTIVE" else "network-vif-unplugged"
        body = {"events": [{"name": name, "server_uuid": port["device_id"], "tag": port["id"],
                            "status": "completed"}]}
        url = self.settings.compute_url.rstrip("/") + "/v2.1/os-server-external-events"
        task = asyncio.get_running_loop().create_task(self._post(url, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        if self._nova_order is None:
            self._nova_order = asyncio.Lock()
        try:
            async with self._nova_order, httpx.AsyncClient(timeout=NOVA_TIMEOUT) as client:
                response = await client.post(url, json=body)
            if response.status_code >= 400:
                log.warning("Nova refused %s: %s %s", body, response.status_code, response.text)
        except httpx.HTTPError as exc:
            log.warning("could not notify Nova at %s: %s", url, exc)

    # --- the policy stream --------------------------------------------------------------------
    async def policy_lines(self, name: str, since: int) -> AsyncIterator[bytes]:
        keepalive = self.settings.policy_keepalive_interval
        # attach storms (every agent reconnecting after a server restart): the first answer of
        # each stream is built on a small pool of its own, resumes before snapshots, so the
        # API's own work never queues behind a hundred snapshots and every agent converges
        loop = asyncio.get_running_loop()
        if since > 0:
            last = await loop.run_in_executor(self._resumes, self._first, name, since)
        else:
            last = await loop.run_in_executor(self._snapshots, self._snapshot, name)
        yield last[1]
        revision = last[0]
        while True:
            await self.store.wait_for(name, revision, keepalive)
            try:
                committed, changes = await asyncio.to_thread(self.store.position, name, revision)
            except RevisionTooOld:  # compacted past us (or the store was reset): start over
                revision, line = await loop.run_in_executor(self._snapshots, self._snapshot, name)
                yield line
                continue
            for key, rev, document in changes:
                yield _line({"type": "change", "revision": rev, "key": key, "document": document})
            sent = changes[-1][1] if changes else revision
            if committed > sent or not changes:
                yield _line({"type": "keepalive", "revision": committed})
            revision = max(committed, sent)

    def _first(self, name: str, since: int) -> tuple[int, bytes]:
        if since > 0:
            try:
                committed, changes = self.store.position(name, since)
            except RevisionTooOld:
                pass
            else:
                lines = [_line({"type": "change", "revision": rev, "key": key, "document": doc})
                         for key, rev, doc in changes]
                lines.append(_line({"type": "keepalive", "revision": committed}))
                return committed, b"".join(lines)
        return self._snapshot(name)

    def _snapshot(self, name: str) -> tuple[int, bytes]:
        revision, items = self.store.snapshot(name)
        return revision, _line({"type": "snapshot", "revision": revision, "items": items})

    def revisions(self) -> dict[str, Any]:
        with self.db.read() as conn:
            head = current_revision(conn)
            rows = conn.execute(select(chassis_table.c.name, chassis_table.c.realised_revision)
                                .order_by(chassis_table.c.name))
            realised = {name: int(rev) for name, rev in rows}
        return {"revision": self.store.revision(), "outbox_revision": head, "chassis": realised}

    # --- lifecycle ----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The compiler loop and the inspector's clock as background tasks while the app runs."""
        loop = asyncio.get_running_loop()
        tasks = {loop.create_task(self.inspector.run())}
        if self.loop:
            tasks.add(loop.create_task(self.loop.run_forever()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=5.0)
            for pending in list(self._tasks):
                pending.cancel()
            self._resumes.shutdown(wait=False, cancel_futures=True)
            self._snapshots.shutdown(wait=False, cancel_futures=True)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Column keys as plain str (a column named like an SQL keyword comes as quoted_name,
    which orjson refuses)."""
    return {str(key): value for key, value in row.items()}


def _line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def _ha_state(agent: dict[str, Any], router_id: str) -> str:
    """A gateway agent's role for a router: what it last reported while it is alive (standby
    when it reported nothing for the router), unknown when it is not alive."""
    if not agent["alive"]:
        return "unknown"
    reported = agent["configurations"].get("gateways")
    state = reported.get(router_id) if isinstance(reported, dict) else None
    return state if state in ("active", "standby") else "standby"


def _agent_not_found(agent_id: str) -> NotFound:
    return NotFound(f"Agent {agent_id} could not be found.", type="AgentNotFound")


def _filter_agents(agents: list[dict[str, Any]], params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    wanted: dict[str, set[str]] = {}
    fields: list[str] = []
    for key, value in params:
        if key == "fields":
            fields.extend(f for f in value.split(",") if f)
        elif key in AGENT_FILTERS:
            wanted.setdefault(key, set()).add(value.lower() if key in ("alive", "admin_state_up")
                                              else value)
        else:
            raise BadRequest(f"[{key}] is invalid attribute for filtering")

    def text(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    chosen = [a for a in agents if all(text(a[k]) in v for k, v in wanted.items())]
    if fields:
        chosen = [{k: v for k, v in a.items() if k in fields} for a in chosen]
    return chosen


def install(app: FastAPI, api: NetworkingApi, authenticate: Authenticator,
            settings: Settings) -> Distribution:
    """Add the agent-facing routes and run the compiler loop with the app's lifespan."""
    dist = Distribution(settings, api)
    app.state.distribution = dist
    stopping = stopping_event(app)

    def admin(request: Request) -> None:
        _admin(authenticate(request))

    @app.post("/v2.0/neutrino/chassis", tags=["agents"], include_in_schema=False, status_code=201)
    async def register_chassis(request: Request) -> Response:
        admin(request)
        body = _parse(ChassisBody, await read_json(request), "chassis")
        view, created = await dist.off_loop(dist.register, body)
        return json_response({"chassis": view}, 201 if created else 200)

    @app.get("/v2.0/neutrino/chassis/{name}", tags=["agents"], include_in_schema=False)
    async def show_chassis(request: Request, name: str) -> Response:
        admin(request)
        return json_response({"chassis": dist.chassis(name)})

    @app.put("/v2.0/neutrino/chassis/{name}/heartbeat", tags=["agents"], include_in_schema=False)
    async def heartbeat(request: Request, name: str) -> Response:
        admin(request)
        raw = await request.body()
        body = _parse(HeartbeatBody, await read_json(request) if raw.strip() else {}, "heartbeat")
        return json_response({"chassis": await dist.off_loop(dist.heartbeat, name, body)})

    @app.put("/v2.0/neutrino/chassis/{name}/state", tags=["agents"], include_in_schema=False)
    async def host_state(request: Request, name: str) -> Response:
        admin(request)
        body = _parse(HostStateBody, await read_json(request), "state")
        return json_response({"chassis": await dist.off_loop(dist.set_host_state, name, body)})

    @app.post("/v2.0/neutrino/fault-reports", tags=["agents"], include_in_schema=False,
              status_code=202)
    async def fault_report(request: Request) -> Response:
        admin(request)
        body = _parse(FaultReportBody, await read_json(request), "report")
        await dist.off_loop(dist.fault_report, body)
        return json_response({"report": body.model_dump()}, 202)

    @app.get("/v2.0/neutrino/chassis/{name}/policy", tags=["agents"], include_in_schema=False)
    async def policy(request: Request, name: str, since: int = 0) -> Response:
        admin(request)
        dist.chassis(name)  # 404 for an unregistered chassis
        return StreamingResponse(until_stopping(dist.policy_lines(name, since), stopping),
                                 media_type=NDJSON, headers={"Cache-Control": "no-store"})

    @app.put("/v2.0/neutrino/ports/{port_id}/status", tags=["agents"], include_in_schema=False)
    async def port_status(request: Request, port_id: str) -> Response:
        admin(request)
        body = _parse(PortStatusBody, await read_json(request))
        port, changed = await dist.off_loop(dist.set_port_status, port_id, body)
        if changed:
            dist.notify_compute(port)
        return json_response({"port": port})

    @app.get("/v2.0/neutrino/revision", tags=["agents"], include_in_schema=False)
    async def revision(request: Request) -> Response:
        admin(request)
        return json_response(dist.revisions())

    @app.get("/v2.0/agents", tags=["agents"], include_in_schema=False)
    async def list_agents(request: Request) -> Response:
        admin(request)
        params = list(request.query_params.multi_items())
        return json_response({"agents": _filter_agents(dist.agents(), params)})

    @app.get("/v2.0/agents/{agent_id}", tags=["agents"], include_in_schema=False)
    async def show_agent(request: Request, agent_id: str) -> Response:
        admin(request)
        for agent in dist.agents():
            if agent["id"] == agent_id:
                fields = [f for k, v in request.query_params.multi_items() if k == "fields"
                          for f in v.split(",") if f]
                return json_response({"agent": _filter_agents([agent], [("fields", ",".join(fields))])[0]
                                      if fields else agent})
        raise _agent_not_found(agent_id)

    @app.delete("/v2.0/agents/{agent_id}", tags=["agents"], include_in_schema=False, status_code=204)
    async def delete_agent(request: Request, agent_id: str) -> Response:
        admin(request)
        await dist.off_loop(dist.unregister, agent_id)
        return Response(status_code=204)

    @app.get("/v2.0/agents/{agent_id}/l3-routers", tags=["agents"], include_in_schema=False)
    async def list_l3_routers(request: Request, agent_id: str) -> Response:
        admin(request)
        return json_response({"routers": dist.l3_routers(agent_id)})

    @app.get("/v2.0/routers/{router_id}/l3-agents", tags=["agents"], include_in_schema=False)
    async def list_l3_agents(request: Request, router_id: str) -> Response:
        admin(request)
        return json_response({"agents": dist.l3_agents(router_id)})

    run_with_lifespan(app, dist.running)
    return dist
