"""The ARP / ND responder on real packets: an instance's neighbour solicitation for another
port's IPv6 address is answered by its own host's pipeline with a valid advertisement (the
kernel accepts it and ping6 works), the solicitation is never flooded to the target, and
duplicate address detection is never answered (addresses do not turn "dadfailed")."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from e2e.support import E2ELab, Frame, wait_until

pytestmark = pytest.mark.root

V6_CIDR = "fd00:77::/64"
ICMPV6, NS = 58, 135


def _neighbour_solicitation_for(frame: Frame) -> str | None:
    """The target address of an IPv6 neighbour solicitation, else None."""
    data = frame.data
    if frame.ethertype != 0x86DD or len(data) < 78 or data[20] != ICMPV6 or data[54] != NS:
        return None
    return str(ipaddress.IPv6Address(data[62:78]))


@pytest.fixture(scope="module")
def dual_stack(lab: E2ELab) -> dict[str, Any]:
    """vm6a on host1 and vm6b on host2, on a network with an IPv4 and an IPv6 subnet."""
    cloud = lab.cloud
    net = cloud.network.create_network(name="nd-net")
    cloud.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.78.0.0/24")
    cloud.network.create_subnet(network_id=net.id, ip_version=6, cidr=V6_CIDR,
                                ipv6_address_mode="dhcpv6-stateful")
    for name, host in (("vm6a", "host1"), ("vm6b", "host2")):
        lab.boot(name, host, network="nd-net")
    return {"v6": {name: next(f["ip_address"] for f in lab.port(name).fixed_ips
                              if ":" in f["ip_address"]) for name in ("vm6a", "vm6b")}}


def _tentative_gone(lab: E2ELab, name: str) -> bool:
    out = lab.exec(name, "ip", "-6", "address", "show", "dev", "eth0").stdout
    return "tentative" not in out


def test_a_solicitation_is_answered_on_the_source_host_and_never_reaches_the_target(
        lab: E2ELab, dual_stack: dict[str, Any]) -> None:
    a, b = dual_stack["v6"]["vm6a"], dual_stack["v6"]["vm6b"]
    for name in ("vm6a", "vm6b"):
        wait_until(lambda name=name: _tentative_gone(lab, name), timeout=10,  # type: ignore[misc]
                   message=f"DAD of {name} finished")
        # DAD probes went out and nobody answered them for the port: no duplicate
        assert "dadfailed" not in lab.exec(name, "ip", "-6", "address").stdout
    lab.exec("vm6a", "ip", "-6", "neigh", "flush", "dev", "eth0")
    with lab.capture("vm6b") as capture:
        assert lab.ping("vm6a", b, count=2) or lab.ping("vm6a", b, count=3), "ping6 failed"
        solicitations = capture.matching(lambda f: _neighbour_solicitation_for(f) == b)
    assert solicitations["vm6b"] == []  # answered on host1, not flooded to vm6b
    neighbour = lab.exec("vm6a", "ip", "-6", "neigh", "show", b).stdout
    assert lab.mac("vm6b") in neighbour  # the advertisement carried the right MAC
    assert lab.ping("vm6b", a, count=2)


def test_a_solicitation_for_an_unknown_address_is_not_answered(
        lab: E2ELab, dual_stack: dict[str, Any]) -> None:
    """Only fixed IPs are answered; anything else is flooded as usual and nobody claims it."""
    unknown = str(ipaddress.IPv6Network(V6_CIDR)[0xbeef])
    assert not lab.ping("vm6a", unknown, count=1, wait=1.0)
    neighbour = lab.exec("vm6a", "ip", "-6", "neigh", "show", unknown).stdout
    assert "lladdr" not in neighbour
