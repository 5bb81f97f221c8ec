"""How an agent authenticates to the server: an admin token from the Keystone subset, fetched
when first needed and again whenever the server answers 401 (the token expired, or was never
fetched because the server was down when the agent started).

The token request goes out as part of the request that needed it (an httpx auth flow), so the
agent's own retry loops (registration, heartbeats, the policy stream) also retry
authentication: an agent started before its server, or running longer than a token lives,
needs nothing else.

With a token file, the token is kept there (mode 0600, beside the password file it stands for)
and a restarted agent starts with it: a cloud whose agents all restart at once then costs its
server no password hashing (argon2id, deliberately expensive) at all while the tokens live.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from pathlib import Path

import httpx

from neutrino.credentials import password_auth

TOKEN_PATH = "/v3/auth/tokens"


class AdminTokenAuth(httpx.Auth):
    """`X-Auth-Token` of user `user` in project `project` (password method)."""

    def __init__(self, password: str, user: str = "admin", project: str = "admin",
                 token_file: Path | None = None) -> None:
        self._body = password_auth(password, user, project)
        self.token_file = token_file
        self.token: str | None = None
        if token_file is not None:
            with contextlib.suppress(OSError):
                self.token = token_file.read_text().strip() or None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.token is None:
            yield from self._fetch(request)
        if self.token is not None:
            request.headers["X-Auth-Token"] = self.token
        response = yield request
        if response.status_code == 401 and self.token is not None:
            sent = request.headers.get("X-Auth-Token")
            if sent == self.token:  # no one renewed it meanwhile
                self.token = None
                yield from self._fetch(request)
            if self.token is not None:
                request.headers["X-Auth-Token"] = self.token
                yield request

    def _fetch(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Ask the server that `request` goes to for a token (if it refuses, the request goes
        out without one and its 401 is the caller's answer)."""
        response = yield httpx.Request("POST", request.url.join(TOKEN_PATH), json=self._body)
        token = response.headers.get("X-Subject-Token")
        if response.status_code == 201 and token:
            self.token = token
            if self.token_file is not None:
                self._save(token)

    def _save(self, token: str) -> None:
        """Write the token file atomically, readable by its owner only (best effort: an agent
        that cannot write it just asks for a token again after a restart)."""
        assert self.token_file is not None
        partial = self.token_file.with_name(self.token_file.name + ".new")
        try:
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(token + "\n")
            os.replace(partial, self.token_file)
        except OSError:
            pass
