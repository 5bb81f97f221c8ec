"""What the control plane does about a host fault, inside the transaction that raises or clears
it (so the fault, its consequences and its outbox rows commit together):

* down: the chassis's `state` becomes "down" (gateway scheduling skips it, so the compiler moves
  every gateway role it held to the remaining gateways, restoring redundancy with the next one;
  the data path had already failed over by BFD); every ACTIVE port bound to it becomes DOWN;
* back: the chassis becomes "recovering" (scheduled as the last gateway, so it receives its
  routers' policy first) and the ports the fault set DOWN are ACTIVE again (its agent reports
  any real difference); once its agent has realised that policy, `host_ready` makes it "up" and
  it takes its place in the schedules again, with its flows already in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from neutrino.compiler.scheduling import schedule_from_rows
from neutrino.db.outbox import PORT_STATUS_KIND, Change
from neutrino.db.outbox import current_revision as current_revision
from neutrino.db.schema import chassis as chassis_table
from neutrino.db.schema import faults as faults_table
from neutrino.db.schema import ports as ports_table
from neutrino.db.schema import routers as routers_table
from neutrino.distribution.compiler_loop import CHASSIS_KIND
from neutrino.faults.events import AFFECTED_KINDS, Affected, FaultEvent
from neutrino.timeutil import now_iso


@dataclass(frozen=True)
class FaultRecord:
    id: str
    severity: str
    source: str
    fault_time: float
    detected_at: float
    affected: Affected


def _set_state(conn: Connection, host: str, state: str, now: float) -> list[Change]:
    done = conn.execute(update(chassis_table).where(chassis_table.c.name == host,
                                                    chassis_table.c.state != state)
                        .values(state=state, state_changed_at=now))
    return [Change(CHASSIS_KIND, host, "update")] if done.rowcount else []


def _set_ports(conn: Connection, port_ids: list[str], status: str) -> list[Change]:
    if not port_ids:
        return []
    conn.execute(update(ports_table).where(ports_table.c.id.in_(port_ids))
                 .values(status=status, updated_at=now_iso(),
                         revision_number=ports_table.c.revision_number + 1))
    return [Change(PORT_STATUS_KIND, port_id, "update") for port_id in port_ids]


def gateway_routers(conn: Connection, host: str) -> list[tuple[str, str]]:
    """(router id, project id) of the routers whose gateway chassis include `host` now."""
    schedule = schedule_from_rows(conn.execute(select(chassis_table)))
    rows = conn.execute(select(routers_table.c.id, routers_table.c.project_id)
                        .where(routers_table.c.gw_port_id.is_not(None)))
    return sorted((r.id, r.project_id) for r in rows if host in schedule(r.id))


def host_down(conn: Connection, host: str, now: float) -> tuple[Affected, list[Change]]:
    """Mark the host down and its ACTIVE ports DOWN; what the fault affects."""
    routers = gateway_routers(conn, host)  # (before the host leaves the schedules)
    ports = conn.execute(select(ports_table.c.id, ports_table.c.project_id, ports_table.c.status,
                                ports_table.c.device_id, ports_table.c.device_owner)
                         .where(ports_table.c.binding_host_id == host)
                         .order_by(ports_table.c.id)).all()
    projects: dict[str, str] = {p.id: p.project_id for p in ports}
    instances = sorted({p.device_id for p in ports
                        if p.device_id and p.device_owner.startswith("compute:")})
    for port in ports:
        if port.device_id in instances:
            projects[port.device_id] = port.project_id
    projects.update(routers)
    changes = _set_state(conn, host, "down", now)
    changes += _set_ports(conn, [p.id for p in ports if p.status == "ACTIVE"], "DOWN")
    affected = Affected(hosts=(host,), ports=tuple(p.id for p in ports),
                        instances=tuple(instances), routers=tuple(r for r, _ in routers),
                        projects=projects)
    return affected, changes


def host_up(conn: Connection, host: str, now: float, fault: FaultRecord | None) -> list[Change]:
    """The host is back: recovering (last in the gateway schedules), its ports ACTIVE again."""
    changes = _set_state(conn, host, "recovering", now)
    if fault is not None and fault.affected.ports:
        still = [row.id for row in conn.execute(
            select(ports_table.c.id).where(ports_table.c.id.in_(fault.affected.ports),
                                           ports_table.c.binding_host_id == host,
                                           ports_table.c.status == "DOWN"))]
        changes += _set_ports(conn, sorted(still), "ACTIVE")
    return changes


def set_state(conn: Connection, host: str, state: str, from_states: tuple[str, ...]
              ) -> list[Change]:
    """Move the host to `state` if it is in one of `from_states` (maintenance in and out)."""
    done = conn.execute(update(chassis_table).where(chassis_table.c.name == host,
                                                    chassis_table.c.state.in_(from_states))
                        .values(state=state))
    return [Change(CHASSIS_KIND, host, "update")] if done.rowcount else []


def host_ready(conn: Connection, host: str) -> list[Change]:
    """A recovering host whose agent has its policy in: back to its place in the schedules."""
    done = conn.execute(update(chassis_table).where(chassis_table.c.name == host,
                                                    chassis_table.c.state == "recovering")
                        .values(state="up"))
    return [Change(CHASSIS_KIND, host, "update")] if done.rowcount else []


def record_fault(conn: Connection, event: FaultEvent) -> None:
    conn.execute(faults_table.insert().values(
        id=event.fault_id, type=event.fault_type, severity=event.severity, state="active",
        resource_type=event.resource_type, resource_id=event.resource_id, source=event.source,
        fault_time=event.fault_time, detected_at=event.detected_at, cleared_at=None,
        affected={**event.affected.as_dict(), "projects": dict(event.affected.projects)},
        project_ids=list(event.affected.project_ids)))


def clear_fault(conn: Connection, fault_id: str, now: float) -> None:
    conn.execute(update(faults_table).where(faults_table.c.id == fault_id)
                 .values(state="cleared", cleared_at=now))


def affected_of(stored: dict[str, Any]) -> Affected:
    """The `Affected` of a fault row's `affected` column."""
    return Affected(**{kind: tuple(stored.get(kind, ())) for kind in AFFECTED_KINDS},
                    projects=dict(stored.get("projects", {})))


def load_fault(conn: Connection, fault_id: str) -> FaultRecord | None:
    row = conn.execute(select(faults_table).where(faults_table.c.id == fault_id)).first()
    if row is None:
        return None
    return FaultRecord(id=row.id, severity=row.severity, source=row.source,
                       fault_time=row.fault_time, detected_at=row.detected_at,
                       affected=affected_of(row.affected))
