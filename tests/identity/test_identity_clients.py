"""Real clients against a real identity server: the `openstack` CLI and openstacksdk.

The server is uvicorn serving an identity-only app on a free loopback port; the CLI runs as
a subprocess with OS_* variables, exactly as an operator would use it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import openstack
import pytest

from .conftest import ADMIN_PASSWORD, LiveServer

pytestmark = [
    pytest.mark.clients,
    # openstacksdk warns about its own future removals
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

OPENSTACK_CLI = Path(sys.executable).parent / "openstack"


def openstack_cli(
    server: LiveServer,
    *args: str,
    user: str = "admin",
    password: str = ADMIN_PASSWORD,
    project: str = "admin",
) -> Any:
    """Run `openstack <args>` as `user` scoped to `project`; parsed JSON for `-f json`."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OS_")}
    environment.update(
        OS_AUTH_URL=f"{server.url}/v3",
        OS_USERNAME=user,
        OS_PASSWORD=password,
        OS_PROJECT_NAME=project,
        OS_USER_DOMAIN_NAME="Default",
        OS_PROJECT_DOMAIN_NAME="Default",
        OS_IDENTITY_API_VERSION="3",
        OS_CLIENT_CONFIG_FILE="/nonexistent/clouds.yaml",
    )
    completed = subprocess.run(
        [str(OPENSTACK_CLI), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, (args, completed.stderr, server.requests[-10:])  # type: ignore[attr-defined]
    return json.loads(completed.stdout) if "json" in args else completed.stdout


def test_openstack_token_issue(live_server: LiveServer) -> None:
    token = openstack_cli(live_server, "token", "issue", "-f", "json")
    assert set(token) >= {"id", "expires", "project_id", "user_id"}
    assert len(token["id"]) >= 43


def test_openstack_manages_a_project_with_a_user_and_a_role(live_server: LiveServer) -> None:
    created = openstack_cli(live_server, "project", "create", "cli-p1", "-f", "json")
    assert (created["name"], created["domain_id"], created["enabled"]) == ("cli-p1", "default", True)

    listed = openstack_cli(live_server, "project", "list", "-f", "json")
    assert {"ID": created["id"], "Name": "cli-p1"} in listed

    user = openstack_cli(
        live_server,
        "user", "create", "--project", "cli-p1", "--password", "pw", "cli-u1", "-f", "json",
    )  # fmt: skip
    assert (user["name"], user["default_project_id"]) == ("cli-u1", created["id"])

    openstack_cli(live_server, "role", "add", "--project", "cli-p1", "--user", "cli-u1", "member")
    assignments = openstack_cli(
        live_server, "role", "assignment", "list", "--project", "cli-p1", "--names", "-f", "json"
    )
    assert [(a["Role"], a["User"], a["Project"]) for a in assignments] == [
        ("member", "cli-u1@Default", "cli-p1@Default")
    ]

    shown = openstack_cli(live_server, "project", "show", "cli-p1", "-f", "json")
    assert shown["id"] == created["id"]
    users = openstack_cli(live_server, "user", "list", "-f", "json")
    assert {"admin", "cli-u1"} <= {row["Name"] for row in users}

    openstack_cli(live_server, "project", "delete", "cli-p1")
    remaining = openstack_cli(live_server, "project", "list", "-f", "json")
    assert "cli-p1" not in {row["Name"] for row in remaining}


def test_a_member_uses_the_cli_on_their_own_project(live_server: LiveServer) -> None:
    openstack_cli(live_server, "project", "create", "cli-p2")
    openstack_cli(live_server, "user", "create", "--password", "pw2", "cli-u2")
    openstack_cli(live_server, "role", "add", "--project", "cli-p2", "--user", "cli-u2", "member")

    as_member = {"user": "cli-u2", "password": "pw2", "project": "cli-p2"}
    token = openstack_cli(live_server, "token", "issue", "-f", "json", **as_member)
    # listing all projects is forbidden; the CLI falls back to the user's own projects
    projects = openstack_cli(live_server, "project", "list", "-f", "json", **as_member)
    assert [row["ID"] for row in projects] == [token["project_id"]]
    user = openstack_cli(live_server, "user", "show", token["user_id"], "-f", "json", **as_member)
    assert user["name"] == "cli-u2"
    openstack_cli(
        live_server,
        "user", "password", "set", "--original-password", "pw2", "--password", "pw3",
        **as_member,
    )  # fmt: skip
    openstack_cli(live_server, "token", "issue", **{**as_member, "password": "pw3"})


def test_openstacksdk_lists_projects_and_finds_the_network_endpoint(
    live_server: LiveServer,
) -> None:
    connection = openstack.connect(
        auth_url=f"{live_server.url}/v3",
        username="admin",
        password=ADMIN_PASSWORD,
        project_name="admin",
        user_domain_name="Default",
        project_domain_name="Default",
        region_name="RegionOne",
        load_yaml_config=False,
        load_envvars=False,
    )
    try:
        assert "admin" in [project.name for project in connection.identity.projects()]
        network_url = connection.session.get_endpoint(service_type="network", interface="public")
        assert network_url == live_server.url
        assert {service.type for service in connection.identity.services()} == {
            "network",
            "identity",
        }
        assert connection.identity.find_role("member", ignore_missing=False).name == "member"
    finally:
        connection.close()
