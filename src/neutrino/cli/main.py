"""`neutrino`: run the server, migrate its database, print a clouds.yaml entry."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import typer
import yaml
from rich.console import Console

from neutrino.agent import BFD_INTERVAL
from neutrino.config import DEFAULT_STATE_DIR, Settings
from neutrino.lab.cli import lab_app

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Neutrino: an NFV-grade network control plane (Neutron API v2.0).")
db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")
app.add_typer(db_app, name="db")
app.add_typer(lab_app, name="lab")
console = Console(stderr=True)

GRACEFUL_SHUTDOWN = 1  # seconds requests in flight get after SIGTERM (streams are then cut)
STATE_DIR = typer.Option(DEFAULT_STATE_DIR, "--state-dir", help="Directory for the SQLite "
                         "database, the generated admin password and run files.")
DATABASE = typer.Option(None, "--database", help="SQLAlchemy URL (default: SQLite under the "
                        "state dir; postgresql+psycopg://... works as well).")


@app.command()
def server(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(9696, help="TCP port to listen on."),
    state_dir: Path = STATE_DIR,
    database: str | None = DATABASE,
    auth: str = typer.Option("keystone", help="keystone (built-in Keystone v3 subset) or noauth."),
    keystone_url: str | None = typer.Option(None, help="Validate tokens of this external "
                                            "Keystone instead of the built-in one."),
    admin_password: str | None = typer.Option(None, envvar="NEUTRINO_ADMIN_PASSWORD",
                                              help="Password of the bootstrap user admin."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
    unix_socket: Path | None = typer.Option(
        None, help="Also serve on this unix socket (agents in other network namespaces reach "
        "the server through it)."),
    compute_url: str | None = typer.Option(
        None, envvar="NEUTRINO_COMPUTE_URL", help="Nova's endpoint (e.g. http://127.0.0.1:8774): "
        "port status changes are posted to its /v2.1/os-server-external-events as "
        "network-vif-plugged / network-vif-unplugged."),
    router_distributed: bool = typer.Option(
        False, help="New routers are distributed unless their creator (an admin) says otherwise "
        "(Neutron's router_distributed)."),
    l3_ha: bool = typer.Option(False, help="New routers are HA unless their creator (an admin) "
                               "says otherwise (Neutron's l3_ha)."),
) -> None:
    """Run the API server (Neutron v2.0 + Keystone v3 subset)."""
    import uvicorn

    from neutrino.api.routes import stopping_event
    from neutrino.server import build_server

    if auth not in ("keystone", "noauth"):
        raise typer.BadParameter("--auth must be keystone or noauth")
    settings = Settings(host=host, port=port, state_dir=state_dir.expanduser(),
                        database=database, auth=auth, keystone_url=keystone_url,
                        admin_password=admin_password, compute_url=compute_url,
                        router_distributed=router_distributed, l3_ha=l3_ha)
    logging.basicConfig(level=log_level.upper())
    built = build_server(settings)
    if built.generated_password:
        console.print(f"[bold]Bootstrapped user admin[/] (project admin, domain Default) with "
                      f"password: [bold]{built.generated_password}[/]\n(saved in "
                      f"{settings.state_dir}/admin-password; `neutrino clouds` prints it)")
    console.print(f"Neutrino listening on http://{host}:{port} (database {_safe(settings)})")
    # on SIGTERM, requests in flight get GRACEFUL_SHUTDOWN seconds; the never-ending policy and
    # fault streams are then cut (their clients resume elsewhere or when it is back)
    config = uvicorn.Config(built.app, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN)
    stopping = stopping_event(built.app)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            stopping.set()  # the policy and fault streams end now, not at the timeout
            super().handle_exit(sig, frame)

    Server(config).run(sockets=listening_sockets(host, port, unix_socket))


def listening_sockets(host: str, port: int, unix_socket: Path | None) -> list[socket.socket]:
    """The TCP socket on host:port and, if asked, a unix socket (mode 0600)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    tcp = socket.socket(family, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((host, port))
    sockets = [tcp]
    if unix_socket is not None:
        unix_socket.parent.mkdir(parents=True, exist_ok=True)
        unix_socket.unlink(missing_ok=True)
        uds = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        uds.bind(str(unix_socket))
        os.chmod(unix_socket, 0o600)
        sockets.append(uds)
    return sockets


def _safe(settings: Settings) -> str:
    url = settings.database_url
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@app.command()
def agent(
    host: str = typer.Option(..., "--host", help="This chassis's name (binding:host_id)."),
    server: str = typer.Option("http://127.0.0.1:9696", help="Neutrino server URL."),
    ovsdb: str = typer.Option(..., help="OVSDB of this host, e.g. unix:/run/openvswitch/db.sock"),
    ofctl_target: str | None = typer.Option(
        None, help="OpenFlow target of br-int (default: br-int.mgmt beside the OVSDB socket)."),
    tunnel_ip: str = typer.Option("", help="Tunnel endpoint address (default: the host's "
                                  "external_ids:neutrino-encap-ip)."),
    bridge_mappings: list[str] = typer.Option([], "--bridge-mapping",
                                              help="physnet:bridge (repeatable)."),
    gateway: bool = typer.Option(False, "--gateway", help="This host is a gateway host."),
    gateway_priority: int = typer.Option(0, help="Priority among gateway hosts."),
    availability_zone: str = typer.Option("nova", help="Availability zone of this host."),
    heartbeat_interval: float = typer.Option(1.0, help="Seconds between heartbeats."),
    bfd_interval: int = typer.Option(BFD_INTERVAL, help="Milliseconds between BFD packets on "
                                     "every tunnel (detection after 3 missed: a gateway's "
                                     "failover takes about 3 intervals); 0 turns BFD off."),
    admin_password: str | None = typer.Option(None, envvar="NEUTRINO_ADMIN_PASSWORD",
                                              help="Password of user admin (omit for noauth)."),
    token_file: Path | None = typer.Option(None, help="Keep the admin token in this file (0600) "
                                           "and start with it: restarting agents then cost the "
                                           "server no password checks."),
    admin_password_file: Path | None = typer.Option(None, help="Read the admin password from "
                                                    "this file."),
    native_dhcp: bool = typer.Option(True, "--native-dhcp/--no-native-dhcp",
                                     help="Answer DHCPv4 for this host's ports (an internal port "
                                     "nt-dhcp on br-int)."),
    log_level: str = typer.Option("info", help="Log level."),
) -> None:
    """Run the per-host agent: render this chassis's policy into br-int flows."""
    import asyncio

    from neutrino.agent.service import Agent, AgentConfig, parse_bridge_mappings

    logging.basicConfig(level=log_level.upper(),
                        format=f"%(asctime)s {host} %(levelname)s %(name)s: %(message)s")
    if not ovsdb.startswith("unix:"):
        raise typer.BadParameter("--ovsdb must be unix:<socket path>")
    target = ofctl_target or f"unix:{Path(ovsdb[5:]).parent / 'br-int.mgmt'}"
    if admin_password_file is not None:
        admin_password = admin_password_file.read_text().strip()

    async def main() -> None:
        config = AgentConfig(
            host=host, server=server, ovsdb=ovsdb, ofctl_target=target, tunnel_ip=tunnel_ip,
            bridge_mappings=parse_bridge_mappings(bridge_mappings), is_gateway=gateway,
            gateway_priority=gateway_priority, availability_zone=availability_zone,
            heartbeat_interval=heartbeat_interval, password=admin_password, token_file=token_file,
            native_dhcp=native_dhcp, bfd_interval=bfd_interval,
        )
        await Agent(config).run()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@app.command()
def trace(
    flow: str = typer.Argument(..., help="The packet, in ofproto/trace syntax, e.g. "
                               "'icmp,dl_src=...,dl_dst=...,nw_src=...,nw_dst=...'"),
    host: str = typer.Option(..., "--host", help="The lab host to trace on."),
    port: str | None = typer.Option(None, "--port", help="Port id (or instance name) the "
                                    "packet enters from (sets in_port)."),
    state_dir: Path | None = typer.Option(None, "--state-dir", help="Lab state directory."),
    raw: bool = typer.Option(False, "--raw", help="Also print the raw trace."),
) -> None:
    """Trace a packet through a host's br-int pipeline: stages and verdict."""
    from neutrino.lab.cli import fail_cleanly, trace_on_host
    from neutrino.pipeline.trace import annotate_trace

    output = fail_cleanly(lambda: trace_on_host(state_dir, host, port, flow))
    if raw:
        print(output)
    print(annotate_trace(output).render())


@db_app.command("upgrade")
def db_upgrade(state_dir: Path = STATE_DIR, database: str | None = DATABASE) -> None:
    """Apply all database migrations."""
    from neutrino.db.migrate import upgrade

    settings = Settings(state_dir=state_dir.expanduser(), database=database)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    console.print(f"database at head: {_safe(settings)}")


@app.command()
def clouds(
    state_dir: Path = STATE_DIR,
    host: str = typer.Option("127.0.0.1", help="Server address."),
    port: int = typer.Option(9696, help="Server port."),
    cloud: str = typer.Option("neutrino", help="Name of the cloud entry."),
    admin_password: str | None = typer.Option(None, envvar="NEUTRINO_ADMIN_PASSWORD"),
) -> None:
    """Print a clouds.yaml entry for the admin user of a server."""
    from neutrino.credentials import clouds_yaml
    from neutrino.server import admin_password as find_password

    settings = Settings(host=host, port=port, state_dir=state_dir.expanduser(),
                        admin_password=admin_password)
    document = clouds_yaml(settings.root_url, cloud, find_password(settings), settings.region)
    print(yaml.safe_dump(document, sort_keys=False),
          end="")



# --- neutrino faults ... ----------------------------------------------------------------------
# Fault management through the server's API (neutrino.api.faults), as the cloud of clouds.yaml
# named by --os-cloud / $OS_CLOUD (default neutrino-lab: `neutrino lab up` writes it), or a
# noauth server given with --server.

faults_app = typer.Typer(no_args_is_help=True, help="Faults and fault subscriptions (webhooks "
                         "receiving CloudEvents).")
app.add_typer(faults_app, name="faults")
FAULTS_CLOUD = typer.Option("neutrino-lab", "--os-cloud", envvar="OS_CLOUD",
                            help="The cloud of clouds.yaml to use ($OS_CLIENT_CONFIG_FILE, "
                            "./clouds.yaml, ~/.config/openstack/, /etc/openstack/, then the lab's).")
FAULTS_SERVER = typer.Option(None, "--server", envvar="NEUTRINO_URL",
                             help="Use this server in noauth mode instead of a cloud (no token).")
FAULTS_JSON = typer.Option(False, "--json", help="Print JSON.")


class FaultsCliError(Exception):
    """A clear one-line error of a `neutrino faults` command."""


def _clouds_files() -> list[Path]:
    from neutrino.lab.state import default_state_dir

    given = os.environ.get("OS_CLIENT_CONFIG_FILE")
    first = [Path(given).expanduser()] if given else []
    return [*first, Path("clouds.yaml"), Path("~/.config/openstack/clouds.yaml").expanduser(),
            Path("/etc/openstack/clouds.yaml"), default_state_dir() / "clouds.yaml"]


def _cloud_entry(cloud: str) -> dict[str, Any]:
    for path in _clouds_files():
        if not path.is_file():
            continue
        document = yaml.safe_load(path.read_text()) or {}
        entry = (document.get("clouds") or {}).get(cloud)
        if isinstance(entry, dict):
            return entry
    raise FaultsCliError(f"no cloud {cloud!r} in any clouds.yaml (set OS_CLIENT_CONFIG_FILE and "
                         "OS_CLOUD, or give --server for a noauth server)")


def _network_endpoint(catalog: list[dict[str, Any]], region: str | None) -> str | None:
    for service in catalog:
        if service.get("type") != "network":
            continue
        for endpoint in service.get("endpoints", []):
            if endpoint.get("interface") == "public" and region in (None, endpoint.get("region")):
                return str(endpoint["url"])
    return None


@contextlib.contextmanager
def _faults_client(cloud: str, server: str | None) -> Iterator[httpx.Client]:
    """An HTTP client of the server's API: noauth at `server`, or with a token for `cloud`."""
    if server:
        with httpx.Client(base_url=server.rstrip("/"), timeout=30.0) as client:
            yield client
        return
    entry = _cloud_entry(cloud)
    auth = entry.get("auth") or {}
    auth_url = str(auth.get("auth_url") or "").rstrip("/")
    if not auth_url or not auth.get("username") or not auth.get("password"):
        raise FaultsCliError(f"cloud {cloud!r} needs auth.auth_url, username and password")
    if not auth_url.endswith("/v3"):
        auth_url += "/v3"
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": auth["username"], "password": auth["password"],
            "domain": {"name": auth.get("user_domain_name", "Default")}}}},
        "scope": {"project": {"name": auth.get("project_name", "admin"),
                              "domain": {"name": auth.get("project_domain_name", "Default")}}},
    }}
    with httpx.Client(timeout=30.0) as client:
        response = client.post(f"{auth_url}/auth/tokens", json=body)
        if response.status_code != 201:
            raise FaultsCliError(f"authentication as {auth['username']} at {auth_url} failed: "
                                 f"{response.status_code} {response.text[:200]}")
        catalog = response.json().get("token", {}).get("catalog", [])
        root = _network_endpoint(catalog, entry.get("region_name")) or auth_url.removesuffix("/v3")
        client.base_url = httpx.URL(root.rstrip("/"))
        client.headers["X-Auth-Token"] = response.headers["X-Subject-Token"]
        yield client


def _faults_call(cloud: str, server: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """One API call; errors become FaultsCliError (Neutron's message when there is one)."""
    with _faults_client(cloud, server) as client:
        response = client.request(method, path, **kwargs)
    if response.status_code >= 400:
        try:
            message = response.json()["NeutronError"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise FaultsCliError(f"{method} {path}: {response.status_code} {message}")
    return response.json() if response.content else None


def _faults_run(work: Callable[[], None]) -> None:
    try:
        work()
    except FaultsCliError as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(1) from None
    except httpx.HTTPError as error:
        console.print(f"[red]error:[/] the server did not answer: {error}")
        raise typer.Exit(1) from None


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _subscriptions_table(subscriptions: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table()
    table.add_column("id", no_wrap=True, min_width=36)  # whole: `unsubscribe` takes it
    for column in ("project", "url", "event types", "resources", "description"):
        table.add_column(column)
    for sub in subscriptions:
        table.add_row(sub["id"], "(all)" if sub.get("all_projects") else sub["project_id"],
                      sub["url"], ", ".join(sub["event_types"]) or "(all)",
                      ", ".join(sub["resource_ids"]) or "(all)", sub["description"])
    Console().print(table)


@faults_app.command("subscribe")
def faults_subscribe(
    url: str = typer.Option(..., "--url", help="Where events are POSTed (http or https)."),
    types: list[str] = typer.Option([], "--type", help="A fault type (host.down, port.down, "
                                    "link.down, vswitchd.down) or full event type; repeatable; "
                                    "none: all."),
    resources: list[str] = typer.Option([], "--resource", help="Only events about this "
                                        "resource (faulty or affected); repeatable; none: all."),
    description: str = typer.Option("", "--description", help="A description."),
    cloud: str = FAULTS_CLOUD,
    server: str | None = FAULTS_SERVER,
    as_json: bool = FAULTS_JSON,
) -> None:
    """Subscribe a webhook to fault events (your project's; an admin's: every project's)."""

    def work() -> None:
        body = {"subscription": {"url": url, "event_types": types, "resource_ids": resources,
                                 "description": description}}
        sub = _faults_call(cloud, server, "POST", "/v2.0/fault-subscriptions",
                           json=body)["subscription"]
        if as_json:
            _print_json(sub)
        else:
            _subscriptions_table([sub])

    _faults_run(work)


@faults_app.command("list")
def faults_list(
    state: str | None = typer.Option(None, "--state", help="active or cleared."),
    fault_type: str | None = typer.Option(None, "--type", help="Only this fault type."),
    cloud: str = FAULTS_CLOUD,
    server: str | None = FAULTS_SERVER,
    as_json: bool = FAULTS_JSON,
) -> None:
    """The faults you may see, newest first."""

    def work() -> None:
        if state is not None and state not in ("active", "cleared"):
            raise FaultsCliError("--state must be active or cleared")
        params = {k: v for k, v in (("state", state), ("type", fault_type)) if v is not None}
        found = _faults_call(cloud, server, "GET", "/v2.0/faults", params=params)["faults"]
        if as_json:
            _print_json(found)
            return
        from rich.table import Table

        table = Table()
        table.add_column("id", no_wrap=True, min_width=36)
        for column in ("type", "severity", "state", "resource", "source", "detected", "cleared",
                       "affected"):
            table.add_column(column)
        for fault in found:
            affected = ", ".join(f"{len(ids)} {kind}" for kind, ids in fault["affected"].items()
                                 if ids)
            table.add_row(fault["id"], fault["type"], fault["severity"], fault["state"],
                          f"{fault['resource_type']} {fault['resource_id']}", fault["source"],
                          fault["detected_at"], fault["cleared_at"] or "", affected)
        Console().print(table)

    _faults_run(work)


@faults_app.command("subscriptions")
def faults_subscriptions(
    cloud: str = FAULTS_CLOUD,
    server: str | None = FAULTS_SERVER,
    as_json: bool = FAULTS_JSON,
) -> None:
    """Your project's fault subscriptions (an admin's: all)."""

    def work() -> None:
        subs = _faults_call(cloud, server, "GET", "/v2.0/fault-subscriptions")["subscriptions"]
        if as_json:
            _print_json(subs)
        else:
            _subscriptions_table(subs)

    _faults_run(work)


@faults_app.command("unsubscribe")
def faults_unsubscribe(
    subscription_id: str = typer.Argument(..., help="The subscription's id."),
    cloud: str = FAULTS_CLOUD,
    server: str | None = FAULTS_SERVER,
) -> None:
    """Delete a fault subscription (its undelivered events go with it)."""

    def work() -> None:
        _faults_call(cloud, server, "DELETE", f"/v2.0/fault-subscriptions/{subscription_id}")
        console.print(f"subscription {subscription_id} deleted")

    _faults_run(work)


if __name__ == "__main__":
    app()
