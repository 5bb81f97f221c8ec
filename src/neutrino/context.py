"""Who is asking: the authenticated caller of one API request."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    user_id: str | None
    project_id: str | None
    roles: tuple[str, ...] = ()
    user_name: str | None = None
    project_name: str | None = None
    domain_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def can_write(self) -> bool:
        """Readers only read; member (or admin) may write within their project."""
        return self.is_admin or "member" in self.roles

    @classmethod
    def admin(cls, project_id: str | None = None) -> RequestContext:
        return cls(user_id=None, project_id=project_id, roles=("admin", "member", "reader"))
