"""An agent authenticates to a server with the built-in Keystone by its admin password: the
token is fetched on the first request and renewed whenever the server refuses it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from neutrino.agent.server_auth import AdminTokenAuth
from neutrino.agent.service import server_client
from neutrino.config import Settings
from neutrino.server import build_server
from support.live_server import LiveServer

PASSWORD = "s3cret"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = Settings(state_dir=tmp_path_factory.mktemp("server"), auth="keystone",
                        admin_password=PASSWORD, compiler_enabled=False)
    built = build_server(settings)
    live = LiveServer(built.app, lifespan="on")
    live.start()
    yield live
    live.stop()
    built.db.dispose()


def agents(server: LiveServer, auth: AdminTokenAuth) -> int:
    async def get() -> int:
        async with server_client(server.url, auth) as client:
            return (await client.get("/v2.0/agents")).status_code

    return asyncio.run(get())


def test_the_first_request_fetches_a_token(server: LiveServer) -> None:
    auth = AdminTokenAuth(PASSWORD)
    assert agents(server, auth) == 200
    assert auth.token is not None


def test_a_revoked_or_expired_token_is_renewed(server: LiveServer) -> None:
    auth = AdminTokenAuth(PASSWORD)
    assert agents(server, auth) == 200
    old = auth.token
    assert old is not None
    revoked = httpx.delete(f"{server.url}/v3/auth/tokens",
                           headers={"X-Auth-Token": old, "X-Subject-Token": old})
    assert revoked.status_code == 204
    assert agents(server, auth) == 200
    assert auth.token not in (None, old)


def test_a_wrong_password_gets_the_servers_401(server: LiveServer) -> None:
    auth = AdminTokenAuth("wrong")
    assert agents(server, auth) == 401
    assert auth.token is None


def test_a_server_down_at_the_first_request_is_a_connection_error(tmp_path: Path) -> None:
    """The agent's retry loops see an ordinary connection error and try again later."""
    auth = AdminTokenAuth(PASSWORD)

    async def get() -> None:
        async with server_client(f"unix:{tmp_path / 'absent.sock'}", auth) as client:
            await client.get("/v2.0/agents")

    with pytest.raises(httpx.TransportError):
        asyncio.run(get())
    assert auth.token is None


def test_a_token_file_carries_the_token_across_restarts(server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "token"
    first = AdminTokenAuth(PASSWORD, token_file=path)
    assert agents(server, first) == 200
    assert path.read_text().strip() == first.token
    assert path.stat().st_mode & 0o777 == 0o600
    # a restarted agent starts with the kept token: no password check (here: a wrong password)
    restarted = AdminTokenAuth("not the password", token_file=path)
    assert agents(server, restarted) == 200
    assert restarted.token == first.token


def test_a_stale_token_file_is_replaced(server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("gAAAA-not-a-token\n")
    auth = AdminTokenAuth(PASSWORD, token_file=path)
    assert agents(server, auth) == 200
    assert path.read_text().strip() == auth.token != "gAAAA-not-a-token"
