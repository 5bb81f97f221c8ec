"""Neutron list semantics: filters, `fields`, sorting and limit/marker pagination.

`parse_list_query` turns the query string into a `ListQuery`; the controller pushes what it can
into SQL (filters on columns, tag filters, ordering) and applies the rest in Python (filters on
list attributes such as `fixed_ips`, the page window, field selection).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from neutrino.api.attributes import Attr, to_int
from neutrino.api.errors import BadRequest, InvalidInput

TAG_FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")
RESERVED = {"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse", *TAG_FILTERS}


@dataclass
class ListQuery:
    # attribute -> accepted values (a repeated parameter means OR)
    column_filters: dict[str, list[Any]] = field(default_factory=dict)
    other_filters: dict[str, list[str]] = field(default_factory=dict)
    tag_filters: dict[str, list[str]] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    sort: list[tuple[str, str]] = field(default_factory=list)  # (attribute, asc|desc)
    limit: int | None = None
    marker: str | None = None
    page_reverse: bool = False

    @property
    def paginated(self) -> bool:
        return self.limit is not None or self.marker is not None


def parse_list_query(
    params: Sequence[tuple[str, str]], attributes: dict[str, Attr]
) -> ListQuery:
    query = ListQuery()
    sort_keys: list[str] = []
    sort_dirs: list[str] = []
    for key, value in params:
        if "\x00" in key or "\x00" in value:  # nothing stored holds one; PostgreSQL refuses them
            raise BadRequest("Query parameters must not contain NUL characters")
        if key == "fields":
            query.fields.extend(v for v in value.split(",") if v)
        elif key == "sort_key":
            sort_keys.append(value)
        elif key == "sort_dir":
            sort_dirs.append(value)
        elif key == "limit":
            try:
                limit = to_int(0)(value)
            except InvalidInput:
                raise BadRequest(f"Limit must be an integer 0 or greater and not '{value}'") from None
            query.limit = limit or None
        elif key == "marker":
            query.marker = value
        elif key == "page_reverse":
            query.page_reverse = value.lower() in ("true", "1")
        elif key in TAG_FILTERS:
            query.tag_filters.setdefault(key, []).extend(t for t in value.split(",") if t)
        else:
            _add_filter(query, key, value, attributes)
    for name in sort_keys:
        attr = attributes.get(name)
        if attr is None or attr.column is None:
            raise BadRequest(f"{name} is invalid attribute for sort_keys")
    for direction in sort_dirs:
        if direction not in ("asc", "desc"):
            raise BadRequest(f"{direction} is invalid value for sort_dirs, valid values are "
                             "'asc' and 'desc'")
    if sort_dirs and len(sort_dirs) != len(sort_keys):
        raise BadRequest("The number of sort_keys and sort_dirs must be same")
    query.sort = list(zip(sort_keys, sort_dirs or ["asc"] * len(sort_keys), strict=True))
    return query


def _add_filter(query: ListQuery, key: str, value: str, attributes: dict[str, Attr]) -> None:
    attr = attributes.get(key)
    if attr is None or not attr.filterable:
        raise BadRequest(f"[{key}] is invalid attribute for filtering")
    if attr.column is not None:
        converted: Any = value
        if attr.convert is not None and value != "":
            try:
                converted = attr.convert(value)
            except InvalidInput:
                # a value that can never match is an empty result, as in Neutron
                converted = _NoMatch
        query.column_filters.setdefault(attr.column, []).append(converted)
    else:
        query.other_filters.setdefault(key, []).append(value)


class _NoMatchType:
    pass


_NoMatch: Any = _NoMatchType()


def is_no_match(value: Any) -> bool:
    return value is _NoMatch


def page_window(
    ids: list[str], query: ListQuery
) -> tuple[list[str], bool, bool]:
    """Cut one page out of the ordered ids: (page ids, more after it, more before it)."""
    start = 0
    if query.marker is not None:
        try:
            start = ids.index(query.marker) + 1
        except ValueError:
            raise InvalidInput(f"marker {query.marker} does not exist") from None
    if query.page_reverse:
        end = start - 1 if query.marker is not None else len(ids)
        begin = max(0, end - query.limit) if query.limit else 0
        page = ids[begin:end]
        return page, query.marker is not None, begin > 0
    page = ids[start : start + query.limit] if query.limit else ids[start:]
    has_next = query.limit is not None and start + query.limit < len(ids)
    return page, has_next, query.marker is not None


def page_links(
    base_url: str,
    params: Sequence[tuple[str, str]],
    page: list[dict[str, Any]],
    query: ListQuery,
    more_after: bool,
    more_before: bool,
) -> list[dict[str, str]]:
    """Neutron's `<collection>_links`: next/previous hrefs carrying limit and marker."""
    if not page or query.limit is None:
        return []
    kept = [(k, v) for k, v in params if k not in ("marker", "page_reverse")]
    links = []
    first, last = page[0]["id"], page[-1]["id"]
    if more_after:
        links.append({"rel": "next", "href": f"{base_url}?{urlencode([*kept, ('marker', last)])}"})
    if more_before:
        prev = [*kept, ("marker", first), ("page_reverse", "True")]
        links.append({"rel": "previous", "href": f"{base_url}?{urlencode(prev)}"})
    return links


def select_fields(view: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    if not fields:
        return view
    return {k: view[k] for k in fields if k in view}
