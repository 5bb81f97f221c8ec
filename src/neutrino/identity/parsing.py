"""Request bodies and query strings: strict parsing into plain values, and the JSON Schemas
that document the very same rules in the OpenAPI document.

Each body is described once, as `Field`s; `read_fields` enforces them and `object_schema`
publishes them, so what the docs promise and what the server accepts cannot drift apart.
Any violation is a Keystone 400 (`BadRequest`). Unknown attributes are ignored, as Keystone
accepts additional properties.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from neutrino.identity.errors import BadRequest, Unauthorized, validation_error
from neutrino.identity.models import AuthRequest, ProjectReference, UserReference

Json = dict[str, Any]

NO_NUL = "^[^\\u0000]*$"  # PostgreSQL cannot store NUL; the same regex in Python and ECMA
_NO_NUL_RE = re.compile(NO_NUL)
ID_MAX = 64
DESCRIPTION_MAX = 65535
PASSWORD_MAX = 4096


@dataclass(frozen=True)
class Field:
    """One attribute of a request object: a string or a boolean."""

    kind: type[str] | type[bool] = str
    required: bool = False
    nullable: bool = False
    min_length: int = 0
    max_length: int = 255

    def schema(self) -> Json:
        if self.kind is bool:
            return {"type": ["boolean", "null"] if self.nullable else "boolean"}
        return {
            "type": ["string", "null"] if self.nullable else "string",
            "minLength": self.min_length,
            "maxLength": self.max_length,
            "pattern": NO_NUL,
        }

    def check(self, name: str, value: Any) -> Any:
        if value is None:
            if not self.nullable:
                raise validation_error(name, "None is not allowed")
            return None
        if self.kind is bool:
            if type(value) is not bool:
                raise validation_error(name, f"{value!r} is not of type 'boolean'")
            return value
        if not isinstance(value, str):
            raise validation_error(name, f"{value!r} is not of type 'string'")
        if not self.min_length <= len(value) <= self.max_length:
            raise validation_error(name, f"length must be between {self.min_length} and {self.max_length}")
        if not _NO_NUL_RE.match(value):
            raise validation_error(name, "must not contain NUL characters")
        return value


NAME = Field(required=True, min_length=1, max_length=255)
OPTIONAL_ID = Field(nullable=True, min_length=1, max_length=ID_MAX)
DESCRIPTION = Field(nullable=True, max_length=DESCRIPTION_MAX)
ENABLED = Field(kind=bool)

PROJECT_CREATE = {
    "name": Field(required=True, min_length=1, max_length=64),
    "domain_id": OPTIONAL_ID,
    "description": DESCRIPTION,
    "enabled": ENABLED,
    "parent_id": OPTIONAL_ID,
    "is_domain": ENABLED,
}
PROJECT_UPDATE = {
    "name": Field(min_length=1, max_length=64),
    "description": DESCRIPTION,
    "enabled": ENABLED,
}
USER_CREATE = {
    "name": NAME,
    "domain_id": OPTIONAL_ID,
    "password": Field(nullable=True, max_length=PASSWORD_MAX),
    "enabled": ENABLED,
    "email": Field(nullable=True, max_length=255),
    "description": DESCRIPTION,
    "default_project_id": OPTIONAL_ID,
}
USER_UPDATE = {**USER_CREATE, "name": Field(min_length=1, max_length=255)}
PASSWORD_CHANGE = {
    "password": Field(required=True, max_length=PASSWORD_MAX),
    "original_password": Field(required=True, max_length=PASSWORD_MAX),
}


def object_schema(fields: dict[str, Field]) -> Json:
    """The JSON Schema of an object holding `fields` (other properties allowed)."""
    schema: Json = {
        "type": "object",
        "properties": {name: field.schema() for name, field in fields.items()},
    }
    required = [name for name, field in fields.items() if field.required]
    if required:
        schema["required"] = required
    return schema


def wrapped_schema(key: str, fields: dict[str, Field]) -> Json:
    """The schema of `{key: {...fields}}`, e.g. `{"project": {...}}`."""
    return {"type": "object", "required": [key], "properties": {key: object_schema(fields)}}


def request_body(schema: Json) -> Json:
    """`openapi_extra` documenting a required JSON request body."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }


def parse_json(raw: bytes) -> Json:
    """The request body as a JSON object."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest("The request body is not valid JSON.") from error
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def member(body: Json, key: str) -> Json:
    """`body[key]`, which must be an object."""
    value = body.get(key)
    if not isinstance(value, dict):
        raise validation_error(key, f"{value!r} is not of type 'object'")
    return value


def read_fields(obj: Json, fields: dict[str, Field], where: str) -> Json:
    """The known attributes present in `obj`, checked; unknown attributes are ignored."""
    values: Json = {}
    for name, field in fields.items():
        if name not in obj:
            if field.required:
                raise validation_error(f"{where}.{name}", "is a required property")
            continue
        values[name] = field.check(f"{where}.{name}", obj[name])
    return values


def query_flag(value: str | None) -> bool | None:
    """Keystone's reading of boolean query filters: '0'/'false' are False, else True."""
    if value is None:
        return None
    return value.strip().lower() not in ("0", "false")


# ---------------------------------------------------------------- POST /v3/auth/tokens

_STRING = Field(min_length=0, max_length=PASSWORD_MAX)
_ID = Field(min_length=1, max_length=ID_MAX)
_DOMAIN_SCHEMA = object_schema({"id": _ID, "name": Field(min_length=1)})

AUTH_SCHEMA: Json = {
    "type": "object",
    "required": ["auth"],
    "properties": {
        "auth": {
            "type": "object",
            "required": ["identity"],
            "properties": {
                "identity": {
                    "type": "object",
                    "required": ["methods"],
                    "properties": {
                        "methods": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "enum": ["password", "token"]},
                        },
                        "password": {
                            "type": "object",
                            "required": ["user"],
                            "properties": {
                                "user": {
                                    "type": "object",
                                    "required": ["password"],
                                    "properties": {
                                        "id": _ID.schema(),
                                        "name": Field(min_length=1).schema(),
                                        "password": _STRING.schema(),
                                        "domain": _DOMAIN_SCHEMA,
                                    },
                                }
                            },
                        },
                        "token": {
                            "type": "object",
                            "required": ["id"],
                            "properties": {"id": Field(max_length=1024).schema()},
                        },
                    },
                },
                "scope": {
                    "oneOf": [
                        {"type": "string", "enum": ["unscoped"]},
                        {
                            "type": "object",
                            "properties": {
                                "project": {
                                    "type": "object",
                                    "properties": {
                                        "id": _ID.schema(),
                                        "name": Field(min_length=1).schema(),
                                        "domain": _DOMAIN_SCHEMA,
                                    },
                                },
                                "domain": _DOMAIN_SCHEMA,
                                "system": {"type": "object"},
                            },
                        },
                    ]
                },
            },
        }
    },
}


def parse_auth_request(body: Json) -> AuthRequest:
    """A `POST /v3/auth/tokens` body as an AuthRequest."""
    auth = member(body, "auth")
    identity = member(auth, "identity")
    methods = identity.get("methods")
    if not (isinstance(methods, list) and methods and all(m in ("password", "token") for m in methods)):
        raise validation_error("auth.identity.methods", "must list 'password' and/or 'token'")
    project, unscoped = _parse_scope(auth)
    if "password" in methods:
        user = member(member(identity, "password"), "user")
        return AuthRequest(
            methods=tuple(methods),
            password_user=_user_reference(user),
            password=_STRING.check("password", user.get("password")),
            project=project,
            unscoped=unscoped,
        )
    token = member(identity, "token")
    return AuthRequest(
        methods=tuple(methods),
        token=Field(max_length=1024).check("token.id", token.get("id")),
        project=project,
        unscoped=unscoped,
    )


def _domain_reference(obj: Json, where: str) -> tuple[str | None, str | None]:
    domain = member(obj, "domain")
    fields = read_fields(domain, {"id": _ID, "name": Field(min_length=1)}, f"{where}.domain")
    if not fields:
        raise validation_error(f"{where}.domain", "needs an id or a name")
    return fields.get("id"), fields.get("name")


def _user_reference(user: Json) -> UserReference:
    fields = read_fields(user, {"id": _ID, "name": Field(min_length=1)}, "user")
    if "id" in fields:
        return UserReference(id=fields["id"])
    if "name" not in fields:
        raise validation_error("user", "needs an id, or a name and a domain")
    domain_id, domain_name = _domain_reference(user, "user")
    return UserReference(name=fields["name"], domain_id=domain_id, domain_name=domain_name)


def _parse_scope(auth: Json) -> tuple[ProjectReference | None, bool]:
    """The requested project, and whether an unscoped token was asked for explicitly."""
    if "scope" not in auth:
        return None, False
    scope = auth["scope"]
    if scope == "unscoped":
        return None, True
    if not isinstance(scope, dict):
        raise validation_error("scope", f"{scope!r} is not 'unscoped' or an object")
    if "project" not in scope:
        if "domain" in scope or "system" in scope:
            # Keystone answers 401 to a user without roles there; nobody has any here
            raise Unauthorized("Only project-scoped and unscoped tokens can be issued.")
        return None, False
    project = member(scope, "project")
    fields = read_fields(project, {"id": _ID, "name": Field(min_length=1)}, "scope.project")
    if "id" in fields:
        return ProjectReference(id=fields["id"]), False
    if "name" not in fields:
        raise validation_error("scope.project", "needs an id, or a name and a domain")
    domain_id, domain_name = _domain_reference(project, "scope.project")
    return ProjectReference(name=fields["name"], domain_id=domain_id, domain_name=domain_name), False
