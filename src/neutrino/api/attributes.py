"""Declarative attribute maps, in the spirit of neutron-lib's `api/definitions`.

Each resource declares its attributes once (`Attr`): how a value is converted and validated,
whether it may be given on create (POST) or update (PUT), its default, which column holds it
(so it can be filtered and sorted in SQL), and who may see or set it. Request bodies are
checked against the map here, before any transaction starts, so bad input writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from neutrino.api.errors import BadRequest, Forbidden, InvalidInput
from neutrino.context import RequestContext


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "not given", distinct from an explicit null

Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class Attr:
    name: str
    column: str | None = None  # column of the resource table; None when derived or stored apart
    convert: Converter | None = None
    default: Any = UNSET  # UNSET: not filled in (the resource decides), unless required
    required: bool = False
    allow_post: bool = True
    allow_put: bool = True
    admin_only: bool = False  # only admins may set it
    admin_visible_only: bool = False  # hidden from non-admins
    filterable: bool = True
    schema: dict[str, Any] = field(default_factory=dict)  # JSON schema for the OpenAPI doc


# --- converters (value in from JSON or a query string -> normalised value) -------------------

TRUE_STRINGS = {"true", "1", "yes", "on"}
FALSE_STRINGS = {"false", "0", "no", "off"}


def to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        if value.lower() in TRUE_STRINGS:
            return True
        if value.lower() in FALSE_STRINGS:
            return False
    raise InvalidInput(f"'{value}' cannot be converted to boolean")


def to_int(minimum: int | None = None, maximum: int | None = None) -> Converter:
    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise InvalidInput(f"'{value}' is not an integer")
        try:
            number = int(value)
            if isinstance(value, float) and number != value:
                raise ValueError
        except (TypeError, ValueError):
            raise InvalidInput(f"'{value}' is not an integer") from None
        if minimum is not None and number < minimum:
            raise InvalidInput(f"'{number}' is too small - must be at least '{minimum}'")
        if maximum is not None and number > maximum:
            raise InvalidInput(f"'{number}' is too large - must be no larger than '{maximum}'")
        return number

    return convert


def to_int_or_none(minimum: int | None = None, maximum: int | None = None) -> Converter:
    inner = to_int(minimum, maximum)
    return lambda value: None if value is None else inner(value)


def string(max_len: int = 255) -> Converter:
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidInput(f"'{value}' is not a valid string")
        if len(value) > max_len:
            raise InvalidInput(f"'{value}' exceeds maximum length of {max_len}")
        if "\x00" in value:
            raise InvalidInput("string must not contain NUL characters")
        return value

    return convert


def string_or_none(max_len: int = 255) -> Converter:
    inner = string(max_len)
    return lambda value: None if value is None else inner(value)


def one_of(*choices: str | None) -> Converter:
    def convert(value: Any) -> Any:
        if value not in choices:
            shown = ", ".join(str(c) for c in choices)
            raise InvalidInput(f"'{value}' is not in [{shown}]")
        return value

    return convert


def list_of_strings(max_len: int = 255) -> Converter:
    item = string(max_len)

    def convert(value: Any) -> list[str]:
        if not isinstance(value, list):
            raise InvalidInput(f"'{value}' is not a list")
        return [item(v) for v in value]

    return convert


def dict_or_empty(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"'{value}' is not a dictionary")
    return value


# --- request bodies ---------------------------------------------------------------------------

PROJECT_KEYS = ("project_id", "tenant_id")


def body_items(body: Any, resource: str, collection: str) -> tuple[list[dict[str, Any]], bool]:
    """Unwrap `{"port": {...}}` or a bulk `{"ports": [{...}, ...]}`; returns (items, is_bulk)."""
    if not isinstance(body, dict):
        raise BadRequest("Resource body required")
    if collection in body and resource not in body:
        items = body[collection]
        if not isinstance(items, list) or not items:
            raise BadRequest(f"Invalid input: '{collection}' must be a non-empty list")
        if not all(isinstance(item, dict) for item in items):
            raise BadRequest("Resources required")
        unwrapped = [item.get(resource, item) for item in items]
        if not all(isinstance(item, dict) for item in unwrapped):
            raise BadRequest(f"Unable to find '{resource}' in request body")
        return unwrapped, True
    if resource not in body or len(body) != 1:
        raise BadRequest(f"Unable to find '{resource}' in request body")
    item = body[resource]
    if not isinstance(item, dict):
        raise BadRequest(f"Unable to find '{resource}' in request body")
    return [item], False


def _check_known(item: dict[str, Any], attributes: dict[str, Attr]) -> None:
    unknown = sorted(k for k in item if k not in attributes and k not in PROJECT_KEYS)
    if unknown:
        raise BadRequest(f"Unrecognized attribute(s) '{', '.join(unknown)}'")


def _convert(attr: Attr, value: Any) -> Any:
    if attr.convert is None:
        return value
    try:
        return attr.convert(value)
    except InvalidInput as exc:
        if exc.type != InvalidInput.type:
            raise  # one of Neutron's named errors (SecurityGroupRuleInvalidProtocol...): as is
        message = exc.message.removeprefix("Invalid input for operation: ")
        raise InvalidInput(f"{message} (attribute '{attr.name}')") from None


def prepare_create(
    ctx: RequestContext, resource: str, item: dict[str, Any], attributes: dict[str, Attr]
) -> dict[str, Any]:
    """Validate one create body; returns every attribute converted, defaults filled in."""
    _check_known(item, attributes)
    out: dict[str, Any] = {"project_id": _owner(ctx, resource, item)}
    for name, attr in attributes.items():
        if name in PROJECT_KEYS:
            continue
        if name in item:
            if not attr.allow_post:
                raise BadRequest(f"Attribute '{name}' not allowed in POST")
            if attr.admin_only and not ctx.is_admin:
                raise Forbidden(f"(rule:create_{resource}:{name}) is disallowed by policy")
            out[name] = _convert(attr, item[name])
        elif attr.required:
            raise BadRequest(f"Failed to parse request. Required attribute '{name}' not specified")
        else:
            out[name] = attr.default
    return out


def _owner(ctx: RequestContext, resource: str, item: dict[str, Any]) -> str:
    values = [item[k] for k in PROJECT_KEYS if k in item]
    for project in values:  # before the set: a JSON object or list is not hashable
        if not isinstance(project, str) or not project or len(project) > 255 or "\x00" in project:
            raise InvalidInput(f"'{project}' is not a valid project id")
    given = set(values)
    if len(given) > 1:
        raise BadRequest("'project_id' and 'tenant_id' do not match")
    if given:
        project = given.pop()
        if project != ctx.project_id and not ctx.is_admin:
            raise Forbidden(f"(rule:create_{resource}) is disallowed by policy")
        return project
    if not ctx.project_id:
        raise BadRequest("Running without keystone AuthN requires that project_id is specified")
    return ctx.project_id


def prepare_update(
    ctx: RequestContext, resource: str, item: dict[str, Any], attributes: dict[str, Attr]
) -> dict[str, Any]:
    """Validate one update body; returns only the attributes given, converted."""
    _check_known(item, attributes)
    out: dict[str, Any] = {}
    for name, value in item.items():
        if name in PROJECT_KEYS:
            raise BadRequest(f"Cannot update read-only attribute {name}")
        attr = attributes[name]
        if not attr.allow_put:
            raise BadRequest(f"Cannot update read-only attribute {name}")
        if attr.admin_only and not ctx.is_admin:
            raise Forbidden(f"(rule:update_{resource}:{name}) is disallowed by policy")
        out[name] = _convert(attr, value)
    return out


def standard_attributes(name_max: int = 255) -> dict[str, Attr]:
    """The standard attributes every resource has (plus tags, handled by the controller)."""
    return {
        "id": Attr("id", column="id", allow_post=False, allow_put=False, schema={"type": "string"}),
        "name": Attr("name", column="name", convert=string(name_max), default="",
                     schema={"type": "string", "maxLength": name_max}),
        "description": Attr("description", column="description", convert=string(255), default="",
                            schema={"type": "string", "maxLength": 255}),
        "project_id": Attr("project_id", column="project_id", allow_post=False, allow_put=False,
                           schema={"type": "string"}),
        "tenant_id": Attr("tenant_id", column="project_id", allow_post=False, allow_put=False,
                          schema={"type": "string"}),
        "created_at": Attr("created_at", column="created_at", allow_post=False, allow_put=False),
        "updated_at": Attr("updated_at", column="updated_at", allow_post=False, allow_put=False),
        "revision_number": Attr("revision_number", column="revision_number", allow_post=False,
                                allow_put=False, convert=to_int(0)),
        "tags": Attr("tags", allow_post=False, allow_put=False, filterable=False),
    }

