"""Schemathesis against the app's own OpenAPI document.

The document is the one the app serves at /openapi.json (the Neutron v2.0 routes generated from
the attribute maps, plus the Keystone v3 subset). Every documented operation is fuzzed
in-process with positive and negative requests (schemathesis' examples, coverage and fuzzing
phases), against apps on fresh SQLite databases: a noauth one for /v2.0, seeded with networks,
subnets, a port and a security group, and one with the built-in Keystone (`build_server`) for
/v3. Path parameters and body references name real resources about half of the time, and
attributes take plausible values (CIDRs, pools, fixed IPs...) often enough to get past
validation. Callers vary (admin, member, reader, another project; for /v3 no or a bad token).

Every response must be: no 5xx; a status code the operation documents; a documented content
type; and, where the document gives one (errors), a body matching its schema. Methods a path
does not document must answer 405 with an Allow header.

Not checked: that schema-violating requests are refused (`negative_data_rejection`). Like
Neutron, the API accepts more than its document states (booleans as "true"/1, integers as
strings, null for an empty binding:profile), and the steering below repairs some negative cases.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
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
          response_schema_conformance, unsupported_method]
ADMIN_PASSWORD = "fuzz-admin-password"

# Bounded and repeatable: derandomized Hypothesis, no example database, no shrinking. A longer or
# different run: NEUTRINO_FUZZ_EXAMPLES=200 NEUTRINO_FUZZ_SEED=7 uv run pytest tests/test_openapi_fuzz.py
SEED = os.environ.get("NEUTRINO_FUZZ_SEED")
CONFIG = schemathesis.Config.from_dict({
    **({"seed": int(SEED)} if SEED else {}),
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
               "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
    "generation": {"mode": "all", "max-examples": int(os.environ.get("NEUTRINO_FUZZ_EXAMPLES", "12")),
                   "deterministic": not SEED, "database": "none", "no-shrink": True},
})


def _document_app() -> FastAPI:
    """The app whose /openapi.json is fuzzed: every route, identity included. Building the
    document touches no database, so the engine is never connected."""
    url = f"sqlite:///{tempfile.gettempdir()}/neutrino-openapi-document-never-opened.sqlite"
    settings = Settings(state_dir=Path(tempfile.gettempdir()), database=url, auth="keystone",
                        compiler_enabled=False)
    db = Database(url)
    return create_app(settings, db, None, lambda app: install(app, IdentityService(db, settings)))


# the document as the app builds it (what it serves at /openapi.json), without running the app:
# a running app's background tasks would share this process's threads with Hypothesis while it
# generates the explicit examples at collection (CPython 3.11.7's ast module is not thread-safe,
# and tracebacks of a failing background task parse source)
schema = schemathesis.openapi.from_dict(_document_app().openapi(), config=CONFIG)
NEUTRON = schema.include(path_regex=r"^/v2\.0/")
# with the built-in Keystone: all of /v3, and the Neutron collections (list, create) for token auth
KEYSTONE = schema.include(path_regex=r"^/v3|^/v2\.0/[a-z-]+$")


# --- the apps under test ------------------------------------------------------------------------

@dataclass
class Seeds:
    """Ids of real resources, by URL segment ("networks", "security-groups", ...)."""

    ids: dict[str, list[str]] = field(default_factory=dict)

    def add(self, segment: str, resource_id: str) -> None:
        self.ids.setdefault(segment, []).append(resource_id)


SEED_TAGS = ["red", "blue"]


def _seed(client: TestClient, n: int) -> Seeds:
    """One of each resource (tagged), and a network shared by another project; a router with an
    interface and a gateway on an external network, a floating IP associated through it and
    another with a port forwarding."""
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
    vm = create("ports", {"port": {"network_id": net, "fixed_ips": [{"subnet_id": subnet}]}})
    group = create("security-groups", {"security_group": {"name": f"seed-{n}"}})
    create("security-group-rules", {"security_group_rule": {
        "security_group_id": group, "direction": "ingress", "protocol": "tcp",
        "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "192.0.2.0/24"}})
    other = {"X-Project-Id": "other-project", "X-Roles": "member,reader"}
    create("networks", {"network": {"name": f"other-{n}"}}, headers=other)
    create("networks", {"network": {"name": f"shared-{n}", "shared": True,
                                    "project_id": "other-project"}})
    ext = create("networks", {"network": {"name": f"ext-{n}", "router:external": True}})
    seeds.add("external", ext)
    create("subnets", {"subnet": {"network_id": ext, "cidr": "172.24.4.0/24",
                                  "enable_dhcp": False}})
    router = create("routers", {"router": {"name": f"seed-{n}",
                                           "external_gateway_info": {"network_id": ext}}})
    response = client.put(f"/v2.0/routers/{router}/add_router_interface", json={"subnet_id": subnet})
    assert response.status_code == 200, response.text
    create("floatingips", {"floatingip": {"floating_network_id": ext, "port_id": vm}})
    forwarded = create("ports", {"port": {"network_id": net, "fixed_ips": [{"subnet_id": subnet}]}})
    fip = create("floatingips", {"floatingip": {"floating_network_id": ext}})
    response = client.post(f"/v2.0/floatingips/{fip}/port_forwardings", json={"port_forwarding": {
        "protocol": "tcp", "internal_port_id": forwarded, "internal_port": 22, "external_port": 2222,
        "internal_ip_address": response_address(client, forwarded)}})
    assert response.status_code == 201, response.text
    seeds.add("port_forwardings", response.json()["port_forwarding"]["id"])
    seeds.add("floatingip_id", fip)
    return seeds


def response_address(client: TestClient, port_id: str) -> str:
    address: str = client.get(f"/v2.0/ports/{port_id}").json()["port"]["fixed_ips"][0]["ip_address"]
    return address


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


@dataclass
class Keystone:
    """A server with the built-in Keystone: an admin token, and what path parameters may name.
    `spare_*` belong to a user and project the fuzzing may delete; `admin_*` are only named by
    reads, so the admin token keeps working."""

    app: FastAPI
    client: TestClient
    admin_token: str
    spare_token: str
    ids: dict[str, list[str]]  # path parameter -> ids anyone may change or delete
    admin_ids: dict[str, list[str]]  # path parameter -> ids only reads use


def _token(client: TestClient, user: str, password: str, project: str) -> str:
    response = client.post("/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}},
    }})
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]


@pytest.fixture(scope="module")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keystone]:
    state = tmp_path_factory.mktemp("fuzz-keystone")
    server = build_server(Settings(state_dir=state, auth="keystone",
                                   admin_password=ADMIN_PASSWORD))
    with TestClient(server.app) as client:
        admin = _token(client, "admin", ADMIN_PASSWORD, "admin")
        auth = {"X-Auth-Token": admin}

        def listed(collection: str) -> list[str]:
            response = client.get(f"/v3/{collection}", headers=auth)
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()[collection]]

        admin_ids = {"project_id": listed("projects"), "user_id": listed("users")}
        created = client.post("/v3/projects", headers=auth, json={"project": {"name": "spare"}})
        assert created.status_code == 201, created.text
        project = created.json()["project"]["id"]
        created = client.post("/v3/users", headers=auth, json={"user": {
            "name": "spare", "password": "spare-password", "default_project_id": project}})
        assert created.status_code == 201, created.text
        user = created.json()["user"]["id"]
        roles = listed("roles")
        for role in roles:
            client.put(f"/v3/projects/{project}/users/{user}/roles/{role}", headers=auth)
        ids = {"project_id": [project], "user_id": [user], "role_id": roles,
               "domain_id": listed("domains"), "region_id": listed("regions"),
               "service_id": listed("services"), "endpoint_id": listed("endpoints")}
        spare = _token(client, "spare", "spare-password", "spare")
        yield Keystone(server.app, client, admin, spare, ids, admin_ids)
    server.db.dispose()


# --- steering generated cases towards real resources --------------------------------------------

NOAUTH_CALLERS: list[dict[str, str]] = [
    {},  # noauth default: admin of project "admin"
    {},
    {},
    {"X-Project-Id": "admin", "X-Roles": "member,reader"},
    {"X-Project-Id": "other-project", "X-Roles": "member,reader"},
    {"X-Project-Id": "third-project", "X-Roles": "reader"},
]
REFERENCES = {"network_id": "networks", "subnet_id": "subnets", "security_group_id": "security-groups",
              "remote_group_id": "security-groups", "floating_network_id": "external",
              "port_id": "ports", "internal_port_id": "ports"}
# Plausible values for attributes whose documented schema is only "a string" (or "an object"),
# so that generated bodies also get past validation into IPAM and the resources' own rules.
SEED_SUBNET = "subnet"  # placeholder replaced by a seeded subnet id
SEED_EXTERNAL = "external"  # placeholder replaced by a seeded external network id
PLAUSIBLE: dict[str, list[Any]] = {
    "cidr": ["10.0.0.0/24", "10.0.0.128/25", "10.9.0.0/30", "10.9.0.0/31", "10.9.0.0/32",
             "fd00::/64", "fd09::/126", "fd09::/128", "0.0.0.0/0", "::/0"],
    "ip_version": [4, 6],
    "gateway_ip": [None, "10.0.0.1", "10.9.0.2", "10.0.0.255", "fd09::1", "192.0.2.1"],
    "allocation_pools": [[{"start": "10.0.0.10", "end": "10.0.0.20"}],
                         [{"start": "10.9.0.1", "end": "10.9.0.2"}],
                         [{"start": "fd09::2", "end": "fd09::3"}],
                         [{"start": "10.0.0.20", "end": "10.0.0.10"}], []],
    "host_routes": [[{"destination": "0.0.0.0/0", "nexthop": "10.0.0.2"}],
                    [{"destination": "::/0", "nexthop": "fd00::2"}]],
    "dns_nameservers": [["10.0.0.2"], ["fd00::53", "fd00::53"]],
    "ipv6_ra_mode": [None, "slaac", "dhcpv6-stateful", "dhcpv6-stateless"],
    "ipv6_address_mode": [None, "slaac", "dhcpv6-stateful", "dhcpv6-stateless"],
    "fixed_ips": [[{"subnet_id": SEED_SUBNET}], [{"ip_address": "10.0.0.5"}],
                  [{"subnet_id": SEED_SUBNET, "ip_address": "10.0.0.1"}],
                  [{"subnet_id": SEED_SUBNET}, {"subnet_id": SEED_SUBNET}], []],
    "mac_address": ["fa:16:3e:00:00:01", "fa:16:3e:00:00:02", "02:00:00:00:00:01", "00:00:00:00:00:00",
                    "ff:ff:ff:ff:ff:ff"],
    "allowed_address_pairs": [[{"ip_address": "10.0.0.0/24"}],
                              [{"ip_address": "fd00::9", "mac_address": "fa:16:3e:00:00:02"}]],
    "extra_dhcp_opts": [[{"opt_name": "mtu", "opt_value": "1400"}],
                        [{"opt_name": "domain-name", "opt_value": "x", "ip_version": 6}]],
    "binding:vnic_type": ["normal", "direct", "macvtap", "direct-physical", "virtio-forwarder"],
    "binding:host_id": ["", "compute-1"],
    "device_owner": ["", "network:dhcp", "network:router_interface", "compute:nova"],
    "provider:network_type": ["flat", "vlan", "vxlan", "geneve"],
    "provider:physical_network": [None, "physnet1", "public", "unknown"],
    "provider:segmentation_id": [None, 1, 100, 4094, 4095, 65535],
    "protocol": [None, "tcp", "udp", "icmp", "ipv6-icmp", "6", "any", "0", "255"],
    "ethertype": ["IPv4", "IPv6"],
    "port_range_min": [None, 0, 1, 22, 255, 65535],
    "port_range_max": [None, 0, 22, 255, 65535],
    "remote_ip_prefix": [None, "0.0.0.0/0", "192.0.2.0/24", "192.0.2.1/24", "::/0", "fd00::/64"],
    "mtu": [None, 68, 1280, 1442, 1500, 9000],
    "external_gateway_info": [None, {}, {"network_id": SEED_EXTERNAL},
                              {"network_id": SEED_EXTERNAL, "enable_snat": False},
                              {"network_id": SEED_EXTERNAL,
                               "external_fixed_ips": [{"ip_address": "172.24.4.99"}]}],
    "routes": [None, [], [{"destination": "192.168.0.0/24", "nexthop": "10.0.0.5"}],
               [{"destination": "192.168.0.0/24", "nexthop": "10.9.9.9"}]],
    "distributed": [None, True, False],
    "ha": [None, True, False],
    "floating_ip_address": [None, "172.24.4.50", "10.0.0.5"],
    "fixed_ip_address": [None, "10.0.0.2", "10.0.0.3", "fd00::5"],
    "internal_ip_address": ["10.0.0.2", "10.0.0.3", "10.0.0.4"],
    "internal_port": [22, 80, 65535],
    "external_port": [22, 2222, 8080],
}


IF_MATCH = ["revision_number=1", "revision_number=2", "revision_number=x", "etag=1, revision_number=1"]


def _chooser(case: schemathesis.Case) -> random.Random:
    """Choices that are a pure function of the generated case, so Hypothesis replays a failing
    case exactly (schemathesis' coverage phase does not combine with `@schema.given`)."""
    key = repr((case.operation.label, case.path_parameters, case.query, case.headers, case.body))
    return random.Random(zlib.crc32(key.encode()))


def _steer(case: schemathesis.Case, seeds: Seeds) -> dict[str, str]:
    """Point path parameters and body references at real resources about half of the time and
    attributes at plausible values most of the time. Returns the caller's headers."""
    rng = _chooser(case)
    caller = rng.choice(NOAUTH_CALLERS)
    match = re.match(r"^/v2\.0/([^/]+)/\{resource_id\}", case.operation.path)
    params = case.path_parameters
    if match and params and seeds.ids.get(match.group(1)) and rng.random() < 0.5:
        params["resource_id"] = rng.choice(seeds.ids[match.group(1)])
        if "tag" in params and rng.random() < 0.5:
            params["tag"] = rng.choice(SEED_TAGS)
    if params and "floatingip_id" in params and rng.random() < 0.5:  # port forwardings
        params["floatingip_id"] = rng.choice(seeds.ids["floatingip_id"])
        if "resource_id" in params and rng.random() < 0.5:
            params["resource_id"] = rng.choice(seeds.ids["port_forwardings"])
    if case.headers and "If-Match" in case.headers and rng.random() < 0.5:
        case.headers["If-Match"] = rng.choice(IF_MATCH)
    body = case.body
    if isinstance(body, dict):  # router interface actions: {"subnet_id": ...} or {"port_id": ...}
        for key, segment in REFERENCES.items():
            if isinstance(body.get(key), str) and seeds.ids.get(segment) and rng.random() < 0.5:
                body[key] = rng.choice(seeds.ids[segment])
    if isinstance(body, dict) and len(body) == 1:
        item = next(iter(body.values()))
        if isinstance(item, dict):
            for key in item:
                if key in PLAUSIBLE and rng.random() < 0.75:
                    subnet = rng.choice(seeds.ids.get("subnets") or ["none"])
                    external = rng.choice(seeds.ids.get("external") or ["none"])
                    item[key] = _replace(_replace(rng.choice(PLAUSIBLE[key]), SEED_SUBNET, subnet),
                                         SEED_EXTERNAL, external)
            for key, segment in REFERENCES.items():
                if key in item and seeds.ids.get(segment) and rng.random() < 0.5:
                    item[key] = rng.choice(seeds.ids[segment])
            if rng.random() < 0.75:  # a project the caller may create in
                project = caller.get("X-Project-Id") or rng.choice(["admin", "other-project"])
                for key in ("project_id", "tenant_id"):
                    if key in item:
                        item[key] = project
    return caller


def _replace(value: Any, old: str, new: str) -> Any:
    """A copy of a plausible value with the placeholder `old` replaced."""
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v, old, new) for k, v in value.items()}
    return new if value == old else value


@pytest.fixture
def seeds(noauth: Harness) -> Seeds:
    """Fresh resources for each operation (earlier examples may have deleted the last ones)."""
    return noauth.reseed()


# schemathesis 4.32 on pytest 9.2 gives all the items of one `parametrize()` the same node id, so
# xdist's `--dist loadgroup` (make test) would run only one operation; this makes the ids unique.
UNIQUE_IDS = pytest.mark.parametrize("_unique", ["fuzz"])


@NEUTRON.parametrize()
@UNIQUE_IDS
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_neutron_api_conforms_to_its_openapi_document(
    case: schemathesis.Case, noauth: Harness, seeds: Seeds, _unique: str
) -> None:
    caller = _steer(case, seeds)
    case.call_and_validate(app=noauth.app, headers=caller, checks=CHECKS)


KEYSTONE_CALLERS = ["admin", "admin", "admin", "spare", "none", "bogus"]


@KEYSTONE.parametrize()
@UNIQUE_IDS
def test_keystone_server_conforms_to_its_openapi_document(
    case: schemathesis.Case, keystone: Keystone, _unique: str
) -> None:
    rng = _chooser(case)
    reading = case.method in ("GET", "HEAD")
    for name in case.path_parameters or {}:
        real = keystone.ids.get(name, []) + (keystone.admin_ids.get(name, []) if reading else [])
        if real and rng.random() < 0.5:
            case.path_parameters[name] = rng.choice(real)
    if case.headers and "x-subject-token" in case.headers and rng.random() < 0.5:
        tokens = [keystone.spare_token, keystone.admin_token] if reading else [keystone.spare_token]
        case.headers["x-subject-token"] = rng.choice(tokens)
    caller = rng.choice(KEYSTONE_CALLERS)
    token = {"admin": keystone.admin_token, "spare": keystone.spare_token,
             "bogus": "not-a-token"}.get(caller)
    case.call_and_validate(app=keystone.app, headers={"X-Auth-Token": token} if token else {},
                           checks=CHECKS)


def test_fuzzed_document_is_the_served_one(keystone: Keystone) -> None:
    """The document fuzzed above is what a real server (build_server) serves."""
    served = keystone.client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == schema.raw_schema


def test_every_operation_is_a_test_of_its_own(request: pytest.FixtureRequest) -> None:
    """Distinct node ids (see UNIQUE_IDS): xdist schedules by node id."""
    here = [item.nodeid for item in request.session.items if item.path == request.path]
    assert len(here) == len(set(here))
