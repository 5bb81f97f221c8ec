"""Fixtures for the identity tests: a bootstrapped IdentityService over a temporary SQLite
database, an identity-only FastAPI app with a TestClient, and a real uvicorn server on a
free loopback port for the real clients (openstack CLI, openstacksdk, keystoneauth1).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response

from neutrino.config import Settings
from neutrino.db.engine import Database
from neutrino.db.meta import metadata
from neutrino.identity.api import install
from neutrino.identity.service import IdentityService
from support.live_server import LiveServer

with warnings.catch_warnings():  # starlette's TestClient warns about httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ADMIN_PASSWORD = "admin-secret"


def make_service(directory: Path, **settings: Any) -> IdentityService:
    """A bootstrapped IdentityService over a fresh SQLite database in `directory`."""
    db = Database(f"sqlite:///{directory}/db.sqlite")
    metadata.create_all(db.engine)
    service = IdentityService(db, Settings(state_dir=directory, admin_password=ADMIN_PASSWORD, **settings))
    service.bootstrap()
    return service


def identity_app(service: IdentityService, requests_seen: list[str] | None = None) -> FastAPI:
    """An app serving only the identity API; optionally records 'METHOD /path?query'."""
    app = FastAPI()
    install(app, service)
    if requests_seen is not None:

        @app.middleware("http")
        async def record(request: Request, call_next: Any) -> Response:
            query = f"?{request.url.query}" if request.url.query else ""
            requests_seen.append(f"{request.method} {request.url.path}{query}")
            response: Response = await call_next(request)
            return response

    return app


def password_auth(
    user: str = "admin",
    password: str = ADMIN_PASSWORD,
    project: str | None = "admin",
) -> dict[str, Any]:
    """A POST /v3/auth/tokens body: user and project by name in the Default domain."""
    auth: dict[str, Any] = {
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}},
        }
    }
    if project is not None:
        auth["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
    return {"auth": auth}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[IdentityService]:
    service = make_service(tmp_path)
    yield service
    service.db.dispose()


@pytest.fixture
def client(service: IdentityService) -> Iterator[TestClient]:
    with TestClient(identity_app(service)) as test_client:
        yield test_client


@pytest.fixture
def admin_token(client: TestClient) -> str:
    response = client.post("/v3/auth/tokens", json=password_auth())
    assert response.status_code == 201, response.text
    token: str = response.headers["X-Subject-Token"]
    return token


@pytest.fixture
def admin(admin_token: str) -> dict[str, str]:
    """Headers authenticating as the bootstrap admin."""
    return {"X-Auth-Token": admin_token}


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real identity server per test module, with a request log on `.requests`."""
    service = make_service(tmp_path_factory.mktemp("identity"))
    requests_seen: list[str] = []
    server = LiveServer(identity_app(service, requests_seen))
    server.requests = requests_seen  # type: ignore[attr-defined]
    server.start()
    yield server
    server.stop()
    service.db.dispose()
