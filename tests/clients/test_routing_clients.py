"""Routers, floating IPs and port forwardings driven by the unmodified `openstack` CLI and
openstacksdk against a real `neutrino server` process with Keystone password auth."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import openstack.exceptions
import pytest
import yaml

from neutrino.credentials import clouds_yaml
from neutrino.launcher import ServerProcess, start_server

pytestmark = pytest.mark.clients
ADMIN_PASSWORD = "admin-secret"
CLOUD = "neutrino-routing"


class Cli:
    """The real `openstack` command on one cloud of a clouds.yaml; JSON output parsed (a last
    argument `--no-json`: no output expected). Failures raise with the command's stderr."""

    def __init__(self, clouds_file: Path, cloud: str) -> None:
        self.binary = shutil.which("openstack", path=str(Path(sys.executable).parent)) or "openstack"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        self.env.update(OS_CLIENT_CONFIG_FILE=str(clouds_file), OS_CLOUD=cloud)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        wants_json = args[-1] != "--no-json"
        command = [self.binary, *args, "-f", "json"] if wants_json else [self.binary, *args[:-1]]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, check=False)

    def __call__(self, *args: str) -> Any:
        done = self.run(*args)
        if done.returncode != 0:
            raise RuntimeError(f"openstack {' '.join(args)} failed:\n{done.stderr}")
        return json.loads(done.stdout) if args[-1] != "--no-json" and done.stdout.strip() else None

    def fails(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode != 0, f"openstack {' '.join(args)} succeeded: {done.stdout}"
        return done.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    running = start_server(tmp_path_factory.mktemp("routing-server"), admin_password=ADMIN_PASSWORD)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def cli(server: ServerProcess) -> Cli:
    clouds = server.state_dir / "clouds.yaml"
    clouds.write_text(yaml.safe_dump(clouds_yaml(server.url, CLOUD, ADMIN_PASSWORD), sort_keys=False))
    return Cli(clouds, CLOUD)


@pytest.fixture(scope="module")
def public(cli: Cli) -> dict[str, Any]:
    """The external network: flat on physnet `public`, 172.24.4.0/24 without DHCP."""
    net = cli("network", "create", "--external", "--provider-network-type", "flat",
              "--provider-physical-network", "public", "public")
    cli("subnet", "create", "--network", "public", "--subnet-range", "172.24.4.0/24",
        "--no-dhcp", "public-subnet")
    assert net["router:external"] is True
    result: dict[str, Any] = net
    return result


def connect(server: ServerProcess) -> Any:
    return openstack.connect(
        auth_url=f"{server.url}/v3", username="admin", password=ADMIN_PASSWORD,
        project_name="admin", user_domain_name="Default", project_domain_name="Default",
        region_name="RegionOne", identity_api_version="3",
    )


def test_the_l3_extensions_are_advertised(cli: Cli) -> None:
    aliases = {e["Alias"] for e in cli("extension", "list", "--network")}
    assert {"router", "ext-gw-mode", "dvr", "l3-ha", "extraroute", "extraroute-atomic",
            "fip-port-details", "floating-ip-port-forwarding", "external-net"} <= aliases


def test_router_gateway_interface_and_floating_ip_with_the_cli(cli: Cli, public: dict[str, Any]) -> None:
    cli("network", "create", "cli-tenant")
    cli("subnet", "create", "--network", "cli-tenant", "--subnet-range", "10.40.0.0/24",
        "cli-tenant-subnet")
    router = cli("router", "create", "cli-router")
    assert router["status"] == "ACTIVE" and router["external_gateway_info"] is None
    cli("router", "set", "--external-gateway", "public", "cli-router", "--no-json")
    shown = cli("router", "show", "cli-router")
    gateway = shown["external_gateway_info"]
    assert gateway["network_id"] == public["id"] and gateway["enable_snat"] is True
    assert gateway["external_fixed_ips"][0]["ip_address"].startswith("172.24.4.")
    cli("router", "add", "subnet", "cli-router", "cli-tenant-subnet", "--no-json")
    interfaces = cli("port", "list", "--router", "cli-router", "--long")
    owners = {p["Device Owner"] for p in interfaces}
    assert owners == {"network:router_interface", "network:router_gateway"}
    assert any(ip["ip_address"] == "10.40.0.1" for p in interfaces for ip in p["Fixed IP Addresses"])

    vm = cli("port", "create", "--network", "cli-tenant", "cli-vm")
    fip = cli("floating", "ip", "create", "--description", "cli fip", "public")
    assert fip["status"] == "DOWN" and fip["port_id"] is None
    cli("floating", "ip", "set", "--port", "cli-vm", fip["id"], "--no-json")
    associated = cli("floating", "ip", "show", fip["id"])
    assert associated["port_id"] == vm["id"] and associated["router_id"] == router["id"]
    assert associated["status"] == "ACTIVE"
    assert associated["fixed_ip_address"] == vm["fixed_ips"][0]["ip_address"]
    assert associated["port_details"]["mac_address"] == vm["mac_address"]
    listed = cli("floating", "ip", "list", "--port", "cli-vm")
    assert [f["ID"] for f in listed] == [fip["id"]]

    # Neutron's refusals reach the operator as errors and change nothing
    before = cli("router", "show", "cli-router")["revision_number"]
    assert "required by one or more floating IPs" in cli.fails(
        "router", "remove", "subnet", "cli-router", "cli-tenant-subnet", "--no-json")
    assert "cannot be deleted directly via the port API" in cli.fails(
        "port", "delete", interfaces[0]["ID"], "--no-json")
    assert "still has ports" in cli.fails("router", "delete", "cli-router", "--no-json")
    assert cli("router", "show", "cli-router")["revision_number"] == before

    cli("router", "set", "--route", "destination=192.168.50.0/24,gateway=10.40.0.20",
        "cli-router", "--no-json")
    assert cli("router", "show", "cli-router")["routes"] == [
        {"destination": "192.168.50.0/24", "nexthop": "10.40.0.20"}]

    cli("floating", "ip", "unset", "--port", fip["id"], "--no-json")
    assert cli("floating", "ip", "show", fip["id"])["status"] == "DOWN"
    cli("router", "unset", "--route", "destination=192.168.50.0/24,gateway=10.40.0.20",
        "cli-router", "--no-json")
    cli("router", "remove", "subnet", "cli-router", "cli-tenant-subnet", "--no-json")
    cli("floating", "ip", "delete", fip["id"], "--no-json")
    cli("router", "unset", "--external-gateway", "cli-router", "--no-json")
    cli("router", "delete", "cli-router", "--no-json")
    assert not any(r["Name"] == "cli-router" for r in cli("router", "list"))


def test_port_forwarding_with_the_cli(cli: Cli, public: dict[str, Any]) -> None:
    cli("network", "create", "pf-tenant")
    cli("subnet", "create", "--network", "pf-tenant", "--subnet-range", "10.41.0.0/24", "pf-subnet")
    cli("router", "create", "pf-router")
    cli("router", "set", "--external-gateway", "public", "pf-router", "--no-json")
    cli("router", "add", "subnet", "pf-router", "pf-subnet", "--no-json")
    server_port = cli("port", "create", "--network", "pf-tenant", "pf-server")
    address = server_port["fixed_ips"][0]["ip_address"]
    fip = cli("floating", "ip", "create", "public")
    forwarding = cli("floating", "ip", "port", "forwarding", "create", "--internal-ip-address",
                     address, "--port", "pf-server", "--internal-protocol-port", "22",
                     "--external-protocol-port", "2222", "--protocol", "tcp",
                     "--description", "ssh", fip["id"])
    assert forwarding["internal_port"] == 22 and forwarding["external_port"] == 2222
    assert forwarding["internal_port_id"] == server_port["id"]
    listed = cli("floating", "ip", "port", "forwarding", "list", fip["id"])
    assert [p["ID"] for p in listed] == [forwarding["id"]]
    shown = cli("floating", "ip", "show", fip["id"])
    assert shown["router_id"] is not None and shown["status"] == "ACTIVE"
    # the same external port twice is refused
    cli.fails("floating", "ip", "port", "forwarding", "create", "--internal-ip-address", address,
              "--port", "pf-server", "--internal-protocol-port", "23",
              "--external-protocol-port", "2222", "--protocol", "tcp", fip["id"])
    cli("floating", "ip", "port", "forwarding", "set", "--external-protocol-port", "2022",
        fip["id"], forwarding["id"], "--no-json")
    updated = cli("floating", "ip", "port", "forwarding", "show", fip["id"], forwarding["id"])
    assert updated["external_port"] == 2022
    cli("floating", "ip", "port", "forwarding", "delete", fip["id"], forwarding["id"], "--no-json")
    assert cli("floating", "ip", "port", "forwarding", "list", fip["id"]) == []


def test_openstacksdk_routing_round_trip(server: ServerProcess, public: dict[str, Any]) -> None:
    sdk = connect(server)
    net = sdk.network.create_network(name="sdk-routed")
    subnet = sdk.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.42.0.0/24")
    router = sdk.network.create_router(name="sdk-router",
                                       external_gateway_info={"network_id": public["id"]})
    assert router.external_gateway_info["network_id"] == public["id"]
    assert router.is_distributed is False and router.is_ha is False
    port = sdk.network.create_port(network_id=net.id, name="sdk-vm")
    with pytest.raises(openstack.exceptions.NotFoundException):
        sdk.network.create_ip(floating_network_id=public["id"], port_id=port.id)
    info = sdk.network.add_interface_to_router(router, subnet=subnet.id)
    assert info["subnet_id"] == subnet.id and info["port_id"]
    with pytest.raises(openstack.exceptions.BadRequestException):
        sdk.network.add_interface_to_router(router, subnet=subnet.id)
    fip = sdk.network.create_ip(floating_network_id=public["id"], port_id=port.id)
    assert fip.router_id == router.id and fip.status == "ACTIVE"
    assert fip.port_details["network_id"] == net.id
    spare = sdk.network.create_ip(floating_network_id=public["id"])
    other = sdk.network.create_port(network_id=net.id, fixed_ips=[{"ip_address": "10.42.0.50"}])
    pf = sdk.network.create_port_forwarding(
        floatingip_id=spare.id, internal_port_id=other.id, internal_ip_address="10.42.0.50",
        internal_port=80, external_port=8080, protocol="tcp")
    assert pf.external_port == 8080
    assert [p.id for p in sdk.network.port_forwardings(spare.id)] == [pf.id]
    with pytest.raises(openstack.exceptions.ConflictException):
        sdk.network.delete_router(router)
    sdk.network.update_ip(fip, port_id=None)
    assert sdk.network.get_ip(fip.id).status == "DOWN"
    sdk.network.delete_port_forwarding(pf, spare.id)
    sdk.network.delete_ip(fip)
    sdk.network.delete_ip(spare)
    sdk.network.remove_interface_from_router(router, subnet=subnet.id)
    sdk.network.update_router(router, external_gateway_info={})
    sdk.network.delete_router(router)
    assert sdk.network.find_router("sdk-router") is None
