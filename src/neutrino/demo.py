"""`make demo`: start a server, drive it with the real `openstack` CLI, show what it created.

Until the data plane exists this is the API tour: a project and its user, a network with IPv4
and IPv6 (SLAAC) subnets, ports (one with a chosen address and an allowed address pair), a
security group with rules (one admitting members of its own group), all created through the
unmodified `openstack` command with Keystone password auth.

Run with `--keep` to leave the server running for exploring with the CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from neutrino.credentials import clouds_yaml
from neutrino.launcher import ServerProcess, free_port, start_server

CLOUD = "neutrino-demo"
console = Console(emoji=False, highlight=False)


class OpenStackCli:
    """Runs the real `openstack` command against one cloud of a clouds.yaml."""

    def __init__(self, clouds_file: Path, cloud: str) -> None:
        self.binary = shutil.which("openstack", path=str(Path(sys.executable).parent)) or "openstack"
        self.env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_file), "OS_CLOUD": cloud}
        for key in list(self.env):
            if key.startswith("OS_") and key not in ("OS_CLIENT_CONFIG_FILE", "OS_CLOUD"):
                del self.env[key]

    def __call__(self, *args: str, show: bool = True) -> Any:
        command = [self.binary, *args]
        if show:
            console.print(f"$ openstack {' '.join(args)}", style="dim", markup=False)
        wants_json = args[-1] != "--no-json"
        if not wants_json:
            command = command[:-1]
        else:
            command += ["-f", "json"]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"openstack {' '.join(args)} failed:\n{done.stderr}")
        return json.loads(done.stdout) if wants_json and done.stdout.strip() else None


def write_clouds(server: ServerProcess, path: Path) -> None:
    path.write_text(yaml.safe_dump(clouds_yaml(server.url, CLOUD, server.admin_password),
                                   sort_keys=False))


def tour(cli: OpenStackCli) -> list[tuple[str, str, str]]:
    """Create a tenant's networking through the CLI; returns (kind, name, details) rows."""
    rows: list[tuple[str, str, str]] = []
    project = cli("project", "create", "--description", "demo tenant", "tenant-a")
    rows.append(("project", project["name"], project["id"]))
    user = cli("user", "create", "--project", "tenant-a", "--password", "alice-pw", "alice")
    rows.append(("user", user["name"], "password auth, default project tenant-a"))
    cli("role", "add", "--project", "tenant-a", "--user", "alice", "member", "--no-json")
    rows.append(("role", "member", "alice on tenant-a"))

    net = cli("network", "create", "--project", "tenant-a", "--tag", "demo", "net-a")
    rows.append(("network", net["name"], f"mtu {net['mtu']}, {net['provider:network_type']} "
                 f"segment {net['provider:segmentation_id']}"))
    v4 = cli("subnet", "create", "--network", "net-a", "--project", "tenant-a",
             "--subnet-range", "10.10.0.0/24", "--dns-nameserver", "10.10.0.53", "sub-a4")
    rows.append(("subnet", v4["name"], f"{v4['cidr']} gw {v4['gateway_ip']}"))
    v6 = cli("subnet", "create", "--network", "net-a", "--project", "tenant-a",
             "--ip-version", "6", "--subnet-range", "fd00:a::/64", "--ipv6-ra-mode", "slaac",
             "--ipv6-address-mode", "slaac", "sub-a6")
    rows.append(("subnet", v6["name"], f"{v6['cidr']} (SLAAC)"))

    web = cli("security", "group", "create", "--project", "tenant-a", "web")
    cli("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "80:80",
        "--ingress", "web")
    cli("security", "group", "rule", "create", "--protocol", "icmp", "--remote-group", "web",
        "--ingress", "web")
    cli("security", "group", "rule", "create", "--ethertype", "IPv6", "--protocol", "tcp",
        "--dst-port", "443", "--remote-ip", "2001:db8::/32", "web")
    rules = cli("security", "group", "rule", "list", "web")
    for rule in rules:
        rows.append(("sg rule", "web", _describe_rule(rule)))

    p1 = cli("port", "create", "--network", "net-a", "--project", "tenant-a",
             "--security-group", web["id"], "vm1-port")
    p2 = cli("port", "create", "--network", "net-a", "--project", "tenant-a",
             "--fixed-ip", "subnet=sub-a4,ip-address=10.10.0.10",
             "--allowed-address", "ip-address=10.10.0.100", "vm2-port")
    for port in (p1, p2):
        addresses = ", ".join(ip["ip_address"] for ip in port["fixed_ips"])
        rows.append(("port", port["name"], f"{port['mac_address']}  {addresses}"))
    listed = cli("port", "list", "--network", "net-a")
    rows.append(("port list", "net-a", f"{len(listed)} ports"))
    return rows


def _describe_rule(rule: dict[str, Any]) -> str:
    group = rule.get("Remote Security Group")
    remote = f"members of group {group[:8]}" if group else (rule.get("IP Range") or "any")
    ports = rule.get("Port Range") or ""
    return (f"{rule.get('Direction', '')} {rule.get('Ethertype', '')} "
            f"{rule.get('IP Protocol') or 'any'} {ports} from {remote}").strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keep", action="store_true", help="leave the server running")
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="neutrino-demo-"))
    password = secrets.token_urlsafe(12)
    console.rule("[bold]Neutrino demo: the Neutron API through the real openstack CLI")
    server = start_server(state_dir, port=free_port(), admin_password=password)
    console.print(f"server {server.url} (pid {server.pid}), state in {state_dir}")
    clouds = state_dir / "clouds.yaml"
    write_clouds(server, clouds)
    try:
        rows = tour(OpenStackCli(clouds, CLOUD))
        table = Table(title="What the openstack CLI created")
        for column in ("kind", "name", "details"):
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    finally:
        if args.keep:
            console.print(f"\nServer left running (pid {server.pid}). Try:\n"
                          f"  export OS_CLIENT_CONFIG_FILE={clouds} OS_CLOUD={CLOUD}\n"
                          "  uv run openstack network list\n"
                          f"Stop it with: kill {server.pid}")
        else:
            server.stop()
            if args.state_dir is None:
                shutil.rmtree(state_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
