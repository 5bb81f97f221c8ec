"""Neutron's error envelope.

Every API failure is a `NeutronError` carrying the HTTP status, Neutron's exception type
name and message; the app renders it as
`{"NeutronError": {"type": ..., "message": ..., "detail": ""}}`.
"""

from __future__ import annotations


class NeutronError(Exception):
    status = 500
    type = "NeutronError"

    def __init__(self, message: str, *, type: str | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        if type:
            self.type = type
        self.detail = detail

    def with_status(self, status: int) -> NeutronError:
        self.status = status
        return self

    def body(self) -> dict[str, dict[str, str]]:
        return {"NeutronError": {"type": self.type, "message": self.message, "detail": self.detail}}


class BadRequest(NeutronError):
    status = 400
    type = "HTTPBadRequest"


class InvalidInput(BadRequest):
    type = "InvalidInput"

    def __init__(self, message: str) -> None:
        super().__init__(f"Invalid input for operation: {message}")


class NotAuthenticated(NeutronError):
    status = 401
    type = "HTTPUnauthorized"


class Forbidden(NeutronError):
    status = 403
    type = "HTTPForbidden"


class NotFound(NeutronError):
    status = 404
    type = "HTTPNotFound"


class Conflict(NeutronError):
    status = 409
    type = "Conflict"


class PreconditionFailed(NeutronError):
    status = 412
    type = "PreconditionFailed"


def resource_not_found(kind: str, resource_id: str) -> NotFound:
    """'Network 1234 could not be found.' with type NetworkNotFound, as Neutron words it."""
    type_name = "".join(part.capitalize() for part in kind.split("_")) + "NotFound"
    label = kind.replace("_", " ").capitalize()
    return NotFound(f"{label} {resource_id} could not be found.", type=type_name)
