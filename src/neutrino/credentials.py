"""What a client of a Neutrino server needs to log in: the clouds.yaml entry of its admin and
Keystone's password-auth request body. Used by `neutrino clouds`, the demo, the lab and the
agent, so all of them speak to the server the same way."""

from __future__ import annotations

from typing import Any


def clouds_entry(root_url: str, password: str | None, region: str = "RegionOne",
                 user: str = "admin", project: str = "admin") -> dict[str, Any]:
    """One cloud of a clouds.yaml: password auth against the server's /v3."""
    return {
        "auth": {
            "auth_url": f"{root_url}/v3",
            "username": user,
            "password": password or "<admin password>",
            "project_name": project,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": region,
        "identity_api_version": 3,
        "interface": "public",
    }


def clouds_yaml(root_url: str, cloud: str, password: str | None,
                region: str = "RegionOne") -> dict[str, Any]:
    return {"clouds": {cloud: clouds_entry(root_url, password, region)}}


def password_auth(password: str, user: str = "admin", project: str = "admin") -> dict[str, Any]:
    """The body of POST /v3/auth/tokens: a project-scoped token for `user` (domain Default)."""
    return {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}},
    }}
