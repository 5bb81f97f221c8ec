"""`neutrino lab ...`: a devstack-like environment on one machine, one command at a time.

`up` starts a server (SQLite, its own state dir, listening on loopback and on a unix socket
that agents in host namespaces use), writes clouds.yaml (cloud `neutrino-lab`) and starts
host1..hostN, each a network namespace with its own Open vSwitch and an agent. The other
commands find everything again through the state dir. Errors are printed as one clear line
(not a traceback) with a non-zero exit status.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import typer
import yaml
from rich.console import Console

from neutrino.credentials import clouds_yaml, password_auth
from neutrino.lab import process
from neutrino.lab.errors import LabError, require_lab_prerequisites
from neutrino.lab.lab import Lab
from neutrino.lab.state import LabState, default_state_dir

CLOUD = "neutrino-lab"
SERVER_FILE = "server.json"
lab_app = typer.Typer(no_args_is_help=True, help="A lab of hosts (namespaces with their own "
                      "Open vSwitch and agent) on this machine.")
console = Console(stderr=True, highlight=False, emoji=False)
EXTERNAL = "external"  # `neutrino lab exec external -- CMD`
PUBLIC_NETWORK = "public"
EXTERNAL_CIDR = "172.24.4.0/24"  # devstack's public subnet
STATE_DIR = typer.Option(None, "--state-dir", help="Lab state directory "
                         "(default ~/.neutrino/lab or $NEUTRINO_LAB_STATE_DIR).")
T = TypeVar("T")


def _state_dir(given: Path | None) -> Path:
    return (given or default_state_dir()).expanduser().resolve()


def fail_cleanly(work: Callable[[], T]) -> T:
    try:
        return work()
    except LabError as error:
        console.print(f"[red]error:[/] {error}", markup=True)
        raise typer.Exit(1) from None
    except httpx.HTTPError as error:
        console.print(f"[red]error:[/] the lab's server did not answer: {error}", markup=True)
        raise typer.Exit(1) from None


# --- the lab's server -----------------------------------------------------------------------

def read_server(state_dir: Path) -> dict[str, Any]:
    path = state_dir / SERVER_FILE
    if not path.exists():
        raise LabError(f"no lab server recorded in {state_dir}; run `neutrino lab up` first")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def start_lab_server(state_dir: Path, server_url: str | None, password: str | None) -> dict[str, Any]:
    if server_url:
        if not password:
            raise LabError("--server needs --admin-password (or NEUTRINO_ADMIN_PASSWORD)")
        info: dict[str, Any] = {"url": server_url, "agent_url": server_url, "pid": None}
    else:
        from neutrino.launcher import start_server

        password = password or secrets.token_urlsafe(12)
        socket_path = state_dir / "server.sock"
        try:
            server = start_server(state_dir / "server", admin_password=password,
                                  unix_socket=socket_path)
        except RuntimeError as error:
            raise LabError(f"the server did not start: {error}") from None
        info = {"url": server.url, "agent_url": f"unix:{socket_path}", "pid": server.pid}
    assert password is not None
    password_file = state_dir / "admin-password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    info["password_file"] = str(password_file)
    (state_dir / SERVER_FILE).write_text(json.dumps(info, indent=2))
    write_clouds_yaml(state_dir, info["url"], password)
    return info


def write_clouds_yaml(state_dir: Path, url: str, password: str) -> None:
    path = state_dir / "clouds.yaml"
    path.write_text(yaml.safe_dump(clouds_yaml(url, CLOUD, password), sort_keys=False))
    path.chmod(0o600)


def stop_lab_server(state_dir: Path) -> None:
    path = state_dir / SERVER_FILE
    if not path.exists():
        return
    pid = json.loads(path.read_text()).get("pid")
    # ours only if it is still the server of this lab (its command line names its state dir)
    process.stop_pid(pid, process.cmdline_contains(str(state_dir / "server")))
    if pid is not None:  # a server the lab started: its database goes with the lab
        shutil.rmtree(state_dir / "server", ignore_errors=True)
    path.unlink(missing_ok=True)
    for name in ("server.sock", "admin-password", "clouds.yaml"):
        (state_dir / name).unlink(missing_ok=True)


def restart_lab_server(state_dir: Path, down: float = 0.0) -> dict[str, Any]:
    """Stop the lab's server (SIGTERM, by pid) and start it again on the same port, unix
    socket, database and password after `down` seconds: what agents see of a server restart
    (they all reconnect at once)."""
    from neutrino.launcher import start_server

    info = read_server(state_dir)
    pid = info.get("pid")
    if pid is None:
        raise LabError("the lab uses a server it did not start (--server): restart that one "
                       "yourself")
    process.stop_pid(pid, process.cmdline_contains(str(state_dir / "server")))
    time.sleep(down)
    password = Path(info["password_file"]).read_text().strip()
    port = int(info["url"].rsplit(":", 1)[1])
    try:
        server = start_server(state_dir / "server", port=port, admin_password=password,
                              unix_socket=state_dir / "server.sock")
    except RuntimeError as error:
        raise LabError(f"the server did not start again: {error}") from None
    info["pid"] = server.pid
    (state_dir / SERVER_FILE).write_text(json.dumps(info, indent=2))
    return info


@contextmanager
def api_client(state_dir: Path) -> Iterator[httpx.Client]:
    """An admin HTTP client of the lab's server (token from the Keystone subset)."""
    info = read_server(state_dir)
    password = Path(info["password_file"]).read_text().strip()
    with httpx.Client(base_url=info["url"], timeout=30.0) as client:
        response = client.post("/v3/auth/tokens", json=password_auth(password))
        response.raise_for_status()
        client.headers["X-Auth-Token"] = response.headers["X-Subject-Token"]
        yield client


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            message = response.json()["NeutronError"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        raise LabError(f"{response.request.method} {response.request.url.path}: "
                       f"{response.status_code} {message}")
    data: dict[str, Any] = response.json() if response.content else {}
    return data


# --- commands -------------------------------------------------------------------------------

@lab_app.command()
def up(
    hosts: int = typer.Option(3, "--hosts", help="Number of hosts (host1..hostN)."),
    state_dir: Path | None = STATE_DIR,
    server: str | None = typer.Option(None, "--server", help="Use this running server instead "
                                      "of starting one."),
    admin_password: str | None = typer.Option(None, envvar="NEUTRINO_ADMIN_PASSWORD"),
    bridge_mapping: list[str] = typer.Option(
        ["physnet1:br-physnet1"], "--bridge-mapping",
        help="physnet:bridge (repeatable, or comma-separated): every host gets the provider "
             "bridge, on a segment of that physical network shared by all hosts; "
             "--bridge-mapping '' for none."),
    gateways: int = typer.Option(0, "--gateways", help="Make host1..hostK gateway hosts "
                                 "(agents with --gateway; host1 has the highest priority)."),
    external_physnet: str = typer.Option(
        "physnet1", "--external-physnet",
        help="The physical network of the `external` namespace and of the external network "
             "`public` (router:external, flat); '' for neither."),
    bfd_interval: int | None = typer.Option(
        None, "--bfd-interval", help="Milliseconds between BFD packets on the agents' tunnels "
        "(default: the agent's own, 30); 0 turns BFD off (e.g. for many hosts on few cores)."),
    agent_nice: int = typer.Option(
        0, "--agent-nice", help="Run the agents at this niceness (e.g. 10: many hosts on few "
        "cores then behave more like hosts with CPUs of their own, the server first)."),
    external_cidr: str = typer.Option(EXTERNAL_CIDR, "--external-cidr",
                                      help="The subnet of `public`; the external namespace "
                                           "holds its first address (the subnet's gateway)."),
) -> None:
    """Start the server, write clouds.yaml and start host1..hostN with their agents; with an
    external physnet, also the `external` namespace and the external network `public`."""
    directory = _state_dir(state_dir)

    def work() -> None:
        mappings = parse_bridge_mappings(bridge_mapping)
        if not 0 <= gateways <= hosts:
            raise LabError(f"--gateways must be between 0 and --hosts ({hosts})")
        if external_physnet and external_physnet not in mappings:
            raise LabError(f"--external-physnet {external_physnet} has no --bridge-mapping")
        try:
            cidr = ipaddress.IPv4Network(external_cidr)
        except ValueError as error:
            raise LabError(f"invalid --external-cidr {external_cidr!r}: {error}") from None
        if cidr.num_addresses < 16:
            raise LabError(f"--external-cidr {external_cidr} is too small (at least a /28)")
        upstream = f"{cidr.network_address + 1}/{cidr.prefixlen}"
        require_lab_prerequisites()
        if LabState.exists(directory):
            raise LabError(f"a lab is already up in {directory}; run `neutrino lab down "
                           f"--state-dir {directory}` first")
        directory.mkdir(parents=True, exist_ok=True)
        info = start_lab_server(directory, server, admin_password)
        agent = [sys.executable, "-m", "neutrino.cli.main", "agent", "--host", "{host}",
                 "--server", info["agent_url"], "--ovsdb", "unix:{run_dir}/db.sock",
                 "--admin-password-file", info["password_file"], "--token-file", "{run_dir}/token"]
        if bfd_interval is not None:
            agent += ["--bfd-interval", str(bfd_interval)]
        if agent_nice:
            agent = ["nice", "-n", str(agent_nice), *agent]
        gateway_args = {f"host{i}": ["--gateway", "--gateway-priority", str(gateways - i + 1)]
                        for i in range(1, gateways + 1)}
        try:
            lab = Lab.up(directory, hosts=hosts, agent_command=agent, bridge_mappings=mappings,
                         gateway_agent_args=gateway_args,
                         external=(external_physnet, upstream) if external_physnet else None)
            if external_physnet:
                create_public_network(directory, external_physnet, cidr)
        except BaseException:
            with contextlib.suppress(LabError, OSError):
                Lab.down(directory)
            stop_lab_server(directory)
            raise
        gateway_note = f"; gateways {', '.join(gateway_args)}" if gateway_args else ""
        external_note = (f"; external {upstream.split('/')[0]} on network {PUBLIC_NETWORK}"
                         if external_physnet else "")
        console.print(f"lab up in {directory}: {', '.join(h.name for h in lab.hosts)}; "
                      f"server {info['url']}{gateway_note}{external_note}")
        console.print(f"  export OS_CLIENT_CONFIG_FILE={directory}/clouds.yaml OS_CLOUD={CLOUD}")

    fail_cleanly(work)


def create_public_network(directory: Path, physnet: str, cidr: ipaddress.IPv4Network) -> None:
    """The external network `public`: flat on `physnet`, router:external, shared by no one,
    with subnet `public-subnet` (no DHCP; gateway = the external namespace's address; routers'
    gateways and floating IPs get addresses from the rest)."""
    with api_client(directory) as client:
        network = _check(client.post("/v2.0/networks", json={"network": {
            "name": PUBLIC_NETWORK, "router:external": True, "provider:network_type": "flat",
            "provider:physical_network": physnet}}))["network"]
        hosts = list(cidr.hosts())
        _check(client.post("/v2.0/subnets", json={"subnet": {
            "name": f"{PUBLIC_NETWORK}-subnet", "network_id": network["id"], "ip_version": 4,
            "cidr": str(cidr), "gateway_ip": str(hosts[0]), "enable_dhcp": False,
            "allocation_pools": [{"start": str(hosts[9]), "end": str(hosts[-1])}]}}))


def parse_bridge_mappings(items: list[str]) -> dict[str, str]:
    """`["physnet1:br-physnet1", "a:br-a,b:br-b"]` -> {physnet: bridge}; empty items are skipped."""
    mappings: dict[str, str] = {}
    for item in (i.strip() for text in items for i in text.split(",")):
        if not item:
            continue
        physnet, sep, bridge = item.partition(":")
        if not sep or not physnet.strip() or not bridge.strip():
            raise LabError(f"bad --bridge-mapping {item!r}: expected physnet:bridge")
        if physnet.strip() in mappings:
            raise LabError(f"physical network {physnet.strip()} is mapped twice")
        mappings[physnet.strip()] = bridge.strip()
    return mappings


@lab_app.command()
def down(state_dir: Path | None = STATE_DIR) -> None:
    """Remove every namespace, link and process the lab made, and stop its server (the
    database of a server it started goes too: the next `lab up` starts empty)."""
    directory = _state_dir(state_dir)

    def work() -> None:
        report = Lab.down(directory)
        stop_lab_server(directory)
        console.print(f"lab down: {report}")

    fail_cleanly(work)


@lab_app.command("restart-server")
def restart_server(
    state_dir: Path | None = STATE_DIR,
    down: float = typer.Option(0.0, "--down", help="Seconds the server stays stopped."),
) -> None:
    """Stop the lab's server and start it again (same port, socket and database): every agent
    reconnects at once."""
    directory = _state_dir(state_dir)

    def work() -> None:
        started = time.monotonic()
        info = restart_lab_server(directory, down)
        console.print(f"server {info['url']} restarted (pid {info['pid']}) in "
                      f"{time.monotonic() - started:.1f} s")

    fail_cleanly(work)


@lab_app.command()
def status(
    state_dir: Path | None = STATE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Hosts, their daemons and links, instances, and the agents the server sees."""
    directory = _state_dir(state_dir)

    def work() -> None:
        lab = Lab.load(directory)
        picture = lab.status()
        info = read_server(directory)
        picture["server"] = {"url": info["url"], "pid": info.get("pid")}
        try:
            with api_client(directory) as client:
                picture["agents"] = _check(client.get("/v2.0/agents")).get("agents", [])
        except (httpx.HTTPError, LabError) as error:
            picture["agents_error"] = str(error)
        if as_json:
            print(json.dumps(picture, indent=2, default=str))
        else:
            console.print_json(json.dumps(picture, default=str))

    fail_cleanly(work)


@lab_app.command()
def fail(
    host: str,
    how: str = typer.Option(..., "--how", help="agent | vswitchd | link"),
    state_dir: Path | None = STATE_DIR,
) -> None:
    """Inject a fault into a host: kill its agent or vswitchd, or cut its underlay link."""
    directory = _state_dir(state_dir)

    def work() -> None:
        if how not in ("agent", "vswitchd", "link"):
            raise LabError("--how must be agent, vswitchd or link")
        with Lab.session(directory) as lab:
            lab.fail(host, how)  # type: ignore[arg-type]
        console.print(f"{host}: {how} failed")

    fail_cleanly(work)


@lab_app.command()
def heal(host: str, state_dir: Path | None = STATE_DIR) -> None:
    """Repair whatever is broken on a host (restart daemons, bring its link up)."""
    directory = _state_dir(state_dir)

    def work() -> None:
        with Lab.session(directory) as lab:
            repaired = lab.heal(host)
        console.print(f"{host}: repaired {', '.join(repaired) or 'nothing'}")

    fail_cleanly(work)


@lab_app.command()
def boot(
    name: str,
    host: str = typer.Option(..., "--host", help="The host to plug the instance into."),
    port: str | None = typer.Option(None, "--port", help="An existing port id."),
    network: str | None = typer.Option(None, "--network", help="Network name or id: a new "
                                       "port is created on it."),
    state_dir: Path | None = STATE_DIR,
    timeout: float = typer.Option(30.0, help="Seconds to wait for the port to become ACTIVE."),
    dhcp_timeout: float = typer.Option(10.0, help="Seconds to wait for a DHCP lease."),
) -> None:
    """Bind a port to HOST, plug an instance os-vif style, wait for ACTIVE, then configure it
    by DHCP (IPv4 on a DHCP subnet), by SLAAC (IPv6 on a subnet with ipv6_ra_mode slaac or
    dhcpv6-stateless: its router advertises it) and statically (anything else)."""
    directory = _state_dir(state_dir)

    def work() -> None:
        if (port is None) == (network is None):
            raise LabError("give exactly one of --port and --network")
        device_id = str(uuid.uuid4())
        with api_client(directory) as client:
            binding = {"binding:host_id": host, "device_id": device_id,
                       "device_owner": "compute:nova"}
            if network is not None:
                net = _find_network(client, network)
                created = _check(client.post("/v2.0/ports", json={"port": {
                    "network_id": net["id"], "name": name, **binding}}))["port"]
            else:
                created = _check(client.put(f"/v2.0/ports/{port}", json={"port": binding}))["port"]
                net = _check(client.get(f"/v2.0/networks/{created['network_id']}"))["network"]
            with Lab.session(directory) as lab:
                lab.plug(name, host, port_id=created["id"],
                         mac=created["mac_address"], mtu=net["mtu"],
                         device_id=device_id)
            _wait_active(client, created["id"], timeout)
            subnets = {s["id"]: s for s in
                       _check(client.get("/v2.0/subnets", params={"network_id": net["id"]}))
                       ["subnets"]}
        # IPv4 on a DHCP subnet: by DHCP, as a VM would; IPv6 on a subnet its router advertises
        # for SLAAC: by SLAAC; anything else (DHCPv6, subnets without DHCP): static, from the
        # port's fixed IPs
        by_dhcp: list[str] = []
        by_slaac: list[str] = []
        static: list[str] = []
        gateway: str | None = None
        for fixed in created["fixed_ips"]:
            subnet = subnets[fixed["subnet_id"]]
            address = f"{fixed['ip_address']}/{subnet['cidr'].split('/')[1]}"
            if subnet["ip_version"] == 4 and subnet["enable_dhcp"] and not by_dhcp:
                by_dhcp.append(address)
            elif subnet["ip_version"] == 6 and subnet.get("ipv6_ra_mode") in SLAAC_MODES \
                    and subnet.get("ipv6_address_mode") in SLAAC_MODES:
                by_slaac.append(address)
            else:
                static.append(address)
                if subnet["ip_version"] == 4 and subnet.get("gateway_ip") and gateway is None:
                    gateway = subnet["gateway_ip"]
        with Lab.session(directory) as lab:
            instance = lab.instance(name)
            if by_slaac:
                instance.solicit_router()  # the advertisements start while DHCP runs
            if by_dhcp:
                leased = [str(a) for a in instance.dhcp(timeout=dhcp_timeout)]
                if leased != by_dhcp:
                    raise LabError(f"{name}: DHCP gave {', '.join(leased)} but the port has "
                                   f"{by_dhcp[0]}")
            if by_slaac:
                instance.slaac(by_slaac, timeout=dhcp_timeout)
            if static:
                instance.configure(static, gateway=None if by_dhcp else gateway)
        how = ([f"{a} (DHCP)" for a in by_dhcp] + [f"{a} (SLAAC)" for a in by_slaac]
               + [f"{a} (static)" for a in static])
        console.print(f"{name} on {host}: port {created['id']} ACTIVE, "
                      f"{', '.join(how) or 'no addresses'}")

    fail_cleanly(work)


SLAAC_MODES = ("slaac", "dhcpv6-stateless")


def _find_network(client: httpx.Client, name_or_id: str) -> dict[str, Any]:
    response = client.get(f"/v2.0/networks/{name_or_id}")
    if response.status_code == 200:
        network: dict[str, Any] = response.json()["network"]
        return network
    found = _check(client.get("/v2.0/networks", params={"name": name_or_id}))["networks"]
    if len(found) != 1:
        raise LabError(f"network {name_or_id!r}: {len(found)} networks match")
    match: dict[str, Any] = found[0]
    return match


def _wait_active(client: httpx.Client, port_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = _check(client.get(f"/v2.0/ports/{port_id}"))["port"]["status"]
        if state == "ACTIVE":
            return
        if time.monotonic() > deadline:
            raise LabError(f"port {port_id} is still {state} after {timeout:.0f}s "
                           "(is the host's agent running? see `neutrino lab status`)")
        time.sleep(0.1)


@lab_app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec(  # the command is called exec
    ctx: typer.Context, name: str, state_dir: Path | None = STATE_DIR,
) -> None:
    """Run a command inside an instance (or `external`): neutrino lab exec NAME -- CMD..."""
    directory = _state_dir(state_dir)
    argv = list(ctx.args)
    if not argv:
        console.print("[red]error:[/] nothing to run: neutrino lab exec NAME -- CMD", markup=True)
        raise typer.Exit(2)

    def work() -> list[str]:
        lab = Lab.load(directory)
        if name == EXTERNAL and name not in lab.state.instances:
            return lab.external_command(argv)
        return lab.instance(name).command(argv)

    command = fail_cleanly(work)
    raise typer.Exit(subprocess.call(command))


def trace_on_host(state_dir: Path | None, host: str, port: str | None, flow: str) -> str:
    """Run ofproto/trace on `host`'s br-int; `port` (a port id or an instance name) gives
    in_port."""
    lab = Lab.load(_state_dir(state_dir))
    lab_host = lab.host(host)
    if port is not None:
        record = lab.state.instances.get(port) or next(
            (i for i in lab.state.instances.values() if i.port_id == port), None)
        if record is None or record.host != host:
            raise LabError(f"no instance of port {port} on {host}")
        ofport = lab_host.ovs.ofport(record.host_ifname)
        if ofport is None or ofport < 1:
            raise LabError(f"port {port} is not attached to br-int on {host}")
        flow = f"in_port={ofport},{flow}" if flow else f"in_port={ofport}"
    return lab_host.ovs.appctl("ofproto/trace", "br-int", flow)
