"""The change outbox: what every committed mutation changed, in commit order.

A write transaction calls `record_changes` before it commits, so intent rows and the record
of the change land together; the compiler consumes rows in revision order (`changes_since`).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import Connection, func, insert, select

from neutrino.db.schema import outbox
from neutrino.timeutil import now_iso

#: a port's status reported by its agent (ACTIVE / DOWN): no input of the compiler
PORT_STATUS_KIND = "port_status"


@dataclass(frozen=True)
class Change:
    # network | subnet | port | security_group | security_group_rule | chassis | port_status
    # (| router | floatingip | port_forwarding)
    kind: str
    id: str
    op: str  # create | update | delete


def record_changes(conn: Connection, changes: list[Change]) -> int:
    """Append one outbox row; returns the new global revision."""
    payload = orjson.dumps([{"kind": c.kind, "id": c.id, "op": c.op} for c in changes])
    result = conn.execute(
        insert(outbox).values(created_at=now_iso(), changes=payload.decode())
    )
    revision = result.inserted_primary_key[0] if result.inserted_primary_key else None
    return int(revision) if revision is not None else current_revision(conn)


_CURRENT_REVISION = select(func.coalesce(func.max(outbox.c.revision), 0))  # built once: hot


def current_revision(conn: Connection) -> int:
    return int(conn.execute(_CURRENT_REVISION).scalar_one())


def changes_since(conn: Connection, revision: int, limit: int = 1000) -> list[tuple[int, list[Change]]]:
    rows = conn.execute(
        select(outbox.c.revision, outbox.c.changes)
        .where(outbox.c.revision > revision)
        .order_by(outbox.c.revision)
        .limit(limit)
    )
    return [
        (int(rev), [Change(**item) for item in orjson.loads(body)]) for rev, body in rows
    ]
