"""Who may call which identity API: Keystone's default policy, reduced to three rules.

Tokens with the admin role manage everything. Everyone else may read their own user, the
projects they hold roles on, their own tokens, the catalog and the regions. Failures raise
`Forbidden` naming the Keystone policy action (e.g. `identity:create_project`).
"""

from __future__ import annotations

from neutrino.context import RequestContext
from neutrino.identity.errors import Forbidden


def require_admin(caller: RequestContext, action: str) -> None:
    if not caller.is_admin:
        raise Forbidden(f"identity:{action}")


def require_admin_or_self(caller: RequestContext, user_id: str, action: str) -> None:
    """Admins, or the user `user_id` itself."""
    if not (caller.is_admin or caller.user_id == user_id):
        raise Forbidden(f"identity:{action}")


def require_admin_or_member(
    caller: RequestContext, project_id: str, member_of: set[str], action: str
) -> None:
    """Admins, or a user holding a role on `project_id` (`member_of`: the user's projects)."""
    if not (caller.is_admin or caller.project_id == project_id or project_id in member_of):
        raise Forbidden(f"identity:{action}")
