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
    only: bool | None = None  # the one value a boolean may take

    def schema(self) -> Json:
        if self.kind is bool:
            schema: Json = {"type": ["boolean", "null"] if self.nullable else "boolean"}
            if self.only is not None:
                schema["enum"] = [self.only]
            return schema
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
            if self.only is not None and value is not self.only:
                raise validation_error(name, f"{value!r} is not one of [{self.only!r}]")
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
    "parent_id": OPTIONAL_ID,  # only the project's domain: there are no sub-projects
    "is_domain": Field(kind=bool, only=False),  # projects acting as domains do not exist
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
USER_UPDATE = {  # a user's domain never changes
    **{name: field for name, field in USER_CREATE.items() if name != "domain_id"},
    "name": Field(min_length=1, max_length=255),
}
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

_ID = Field(min_length=1, max_length=ID_MAX)
_NAME = Field(min_length=1)
_SECRET = Field(max_length=PASSWORD_MAX)
_TOKEN_ID = Field(max_length=1024)
_ID_OR_NAME = {"id": _ID, "name": _NAME}


def _named_schema(extra: Json | None = None, *, name_needs_domain: bool, **required: Any) -> Json:
    """An object naming something by id, or by name (plus a domain if `name_needs_domain`)."""
    properties = {name: field.schema() for name, field in _ID_OR_NAME.items()}
    by_name = ["name", "domain"] if name_needs_domain else ["name"]
    schema: Json = {
        "type": "object",
        "properties": {**properties, **(extra or {})},
        "anyOf": [{"required": ["id"]}, {"required": by_name}],
    }
    schema.update(required)
    return schema


def _method_needs(method: str) -> Json:
    """'If `methods` lists `method`, its credentials object is required.'"""
    return {
        "if": {"properties": {"methods": {"contains": {"const": method}}}},
        "then": {"required": [method]},
    }


_DOMAIN_SCHEMA = _named_schema(name_needs_domain=False)
_USER_SCHEMA = _named_schema(
    {"password": _SECRET.schema(), "domain": _DOMAIN_SCHEMA},
    name_needs_domain=True,
    required=["password"],
)
_PROJECT_SCHEMA = _named_schema({"domain": _DOMAIN_SCHEMA}, name_needs_domain=True)

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
                            "properties": {"user": _USER_SCHEMA},
                        },
                        "token": {
                            "type": "object",
                            "required": ["id"],
                            "properties": {"id": _TOKEN_ID.schema()},
                        },
                    },
                    "allOf": [_method_needs("password"), _method_needs("token")],
                },
                "scope": {
                    "oneOf": [
                        {"type": "string", "enum": ["unscoped"]},
                        {
                            "type": "object",
                            "properties": {
                                "project": _PROJECT_SCHEMA,
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
    """A `POST /v3/auth/tokens` body as an AuthRequest (exactly what AUTH_SCHEMA admits)."""
    auth = member(body, "auth")
    identity = member(auth, "identity")
    methods = identity.get("methods")
    if not (isinstance(methods, list) and methods and all(m in _METHODS for m in methods)):
        raise validation_error("auth.identity.methods", "must list 'password' and/or 'token'")
    user, password = _parse_password(identity) if "password" in identity else (None, None)
    token = _parse_token(identity) if "token" in identity else None
    for method in methods:
        if method not in identity:
            raise validation_error(f"auth.identity.{method}", "is a required property")
    project, unscoped = _parse_scope(auth)
    if "password" in methods:
        return AuthRequest(
            methods=tuple(methods),
            password_user=user,
            password=password,
            project=project,
            unscoped=unscoped,
        )
    return AuthRequest(methods=tuple(methods), token=token, project=project, unscoped=unscoped)


_METHODS = ("password", "token")


def _parse_password(identity: Json) -> tuple[UserReference, str]:
    user = member(member(identity, "password"), "user")
    password = _SECRET.check("user.password", user.get("password"))
    return _user_reference(user), password


def _parse_token(identity: Json) -> str:
    token = member(identity, "token")
    token_id: str = _TOKEN_ID.check("token.id", token.get("id"))
    return token_id


def _id_or_name(obj: Json, where: str) -> Json:
    return read_fields(obj, _ID_OR_NAME, where)


def _domain_reference(obj: Json, where: str) -> tuple[str | None, str | None]:
    """The (id, name) of `obj["domain"]`; (None, None) when there is no domain."""
    if "domain" not in obj:
        return None, None
    fields = _id_or_name(member(obj, "domain"), f"{where}.domain")
    if not fields:
        raise validation_error(f"{where}.domain", "needs an id or a name")
    return fields.get("id"), fields.get("name")


def _user_reference(user: Json) -> UserReference:
    fields = _id_or_name(user, "user")
    domain_id, domain_name = _domain_reference(user, "user")
    if "id" in fields:
        return UserReference(id=fields["id"])
    if "name" not in fields or (domain_id is None and domain_name is None):
        raise validation_error("user", "needs an id, or a name and a domain")
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
    project = _project_reference(member(scope, "project")) if "project" in scope else None
    domain_id, domain_name = _domain_reference(scope, "scope")
    if "system" in scope:
        member(scope, "system")
    if domain_id or domain_name or "system" in scope:
        # Keystone answers 401 to a user without roles there; nobody has any here
        raise Unauthorized("Only project-scoped and unscoped tokens can be issued.")
    return project, False


def _project_reference(project: Json) -> ProjectReference:
    fields = _id_or_name(project, "scope.project")
    domain_id, domain_name = _domain_reference(project, "scope.project")
    if "id" in fields:
        return ProjectReference(id=fields["id"])
    if "name" not in fields or (domain_id is None and domain_name is None):
        raise validation_error("scope.project", "needs an id, or a name and a domain")
    return ProjectReference(name=fields["name"], domain_id=domain_id, domain_name=domain_name)
