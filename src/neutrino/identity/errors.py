"""Keystone's error envelope.

Every identity failure is a `KeystoneError` carrying the HTTP status, Keystone's title and
a message; the API renders it as `{"error": {"code": 401, "message": ..., "title": ...}}`.
"""

from __future__ import annotations

from typing import Any


class KeystoneError(Exception):
    code = 500
    title = "Internal Server Error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, dict[str, Any]]:
        return {"error": {"code": self.code, "message": self.message, "title": self.title}}


class BadRequest(KeystoneError):
    code = 400
    title = "Bad Request"


class Unauthorized(KeystoneError):
    code = 401
    title = "Unauthorized"

    def __init__(self, message: str = "The request you have made requires authentication.") -> None:
        super().__init__(message)


class Forbidden(KeystoneError):
    code = 403
    title = "Forbidden"

    def __init__(self, action: str) -> None:
        super().__init__(f"You are not authorized to perform the requested action: {action}.")


class NotFound(KeystoneError):
    code = 404
    title = "Not Found"

    def __init__(self, kind: str, target: str) -> None:
        super().__init__(f"Could not find {kind}: {target}.")


class Conflict(KeystoneError):
    code = 409
    title = "Conflict"

    def __init__(self, kind: str, details: str) -> None:
        super().__init__(f"Conflict occurred attempting to store {kind} - {details}.")


def validation_error(field: str, reason: str) -> BadRequest:
    """Keystone words schema failures as 'Invalid input for field ...'."""
    return BadRequest(f"Invalid input for field '{field}': {reason}")
