"""Schemathesis against the app's own OpenAPI document.

The document is the one the app serves at /openapi.json (the Neutron v2.0 routes generated from
the attribute maps, plus the Keystone v3 subset). Every documented operation is fuzzed
in-process with positive and negative requests (schemathesis' examples, coverage and fuzzing
phases), against an app on a fresh SQLite database seeded with a network, subnet, port and
security group whose ids the path parameters and body references use about half of the time.
Callers vary (admin, member, reader, another project, no token) so policy paths run too.

Every response must be: no 5xx; a status code the operation documents; a documented content
type; and, where the document gives one (errors), a body matching its schema.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from neutrino.api.app import create_app
from neutrino.config import Settings
from neutrino.db.engine import Database
from neutrino.db.migrate import upgrade
from neutrino.identity.api import install
from neutrino.identity.service import IdentityService
from neutrino.server import build_server

pytestmark = pytest.mark.fuzz

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
ADMIN_PASSWORD = "fuzz-admin-password"

# Bounded and repeatable: fixed seed, derandomized Hypothesis, no example database, no shrinking.
CONFIG = schemathesis.Config.from_dict({
    "seed": 20240601,
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
               "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
    "generation": {"mode": "all", "max-examples": 12, "deterministic": True,
                   "database": "none", "no-shrink": True},
})


def _document_app() -> FastAPI:
    """The app whose /openapi.json is fuzzed: every route, identity included. Serving the
    document touches no database, so the engine is never connected."""
    url = f"sqlite:///{tempfile.gettempdir()}/neutrino-openapi-document-never-opened.sqlite"
    settings = Settings(state_dir=Path(tempfile.gettempdir()), database=url, auth="keystone")
    db = Database(url)
    return create_app(settings, db, None, lambda app: install(app, IdentityService(db, settings)))


schema = schemathesis.openapi.from_asgi("/openapi.json", _document_app(), config=CONFIG)
NEUTRON = schema.include(path_regex=r"^/v2\.0/")
IDENTITY = schema.include(path_regex=r"^/v3")


# --- the apps under test ------------------------------------------------------------------------

@dataclass
class Seeds:
    """Ids of real resources, by URL segment ("networks", "security-groups", ...)."""

    ids: dict[str, list[str]] = field(default_factory=dict)

    def add(self, segment: str, resource_id: str) -> None:
        self.ids.setdefault(segment, []).append(resource_id)


SEED_TAGS = ["red", "blue"]


def _seed(client: TestClient, n: int) -> Seeds:
    """One of each resource (tagged), and a network shared by another project."""
    seeds = Seeds()

    def create(segment: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
        response = client.post(f"/v2.0/{segment}", json=body, headers=headers)
        assert response.status_code == 201, response.text
        resource_id: str = next(iter(response.json().values()))["id"]
        seeds.add(segment, resource_id)
        client.put(f"/v2.0/{segment}/{resource_id}/tags", json={"tags": SEED_TAGS},
                   headers=headers)
        return resource_id

    net = create("networks", {"network": {"name": f"seed-{n}"}})
    subnet = create("subnets", {"subnet": {"network_id": net, "cidr": "10.0.0.0/24"}})
    create("subnets", {"subnet": {"network_id": net, "cidr": "fd00::/64", "ip_version": 6,
                                  "ipv6_address_mode": "slaac", "ipv6_ra_mode": "slaac"}})
    create("ports", {"port": {"network_id": net, "fixed_ips": [{"subnet_id": subnet}]}})
    group = create("security-groups", {"security_group": {"name": f"seed-{n}"}})
    create("security-group-rules", {"security_group_rule": {
        "security_group_id": group, "direction": "ingress", "protocol": "tcp",
        "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "192.0.2.0/24"}})
    other = {"X-Project-Id": "other-project", "X-Roles": "member,reader"}
    create("networks", {"network": {"name": f"other-{n}"}}, headers=other)
    create("networks", {"network": {"name": f"shared-{n}", "shared": True,
                                    "project_id": "other-project"}})
    return seeds


@dataclass
class Harness:
    app: FastAPI
    client: TestClient
    rounds: int = 0

    def reseed(self) -> Seeds:
        self.rounds += 1
        return _seed(self.client, self.rounds)


@pytest.fixture(scope="module")
def noauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    state = tmp_path_factory.mktemp("fuzz-noauth")
    url = f"sqlite:///{state}/neutrino.sqlite"
    upgrade(url)
    db = Database(url)
    app = create_app(Settings(state_dir=state, database=url, auth="noauth"), db)
    with TestClient(app) as client:
        yield Harness(app, client)
    db.dispose()


@pytest.fixture(scope="module")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Harness, str]]:
    state = tmp_path_factory.mktemp("fuzz-keystone")
    server = build_server(Settings(state_dir=state, auth="keystone",
                                   admin_password=ADMIN_PASSWORD))
    with TestClient(server.app) as client:
        response = client.post("/v3/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}},
        }})
        assert response.status_code == 201, response.text
        yield Harness(server.app, client), response.headers["X-Subject-Token"]
    server.db.dispose()


# --- steering generated cases towards real resources --------------------------------------------

NOAUTH_CALLERS: list[dict[str, str]] = [
    {},  # noauth default: admin of project "admin"
    {},
    {"X-Project-Id": "admin", "X-Roles": "member,reader"},
    {"X-Project-Id": "other-project", "X-Roles": "member,reader"},
    {"X-Project-Id": "third-project", "X-Roles": "reader"},
]
REFERENCES = {"network_id": "networks", "subnet_id": "subnets", "security_group_id": "security-groups",
              "remote_group_id": "security-groups"}


def _steer(case: schemathesis.Case, data: st.DataObject, seeds: Seeds) -> None:
    """About half of the time, point path parameters and body references at real resources."""
    match = re.match(r"^/v2\.0/([^/]+)/\{resource_id\}", case.operation.path)
    params = case.path_parameters
    if match and params and seeds.ids.get(match.group(1)) and data.draw(st.booleans()):
        params["resource_id"] = data.draw(st.sampled_from(seeds.ids[match.group(1)]))
        if "tag" in params and data.draw(st.booleans()):
            params["tag"] = data.draw(st.sampled_from(SEED_TAGS))
    body = case.body
    if isinstance(body, dict) and len(body) == 1:
        item = next(iter(body.values()))
        if isinstance(item, dict):
            for key, segment in REFERENCES.items():
                if key in item and seeds.ids.get(segment) and data.draw(st.booleans()):
                    item[key] = data.draw(st.sampled_from(seeds.ids[segment]))


@pytest.fixture
def seeds(noauth: Harness) -> Seeds:
    """Fresh resources for each operation (earlier examples may have deleted the last ones)."""
    return noauth.reseed()


@NEUTRON.given(data=st.data(), caller=st.sampled_from(NOAUTH_CALLERS))
@NEUTRON.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_neutron_api_conforms_to_its_openapi_document(
    case: schemathesis.Case, data: st.DataObject, caller: dict[str, str], noauth: Harness,
    seeds: Seeds,
) -> None:
    _steer(case, data, seeds)
    case.call_and_validate(app=noauth.app, headers=caller, checks=CHECKS)


KEYSTONE_TOKENS = ["admin", "admin", "admin", "none", "bogus"]


@IDENTITY.given(token=st.sampled_from(KEYSTONE_TOKENS))
@IDENTITY.parametrize()
def test_identity_api_conforms_to_its_openapi_document(
    case: schemathesis.Case, token: str, keystone: tuple[Harness, str],
) -> None:
    harness, admin_token = keystone
    headers = {"none": {}, "bogus": {"X-Auth-Token": "not-a-token"}}.get(
        token, {"X-Auth-Token": admin_token})
    case.call_and_validate(app=harness.app, headers=headers, checks=CHECKS)


def test_fuzzed_document_is_the_served_one(keystone: tuple[Harness, str]) -> None:
    """The document fuzzed above is what a real server (build_server) serves."""
    harness, _token = keystone
    served = harness.client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == schema.raw_schema
