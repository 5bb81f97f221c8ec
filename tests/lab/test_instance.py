"""Instances plugged os-vif style: what OVS sees, and real packets across a geneve tunnel."""

from __future__ import annotations

import ipaddress
import subprocess
import time

import pytest

from lab.helpers import LAB_MARKS, Overlay, ping, tcp_transfer, wait_for_ping
from neutrino.lab import netns
from neutrino.lab.errors import LabError
from neutrino.lab.instance import tap_name

pytestmark = LAB_MARKS


def test_the_vif_is_plugged_the_way_os_vif_plugs_it(overlay: Overlay) -> None:
    vm1, host1 = overlay.vm1, overlay.host1
    rec = vm1.record
    assert rec.host_ifname == tap_name(rec.port_id) == "tap" + rec.port_id[:11]
    assert rec.host_ifname in host1.ovs.ports("br-int")
    ids = host1.ovs.vsctl("get", "Interface", rec.host_ifname, "external_ids", wait=False)
    for key, value in (("iface-id", rec.port_id), ("attached-mac", rec.mac),
                       ("vm-uuid", rec.device_id), ("iface-status", "active")):
        assert f'{key}={value}' in ids.replace('"', "")
    eth0 = netns.link_info(vm1.namespace, "eth0")
    assert eth0 is not None and (eth0.mac, eth0.mtu, eth0.operstate) == (rec.mac, 1450, "UP")
    assert not netns.tx_checksum_enabled(vm1.namespace, "eth0")
    assert vm1.ofport() is not None


def test_instances_on_two_hosts_ping_through_geneve(overlay: Overlay) -> None:
    wait_for_ping(overlay.vm1, "10.0.0.2")
    assert ping(overlay.vm2, "10.0.0.1", count=3)
    # the packets really took the userspace tunnel over the underlay
    flows = overlay.host1.ovs.appctl("dpctl/dump-flows")
    assert "tnl_push" in flows and f"dst={overlay.host2.underlay_ip}" in flows


def test_tcp_crosses_the_tunnel_intact(overlay: Overlay) -> None:
    """Needs tx checksum offload off on eth0 and MTU 1450; with either missing it stalls."""
    wait_for_ping(overlay.vm1, "10.0.0.2")
    assert tcp_transfer(overlay.vm1, overlay.vm2, "10.0.0.2", size=4 << 20)
    assert tcp_transfer(overlay.vm2, overlay.vm1, "10.0.0.1", size=1 << 20, port=5002)
    csum_errors = overlay.vm2.exec(["nstat", "-az", "TcpInCsumErrors"]).stdout
    assert csum_errors.split()[-2] == "0"


def test_an_instance_gets_its_address_by_dhcp(overlay: Overlay) -> None:
    lab, host1 = overlay.lab, overlay.host1
    server = lab.plug("dhcpd", "host1")
    client = lab.plug("dhcpc", "host1", mtu=1450)
    try:
        server.configure(["10.0.9.2/24"])
        host1.ovs.ofctl("add-flows", "-", input=(
            f"in_port={server.ofport()},actions=output:{client.ofport()}\n"
            f"in_port={client.ofport()},actions=output:{server.ofport()}\n"))
        config = server.run_dir / "udhcpd.conf"
        config.write_text(
            f"interface eth0\nstart 10.0.9.10\nend 10.0.9.20\nmax_leases 10\n"
            f"lease_file {server.run_dir}/udhcpd.leases\npidfile {server.run_dir}/udhcpd.pid\n"
            "option subnet 255.255.255.0\noption router 10.0.9.1\noption mtu 1400\n"
            "option staticroutes 10.99.0.0/16 10.0.9.3, 0.0.0.0/0 10.0.9.1\n")
        (server.run_dir / "udhcpd.leases").touch()
        # -a: udhcpd ARP-pings an address for 2 s before offering it, unless told otherwise
        daemon = subprocess.Popen(server.command(["busybox", "udhcpd", "-f", "-a", "100", str(config)]),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.2)
            (address,) = client.dhcp(timeout=10)
        finally:
            daemon.terminate()
            daemon.wait(5)
        assert address.ip in ipaddress.IPv4Network("10.0.9.0/24") and address.network.prefixlen == 24
        assert int(address.ip.packed[-1]) in range(10, 21)
        assert client.record.addresses == [str(address)]
        eth0 = netns.link_info(client.namespace, "eth0")
        assert eth0 is not None and eth0.mtu == 1400
        routes = client.exec(["ip", "-4", "route"]).stdout
        assert "default via 10.0.9.1" in routes and "10.99.0.0/16 via 10.0.9.3" in routes
        assert ping(client, "10.0.9.2")
    finally:
        lab.unplug("dhcpc")
        lab.unplug("dhcpd")


def test_dhcp_without_a_server_is_a_clear_error(overlay: Overlay) -> None:
    lonely = overlay.lab.plug("lonely", "host2")
    try:
        with pytest.raises(LabError, match="got no DHCP lease"):
            lonely.dhcp(timeout=1)
    finally:
        overlay.lab.unplug("lonely")


def test_unplug_removes_port_namespace_and_veth(overlay: Overlay) -> None:
    lab, host2 = overlay.lab, overlay.host2
    extra = lab.plug("extra", "host2")
    tap = extra.record.host_ifname
    assert tap in host2.ovs.ports("br-int")
    lab.unplug("extra")
    assert tap not in host2.ovs.ports("br-int")
    assert netns.link_info(host2.namespace, tap) is None
    assert not netns.namespace_exists(extra.namespace)
    assert "extra" not in lab.state.instances and not extra.run_dir.exists()


def test_plugging_the_same_port_twice_is_refused(overlay: Overlay) -> None:
    with pytest.raises(LabError, match="already exists"):
        overlay.lab.plug("vm1", "host1")
    with pytest.raises(LabError, match="would reuse"):
        overlay.lab.plug("copy", "host1", port_id=overlay.vm1.record.port_id)
