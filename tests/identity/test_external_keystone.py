"""ExternalKeystoneValidator against a real Keystone API: our own identity server, running in
a thread on a loopback port, plays the external Keystone."""

from __future__ import annotations

import socket

import httpx
import pytest

from neutrino.identity.external import ExternalKeystoneValidator

from .conftest import LiveServer, password_auth

pytestmark = pytest.mark.clients


def issue(server: LiveServer, user: str = "admin", password: str | None = None) -> str:
    body = password_auth(user) if password is None else password_auth(user, password, "ext-p")
    response = httpx.post(f"{server.url}/v3/auth/tokens", json=body)
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]


def validations(server: LiveServer) -> int:
    """How many token validations the external Keystone has answered so far."""
    return sum(1 for line in server.requests if line == "GET /v3/auth/tokens")  # type: ignore[attr-defined]


def test_a_valid_token_becomes_a_request_context(live_server: LiveServer) -> None:
    validator = ExternalKeystoneValidator(live_server.url)
    context = validator.validate_token(issue(live_server))
    assert context is not None
    assert (context.user_name, context.project_name, context.domain_id) == (
        "admin",
        "admin",
        "default",
    )
    assert context.roles == ("admin", "member", "reader") and context.is_admin
    assert context.user_id and context.project_id


def test_the_answer_is_cached_until_the_token_expires(live_server: LiveServer) -> None:
    validator = ExternalKeystoneValidator(f"{live_server.url}/v3/")
    token = issue(live_server)
    before = validations(live_server)
    first = validator.validate_token(token)
    for _ in range(100):
        assert validator.validate_token(token) == first
    assert validations(live_server) == before + 1


def test_a_member_token_is_validated_with_the_members_own_rights(live_server: LiveServer) -> None:
    admin = {"X-Auth-Token": issue(live_server)}
    project = httpx.post(
        f"{live_server.url}/v3/projects", headers=admin, json={"project": {"name": "ext-p"}}
    ).json()["project"]
    user = httpx.post(
        f"{live_server.url}/v3/users",
        headers=admin,
        json={"user": {"name": "ext-u", "password": "ext-pw"}},
    ).json()["user"]
    roles = httpx.get(f"{live_server.url}/v3/roles?name=member", headers=admin).json()["roles"]
    grant = f"/v3/projects/{project['id']}/users/{user['id']}/roles/{roles[0]['id']}"
    assert httpx.put(f"{live_server.url}{grant}", headers=admin).status_code == 204

    context = ExternalKeystoneValidator(live_server.url).validate_token(issue(live_server, "ext-u", "ext-pw"))
    assert context is not None
    assert (context.user_id, context.project_id) == (user["id"], project["id"])
    assert context.roles == ("member", "reader") and not context.is_admin


def test_unknown_and_revoked_tokens_are_not_valid(live_server: LiveServer) -> None:
    validator = ExternalKeystoneValidator(live_server.url)
    assert validator.validate_token("not-a-token") is None
    assert validator.validate_token("") is None

    token = issue(live_server)
    revoke = {"X-Auth-Token": token, "X-Subject-Token": token}
    assert httpx.delete(f"{live_server.url}/v3/auth/tokens", headers=revoke).status_code == 204
    assert validator.validate_token(token) is None


def test_a_cached_token_can_be_forgotten(live_server: LiveServer) -> None:
    validator = ExternalKeystoneValidator(live_server.url)
    token = issue(live_server)
    assert validator.validate_token(token) is not None
    revoke = {"X-Auth-Token": token, "X-Subject-Token": token}
    httpx.delete(f"{live_server.url}/v3/auth/tokens", headers=revoke)
    validator.forget(token)
    assert validator.validate_token(token) is None


def test_max_cache_seconds_bounds_the_cache(live_server: LiveServer) -> None:
    validator = ExternalKeystoneValidator(live_server.url, max_cache_seconds=0)
    token = issue(live_server)
    before = validations(live_server)
    assert validator.validate_token(token) is None  # expires from the cache at once
    assert validations(live_server) == before + 1


def test_an_unreachable_keystone_authenticates_nobody() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    validator = ExternalKeystoneValidator(f"http://127.0.0.1:{port}", timeout=2)
    assert validator.validate_token("any-token") is None
