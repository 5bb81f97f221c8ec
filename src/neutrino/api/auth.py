"""Authentication of API requests: the built-in Keystone subset, an external Keystone, or
`noauth` for development (every caller is an admin of the project in X-Project-Id)."""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request

from neutrino.api.errors import NotAuthenticated
from neutrino.context import RequestContext

NOAUTH_PROJECT = "admin"


class TokenValidator(Protocol):
    def validate_token(self, token: str) -> RequestContext | None: ...


class Authenticator:
    def __init__(self, validator: TokenValidator | None) -> None:
        self.validator = validator  # None: noauth

    def __call__(self, request: Request) -> RequestContext:
        if self.validator is None:
            roles = request.headers.get("x-roles")
            return RequestContext(
                user_id=request.headers.get("x-user-id"),
                project_id=request.headers.get("x-project-id") or NOAUTH_PROJECT,
                roles=tuple(r.strip() for r in roles.split(",")) if roles
                else ("admin", "member", "reader"),
            )
        token = request.headers.get("x-auth-token")
        ctx = self.validator.validate_token(token) if token else None
        if ctx is None:
            raise NotAuthenticated("Authentication required")
        return ctx
