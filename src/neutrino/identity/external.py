"""Token validation against an external Keystone (settings.auth == "external").

`ExternalKeystoneValidator.validate_token` asks Keystone `GET /v3/auth/tokens` with the token
as both X-Auth-Token and X-Subject-Token (Keystone's default policy lets a token's owner
validate it), through a keystoneauth1 Session. A valid answer is cached in memory until the
token's expires_at (or `max_cache_seconds`, if given), so later requests cost one dict lookup.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from keystoneauth1 import session as ksa_session
from keystoneauth1.exceptions import ClientException

from neutrino.context import RequestContext
from neutrino.identity.token_cache import TokenCache

log = logging.getLogger(__name__)


class ExternalKeystoneValidator:
    def __init__(
        self,
        url: str,
        session: ksa_session.Session | None = None,
        timeout: float = 10.0,
        max_cache_seconds: float | None = None,
    ) -> None:
        """`url`: Keystone's root or its /v3 URL, e.g. http://keystone:5000 or .../v3."""
        base = url.rstrip("/")
        self.tokens_url = f"{base}/auth/tokens" if base.endswith("/v3") else f"{base}/v3/auth/tokens"
        self._session = session or ksa_session.Session(timeout=timeout)
        self._max_cache_seconds = max_cache_seconds
        self._cache = TokenCache()

    def validate_token(self, token: str) -> RequestContext | None:
        """Who `token` belongs to, per the external Keystone; None when it is not valid."""
        context = self._cache.get(token)
        if context is not None:
            return context
        if not token:
            return None
        body = self._fetch_token(token)
        if body is None:
            return None
        context, expires_at = _context_of(body)
        if self._max_cache_seconds is not None:
            expires_at = min(expires_at, time.time() + self._max_cache_seconds)
        if expires_at <= time.time():
            return None
        self._cache.put(token, expires_at, context)
        return context

    def forget(self, token: str) -> None:
        """Drop a cached token, e.g. after learning it was revoked."""
        self._cache.forget(token)

    def _fetch_token(self, token: str) -> dict[str, Any] | None:
        try:
            response = self._session.get(
                self.tokens_url,
                headers={"X-Auth-Token": token, "X-Subject-Token": token},
                authenticated=False,
                raise_exc=False,
            )
        except ClientException as error:  # unreachable Keystone: nobody is authenticated
            log.warning("cannot validate a token at %s: %s", self.tokens_url, error)
            return None
        if response.status_code != 200:
            return None
        try:
            body = response.json()["token"]
        except (ValueError, KeyError, TypeError):
            log.warning("unexpected token validation answer from %s", self.tokens_url)
            return None
        return body if isinstance(body, dict) else None


def _context_of(token: dict[str, Any]) -> tuple[RequestContext, float]:
    """The RequestContext of a Keystone token body, and its expiry in epoch seconds."""
    user = token.get("user") or {}
    project = token.get("project") or {}
    domain = project.get("domain") or user.get("domain") or {}
    context = RequestContext(
        user_id=user.get("id"),
        project_id=project.get("id"),
        roles=tuple(role["name"] for role in token.get("roles") or [] if "name" in role),
        user_name=user.get("name"),
        project_name=project.get("name"),
        domain_id=domain.get("id"),
    )
    return context, _epoch_seconds(token.get("expires_at"))


def _epoch_seconds(timestamp: Any) -> float:
    """Keystone's '2015-11-09T01:42:57.000000Z' as epoch seconds; 0 when unreadable."""
    if not isinstance(timestamp, str):
        return 0.0
    try:
        parsed = datetime.fromisoformat(timestamp)
    except ValueError:
        return 0.0
    if parsed.tzinfo is None:  # Keystone's timestamps are UTC
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
