"""Physical networks in the lab: one shared L2 segment per physnet in the fabric namespace, each
host's provider bridge on it, and the agent's patch ports between br-int and that bridge."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lab.helpers import lab_in, needs_lab, ping, root_links
from neutrino.agent.ovsdb import HostOvsdb, patch_port_names
from neutrino.lab import netns
from neutrino.lab.cli import parse_bridge_mappings
from neutrino.lab.errors import LabError
from neutrino.lab.fabric import physnet_bridge_name, physnet_port_name
from neutrino.lab.host import LabHost, provider_nic


def test_names_are_readable_and_fit_fifteen_characters() -> None:
    assert physnet_bridge_name("physnet1") == "pn-physnet1"
    assert physnet_port_name("host1", "physnet1") == "host1-physnet1"
    assert provider_nic("physnet1") == "eth-physnet1"
    assert patch_port_names("br-physnet1") == ("int-br-physnet1", "phy-br-physnet1")
    long_physnet, long_bridge = "datacentre-physnet", "br-datacentre-a"
    for name in (physnet_bridge_name(long_physnet), physnet_port_name("host12", long_physnet),
                 provider_nic(long_physnet), provider_nic("odd name"), *patch_port_names(long_bridge)):
        assert netns.check_ifname(name) and len(name) <= 15
    # stable, and distinct per host and per physnet
    assert physnet_port_name("host12", long_physnet) == physnet_port_name("host12", long_physnet)
    assert physnet_port_name("host12", long_physnet) != physnet_port_name("host11", long_physnet)
    assert provider_nic("ul") != "eth-ul"  # never the underlay NIC


def test_bridge_mappings_on_the_command_line() -> None:
    assert parse_bridge_mappings(["physnet1:br-physnet1"]) == {"physnet1": "br-physnet1"}
    assert parse_bridge_mappings(["physnet1:br-a,public:br-b", "x:br-x"]) == {
        "physnet1": "br-a", "public": "br-b", "x": "br-x"}
    assert parse_bridge_mappings([""]) == {}
    for bad in (["physnet1"], [":br-a"], ["physnet1:"], ["a:br-a", "a:br-b"]):
        with pytest.raises(LabError):
            parse_bridge_mappings(bad)


def _tagged_port(host: LabHost, bridge: str, address: str) -> None:
    """An internal port of the provider bridge on VLAN 123 with `address` (host namespace)."""
    host.ovs.vsctl("add-port", bridge, "v123", "tag=123", "--", "set", "Interface", "v123",
                   "type=internal")
    host.exec(["ip", "address", "add", address, "dev", "v123"])
    host.exec(["ip", "link", "set", "v123", "up"])


@needs_lab
def test_hosts_share_a_segment_per_physnet_that_carries_tagged_frames(tmp_path: Path) -> None:
    before = root_links()
    with lab_in(tmp_path, hosts=2, bridge_mappings={"physnet1": "br-physnet1"}) as lab:
        host1, host2 = lab.host("host1"), lab.host("host2")
        for host in (host1, host2):
            assert host.ovs.bridges() == ["br-int", "br-phy", "br-physnet1"]
            assert host.ovs.ports("br-physnet1") == ["eth-physnet1"]
            assert host.status().provider_links == {"physnet1": True}
        links = json.loads(netns.ip("-d", "-j", "link", "show", "master", "pn-physnet1",
                                    namespace=lab.fabric.namespace).stdout)
        assert sorted(link["ifname"] for link in links) == ["host1-physnet1", "host2-physnet1"]
        bridge = json.loads(netns.ip("-d", "-j", "link", "show", "pn-physnet1",
                                     namespace=lab.fabric.namespace).stdout)[0]
        assert bridge["linkinfo"]["info_data"].get("vlan_filtering", 0) == 0
        assert lab.status()["fabric"]["physnet_bridges"] == ["pn-physnet1"]
        # VLAN 123 from host1's provider bridge reaches host2's through the fabric's segment
        _tagged_port(host1, "br-physnet1", "192.0.2.1/24")
        _tagged_port(host2, "br-physnet1", "192.0.2.2/24")
        deadline = time.monotonic() + 10
        while not ping(host1, "192.0.2.2"):
            assert time.monotonic() < deadline, "no L2 path across pn-physnet1"
        # the underlay is untouched by provider traffic, and a link fault cuts the underlay only
        lab.fail("host1", "link")
        assert lab.host("host1").status().provider_links == {"physnet1": True}
        assert ping(host1, "192.0.2.2")
        assert not ping(host1, host2.underlay_ip)
        lab.heal("host1")
        # a host reboot re-creates its NIC on the physnet
        host2.stop()
        assert lab.host("host2").status().provider_links == {"physnet1": None}
        host2.start()
        assert lab.host("host2").status().provider_links == {"physnet1": True}
        host2.exec(["ip", "address", "replace", "192.0.2.2/24", "dev", "v123"])
        host2.exec(["ip", "link", "set", "v123", "up"])
        host1.exec(["ip", "neigh", "flush", "dev", "v123"])  # v123 came back with a new MAC
        deadline = time.monotonic() + 10
        while not ping(host1, "192.0.2.2"):
            assert time.monotonic() < deadline, "no L2 path after host2's reboot"
        prefix = lab.state.prefix
    assert netns.list_namespaces(prefix + "-") == []
    assert root_links() == before


@needs_lab
def test_the_agent_patches_br_int_to_each_provider_bridge_idempotently(tmp_path: Path) -> None:
    with lab_in(tmp_path, hosts=1, bridge_mappings={"physnet1": "br-physnet1", "public": "br-public"}) \
            as lab:
        host = lab.host("host1")
        client = HostOvsdb(f"unix:{host.ovs.db_socket}")
        try:
            mappings = {"physnet1": "br-physnet1", "public": "br-public", "absent": "br-absent"}
            deadline = time.monotonic() + 10
            while len(ofports := client.ensure_provider_patches(mappings)) < 2:
                assert time.monotonic() < deadline, ofports
                time.sleep(0.05)
            assert set(ofports) == {"physnet1", "public"}  # br-absent does not exist: no patch
            assert sorted(host.ovs.ports("br-int")) == ["int-br-physnet1", "int-br-public"]
            assert sorted(host.ovs.ports("br-physnet1")) == ["eth-physnet1", "phy-br-physnet1"]
            assert host.ovs.ofport("int-br-physnet1") == ofports["physnet1"]
            assert host.ovs.vsctl("get", "Interface", "phy-br-physnet1", "options:peer",
                                  wait=False).strip().strip('"') == "int-br-physnet1"
            assert host.ovs.vsctl("get", "Interface", "int-br-public", "external_ids:neutrino-physnet",
                                  wait=False).strip().strip('"') == "public"
            uuid = host.ovs.vsctl("get", "Interface", "int-br-physnet1", "_uuid", wait=False)
            assert client.ensure_provider_patches(mappings) == ofports  # nothing to do
            assert host.ovs.vsctl("get", "Interface", "int-br-physnet1", "_uuid", wait=False) == uuid
            # the provider bridge keeps OVS's NORMAL (no flows of ours)
            assert any("actions=NORMAL" in f for f in host.ovs.flows("br-physnet1"))
            # a mapping that goes away takes its patch ports with it
            client.ensure_provider_patches({"physnet1": "br-physnet1"})
            deadline = time.monotonic() + 10
            while host.ovs.ports("br-int") != ["int-br-physnet1"]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert host.ovs.ports("br-public") == ["eth-public"]
        finally:
            client.close()
