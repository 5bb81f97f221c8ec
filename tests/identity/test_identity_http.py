"""The /v3 HTTP API over an identity-only app: Keystone's shapes, errors and policy."""

from __future__ import annotations

from typing import Any

import pytest

from neutrino.identity.service import IdentityService

from .conftest import ADMIN_PASSWORD, TestClient, password_auth

ERROR_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}


def assert_keystone_error(response: Any, code: int) -> None:
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["title"] == {**ERROR_TITLES, 409: "Conflict"}[code]
    assert isinstance(error["message"], str) and error["message"]


def create_project(client: TestClient, admin: dict[str, str], name: str = "p1") -> dict[str, Any]:
    response = client.post("/v3/projects", headers=admin, json={"project": {"name": name}})
    assert response.status_code == 201, response.text
    project: dict[str, Any] = response.json()["project"]
    return project


def create_user(client: TestClient, admin: dict[str, str], name: str = "u1", **extra: Any) -> dict[str, Any]:
    body = {"user": {"name": name, "password": "u1-pw", **extra}}
    response = client.post("/v3/users", headers=admin, json=body)
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()["user"]
    return user


def role_id(client: TestClient, admin: dict[str, str], name: str) -> str:
    [role] = client.get(f"/v3/roles?name={name}", headers=admin).json()["roles"]
    return str(role["id"])


@pytest.fixture
def member(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    """u1 with role member on p1; holds the project, the user and u1's token headers."""
    project = create_project(client, admin)
    user = create_user(client, admin)
    grant = f"/v3/projects/{project['id']}/users/{user['id']}/roles/"
    assert client.put(grant + role_id(client, admin, "member"), headers=admin).status_code == 204
    response = client.post("/v3/auth/tokens", json=password_auth("u1", "u1-pw", "p1"))
    assert response.status_code == 201, response.text
    headers = {"X-Auth-Token": response.headers["X-Subject-Token"]}
    return {"project": project, "user": user, "headers": headers}


# ---------------------------------------------------------------- discovery


def test_version_discovery_answers_like_keystone(client: TestClient) -> None:
    for path in ("/v3", "/v3/"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.json() == {
            "version": {
                "id": "v3.14",
                "status": "stable",
                "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": "http://testserver/v3/"}],
                "media-types": [
                    {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
                ],
            }
        }


# ---------------------------------------------------------------- issuing tokens


def test_password_authentication_issues_a_project_scoped_token(client: TestClient) -> None:
    response = client.post("/v3/auth/tokens", json=password_auth())
    assert response.status_code == 201
    assert len(response.headers["X-Subject-Token"]) >= 43
    token = response.json()["token"]
    assert token["methods"] == ["password"]
    assert token["user"]["name"] == "admin"
    assert token["user"]["domain"] == {"id": "default", "name": "Default"}
    assert token["user"]["password_expires_at"] is None
    assert token["project"]["name"] == "admin"
    assert token["project"]["domain"] == {"id": "default", "name": "Default"}
    assert token["is_domain"] is False
    assert [role["name"] for role in token["roles"]] == ["admin", "member", "reader"]
    assert token["expires_at"].endswith("Z") and token["issued_at"].endswith("Z")
    assert token["expires_at"] > token["issued_at"]
    assert len(token["audit_ids"]) == 1


def test_the_catalog_lists_network_and_identity_in_every_interface(client: TestClient) -> None:
    catalog = client.post("/v3/auth/tokens", json=password_auth()).json()["token"]["catalog"]
    by_type = {entry["type"]: entry for entry in catalog}
    assert (by_type["network"]["name"], by_type["identity"]["name"]) == ("neutron", "keystone")
    for service_type, url in (("network", "http://testserver"), ("identity", "http://testserver/v3")):
        endpoints = by_type[service_type]["endpoints"]
        assert sorted(e["interface"] for e in endpoints) == ["admin", "internal", "public"]
        for endpoint in endpoints:
            assert (endpoint["region"], endpoint["region_id"], endpoint["url"]) == (
                "RegionOne",
                "RegionOne",
                url,
            )


def test_users_and_projects_may_be_named_by_id(client: TestClient, admin: dict[str, str]) -> None:
    token = client.get("/v3/auth/tokens", headers={**admin, "X-Subject-Token": admin["X-Auth-Token"]}).json()[
        "token"
    ]
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"id": token["user"]["id"], "password": ADMIN_PASSWORD}},
            },
            "scope": {"project": {"id": token["project"]["id"]}},
        }
    }
    response = client.post("/v3/auth/tokens", json=body)
    assert response.status_code == 201
    assert response.json()["token"]["project"]["id"] == token["project"]["id"]


def test_without_scope_the_token_is_unscoped_and_has_no_catalog(client: TestClient) -> None:
    response = client.post("/v3/auth/tokens", json=password_auth(project=None))
    assert response.status_code == 201
    token = response.json()["token"]
    assert "project" not in token and "catalog" not in token and "roles" not in token


def test_nocatalog_leaves_the_catalog_out(client: TestClient) -> None:
    response = client.post("/v3/auth/tokens?nocatalog", json=password_auth())
    assert response.status_code == 201
    assert "catalog" not in response.json()["token"]


@pytest.mark.parametrize(
    "body",
    [
        password_auth(password="wrong"),
        password_auth(user="nobody"),
        password_auth(project="nonexistent"),
        {**password_auth(), "auth": {**password_auth()["auth"], "scope": {"domain": {"id": "x"}}}},
    ],
    ids=["wrong-password", "unknown-user", "unknown-project", "domain-scope"],
)
def test_failed_authentication_is_401_in_keystone_format(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/v3/auth/tokens", json=body)
    assert_keystone_error(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Keystone uri="http://testserver/v3"'


def test_a_project_the_user_has_no_role_on_is_401(client: TestClient, member: dict[str, Any]) -> None:
    response = client.post("/v3/auth/tokens", json=password_auth("u1", "u1-pw", "admin"))
    assert_keystone_error(response, 401)


@pytest.mark.parametrize(
    "raw_body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"auth": 1}',
        b'{"auth": {"identity": {"methods": []}}}',
        b'{"auth": {"identity": {"methods": ["kerberos"]}}}',
        b'{"auth": {"identity": {"methods": ["password"]}}}',
        b'{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin",'
        b' "password": "x"}}}}}',
        b'{"auth": {"identity": {"methods": ["password"], "password": {"user": {"id": "x",'
        b' "password": 5}}}}}',
        b'{"auth": {"identity": {"methods": ["token"], "token": {}}}}',
        b'{"auth": {"identity": {"methods": ["token"], "token": {"id": "x"}}, "scope": 7}}',
        b'{"auth": {"identity": {"methods": ["token"], "token": {"id": "x"}},'
        b' "scope": {"project": {"name": "admin"}}}}',
        b'{"auth": {"identity": {"methods": ["token"], "token": {"id": "\\u0000"}}}}',
        b'{"auth": {"identity": {"methods": ["password"], "password": {"user": {"id": "x",'
        b' "password": "p", "domain": 5}}}}}',
        b'{"auth": {"identity": {"methods": ["token"], "token": {"id": "x"}, "password": 5}}}',
        b'{"auth": {"identity": {"methods": ["token"], "token": {"id": "x"}},'
        b' "scope": {"project": {"id": "x"}, "system": 5}}}',
    ],
)
def test_malformed_auth_requests_are_400(client: TestClient, raw_body: bytes) -> None:
    response = client.post("/v3/auth/tokens", content=raw_body)
    assert_keystone_error(response, 400)


# ---------------------------------------------------------------- validating and revoking


def test_validate_check_and_revoke_a_token(client: TestClient, admin: dict[str, str]) -> None:
    other = client.post("/v3/auth/tokens", json=password_auth()).headers["X-Subject-Token"]
    subject = {**admin, "X-Subject-Token": other}

    shown = client.get("/v3/auth/tokens", headers=subject)
    assert shown.status_code == 200
    assert shown.headers["X-Subject-Token"] == other
    assert shown.json()["token"]["user"]["name"] == "admin"
    assert client.head("/v3/auth/tokens", headers=subject).status_code == 200

    assert client.delete("/v3/auth/tokens", headers=subject).status_code == 204
    assert client.head("/v3/auth/tokens", headers=subject).status_code == 404
    assert_keystone_error(client.get("/v3/auth/tokens", headers=subject), 404)
    assert_keystone_error(client.delete("/v3/auth/tokens", headers=subject), 404)


def test_validating_needs_a_valid_auth_token_and_an_existing_subject(
    client: TestClient, admin: dict[str, str]
) -> None:
    assert_keystone_error(client.get("/v3/auth/tokens"), 401)
    assert_keystone_error(client.get("/v3/auth/tokens", headers={"X-Auth-Token": "bogus"}), 401)
    assert_keystone_error(client.get("/v3/auth/tokens", headers=admin), 404)
    assert_keystone_error(client.get("/v3/auth/tokens", headers={**admin, "X-Subject-Token": ""}), 404)


def test_users_may_validate_their_own_tokens_only(
    client: TestClient, admin: dict[str, str], member: dict[str, Any]
) -> None:
    own = member["headers"]["X-Auth-Token"]
    headers = {**member["headers"], "X-Subject-Token": own}
    assert client.get("/v3/auth/tokens", headers=headers).status_code == 200
    foreign = {**member["headers"], "X-Subject-Token": admin["X-Auth-Token"]}
    assert_keystone_error(client.get("/v3/auth/tokens", headers=foreign), 403)
    admin_view = client.get("/v3/auth/tokens", headers={**admin, "X-Subject-Token": own})
    assert admin_view.json()["token"]["user"]["name"] == "u1"


def test_token_method_rescopes_an_unscoped_token(client: TestClient) -> None:
    unscoped = client.post("/v3/auth/tokens", json=password_auth(project=None))
    body = {
        "auth": {
            "identity": {"methods": ["token"], "token": {"id": unscoped.headers["X-Subject-Token"]}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
        }
    }
    response = client.post("/v3/auth/tokens", json=body)
    assert response.status_code == 201
    assert response.json()["token"]["project"]["name"] == "admin"


def test_auth_projects_catalog_and_domains(client: TestClient, member: dict[str, Any]) -> None:
    headers = member["headers"]
    projects = client.get("/v3/auth/projects", headers=headers).json()["projects"]
    assert [project["name"] for project in projects] == ["p1"]
    catalog = client.get("/v3/auth/catalog", headers=headers).json()["catalog"]
    assert {entry["type"] for entry in catalog} == {"network", "identity"}
    assert client.get("/v3/auth/domains", headers=headers).json()["domains"] == []


# ---------------------------------------------------------------- domains


def test_domains_list_filter_and_show(client: TestClient, admin: dict[str, str]) -> None:
    listed = client.get("/v3/domains", headers=admin).json()
    assert [d["id"] for d in listed["domains"]] == ["default"]
    assert listed["links"] == {"self": "http://testserver/v3/domains", "next": None, "previous": None}
    assert client.get("/v3/domains?name=Default", headers=admin).json()["domains"][0]["enabled"]
    assert client.get("/v3/domains?name=Other", headers=admin).json()["domains"] == []
    shown = client.get("/v3/domains/default", headers=admin).json()["domain"]
    assert shown["name"] == "Default"
    assert shown["links"] == {"self": "http://testserver/v3/domains/default"}
    assert_keystone_error(client.get("/v3/domains/nope", headers=admin), 404)


# ---------------------------------------------------------------- projects


def test_project_create_shows_keystones_shape(client: TestClient, admin: dict[str, str]) -> None:
    body = {"project": {"name": "p1", "description": "first", "enabled": False}}
    response = client.post("/v3/projects", headers=admin, json=body)
    assert response.status_code == 201
    project = response.json()["project"]
    assert project == {
        "id": project["id"],
        "name": "p1",
        "domain_id": "default",
        "description": "first",
        "enabled": False,
        "parent_id": "default",
        "is_domain": False,
        "tags": [],
        "options": {},
        "links": {"self": f"http://testserver/v3/projects/{project['id']}"},
    }


def test_projects_list_filter_show_update_delete(client: TestClient, admin: dict[str, str]) -> None:
    project = create_project(client, admin)
    names = [p["name"] for p in client.get("/v3/projects", headers=admin).json()["projects"]]
    assert names == ["admin", "p1"]
    by_name = client.get("/v3/projects?name=p1&domain_id=default", headers=admin).json()
    assert [p["id"] for p in by_name["projects"]] == [project["id"]]
    assert client.get("/v3/projects?domain_id=other", headers=admin).json()["projects"] == []

    path = f"/v3/projects/{project['id']}"
    assert client.get(path, headers=admin).json()["project"] == project
    patch = {"project": {"name": "renamed", "description": None, "enabled": False}}
    updated = client.patch(path, headers=admin, json=patch).json()["project"]
    assert (updated["name"], updated["description"], updated["enabled"]) == ("renamed", "", False)

    assert client.delete(path, headers=admin).status_code == 204
    assert_keystone_error(client.get(path, headers=admin), 404)
    assert_keystone_error(client.delete(path, headers=admin), 404)


def test_duplicate_project_names_conflict(client: TestClient, admin: dict[str, str]) -> None:
    create_project(client, admin)
    response = client.post("/v3/projects", headers=admin, json={"project": {"name": "p1"}})
    assert_keystone_error(response, 409)
    other = create_project(client, admin, "p2")
    renamed = client.patch(f"/v3/projects/{other['id']}", headers=admin, json={"project": {"name": "p1"}})
    assert_keystone_error(renamed, 409)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"project": "p1"},
        {"project": {}},
        {"project": {"name": ""}},
        {"project": {"name": 5}},
        {"project": {"name": "x" * 65}},
        {"project": {"name": "a\x00b"}},
        {"project": {"name": "p", "enabled": "yes"}},
        {"project": {"name": "p", "description": 3}},
        {"project": {"name": "p", "domain_id": ""}},
        {"project": {"name": "p", "is_domain": True}},
    ],
)
def test_invalid_project_bodies_are_400(
    client: TestClient, admin: dict[str, str], body: dict[str, Any]
) -> None:
    assert_keystone_error(client.post("/v3/projects", headers=admin, json=body), 400)


def test_a_project_in_a_missing_domain_is_404(client: TestClient, admin: dict[str, str]) -> None:
    body = {"project": {"name": "p", "domain_id": "nope"}}
    assert_keystone_error(client.post("/v3/projects", headers=admin, json=body), 404)


def test_projects_have_no_parent_but_their_domain(client: TestClient, admin: dict[str, str]) -> None:
    in_domain = {"project": {"name": "p", "parent_id": "default", "is_domain": False}}
    assert client.post("/v3/projects", headers=admin, json=in_domain).status_code == 201
    parent = create_project(client, admin, "parent")
    nested = {"project": {"name": "child", "parent_id": parent["id"]}}
    assert_keystone_error(client.post("/v3/projects", headers=admin, json=nested), 400)
    missing = {"project": {"name": "child", "parent_id": "no-such-project"}}
    assert_keystone_error(client.post("/v3/projects", headers=admin, json=missing), 404)


def test_a_projects_domain_cannot_change(client: TestClient, admin: dict[str, str]) -> None:
    project = create_project(client, admin)
    body = {"project": {"domain_id": "elsewhere"}}
    response = client.patch(f"/v3/projects/{project['id']}", headers=admin, json=body)
    assert_keystone_error(response, 400)


# ---------------------------------------------------------------- users


def test_users_create_list_show_update_delete(client: TestClient, admin: dict[str, str]) -> None:
    project = create_project(client, admin)
    user = create_user(
        client, admin, email="u1@example.org", default_project_id=project["id"], description="d"
    )
    assert user == {
        "id": user["id"],
        "name": "u1",
        "domain_id": "default",
        "enabled": True,
        "email": "u1@example.org",
        "description": "d",
        "default_project_id": project["id"],
        "password_expires_at": None,
        "options": {},
        "links": {"self": f"http://testserver/v3/users/{user['id']}"},
    }
    names = [u["name"] for u in client.get("/v3/users", headers=admin).json()["users"]]
    assert names == ["admin", "u1"]
    assert len(client.get("/v3/users?name=u1&domain_id=default", headers=admin).json()["users"]) == 1

    path = f"/v3/users/{user['id']}"
    assert client.get(path, headers=admin).json()["user"] == user
    updated = client.patch(path, headers=admin, json={"user": {"enabled": False, "email": None}})
    assert updated.json()["user"]["enabled"] is False and "email" not in updated.json()["user"]

    assert client.delete(path, headers=admin).status_code == 204
    assert_keystone_error(client.get(path, headers=admin), 404)


def test_a_password_set_by_patch_works_and_is_never_shown(
    client: TestClient, admin: dict[str, str], member: dict[str, Any]
) -> None:
    path = f"/v3/users/{member['user']['id']}"
    response = client.patch(path, headers=admin, json={"user": {"password": "changed"}})
    assert response.status_code == 200 and "password" not in response.json()["user"]
    assert_keystone_error(client.get("/v3/auth/projects", headers=member["headers"]), 401)
    login = client.post("/v3/auth/tokens", json=password_auth("u1", "changed", "p1"))
    assert login.status_code == 201


def test_users_change_their_own_password_with_the_original(
    client: TestClient, member: dict[str, Any]
) -> None:
    path = f"/v3/users/{member['user']['id']}/password"
    wrong = {"user": {"original_password": "wrong", "password": "new"}}
    assert_keystone_error(client.post(path, json=wrong), 401)
    right = {"user": {"original_password": "u1-pw", "password": "new"}}
    assert client.post(path, json=right).status_code == 204
    assert client.post("/v3/auth/tokens", json=password_auth("u1", "new", "p1")).status_code == 201


def test_duplicate_user_names_conflict(client: TestClient, admin: dict[str, str]) -> None:
    create_user(client, admin)
    response = client.post("/v3/users", headers=admin, json={"user": {"name": "u1"}})
    assert_keystone_error(response, 409)


@pytest.mark.parametrize(
    "body",
    [
        {"user": {}},
        {"user": {"name": ""}},
        {"user": {"name": "u", "password": 5}},
        {"user": {"name": "u", "enabled": 1}},
        {"user": {"name": "u", "password": "x" * 4097}},
    ],
)
def test_invalid_user_bodies_are_400(client: TestClient, admin: dict[str, str], body: dict[str, Any]) -> None:
    assert_keystone_error(client.post("/v3/users", headers=admin, json=body), 400)


def test_a_missing_default_project_is_404(client: TestClient, admin: dict[str, str]) -> None:
    body = {"user": {"name": "u", "default_project_id": "nope"}}
    assert_keystone_error(client.post("/v3/users", headers=admin, json=body), 404)


# ---------------------------------------------------------------- roles and assignments


def test_roles_list_filter_and_show(client: TestClient, admin: dict[str, str]) -> None:
    names = [r["name"] for r in client.get("/v3/roles", headers=admin).json()["roles"]]
    assert names == ["admin", "member", "reader"]
    member_id = role_id(client, admin, "member")
    shown = client.get(f"/v3/roles/{member_id}", headers=admin).json()["role"]
    assert (shown["name"], shown["links"]["self"]) == (
        "member",
        f"http://testserver/v3/roles/{member_id}",
    )
    assert_keystone_error(client.get("/v3/roles/member", headers=admin), 404)


def test_grant_check_list_and_revoke_a_role(client: TestClient, admin: dict[str, str]) -> None:
    project, user = create_project(client, admin), create_user(client, admin)
    reader = role_id(client, admin, "reader")
    grants = f"/v3/projects/{project['id']}/users/{user['id']}/roles"
    grant = f"{grants}/{reader}"

    assert client.head(grant, headers=admin).status_code == 404
    assert client.put(grant, headers=admin).status_code == 204
    assert client.put(grant, headers=admin).status_code == 204  # idempotent
    assert client.head(grant, headers=admin).status_code == 204
    assert [r["name"] for r in client.get(grants, headers=admin).json()["roles"]] == ["reader"]
    assert client.delete(grant, headers=admin).status_code == 204
    assert client.get(grants, headers=admin).json()["roles"] == []
    assert_keystone_error(client.delete(grant, headers=admin), 404)
    assert_keystone_error(client.put(f"{grants}/nope", headers=admin), 404)


def test_role_assignments_filter_and_include_names(
    client: TestClient, admin: dict[str, str], member: dict[str, Any]
) -> None:
    project_id, user_id = member["project"]["id"], member["user"]["id"]
    everything = client.get("/v3/role_assignments", headers=admin).json()["role_assignments"]
    assert len(everything) == 2

    query = f"/v3/role_assignments?scope.project.id={project_id}"
    [plain] = client.get(query, headers=admin).json()["role_assignments"]
    member_id = role_id(client, admin, "member")
    assert plain == {
        "role": {"id": member_id},
        "user": {"id": user_id},
        "scope": {"project": {"id": project_id}},
        "links": {
            "assignment": f"http://testserver/v3/projects/{project_id}/users/{user_id}/roles/{member_id}"
        },
    }
    [named] = client.get(f"{query}&include_names=True", headers=admin).json()["role_assignments"]
    assert named["role"] == {"id": member_id, "name": "member"}
    assert named["user"]["domain"] == {"id": "default", "name": "Default"}
    assert named["scope"]["project"]["name"] == "p1"

    by_user = client.get(f"/v3/role_assignments?user.id={user_id}", headers=admin).json()
    assert len(by_user["role_assignments"]) == 1
    by_role = client.get(f"/v3/role_assignments?role.id={member_id}", headers=admin).json()
    assert len(by_role["role_assignments"]) == 1
    effective = client.get(f"{query}&effective", headers=admin).json()["role_assignments"]
    assert sorted(a["role"]["id"] for a in effective) == sorted([member_id, role_id(client, admin, "reader")])
    groups = client.get("/v3/role_assignments?group.id=g", headers=admin).json()
    assert groups["role_assignments"] == []


# ---------------------------------------------------------------- regions, services, endpoints


def test_regions_services_and_endpoints(client: TestClient, admin: dict[str, str]) -> None:
    [region] = client.get("/v3/regions", headers=admin).json()["regions"]
    assert (region["id"], region["parent_region_id"]) == ("RegionOne", None)
    assert client.get("/v3/regions/RegionOne", headers=admin).status_code == 200
    assert_keystone_error(client.get("/v3/regions/Elsewhere", headers=admin), 404)

    services = client.get("/v3/services", headers=admin).json()["services"]
    assert {(s["type"], s["name"]) for s in services} == {
        ("network", "neutron"),
        ("identity", "keystone"),
    }
    [network] = client.get("/v3/services?type=network", headers=admin).json()["services"]
    assert client.get(f"/v3/services/{network['id']}", headers=admin).status_code == 200

    endpoints = client.get(f"/v3/endpoints?service_id={network['id']}", headers=admin).json()
    assert {e["interface"] for e in endpoints["endpoints"]} == {"public", "internal", "admin"}
    public = client.get(f"/v3/endpoints?service_id={network['id']}&interface=public", headers=admin).json()[
        "endpoints"
    ][0]
    assert public["url"] == "http://testserver"
    shown = client.get(f"/v3/endpoints/{public['id']}", headers=admin).json()["endpoint"]
    assert shown == public
    assert_keystone_error(client.get("/v3/endpoints/nope", headers=admin), 404)


def test_the_catalog_advertises_public_url_when_configured(tmp_path: Any) -> None:
    from .conftest import identity_app, make_service

    service = make_service(tmp_path, public_url="https://net.example.org:9696/")
    with TestClient(identity_app(service)) as client:
        catalog = client.post("/v3/auth/tokens", json=password_auth()).json()["token"]["catalog"]
    urls = {entry["type"]: entry["endpoints"][0]["url"] for entry in catalog}
    assert urls == {
        "network": "https://net.example.org:9696",
        "identity": "https://net.example.org:9696/v3",
    }


# ---------------------------------------------------------------- policy


PROTECTED = [
    ("GET", "/v3/auth/projects"),
    ("GET", "/v3/auth/catalog"),
    ("GET", "/v3/domains"),
    ("GET", "/v3/domains/default"),
    ("GET", "/v3/projects"),
    ("POST", "/v3/projects"),
    ("GET", "/v3/projects/x"),
    ("PATCH", "/v3/projects/x"),
    ("DELETE", "/v3/projects/x"),
    ("GET", "/v3/users"),
    ("POST", "/v3/users"),
    ("GET", "/v3/users/x"),
    ("PATCH", "/v3/users/x"),
    ("DELETE", "/v3/users/x"),
    ("GET", "/v3/users/x/projects"),
    ("GET", "/v3/roles"),
    ("GET", "/v3/roles/x"),
    ("GET", "/v3/projects/p/users/u/roles"),
    ("PUT", "/v3/projects/p/users/u/roles/r"),
    ("DELETE", "/v3/projects/p/users/u/roles/r"),
    ("GET", "/v3/role_assignments"),
    ("GET", "/v3/regions"),
    ("GET", "/v3/services"),
    ("GET", "/v3/endpoints"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_everything_but_discovery_and_login_needs_a_valid_token(
    client: TestClient, method: str, path: str
) -> None:
    assert_keystone_error(client.request(method, path), 401)
    assert_keystone_error(client.request(method, path, headers={"X-Auth-Token": "bad"}), 401)


ADMIN_ONLY = [
    ("GET", "/v3/domains"),
    ("GET", "/v3/projects"),
    ("POST", "/v3/projects"),
    ("PATCH", "/v3/projects/{project}"),
    ("DELETE", "/v3/projects/{project}"),
    ("GET", "/v3/users"),
    ("POST", "/v3/users"),
    ("PATCH", "/v3/users/{user}"),
    ("DELETE", "/v3/users/{user}"),
    ("GET", "/v3/roles"),
    ("GET", "/v3/projects/{project}/users/{user}/roles"),
    ("PUT", "/v3/projects/{project}/users/{user}/roles/r"),
    ("GET", "/v3/role_assignments"),
    ("GET", "/v3/users/{admin}"),
    ("GET", "/v3/users/{admin}/projects"),
    ("GET", "/v3/projects/{admin_project}"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ONLY)
def test_non_admins_are_forbidden_to_manage_identity(
    client: TestClient,
    admin: dict[str, str],
    member: dict[str, Any],
    method: str,
    path: str,
) -> None:
    admin_user = client.get("/v3/users?name=admin", headers=admin).json()["users"][0]
    admin_project = client.get("/v3/projects?name=admin", headers=admin).json()["projects"][0]
    url = path.format(
        project=member["project"]["id"],
        user=member["user"]["id"],
        admin=admin_user["id"],
        admin_project=admin_project["id"],
    )
    body = {"project": {"name": "x"}, "user": {"name": "x"}} if method in ("POST", "PATCH") else None
    response = client.request(method, url, headers=member["headers"], json=body)
    assert_keystone_error(response, 403)


def test_users_see_themselves_and_their_projects(client: TestClient, member: dict[str, Any]) -> None:
    headers, user, project = member["headers"], member["user"], member["project"]
    assert client.get(f"/v3/users/{user['id']}", headers=headers).json()["user"]["name"] == "u1"
    own = client.get(f"/v3/users/{user['id']}/projects", headers=headers).json()["projects"]
    assert [p["id"] for p in own] == [project["id"]]
    shown = client.get(f"/v3/projects/{project['id']}", headers=headers)
    assert shown.json()["project"]["name"] == "p1"
    assert client.get("/v3/regions", headers=headers).status_code == 200


# ---------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    "path",
    [
        "/v3/projects/%00",
        "/v3/projects/" + "x" * 5000,
        "/v3/users/%F0%9F%98%80",
        "/v3/domains/%ED%A0%80",
        "/v3/projects?name=%00",
        "/v3/projects?name=" + "n" * 5000,
        "/v3/users?domain_id=%00&enabled=maybe",
        "/v3/role_assignments?user.id=%00&scope.project.id=" + "p" * 300,
        "/v3/projects/%00/users/%00/roles/%00",
    ],
)
def test_odd_identifiers_never_cause_server_errors(
    client: TestClient, admin: dict[str, str], path: str
) -> None:
    for method in ("GET", "HEAD", "PUT", "DELETE", "PATCH"):
        response = client.request(method, path, headers=admin, json={})
        assert response.status_code < 500, (method, path, response.text)


def test_the_openapi_document_describes_bodies_and_status_codes(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operations = document["paths"]
    create = operations["/v3/projects"]["post"]
    schema = create["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["project"]["required"] == ["name"]
    assert {"201", "400", "401", "403", "404", "409"} <= set(create["responses"])
    assert {"201", "400", "401"} <= set(operations["/v3/auth/tokens"]["post"]["responses"])
    assert "requestBody" in operations["/v3/auth/tokens"]["post"]
    for path, methods in operations.items():
        for method, operation in methods.items():
            if path not in ("/v3", "/v3/auth/tokens", "/v3/users/{user_id}/password"):
                assert "401" in operation["responses"], (method, path)


def test_the_service_is_reachable_from_the_app(client: TestClient, service: IdentityService) -> None:
    assert client.app.state.identity_service is service  # type: ignore[attr-defined]
