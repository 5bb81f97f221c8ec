"""The in-memory token cache behind `validate_token`: one dict lookup plus an expiry check.

Entries map the token itself to (expiry as epoch seconds, RequestContext). Dict reads and
writes are atomic under the GIL, so request threads read without a lock; invalidation
(revocation, a user or role change) scans a snapshot of the entries, which is rare.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from neutrino.context import RequestContext

# beyond this many entries, inserting also drops the expired ones
PURGE_THRESHOLD = 10_000


class TokenCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, RequestContext]] = {}

    def get(self, token: str) -> RequestContext | None:
        """The cached context of `token`, or None when absent or expired."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        expires_at, context = entry
        if time.time() < expires_at:
            return context
        self._entries.pop(token, None)
        return None

    def put(self, token: str, expires_at: float, context: RequestContext) -> None:
        if len(self._entries) >= PURGE_THRESHOLD:
            self._drop_expired()
        self._entries[token] = (expires_at, context)

    def forget(self, token: str) -> None:
        self._entries.pop(token, None)

    def forget_where(self, matches: Callable[[RequestContext], bool]) -> None:
        """Drop every entry whose context `matches` (e.g. all tokens of one user)."""
        for token, (_expires_at, context) in list(self._entries.items()):
            if matches(context):
                self._entries.pop(token, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _drop_expired(self) -> None:
        now = time.time()
        for token, (expires_at, _context) in list(self._entries.items()):
            if expires_at <= now:
                self._entries.pop(token, None)
