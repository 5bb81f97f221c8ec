"""DHCPv4 on the real data path: each host's agent answers its instances natively, in the name of
the network's DHCP port (device_owner network:dhcp), and a real client's lease says exactly what
the API says: the port's fixed IP, the subnet's gateway, host routes and DNS servers, the
network's MTU."""

from __future__ import annotations

import ipaddress
import shlex
import time
from pathlib import Path
from typing import Any

import pytest

from e2e.support import E2ELab, wait_until

pytestmark = pytest.mark.root

CIDR = "10.81.0.0/24"
DNS = ["10.81.0.53", "192.0.2.53"]
ROUTE = {"destination": "198.51.100.0/24", "nexthop": "10.81.0.254"}

# a udhcpc hook that only writes what the server offered into a file (and touches no interface)
DUMP_SCRIPT = """#!/bin/sh
[ "$1" = bound ] || exit 0
{ echo "ip=$ip"; echo "mask=$mask"; echo "router=$router"; echo "dns=$dns"; echo "mtu=$mtu";
  echo "staticroutes=$staticroutes"; echo "lease=$lease"; echo "serverid=$serverid";
  echo "domain=$domain"; } > "$DUMP"
"""


@pytest.fixture(scope="module")
def network(lab: E2ELab) -> dict[str, Any]:
    """A network whose subnet has DNS servers and a host route, and an instance on each host."""
    cloud = lab.cloud
    net = cloud.network.create_network(name="dhcp-net")
    subnet = cloud.network.create_subnet(network_id=net.id, ip_version=4, cidr=CIDR,
                                         name="dhcp-sub", dns_nameservers=DNS,
                                         host_routes=[ROUTE])
    lab.boot("dhcp-vm1", "host1", network="dhcp-net")
    lab.boot("dhcp-vm2", "host2", network="dhcp-net")
    return {"network": cloud.network.get_network(net.id), "subnet": subnet}


def lease(lab: E2ELab, name: str, tmp: Path, *, tries: int = 3) -> dict[str, str] | None:
    """Ask for a lease again with busybox udhcpc inside instance `name` (without applying it):
    the options the server offered, or None when nobody answered."""
    script, dump = tmp / f"{name}-dump.sh", tmp / f"{name}-lease.txt"
    script.write_text(DUMP_SCRIPT)
    script.chmod(0o755)
    dump.unlink(missing_ok=True)
    command = (f"DUMP={shlex.quote(str(dump))} busybox udhcpc -i eth0 -f -q -n -t {tries} -T 1 "
               f"-A 1 -s {shlex.quote(str(script))} -O mtu -O staticroutes")
    done = lab.exec(name, "sh", "-c", command, timeout=tries * 2 + 10)
    if done.returncode != 0 or not dump.exists():
        return None
    return dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)


def test_the_network_has_one_dhcp_port_holding_an_address_of_the_subnet(
        lab: E2ELab, network: dict[str, Any]) -> None:
    ports = list(lab.cloud.network.ports(network_id=network["network"].id,
                                         device_owner="network:dhcp"))
    assert len(ports) == 1
    dhcp = ports[0]
    assert dhcp.device_id == f"dhcp-{network['network'].id}"
    assert dhcp.status == "ACTIVE"
    assert [f["subnet_id"] for f in dhcp.fixed_ips] == [network["subnet"].id]


def test_an_instance_booted_by_dhcp_has_its_ports_address_gateway_and_routes(
        lab: E2ELab, network: dict[str, Any]) -> None:
    subnet = network["subnet"]
    for name in ("dhcp-vm1", "dhcp-vm2"):
        address = ipaddress.ip_interface(f"{lab.address(name)}/24")
        assert address in lab.instance(name).addresses()
        routes = lab.exec(name, "ip", "-4", "route").stdout
        assert f"default via {subnet.gateway_ip} dev eth0" in routes
        assert f"{ROUTE['destination']} via {ROUTE['nexthop']} dev eth0" in routes
    lab.wait_ping("dhcp-vm1", lab.address("dhcp-vm2"))


def test_the_lease_carries_what_the_api_says(lab: E2ELab, network: dict[str, Any],
                                             tmp_path: Path) -> None:
    subnet, net = network["subnet"], network["network"]
    dhcp_port = next(iter(lab.cloud.network.ports(network_id=net.id, device_owner="network:dhcp")))
    got = lease(lab, "dhcp-vm2", tmp_path)
    assert got is not None, "no DHCP answer"
    assert got["ip"] == lab.address("dhcp-vm2")
    assert got["mask"] == "24"
    assert got["router"] == subnet.gateway_ip
    assert got["dns"].split() == DNS
    assert got["mtu"] == str(net.mtu)
    assert got["serverid"] == dhcp_port.fixed_ips[0]["ip_address"]
    assert got["lease"] == "86400"
    # option 121: the host route, and the default route (clients ignore option 3 beside 121)
    routes = got["staticroutes"].split()
    assert list(zip(routes[::2], routes[1::2], strict=True)) == [
        (ROUTE["destination"], ROUTE["nexthop"]), ("0.0.0.0/0", subnet.gateway_ip)]


def test_a_subnet_change_reaches_the_next_lease(lab: E2ELab, network: dict[str, Any],
                                                tmp_path: Path) -> None:
    subnet = network["subnet"]
    lab.cloud.network.update_subnet(subnet, dns_nameservers=["10.81.0.99"])
    try:
        def updated() -> bool:
            got = lease(lab, "dhcp-vm1", tmp_path, tries=1)
            return got is not None and got["dns"].split() == ["10.81.0.99"]
        wait_until(updated, timeout=15, interval=0.2, message="the new DNS server in a lease")
    finally:
        lab.cloud.network.update_subnet(subnet, dns_nameservers=DNS)


def test_no_answer_without_dhcp_on_the_subnet(lab: E2ELab, tmp_path: Path) -> None:
    """enable_dhcp=false: the agent does not answer (a tenant's own DHCP server could), and the
    network has no DHCP port; `lab boot` then configures the fixed IP statically."""
    cloud = lab.cloud
    net = cloud.network.create_network(name="nodhcp-net")
    cloud.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.82.0.0/24",
                                enable_dhcp=False)
    assert list(cloud.network.ports(network_id=net.id, device_owner="network:dhcp")) == []
    lab.boot("nodhcp-vm", "host1", network="nodhcp-net")
    assert ipaddress.ip_interface(f"{lab.address('nodhcp-vm')}/24") in \
        lab.instance("nodhcp-vm").addresses()
    started = time.monotonic()
    assert lease(lab, "nodhcp-vm", tmp_path, tries=2) is None
    assert time.monotonic() - started >= 1.5  # it really waited for an answer


def test_isc_dhclient_gets_the_same_lease(lab: E2ELab, network: dict[str, Any],
                                          tmp_path: Path) -> None:
    """The other client Linux images use: ISC dhclient (-1: one try; its script does nothing,
    so only the lease file is written)."""
    lease_file, pid_file = tmp_path / "dhclient.leases", tmp_path / "dhclient.pid"
    done = lab.exec("dhcp-vm1", "dhclient", "-1", "-v", "-lf", str(lease_file), "-pf",
                    str(pid_file), "-sf", "/bin/true", "eth0", timeout=40)
    try:
        assert done.returncode == 0, done.stderr
        text = lease_file.read_text()
        assert f"fixed-address {lab.address('dhcp-vm1')};" in text
        assert f"option routers {network['subnet'].gateway_ip};" in text
        assert f"option interface-mtu {network['network'].mtu};" in text
        assert f"option domain-name-servers {','.join(DNS)};" in text
    finally:
        lab.exec("dhcp-vm1", "dhclient", "-x", "-pf", str(pid_file), "-lf", str(lease_file),
                 "-sf", "/bin/true", "eth0", timeout=20)
