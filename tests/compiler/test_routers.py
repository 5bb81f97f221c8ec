"""Routers, compiled for distributed (DVR) east-west routing: which chassis gets a `router`
item, what the document holds, the networks and tunnels that come with it, and how changes of
routers, interfaces and the ports around them reach exactly the chassis they alter (every
example is also checked incrementally: `recompile_chassis` gives the full compile and the
chassis `affected_chassis` leaves out compile the same)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from compiler.builder import IntentBuilder
from neutrino.compiler import Intent, affected_chassis, compile_chassis, recompile_chassis, tunnel_key
from neutrino.compiler.intent import RouterPortRow, RowChanges, router_tunnel_keys, updated_intent
from neutrino.db.outbox import Change
from neutrino.policy.model import RouterPolicy, item_key, parse_key

HOSTS = ("hv1", "hv2", "hv3", "hv4")


def joined() -> IntentBuilder:
    """net-a and net-b joined by router r1 (interfaces unbound, as the API makes them); net-c
    on its own; hv1 has a port on net-a, hv2 on net-b, hv3 on net-c, hv4 nothing."""
    b = IntentBuilder()
    for n, name in enumerate(HOSTS, 1):
        b.chassis(name, f"192.0.2.{n}")
    b.network("net-a", "geneve", 10).network("net-b", "vxlan", 11).network("net-c", "geneve", 12)
    b.network("ext", "flat", physical_network="physnet1")
    b.subnet("sub-a", "net-a", "10.0.0.0/24", gateway_ip="10.0.0.1")
    b.subnet("sub-a6", "net-a", "fd00::/64", gateway_ip="fd00::1")
    b.subnet("sub-b", "net-b", "10.0.1.0/24", gateway_ip="10.0.1.1")
    b.subnet("sub-ext", "ext", "203.0.113.0/24", gateway_ip="203.0.113.1")
    b.router("r1", routes=(("10.9.0.0/16", "10.0.1.9"), ("10.8.0.0/16", "10.0.0.8")),
             gw_port_id="gw")
    b.interface("r1", "ra", "net-a", ("sub-a6", "fd00::1"), ("sub-a", "10.0.0.1"),
                mac="fa:16:3e:00:0a:01")
    b.interface("r1", "rb", "net-b", ("sub-b", "10.0.1.1"), mac="fa:16:3e:00:0b:01")
    b.interface("r1", "gw", "ext", ("sub-ext", "203.0.113.5"), port_type="network:router_gateway")
    b.port("a1", "net-a", ("sub-a", "10.0.0.5"), host="hv1", mac="fa:16:3e:00:00:a1")
    b.port("b2", "net-b", ("sub-b", "10.0.1.5"), host="hv2", mac="fa:16:3e:00:00:b2")
    b.port("c3", "net-c", host="hv3", mac="fa:16:3e:00:00:c3")
    return b


def kinds(docs: dict[str, Any], kind: str) -> list[str]:
    return sorted(parse_key(k)[2] for k in docs if parse_key(k)[1] == kind)


def check_incremental(before: Intent, after: Intent, changes: list[Change]) -> set[str]:
    """Both incremental answers are right for every chassis; returns the affected chassis."""
    affected = affected_chassis(before, after, changes)
    for name in HOSTS:
        previous = compile_chassis(before, name)
        assert recompile_chassis(before, after, name, previous, changes) == \
            compile_chassis(after, name), name
        if name not in affected:
            assert compile_chassis(after, name) == previous, name
    return affected


# --- who holds the router, and what comes with it ------------------------------------------------


def test_a_chassis_with_a_port_on_a_router_network_holds_the_router() -> None:
    intent = joined().build()
    assert kinds(compile_chassis(intent, "hv1"), "router") == ["r1"]  # a port on net-a
    assert kinds(compile_chassis(intent, "hv2"), "router") == ["r1"]  # a port on net-b


def test_a_chassis_with_no_port_on_a_router_network_gets_nothing_of_it() -> None:
    intent = joined().build()
    assert sorted(compile_chassis(intent, "hv3")) == [
        item_key("hv3", "network", "net-c"), item_key("hv3", "port", "c3")]
    assert compile_chassis(intent, "hv4") == {}


def test_the_router_document() -> None:
    """Every interface, sorted by port id, with its addresses sorted by (subnet, address) and
    each subnet's prefix; the routes sorted; the router's key; the gateway apart (no floating
    IPs here: tests/compiler/test_floating_ips.py)."""
    intent = joined().build()
    doc = compile_chassis(intent, "hv1")[item_key("hv1", "router", "r1")]
    assert doc.model_dump(mode="json") == {
        "id": "r1", "tunnel_key": 5 << 32 | int.from_bytes(
            hashlib.sha256(b"r1").digest()[:4], "big"),
        "admin_state_up": True,
        "interfaces": [
            {"port_id": "ra", "network_id": "net-a", "mac_address": "fa:16:3e:00:0a:01",
             "fixed_ips": [{"subnet_id": "sub-a", "ip_address": "10.0.0.1", "cidr": "10.0.0.0/24"},
                           {"subnet_id": "sub-a6", "ip_address": "fd00::1", "cidr": "fd00::/64"}]},
            {"port_id": "rb", "network_id": "net-b", "mac_address": "fa:16:3e:00:0b:01",
             "fixed_ips": [{"subnet_id": "sub-b", "ip_address": "10.0.1.1",
                            "cidr": "10.0.1.0/24"}]}],
        "routes": [{"destination": "10.8.0.0/16", "nexthop": "10.0.0.8"},
                   {"destination": "10.9.0.0/16", "nexthop": "10.0.1.9"}],
        "gateway": {"port_id": "gw", "network_id": "ext",
                    "mac_address": intent.ports["gw"].mac_address,
                    "fixed_ips": [{"subnet_id": "sub-ext", "ip_address": "203.0.113.5",
                                   "cidr": "203.0.113.0/24"}],
                    "next_hops": ["203.0.113.1"], "enable_snat": True, "chassis": []},
        "floating_ips": [],
        "port_forwardings": [],
    }
    assert compile_chassis(intent, "hv2")[item_key("hv2", "router", "r1")] == doc


def test_the_router_brings_every_network_it_routes_into_and_tunnels_to_their_chassis() -> None:
    """hv1 routes from net-a into net-b and sends straight to b2's chassis: it holds net-b's
    item (remote ports, flood) and a tunnel to hv2, and hv2 the same the other way. The
    router's own interfaces are never remote ports. Not the gateway's network."""
    intent = joined().build()
    hv1 = compile_chassis(intent, "hv1")
    assert kinds(hv1, "network") == ["net-a", "net-b"]
    assert kinds(hv1, "tunnel") == ["hv2"]
    assert hv1[item_key("hv1", "tunnel", "hv2")].model_dump() == {
        "id": "hv2", "ip": "192.0.2.2", "encap": "vxlan"}
    net_b = hv1[item_key("hv1", "network", "net-b")].model_dump(mode="json")
    assert net_b["remote_ports"] == [{"id": "b2", "mac_address": "fa:16:3e:00:00:b2",
                                      "ip_addresses": ["10.0.1.5"], "chassis": "hv2"}]
    assert net_b["flood_chassis"] == ["hv2"]
    assert net_b["tunnel_key"] == tunnel_key(intent, intent.networks["net-b"])
    assert [s["id"] for s in net_b["subnets"]] == ["sub-b"]
    assert hv1[item_key("hv1", "network", "net-a")].model_dump()["remote_ports"] == ()
    hv2 = compile_chassis(intent, "hv2")
    assert kinds(hv2, "network") == ["net-a", "net-b"] and kinds(hv2, "tunnel") == ["hv1"]
    assert kinds(hv2, "port") == ["b2"]  # the router's ports are bound nowhere


def test_a_bound_interface_is_never_a_remote_port() -> None:
    """Even an interface taken over from a port bound to a host: every chassis holding the
    router answers for its addresses, none tunnels to it."""
    b = joined()
    b.ports["rb"] = replace(b.ports["rb"], host="hv3")
    intent = b.build()
    net_b = compile_chassis(intent, "hv1")[item_key("hv1", "network", "net-b")]
    assert [r["id"] for r in net_b.model_dump()["remote_ports"]] == ["b2"]
    assert net_b.model_dump()["flood_chassis"] == ("hv2", "hv3")  # hv3 has a port on net-b


def test_a_device_owner_alone_makes_no_interface() -> None:
    """router_ports is the authority: a port whose device_owner and device_id name a router
    (which any port owner may write) is not one of its interfaces."""
    b = joined()
    b.port("fake", "net-c", ("x", "10.2.0.1"), device_owner="network:router_interface",
           device_id="r1")
    intent = b.build()
    assert "r1" not in intent.routers_by_network.get("net-c", ())
    assert kinds(compile_chassis(intent, "hv3"), "router") == []


def test_several_routers_and_a_disabled_one() -> None:
    b = joined()
    b.router("r2", admin_state_up=False)
    b.interface("r2", "rc", "net-c", mac="fa:16:3e:00:0c:01")
    b.interface("r2", "rb2", "net-b", mac="fa:16:3e:00:0b:02")
    intent = b.build()
    hv2 = compile_chassis(intent, "hv2")  # net-b: both routers, so all three networks
    assert kinds(hv2, "router") == ["r1", "r2"]
    assert kinds(hv2, "network") == ["net-a", "net-b", "net-c"]
    assert kinds(hv2, "tunnel") == ["hv1", "hv3"]
    assert hv2[item_key("hv2", "router", "r2")].model_dump()["admin_state_up"] is False
    hv1 = compile_chassis(intent, "hv1")  # only r1: routing happens on the source chassis
    assert kinds(hv1, "router") == ["r1"] and kinds(hv1, "network") == ["net-a", "net-b"]


# --- changes -------------------------------------------------------------------------------------


def test_a_port_bound_on_a_router_network_brings_the_router_and_its_networks() -> None:
    builder = joined()
    before = builder.build()
    builder.port("a4", "net-a", ("sub-a", "10.0.0.6"), host="hv4")
    after = builder.build()
    affected = check_incremental(before, after, [Change("port", "a4", "create")])
    # hv4 itself; hv1 (net-a); hv2, which routes into net-a (remote ports, tunnels)
    assert affected == {"hv1", "hv2", "hv4"}
    hv4 = compile_chassis(after, "hv4")
    assert kinds(hv4, "router") == ["r1"] and kinds(hv4, "network") == ["net-a", "net-b"]
    assert kinds(hv4, "tunnel") == ["hv1", "hv2"]
    net_a = compile_chassis(after, "hv2")[item_key("hv2", "network", "net-a")]
    assert [r["id"] for r in net_a.model_dump(mode="json")["remote_ports"]] == ["a1", "a4"]


def test_adding_an_interface() -> None:
    """r1 gets an interface on net-c (by subnet: a new port, and a router change): hv3 now
    holds r1, net-a and net-b; hv1 and hv2 hold net-c and tunnel to hv3."""
    builder = joined()
    before = builder.build()
    builder.interface("r1", "rc", "net-c", mac="fa:16:3e:00:0c:01")
    after = builder.build()
    changes = [Change("port", "rc", "create"), Change("router", "r1", "update")]
    assert check_incremental(before, after, changes) == {"hv1", "hv2", "hv3"}
    assert kinds(compile_chassis(after, "hv3"), "network") == ["net-a", "net-b", "net-c"]
    assert kinds(compile_chassis(after, "hv1"), "tunnel") == ["hv2", "hv3"]


def test_an_existing_port_taken_over_as_an_interface() -> None:
    """By port: the port changes owner and gets a router_ports row (a port and a router
    change); were it bound, it would leave the remote ports of its network."""
    builder = joined()
    builder.port("c5", "net-c", host="hv4")
    before = builder.build()
    builder.interface("r1", "c5", "net-c", host="hv4")
    after = builder.build()
    changes = [Change("port", "c5", "update"), Change("router", "r1", "update")]
    assert check_incremental(before, after, changes) == {"hv1", "hv2", "hv3", "hv4"}
    net_c = compile_chassis(after, "hv3")[item_key("hv3", "network", "net-c")]
    assert net_c.model_dump()["remote_ports"] == ()


def test_removing_an_interface() -> None:
    """rb goes (its port deleted, a router change): hv2 no longer holds r1 nor net-a, hv1 no
    longer net-b nor the tunnel to hv2."""
    builder = joined()
    before = builder.build()
    del builder.ports["rb"], builder.router_ports["rb"]
    after = builder.build()
    changes = [Change("port", "rb", "delete"), Change("router", "r1", "update")]
    assert check_incremental(before, after, changes) == {"hv1", "hv2"}
    assert kinds(compile_chassis(after, "hv2"), "network") == ["net-b"]
    assert kinds(compile_chassis(after, "hv2"), "router") == []
    hv1 = compile_chassis(after, "hv1")
    assert kinds(hv1, "network") == ["net-a"] and kinds(hv1, "tunnel") == []
    [interface] = hv1[item_key("hv1", "router", "r1")].model_dump()["interfaces"]
    assert interface["port_id"] == "ra"


def test_a_router_update_touches_only_the_chassis_holding_it() -> None:
    builder = joined()
    before = builder.build()
    builder.router("r1", routes=(), admin_state_up=False, gw_port_id="gw")
    after = builder.build()
    changes = [Change("router", "r1", "update")]
    assert affected_chassis(before, after, changes) == {"hv1", "hv2"}
    check_incremental(before, after, changes)
    previous = compile_chassis(before, "hv1")
    docs = recompile_chassis(before, after, "hv1", previous, changes)
    router_key = item_key("hv1", "router", "r1")
    assert all(doc is previous[key] for key, doc in docs.items() if key != router_key)
    assert docs[router_key].model_dump()["routes"] == ()


def test_deleting_a_router_removes_its_items() -> None:
    builder = joined()
    before = builder.build()
    for port_id in ("ra", "rb", "gw"):
        del builder.ports[port_id], builder.router_ports[port_id]
    del builder.routers["r1"]
    after = builder.build()
    changes = [Change("port", p, "delete") for p in ("ra", "rb", "gw")]
    changes.append(Change("router", "r1", "delete"))
    assert check_incremental(before, after, changes) == {"hv1", "hv2"}
    assert sorted(compile_chassis(after, "hv1")) == [
        item_key("hv1", "network", "net-a"), item_key("hv1", "port", "a1")]


def test_an_interface_address_change_reaches_the_router_holders() -> None:
    builder = joined()
    before = builder.build()
    builder.ports["rb"] = replace(builder.ports["rb"], fixed_ips=(("sub-b", "10.0.1.254"),))
    after = builder.build()
    assert check_incremental(before, after, [Change("port", "rb", "update")]) == {"hv1", "hv2"}


# --- the key rule --------------------------------------------------------------------------------

#: two router ids whose sha256 starts with the same 4 bytes (c0928637), found by search
COLLIDING = ("router-44065", "router-90408")


def h(router_id: str) -> int:
    return int.from_bytes(hashlib.sha256(router_id.encode()).digest()[:4], "big")


def test_a_router_key_is_5_then_32_bits_of_sha256_of_its_id() -> None:
    keys = router_tunnel_keys(["r1", "r2"])
    assert keys == {"r1": 5 << 32 | h("r1"), "r2": 5 << 32 | h("r2")}
    # network keys have 1 (geneve), 2 (vxlan), 3 (vlan) or 4 (flat) in bits 32-39
    assert all(key >> 32 == 5 for key in keys.values())


def test_colliding_routers_get_distinct_keys_deterministically() -> None:
    first, second = COLLIDING
    assert h(first) == h(second)
    keys = router_tunnel_keys([second, first])
    assert keys[first] == 5 << 32 | h(first)  # the smallest id keeps its hash
    assert keys[second] == 5 << 32 | (h(first) + 1)  # the next value that is no router's hash
    assert router_tunnel_keys(["r1", second]) == {"r1": 5 << 32 | h("r1"),
                                                  second: 5 << 32 | h(second)}


def test_a_new_colliding_router_moves_the_other_and_the_compiler_follows() -> None:
    """The router with the smaller id takes the hash: the other's key moves, and its holders
    are affected although no change names it."""
    first, second = COLLIDING
    builder = joined()
    builder.router(second).interface(second, "x1", "net-c", mac="fa:16:3e:00:0c:02")
    before = builder.build()
    builder.router(first).interface(first, "x2", "net-a", mac="fa:16:3e:00:0a:02")
    rows = RowChanges(routers={first: builder.routers[first]},
                      ports={"x2": builder.ports["x2"]},
                      router_ports={"x2": RouterPortRow("x2", first,
                                                        "network:router_interface_distributed")})
    after = updated_intent(before, rows)
    assert after.router_keys == builder.build().router_keys
    assert before.router_keys[second] != after.router_keys[second]
    changes = [Change("router", first, "create"), Change("port", "x2", "create")]
    assert "hv3" in check_incremental(before, after, changes)  # holds `second` (net-c)
    doc = compile_chassis(after, "hv3")[item_key("hv3", "router", second)]
    assert isinstance(doc, RouterPolicy) and doc.tunnel_key == 5 << 32 | (h(first) + 1)
