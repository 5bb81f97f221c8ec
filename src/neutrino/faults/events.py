"""Fault events as consumers receive them: CloudEvents 1.0 envelopes (JSON, structured mode).

    {
      "specversion": "1.0",
      "id": "<uuid>",                      # unique per event: consumers deduplicate on it
      "source": "/neutrino/inspector",
      "type": "org.neutrino.fault.host.down",   # EVENT_TYPES
      "subject": "host2",                   # the faulty resource
      "time": "2026-11-21T15:30:00.123456Z",  # when the inspector decided (detection)
      "datacontenttype": "application/json",
      "data": {
        "fault_id": "<uuid>",               # one fault, several events (raised, cleared)
        "state": "active" | "cleared",
        "severity": "critical" | "major" | "minor" | "warning",
        "resource_type": "host" | "port" | "link",
        "resource_id": "host2",
        "source": "bfd" | "heartbeat" | "vswitchd" | "report" | "link" | "admin",
        "fault_time": "2026-11-21T15:29:59.950000Z",   # best estimate of the fault itself
        "detected_at": "2026-11-21T15:30:00.123456Z",
        "cleared_at": null,
        "affected": {"hosts": [...], "ports": [...], "instances": [...], "routers": [...]}
      }
    }

A project's subscriber receives an event only when one of the affected resources is its own,
and then with `affected` cut down to its own resources (`for_project`); admins see everything.
Webhooks are sent at least once; the envelope's `id` is the idempotency key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

EVENT_PREFIX = "org.neutrino.fault."
SOURCE = "/neutrino/inspector"

FaultType = Literal["host.down", "port.down", "link.down", "vswitchd.down"]
#: every fault type (`type` of a fault); the event type is EVENT_PREFIX + type, with
#: ".cleared" appended when it clears: org.neutrino.fault.host.down.cleared
FAULT_TYPES: tuple[str, ...] = ("host.down", "port.down", "link.down", "vswitchd.down")
EVENT_TYPES: tuple[str, ...] = tuple(
    EVENT_PREFIX + t + suffix for t in FAULT_TYPES for suffix in ("", ".cleared"))
SEVERITY: Mapping[str, str] = {"host.down": "critical", "vswitchd.down": "critical",
                               "link.down": "major", "port.down": "minor"}
AFFECTED_KINDS = ("hosts", "ports", "instances", "routers")


def rfc3339(epoch: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC with microseconds ("2026-11-21T15:30:00.123456Z")."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Affected:
    """The resources a fault touches. `projects` maps each port / instance / router id to the
    project owning it (hosts belong to no project: only admins see them)."""

    hosts: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    instances: tuple[str, ...] = ()  # device_ids of the affected ports (compute:* owners)
    routers: tuple[str, ...] = ()  # routers whose gateway role the host held
    projects: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, list[str]]:
        return {kind: list(getattr(self, kind)) for kind in AFFECTED_KINDS}

    @property
    def project_ids(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.projects.values())))


@dataclass(frozen=True)
class FaultEvent:
    """One event about one fault (raised or cleared)."""

    id: str
    fault_id: str
    fault_type: str  # one of FAULT_TYPES
    state: Literal["active", "cleared"]
    severity: str
    resource_type: str
    resource_id: str
    source: str
    fault_time: float
    detected_at: float
    cleared_at: float | None
    affected: Affected

    @property
    def type(self) -> str:
        return EVENT_PREFIX + self.fault_type + (".cleared" if self.state == "cleared" else "")

    @property
    def time(self) -> float:
        return self.cleared_at if self.state == "cleared" and self.cleared_at else self.detected_at

    def envelope(self, affected: Mapping[str, Iterable[str]] | None = None) -> dict[str, Any]:
        """The CloudEvents envelope (with `affected` replaced, for one project's view)."""
        return {
            "specversion": "1.0",
            "id": self.id,
            "source": SOURCE,
            "type": self.type,
            "subject": self.resource_id,
            "time": rfc3339(self.time),
            "datacontenttype": "application/json",
            "data": {
                "fault_id": self.fault_id,
                "state": self.state,
                "severity": self.severity,
                "resource_type": self.resource_type,
                "resource_id": self.resource_id,
                "source": self.source,
                "fault_time": rfc3339(self.fault_time),
                "detected_at": rfc3339(self.detected_at),
                "cleared_at": rfc3339(self.cleared_at),
                "affected": ({k: list(v) for k, v in affected.items()} if affected is not None
                             else self.affected.as_dict()),
            },
        }

    def for_project(self, project_id: str | None) -> dict[str, Any] | None:
        """The envelope as `project_id` may see it (None = an admin: everything), or None when
        none of the affected resources is the project's."""
        if project_id is None:
            return self.envelope()
        own = {kind: [r for r in getattr(self.affected, kind)
                      if self.affected.projects.get(r) == project_id]
               for kind in AFFECTED_KINDS if kind != "hosts"}
        if not any(own.values()):
            return None
        return self.envelope({"hosts": [], **own})

    def matches(self, event_types: Iterable[str], resource_ids: Iterable[str]) -> bool:
        """Whether a subscription's filters take it: `event_types` (full event types, or fault
        types such as "host.down", which take the raised and the cleared event; empty = all)
        and `resource_ids` (the faulty resource or any affected one; empty = all)."""
        types = set(event_types)
        if types and self.type not in types and self.fault_type not in types:
            return False
        wanted = set(resource_ids)
        if not wanted:
            return True
        named = {self.resource_id, *(r for kind in AFFECTED_KINDS for r in getattr(self.affected, kind))}
        return bool(wanted & named)


def new_id() -> str:
    return str(uuid.uuid4())
