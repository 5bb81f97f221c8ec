"""Keystone's JSON shapes for identity records, tokens, the catalog and version discovery.

`root` is the server's root URL (no trailing slash); links point below `{root}/v3`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from neutrino.identity.catalog import CatalogEndpoint, CatalogService, token_catalog
from neutrino.identity.models import (
    Domain,
    Project,
    Region,
    Role,
    RoleAssignment,
    TokenInfo,
    User,
)

Json = dict[str, Any]

API_VERSION = "v3.14"
API_UPDATED = "2020-04-07T00:00:00Z"
MEDIA_TYPES = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]


def timestamp(naive_utc: datetime) -> str:
    """Keystone's timestamp format: 2015-11-09T01:42:57.000000Z."""
    return naive_utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def version(root: str) -> Json:
    """The answer to GET /v3."""
    return {
        "version": {
            "id": API_VERSION,
            "status": "stable",
            "updated": API_UPDATED,
            "links": [{"rel": "self", "href": f"{root}/v3/"}],
            "media-types": MEDIA_TYPES,
        }
    }


def collection(key: str, items: list[Json], self_url: str) -> Json:
    return {key: items, "links": {"self": self_url, "next": None, "previous": None}}


def _links(root: str, path: str) -> Json:
    return {"self": f"{root}/v3/{path}"}


def domain(root: str, record: Domain) -> Json:
    return {
        "id": record.id,
        "name": record.name,
        "description": record.description or "",
        "enabled": record.enabled,
        "tags": [],
        "options": {},
        "links": _links(root, f"domains/{record.id}"),
    }


def project(root: str, record: Project) -> Json:
    return {
        "id": record.id,
        "name": record.name,
        "domain_id": record.domain_id,
        "description": record.description or "",
        "enabled": record.enabled,
        "parent_id": record.domain_id,
        "is_domain": False,
        "tags": [],
        "options": {},
        "links": _links(root, f"projects/{record.id}"),
    }


def user(root: str, record: User) -> Json:
    body: Json = {
        "id": record.id,
        "name": record.name,
        "domain_id": record.domain_id,
        "enabled": record.enabled,
        "password_expires_at": None,
        "options": {},
        "links": _links(root, f"users/{record.id}"),
    }
    optional = {
        "email": record.email,
        "description": record.description,
        "default_project_id": record.default_project_id,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


def role(root: str, record: Role) -> Json:
    return {
        "id": record.id,
        "name": record.name,
        "domain_id": None,
        "description": record.description,
        "options": {},
        "links": _links(root, f"roles/{record.id}"),
    }


def region(root: str, record: Region) -> Json:
    return {
        "id": record.id,
        "description": record.description or "",
        "parent_region_id": record.parent_region_id,
        "links": _links(root, f"regions/{record.id}"),
    }


def role_assignment(root: str, record: RoleAssignment, include_names: bool) -> Json:
    def named(record_id: str, name: str, domain: Domain | None = None) -> Json:
        if not include_names:
            return {"id": record_id}
        body: Json = {"id": record_id, "name": name}
        if domain is not None:
            body["domain"] = {"id": domain.id, "name": domain.name}
        return body

    project_id, user_id = record.project.id, record.user.id
    grant = record.implied_by or record.role
    links: Json = {"assignment": f"{root}/v3/projects/{project_id}/users/{user_id}/roles/{grant.id}"}
    if record.implied_by is not None:
        links["prior_role"] = f"{root}/v3/roles/{record.implied_by.id}"
    return {
        "role": named(record.role.id, record.role.name),
        "user": named(user_id, record.user.name, record.user_domain),
        "scope": {"project": named(project_id, record.project.name, record.project_domain)},
        "links": links,
    }


def token(root: str, region_name: str, info: TokenInfo, with_catalog: bool = True) -> Json:
    """The token body of POST/GET /v3/auth/tokens; unscoped tokens carry no catalog."""
    body: Json = {
        "methods": list(info.methods),
        "user": {
            "id": info.user.id,
            "name": info.user.name,
            "domain": {"id": info.user_domain.id, "name": info.user_domain.name},
            "password_expires_at": None,
        },
        "audit_ids": list(info.audit_ids),
        "expires_at": timestamp(info.expires_at),
        "issued_at": timestamp(info.issued_at),
    }
    if info.project is not None and info.project_domain is not None:
        body["project"] = {
            "id": info.project.id,
            "name": info.project.name,
            "domain": {"id": info.project_domain.id, "name": info.project_domain.name},
        }
        body["is_domain"] = False
        body["roles"] = [{"id": role.id, "name": role.name} for role in info.roles]
        if with_catalog:
            body["catalog"] = token_catalog(root, region_name)
    return {"token": body}


def service(root: str, record: CatalogService) -> Json:
    return {
        "id": record.id,
        "type": record.type,
        "name": record.name,
        "description": record.description,
        "enabled": True,
        "links": _links(root, f"services/{record.id}"),
    }


def endpoint(root: str, record: CatalogEndpoint) -> Json:
    return {
        "id": record.id,
        "interface": record.interface,
        "region": record.region,
        "region_id": record.region,
        "service_id": record.service.id,
        "url": record.url,
        "enabled": True,
        "links": _links(root, f"endpoints/{record.id}"),
    }
