"""The unmodified `openstack` CLI and openstacksdk drive a real `neutrino server` process
through Keystone password auth, exactly as an operator would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import netaddr
import openstack
import openstack.exceptions
import pytest
import yaml

from neutrino.credentials import clouds_yaml
from neutrino.launcher import ServerProcess, start_server

pytestmark = pytest.mark.clients
ADMIN_PASSWORD = "admin-secret"


class OpenStackCli:
    """Runs the real `openstack` command against one cloud of a clouds.yaml; returns its JSON
    output (`--no-json` as the last argument: no output expected)."""

    def __init__(self, clouds_file: Path, cloud: str) -> None:
        self.binary = shutil.which("openstack", path=str(Path(sys.executable).parent)) or "openstack"
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("OS_")}
        self.env.update(OS_CLIENT_CONFIG_FILE=str(clouds_file), OS_CLOUD=cloud)

    def __call__(self, *args: str, show: bool = False) -> Any:
        if show:
            print(f"$ openstack {' '.join(args)}")
        wants_json = args[-1] != "--no-json"
        command = [self.binary, *args, "-f", "json"] if wants_json else [self.binary, *args[:-1]]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"openstack {' '.join(args)} failed:\n{done.stderr}")
        return json.loads(done.stdout) if wants_json and done.stdout.strip() else None


def write_clouds(server: ServerProcess, path: Path) -> None:
    path.write_text(yaml.safe_dump(clouds_yaml(server.url, "neutrino-demo", server.admin_password),
                                   sort_keys=False))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    running = start_server(tmp_path_factory.mktemp("server"), admin_password=ADMIN_PASSWORD)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def cli(server: ServerProcess) -> OpenStackCli:
    clouds = server.state_dir / "clouds.yaml"
    write_clouds(server, clouds)
    return OpenStackCli(clouds, "neutrino-demo")


def connect(server: ServerProcess, user: str, password: str, project: str) -> Any:
    return openstack.connect(
        auth_url=f"{server.url}/v3", username=user, password=password, project_name=project,
        user_domain_name="Default", project_domain_name="Default", region_name="RegionOne",
        identity_api_version="3",
    )


def test_network_lifecycle_with_tags_and_lookup_by_name(cli: OpenStackCli) -> None:
    created = cli("network", "create", "--description", "first", "cli-net", show=False)
    assert created["name"] == "cli-net" and created["status"] == "ACTIVE"
    assert created["provider:network_type"] == "geneve"
    assert any(n["Name"] == "cli-net" for n in cli("network", "list", show=False))
    cli("network", "set", "--tag", "red", "--tag", "blue", "cli-net", "--no-json", show=False)
    shown = cli("network", "show", "cli-net", show=False)
    assert sorted(shown["tags"]) == ["blue", "red"]
    assert shown["revision_number"] > created["revision_number"]
    tagged = cli("network", "list", "--tags", "red", show=False)
    assert [n["Name"] for n in tagged] == ["cli-net"]
    cli("network", "delete", "cli-net", "--no-json", show=False)
    assert not any(n["Name"] == "cli-net" for n in cli("network", "list", show=False))


def test_subnets_v4_and_v6_slaac_and_ports_with_addresses(cli: OpenStackCli) -> None:
    cli("network", "create", "addr-net", show=False)
    v4 = cli("subnet", "create", "--network", "addr-net", "--subnet-range", "10.20.0.0/24",
             "--allocation-pool", "start=10.20.0.100,end=10.20.0.199", "addr-v4", show=False)
    assert v4["gateway_ip"] == "10.20.0.1"
    assert v4["allocation_pools"] == [{"start": "10.20.0.100", "end": "10.20.0.199"}]
    v6 = cli("subnet", "create", "--network", "addr-net", "--ip-version", "6", "--subnet-range",
             "fd00:20::/64", "--ipv6-ra-mode", "slaac", "--ipv6-address-mode", "slaac",
             "addr-v6", show=False)
    assert v6["ipv6_address_mode"] == "slaac"
    port = cli("port", "create", "--network", "addr-net", "--fixed-ip",
               "subnet=addr-v4,ip-address=10.20.0.150", "--allowed-address",
               "ip-address=10.20.0.250,mac-address=fa:16:3e:00:00:01", "addr-port", show=False)
    addresses = {ip["subnet_id"]: ip["ip_address"] for ip in port["fixed_ips"]}
    assert addresses[v4["id"]] == "10.20.0.150"
    # SLAAC addresses are implied: the EUI-64 address from the port's MAC
    expected = netaddr.EUI(port["mac_address"]).ipv6(netaddr.IPNetwork("fd00:20::/64").first)
    assert addresses[v6["id"]] == str(expected)
    assert port["allowed_address_pairs"] == [
        {"ip_address": "10.20.0.250", "mac_address": "fa:16:3e:00:00:01"}]
    second = cli("port", "create", "--network", "addr-net", "auto-port", show=False)
    auto_v4 = [ip["ip_address"] for ip in second["fixed_ips"] if ip["subnet_id"] == v4["id"]]
    assert auto_v4 == ["10.20.0.101"]  # the pool's first address is the network's DHCP port's
    listed = cli("port", "list", "--network", "addr-net", "--long", show=False)
    assert sorted((p["Name"], p["Device Owner"]) for p in listed) == [
        ("", "network:dhcp"), ("addr-port", ""), ("auto-port", "")]
    [dhcp] = cli("port", "list", "--network", "addr-net", "--device-owner", "network:dhcp",
                 show=False)
    assert [ip["ip_address"] for ip in dhcp["Fixed IP Addresses"] if ip["subnet_id"] == v4["id"]] == [
        "10.20.0.100"]


def test_security_groups_and_remote_group_rules(cli: OpenStackCli) -> None:
    group = cli("security", "group", "create", "--description", "web tier", "cli-web",
                show=False)
    rule = cli("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
               "--dst-port", "8080", "--remote-group", "cli-web", "cli-web", show=False)
    assert rule["remote_group_id"] == group["id"]
    assert (rule["port_range_min"], rule["port_range_max"]) == (8080, 8080)
    listed = cli("security", "group", "rule", "list", "cli-web", show=False)
    assert len(listed) == 3  # two default egress rules + ours
    groups = {g["Name"] for g in cli("security", "group", "list", show=False)}
    assert {"default", "cli-web"} <= groups


def test_identity_commands_create_a_working_member(
    cli: OpenStackCli, server: ServerProcess
) -> None:
    project = cli("project", "create", "tenant-b", show=False)
    cli("user", "create", "--project", "tenant-b", "--password", "bob-pw", "bob", show=False)
    cli("role", "add", "--project", "tenant-b", "--user", "bob", "member", "--no-json",
        show=False)
    bob = connect(server, "bob", "bob-pw", "tenant-b")
    net = bob.network.create_network(name="bob-net")
    assert net.project_id == project["id"]
    # the admin sees bob's network; bob does not see the admin's
    admin_net = cli("network", "create", "admin-only-net", show=False)
    assert "admin-only-net" not in {n.name for n in bob.network.networks()}
    with pytest.raises(openstack.exceptions.NotFoundException):
        bob.network.get_network(admin_net["id"])
    with pytest.raises(openstack.exceptions.NotFoundException):
        bob.network.update_network(admin_net["id"], name="stolen")


def test_a_reader_reads_but_cannot_write(cli: OpenStackCli, server: ServerProcess) -> None:
    cli("project", "create", "tenant-c", show=False)
    cli("user", "create", "--project", "tenant-c", "--password", "carol-pw", "carol", show=False)
    cli("role", "add", "--project", "tenant-c", "--user", "carol", "reader", "--no-json",
        show=False)
    carol = connect(server, "carol", "carol-pw", "tenant-c")
    assert list(carol.network.networks(name="nothing-here")) == []
    with pytest.raises(openstack.exceptions.ForbiddenException):
        carol.network.create_network(name="nope")


def test_openstacksdk_round_trip(server: ServerProcess) -> None:
    admin = connect(server, "admin", ADMIN_PASSWORD, "admin")
    net = admin.network.create_network(name="sdk-net")
    subnet = admin.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.30.0.0/24",
                                         name="sdk-sub")
    port = admin.network.create_port(network_id=net.id, name="sdk-port")
    assert port.fixed_ips[0]["subnet_id"] == subnet.id
    assert admin.network.find_network("sdk-net").id == net.id
    admin.network.delete_port(port)
    admin.network.delete_subnet(subnet)
    admin.network.delete_network(net)
    assert admin.network.find_network("sdk-net") is None


def test_clouds_command_prints_a_usable_entry(server: ServerProcess, tmp_path: Path) -> None:
    import subprocess
    import sys

    port = server.url.rsplit(":", 1)[1]
    out = subprocess.run(
        [sys.executable, "-m", "neutrino.cli.main", "clouds", "--state-dir",
         str(server.state_dir), "--port", port, "--cloud", "neutrino-lab",
         "--admin-password", ADMIN_PASSWORD],
        capture_output=True, text=True, check=True,
    ).stdout
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(out)
    networks = OpenStackCli(clouds, "neutrino-lab")("network", "list", show=False)
    assert isinstance(networks, list)
