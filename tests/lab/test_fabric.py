"""The underlay fabric: addresses per host, and hosts that reach each other across it."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from lab.helpers import lab_in, ping, root_links, skip_without_lab
from neutrino.lab.errors import LabError
from neutrino.lab.fabric import Fabric


def test_host_addresses_come_from_the_underlay_subnet() -> None:
    fabric = Fabric("x-fabric", ipaddress.IPv4Network("10.250.0.0/24"))
    assert str(fabric.gateway) == "10.250.0.1/24"
    assert [str(fabric.host_address(i)) for i in (1, 2, 12)] == \
        ["10.250.0.11/24", "10.250.0.12/24", "10.250.0.22/24"]
    with pytest.raises(LabError, match="does not fit"):
        fabric.host_address(250)
    assert Fabric.port_name("host1") == "ul-host1"


@pytest.mark.root
@skip_without_lab
def test_hosts_ping_each_other_on_the_underlay(tmp_path: Path) -> None:
    before = root_links()
    with lab_in(tmp_path, hosts=2) as lab:
        host1, host2 = lab.host("host1"), lab.host("host2")
        assert (host1.underlay_ip, host2.underlay_ip) == ("10.250.0.11", "10.250.0.12")
        assert ping(host1, host2.underlay_ip, count=2)
        assert ping(host2, host1.underlay_ip)
        # the fabric's own address answers too, and nothing leaked into the root namespace
        assert ping(host1, str(lab.fabric.gateway.ip))
        assert root_links() == before
        # the underlay address sits on br-phy (OVS userspace tunnelling), not on the NIC
        out = host1.exec(["ip", "-br", "-4", "address", "show"]).stdout
        assert "br-phy" in out and "10.250.0.11/24" in out
        assert "10.250.0.0/24 dev br-phy SRC 10.250.0.11" in host1.ovs.appctl("ovs/route/show")
