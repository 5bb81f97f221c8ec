"""Router gateways and distributed floating IPs: the `gateway` and `floating_ips` of the router
document, which chassis hold the external network (those holding the router that host the port
of one of its floating IPs), and how floating IP, port, router and subnet changes reach exactly
the chassis they alter (every example is also checked incrementally, as in test_routers.py)."""

from __future__ import annotations

from dataclasses import replace

from compiler.builder import IntentBuilder
from compiler.test_routers import HOSTS, check_incremental, kinds
from neutrino.compiler import compile_chassis, recompile_chassis
from neutrino.compiler.intent import FloatingIpRow
from neutrino.db.outbox import Change
from neutrino.policy.model import NetworkPolicy, RouterPolicy, item_key


def served() -> IntentBuilder:
    """r1 joins net-a and net-b and has its gateway on ext (flat, physnet1); floating IP f1
    (port fp1) is associated with a1 on hv1, f2 (port fp2) with nothing. hv1 and hv3 have ports
    on net-a, hv2 on net-b, hv4 nothing."""
    b = IntentBuilder()
    for n, name in enumerate(HOSTS, 1):
        b.chassis(name, f"192.0.2.{n}", physnet1="br-ex")
    b.network("net-a", "geneve", 10).network("net-b", "vxlan", 11)
    b.network("ext", "flat", physical_network="physnet1")
    b.subnet("sub-a", "net-a", "10.0.0.0/24", gateway_ip="10.0.0.1")
    b.subnet("sub-b", "net-b", "10.0.1.0/24", gateway_ip="10.0.1.1")
    b.subnet("sub-ext", "ext", "203.0.113.0/24", gateway_ip="203.0.113.1")
    b.subnet("sub-ext2", "ext", "198.51.100.0/24")  # no gateway_ip: no next hop
    b.router("r1", gw_port_id="gw", enable_snat=False)
    b.interface("r1", "ra", "net-a", ("sub-a", "10.0.0.1"), mac="fa:16:3e:00:0a:01")
    b.interface("r1", "rb", "net-b", ("sub-b", "10.0.1.1"), mac="fa:16:3e:00:0b:01")
    b.interface("r1", "gw", "ext", ("sub-ext2", "198.51.100.4"), ("sub-ext", "203.0.113.4"),
                port_type="network:router_gateway", mac="fa:16:3e:00:ee:01")
    b.port("a1", "net-a", ("sub-a", "10.0.0.5"), host="hv1", mac="fa:16:3e:00:00:a1")
    b.port("b2", "net-b", ("sub-b", "10.0.1.5"), host="hv2", mac="fa:16:3e:00:00:b2")
    b.port("a3", "net-a", ("sub-a", "10.0.0.7"), host="hv3", mac="fa:16:3e:00:00:a3")
    b.floatingip("f1", "fp1", "ext", ("sub-ext", "203.0.113.10"), fixed_port_id="a1",
                 fixed_ip_address="10.0.0.5", router_id="r1", mac="fa:16:3e:00:f1:01")
    b.floatingip("f2", "fp2", "ext", ("sub-ext", "203.0.113.11"), mac="fa:16:3e:00:f2:01")
    return b


def router_doc(docs: dict[str, object], chassis: str) -> RouterPolicy:
    doc = docs[item_key(chassis, "router", "r1")]
    assert isinstance(doc, RouterPolicy)
    return doc


def associate(b: IntentBuilder, fip_id: str, port_id: str | None, address: str | None) -> None:
    b.floatingips[fip_id] = replace(b.floatingips[fip_id], fixed_port_id=port_id,
                                    fixed_ip_address=address,
                                    router_id="r1" if port_id is not None else None)


# --- the documents -------------------------------------------------------------------------------


def test_the_router_document_has_its_gateway_and_associated_floating_ips() -> None:
    intent = served().build()
    doc = router_doc(compile_chassis(intent, "hv1"), "hv1").model_dump(mode="json")
    assert doc["gateway"] == {
        "port_id": "gw", "network_id": "ext", "mac_address": "fa:16:3e:00:ee:01",
        "fixed_ips": [{"subnet_id": "sub-ext", "ip_address": "203.0.113.4",
                       "cidr": "203.0.113.0/24"},
                      {"subnet_id": "sub-ext2", "ip_address": "198.51.100.4",
                       "cidr": "198.51.100.0/24"}],
        "next_hops": ["203.0.113.1"], "enable_snat": False, "chassis": []}
    assert doc["floating_ips"] == [{  # f2, unassociated, is left out
        "id": "f1", "floating_ip_address": "203.0.113.10", "fixed_ip_address": "10.0.0.5",
        "port_id": "a1", "mac_address": "fa:16:3e:00:f1:01", "chassis": "hv1"}]
    # every holder of the router gets the same document
    for name in ("hv2", "hv3"):
        assert router_doc(compile_chassis(intent, name), name).model_dump(mode="json") == doc


def test_floating_ips_are_sorted_and_an_unbound_port_has_no_chassis() -> None:
    b = served()
    b.port("a0", "net-a", ("sub-a", "10.0.0.9"))
    b.floatingip("f0", "fp0", "ext", ("sub-ext", "203.0.113.12"), fixed_port_id="a0",
                 fixed_ip_address="10.0.0.9", router_id="r1")
    doc = router_doc(compile_chassis(b.build(), "hv2"), "hv2")
    assert [(f.id, f.chassis) for f in doc.floating_ips] == [("f0", ""), ("f1", "hv1")]


def test_a_router_without_a_gateway() -> None:
    b = served()
    b.routers["r1"] = replace(b.routers["r1"], gw_port_id=None)
    intent = b.build()
    assert router_doc(compile_chassis(intent, "hv1"), "hv1").gateway is None
    assert "ext" not in kinds(compile_chassis(intent, "hv1"), "network")


def test_only_the_chassis_of_a_floating_ip_port_holds_the_external_network() -> None:
    """hv1 (a1's chassis) holds ext: flat on physnet1, its subnets, no tunnels for it; hv2 and
    hv3 hold the router but host no floating IP port; hv4 holds nothing."""
    intent = served().build()
    hv1 = compile_chassis(intent, "hv1")
    assert kinds(hv1, "network") == ["ext", "net-a", "net-b"]
    ext = hv1[item_key("hv1", "network", "ext")]
    assert isinstance(ext, NetworkPolicy)
    assert (ext.network_type, ext.physical_network) == ("flat", "physnet1")
    assert [s.id for s in ext.subnets] == ["sub-ext", "sub-ext2"]
    assert ext.remote_ports == () and ext.flood_chassis == ()
    assert kinds(hv1, "tunnel") == ["hv2", "hv3"]  # net-a and net-b's, none for ext
    for name in ("hv2", "hv3"):
        assert kinds(compile_chassis(intent, name), "network") == ["net-a", "net-b"]
    assert compile_chassis(intent, "hv4") == {}


def test_gateway_and_floating_ip_ports_are_never_remote_ports() -> None:
    """Even bound somewhere: hv1's ext item lists only the ordinary port x on it."""
    b = served()
    b.ports["gw"] = replace(b.ports["gw"], host="hv2")
    b.ports["fp1"] = replace(b.ports["fp1"], host="hv3")
    b.ports["fp2"] = replace(b.ports["fp2"], host="hv3")
    b.port("x", "ext", ("sub-ext", "203.0.113.50"), host="hv4")
    ext = compile_chassis(b.build(), "hv1")[item_key("hv1", "network", "ext")]
    assert isinstance(ext, NetworkPolicy)
    assert [r.id for r in ext.remote_ports] == ["x"]
    assert ext.flood_chassis == ("hv2", "hv3", "hv4")


def test_an_overlay_external_network_brings_tunnels() -> None:
    b = served()
    b.network("ext", "geneve", 99)
    b.port("x", "ext", ("sub-ext", "203.0.113.50"), host="hv4")
    hv1 = compile_chassis(b.build(), "hv1")
    assert kinds(hv1, "tunnel") == ["hv2", "hv3", "hv4"]


# --- changes -------------------------------------------------------------------------------------


def test_associating_a_floating_ip() -> None:
    """f2 is associated with a3 on hv3: hv3 now holds ext; every holder of r1 sees f2."""
    builder = served()
    before = builder.build()
    associate(builder, "f2", "a3", "10.0.0.7")
    after = builder.build()
    changes = [Change("floatingip", "f2", "update")]
    assert check_incremental(before, after, changes) == {"hv1", "hv2", "hv3"}
    assert "ext" in kinds(compile_chassis(after, "hv3"), "network")
    assert [f.id for f in router_doc(compile_chassis(after, "hv2"), "hv2").floating_ips] == \
        ["f1", "f2"]


def test_disassociating_removes_the_entry_and_the_external_network() -> None:
    builder = served()
    before = builder.build()
    associate(builder, "f1", None, None)
    after = builder.build()
    assert check_incremental(before, after, [Change("floatingip", "f1", "update")]) == {
        "hv1", "hv2", "hv3"}
    hv1 = compile_chassis(after, "hv1")
    assert router_doc(hv1, "hv1").floating_ips == ()
    assert kinds(hv1, "network") == ["net-a", "net-b"]


def test_the_external_network_stays_while_another_floating_ip_needs_it() -> None:
    builder = served()
    builder.port("a4", "net-a", ("sub-a", "10.0.0.8"), host="hv1")
    associate(builder, "f2", "a4", "10.0.0.8")
    before = builder.build()
    associate(builder, "f1", None, None)
    after = builder.build()
    check_incremental(before, after, [Change("floatingip", "f1", "update")])
    assert "ext" in kinds(compile_chassis(after, "hv1"), "network")


def test_moving_a_floating_ip_to_another_port() -> None:
    builder = served()
    before = builder.build()
    associate(builder, "f1", "a3", "10.0.0.7")
    after = builder.build()
    check_incremental(before, after, [Change("floatingip", "f1", "update")])
    assert "ext" not in kinds(compile_chassis(after, "hv1"), "network")
    assert "ext" in kinds(compile_chassis(after, "hv3"), "network")


def test_deleting_a_floating_ip_and_its_port() -> None:
    builder = served()
    before = builder.build()
    del builder.floatingips["f1"], builder.ports["fp1"]
    after = builder.build()
    changes = [Change("port", "fp1", "delete"), Change("floatingip", "f1", "delete")]
    assert check_incremental(before, after, changes) == {"hv1", "hv2", "hv3"}
    assert "ext" not in kinds(compile_chassis(after, "hv1"), "network")


def test_the_port_moving_chassis_moves_the_external_network() -> None:
    """a1 moves from hv1 to hv4: hv4 gets the port, r1, its networks and ext; hv1 loses all."""
    builder = served()
    before = builder.build()
    builder.ports["a1"] = replace(builder.ports["a1"], host="hv4")
    after = builder.build()
    assert check_incremental(before, after, [Change("port", "a1", "update")]) == set(HOSTS)
    assert compile_chassis(after, "hv1") == {}
    assert kinds(compile_chassis(after, "hv4"), "network") == ["ext", "net-a", "net-b"]
    assert router_doc(compile_chassis(after, "hv2"), "hv2").floating_ips[0].chassis == "hv4"


def test_clearing_the_gateway() -> None:
    """The gateway port goes (a port and a router change): no gateway, no ext anywhere."""
    builder = served()
    before = builder.build()
    builder.routers["r1"] = replace(builder.routers["r1"], gw_port_id=None)
    del builder.ports["gw"], builder.router_ports["gw"]
    after = builder.build()
    changes = [Change("port", "gw", "delete"), Change("router", "r1", "update")]
    assert check_incremental(before, after, changes) == {"hv1", "hv2", "hv3"}
    for name in ("hv1", "hv2", "hv3"):
        docs = compile_chassis(after, name)
        assert router_doc(docs, name).gateway is None
        assert "ext" not in kinds(docs, "network")


def test_setting_a_gateway_and_changing_enable_snat() -> None:
    builder = served()
    builder.routers["r1"] = replace(builder.routers["r1"], gw_port_id=None)
    del builder.ports["gw"], builder.router_ports["gw"]
    before = builder.build()
    builder.routers["r1"] = replace(builder.routers["r1"], gw_port_id="gw2", enable_snat=True)
    builder.interface("r1", "gw2", "ext", ("sub-ext", "203.0.113.7"),
                      port_type="network:router_gateway")
    after = builder.build()
    changes = [Change("port", "gw2", "create"), Change("router", "r1", "update")]
    check_incremental(before, after, changes)
    doc = router_doc(compile_chassis(after, "hv2"), "hv2")
    assert doc.gateway is not None and doc.gateway.port_id == "gw2" and doc.gateway.enable_snat
    assert "ext" in kinds(compile_chassis(after, "hv1"), "network")


def test_the_external_subnet_gateway_ip_changes_the_next_hop() -> None:
    builder = served()
    before = builder.build()
    builder.subnets["sub-ext"] = replace(builder.subnets["sub-ext"], gateway_ip="203.0.113.254")
    after = builder.build()
    # hv1 holds ext; hv2 and hv3 hold r1, whose gateway's next hop changed
    assert check_incremental(before, after, [Change("subnet", "sub-ext", "update")]) == {
        "hv1", "hv2", "hv3"}
    gateway = router_doc(compile_chassis(after, "hv3"), "hv3").gateway
    assert gateway is not None and gateway.next_hops == ("203.0.113.254",)


def test_the_gateway_port_readdressed() -> None:
    builder = served()
    before = builder.build()
    builder.ports["gw"] = replace(builder.ports["gw"], fixed_ips=(("sub-ext", "203.0.113.8"),))
    after = builder.build()
    assert check_incremental(before, after, [Change("port", "gw", "update")]) == {
        "hv1", "hv2", "hv3"}


def test_the_floating_ip_port_mac_changes() -> None:
    builder = served()
    before = builder.build()
    builder.ports["fp1"] = replace(builder.ports["fp1"], mac_address="fa:16:3e:00:f1:99")
    after = builder.build()
    assert check_incremental(before, after, [Change("port", "fp1", "update")]) == {
        "hv1", "hv2", "hv3"}
    assert router_doc(compile_chassis(after, "hv1"), "hv1").floating_ips[0].mac_address == \
        "fa:16:3e:00:f1:99"


def test_an_unassociated_floating_ip_changes_no_router() -> None:
    """f2 (no router) deleted with its port: only the holders of ext (its port's network)."""
    builder = served()
    before = builder.build()
    del builder.floatingips["f2"], builder.ports["fp2"]
    after = builder.build()
    changes = [Change("port", "fp2", "delete"), Change("floatingip", "f2", "delete")]
    assert check_incremental(before, after, changes) == {"hv1"}
    previous = compile_chassis(before, "hv2")
    docs = recompile_chassis(before, after, "hv2", previous, changes)
    assert all(docs[key] is doc for key, doc in previous.items())


def test_a_floating_ip_row_of_the_intent() -> None:
    intent = served().build()
    assert intent.floatingips["f1"] == FloatingIpRow("f1", "ext", "fp1", "203.0.113.10", "a1",
                                                     "10.0.0.5", "r1")
    assert intent.floatingips_by_router == {"r1": ("f1",)}
    assert intent.floatingips_by_fixed_port == {"a1": ("f1",)}
    assert intent.floatingips_by_floating_port == {"fp1": ("f1",), "fp2": ("f2",)}
    assert intent.routers_by_gateway_port == {"gw": ("r1",)}
    assert intent.routers_by_gateway_network == {"ext": ("r1",)}
    assert intent.external_hosts("r1") == {"hv1"}
    assert intent.network_hosts("ext") == {"hv1"}
