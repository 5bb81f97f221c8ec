"""How a router's SNAT is rendered on its gateway chassis and on the chassis that redirect to
them (pure: documents in, flows out; the real packets are in tests/e2e/test_ha_snat.py).

The world: router r1 (gateway 172.24.4.5 on external network `public`, next hop 172.24.4.1,
gateway chassis gw1 then gw2) with an interface on the geneve network `inside`; the chassis
under test holds a port on `inside`; tunnels: gw1 at ofport 1, gw2 at ofport 2, c3 at 3.
"""

from __future__ import annotations

import pytest

from neutrino.pipeline.flows import Flow
from neutrino.pipeline.render import NO_GATEWAY, probe_mac, render_chassis
from neutrino.policy.model import (
    Document,
    FixedIp,
    NetworkPolicy,
    PortPolicy,
    RouterAddress,
    RouterGateway,
    RouterInterface,
    RouterPolicy,
    SubnetPolicy,
)

INSIDE_KEY, PUBLIC_KEY, ROUTER_KEY = 7, 9, 5 << 32 | 0xA1
TUNNELS = {"gw1": 1, "gw2": 2, "c3": 3}
GATEWAY_MAC, INTERFACE_MAC = "fa:16:3e:00:ee:01", "fa:16:3e:00:01:01"


def documents(*, chassis: tuple[str, ...] = ("gw1", "gw2"), enable_snat: bool = True,
              external: bool = True) -> dict[str, Document]:
    inside = NetworkPolicy(id="inside", network_type="geneve", segmentation_id=1001,
                           tunnel_key=INSIDE_KEY,
                           subnets=(SubnetPolicy(id="s-in", cidr="10.1.0.0/24", ip_version=4,
                                                 gateway_ip="10.1.0.1"),))
    public = NetworkPolicy(id="public", network_type="flat", physical_network="physnet1",
                           tunnel_key=PUBLIC_KEY)
    router = RouterPolicy(
        id="r1", tunnel_key=ROUTER_KEY,
        interfaces=(RouterInterface(port_id="rif", network_id="inside", mac_address=INTERFACE_MAC,
                                    fixed_ips=(RouterAddress(subnet_id="s-in",
                                                             ip_address="10.1.0.1",
                                                             cidr="10.1.0.0/24"),)),),
        gateway=RouterGateway(port_id="gw", network_id="public", mac_address=GATEWAY_MAC,
                              fixed_ips=(RouterAddress(subnet_id="s-pub", ip_address="172.24.4.5",
                                                       cidr="172.24.4.0/24"),),
                              next_hops=("172.24.4.1",), enable_snat=enable_snat,
                              chassis=chassis))
    vm = PortPolicy(id="vm", network_id="inside", mac_address="fa:16:3e:00:00:10",
                    fixed_ips=(FixedIp(subnet_id="s-in", ip_address="10.1.0.10"),),
                    port_security_enabled=False)
    docs: dict[str, Document] = {"inside": inside, "router": router, "vm": vm}
    if external:
        docs["public"] = public
    return docs


def render(chassis: str, docs: dict[str, Document] | None = None,
           tunnels: dict[str, int] | None = None) -> list[Flow]:
    peers = {c: o for c, o in (TUNNELS if tunnels is None else tunnels).items() if c != chassis}
    return render_chassis(docs or documents(), {"vm": 10}, peers,
                          ct_zones={"inside": 1, "public": 2, "r1": 3}, dhcp_ofport=4,
                          provider_ofports={"physnet1": 20}, chassis=chassis)


def stage(flows: list[Flow], name: str, priority: int | None = None) -> list[str]:
    return [f.describe() for f in flows
            if f.stage == name and (priority is None or f.priority == priority)]


def test_a_compute_chassis_sends_default_route_traffic_to_the_first_live_gateway() -> None:
    flows = render("c3")
    (redirect,) = stage(flows, "ip_routing", 98)
    assert f"xreg1={INSIDE_KEY}" in redirect
    assert "set_field:0x3e9->tun_id" in redirect  # the input network's VNI (1001)
    assert "bundle_load(eth_src,0,active_backup,ofport,NXM_NX_REG4[],members:1,2)" in redirect
    assert sorted(stage(flows, "gateway_redirect")) == sorted([
        f"gateway_redirect 100 metadata={ROUTER_KEY},reg4=1 output:1",
        f"gateway_redirect 100 metadata={ROUTER_KEY},reg4=2 output:2"])
    # no translation and no answers for the gateway address here
    assert not stage(flows, "ip_routing", 99)
    assert not any("172.24.4.5" in line for line in stage(flows, "l2_lookup"))


def test_the_preferred_gateway_translates_its_own_and_redirected_traffic() -> None:
    flows = render("gw1")
    (redirect,) = stage(flows, "ip_routing", 98)
    assert "bundle_load" not in redirect and "set_field:0x20->reg0" in redirect  # SNAT here
    (snat,) = stage(flows, "ip_routing", 99)
    assert "reg0=0x20/0x20" in snat
    assert "nat(src=172.24.4.5)" in snat and f"set_field:{GATEWAY_MAC}->eth_src" in snat
    # redirected frames from the tunnels are taken into the router without another TTL - 1
    assert any(f"dl_dst={INTERFACE_MAC}" in line and "reg0=0x1/0x1" in line
               for line in stage(flows, "l2_lookup", 100))
    assert any("reg0=0x20/0x20" in line and "dec_ttl" not in line
               for line in stage(flows, "l3_input", 60))
    # the way back: un-SNAT to the gateway address
    (back,) = stage(flows, "l3_input", 94)
    assert "nw_dst=172.24.4.5" in back and "nat)" in back
    # the preferred gateway answers ARP for the gateway address unconditionally
    (arp,) = [line for line in stage(flows, "l2_lookup", 110) if "arp_tpa=172.24.4.5" in line]
    assert "reg4" not in arp and f"set_field:{GATEWAY_MAC}->arp_sha" in arp


def test_a_standby_gateway_takes_over_only_when_the_ones_before_it_are_unreachable() -> None:
    flows = render("gw2")
    (redirect,) = stage(flows, "ip_routing", 98)
    assert "members:1)" in redirect  # only gw1 comes before it
    assert f"gateway_redirect 100 metadata={ROUTER_KEY},reg4={NO_GATEWAY} " \
           "set_field:0x20->reg0,resubmit(,ip_routing)" in stage(flows, "gateway_redirect")
    # ARP for the gateway address: asks bundle_load first, answers only when gw1 is down
    asks = [line for line in stage(flows, "l2_lookup", 110) if "arp_tpa=172.24.4.5" in line]
    answers = [line for line in stage(flows, "l2_lookup", 111) if "arp_tpa=172.24.4.5" in line]
    assert len(asks) == 1 and "reg4=0 " in asks[0] and "members:1)" in asks[0]
    assert len(answers) == 1 and f"reg4={NO_GATEWAY}" in answers[0]


def test_gateways_resolve_the_next_hop_as_themselves() -> None:
    flows = render("gw2")
    mac = probe_mac("gw2")
    assert mac != probe_mac("gw1") and int(mac[:2], 16) & 0x03 == 0x02  # local, unicast
    assert any(f"dl_dst={mac}" in line and "output:4" in line for line in stage(flows, "l2_lookup", 105))
    assert any(f"dl_src={mac}" in line for line in stage(flows, "native_dhcp", 111))


@pytest.mark.parametrize("variant", ["no snat", "no gateway chassis", "no tunnel to one"])
def test_no_redirect_without_snat_or_a_gateway_to_reach(variant: str) -> None:
    if variant == "no snat":
        flows = render("c3", documents(enable_snat=False))
    elif variant == "no gateway chassis":
        flows = render("c3", documents(chassis=()))
    else:
        flows = render("c3", tunnels={})
    assert not stage(flows, "ip_routing", 98)
    assert not stage(flows, "gateway_redirect")


def test_a_gateway_without_the_external_network_does_not_translate() -> None:
    """(It still redirects to the gateways before it.)"""
    flows = render("gw2", documents(external=False))
    assert not stage(flows, "ip_routing", 99)
    (redirect,) = stage(flows, "ip_routing", 98)
    assert "members:1)" in redirect
