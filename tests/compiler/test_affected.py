"""affected_chassis on hand-picked changes: the chassis it names, and only those."""

from __future__ import annotations

from dataclasses import replace

from compiler.builder import IntentBuilder
from neutrino.compiler import Intent, affected_chassis, compile_chassis
from neutrino.compiler.intent import ChassisRow
from neutrino.db.outbox import Change


def base() -> IntentBuilder:
    b = IntentBuilder()
    for n in range(1, 6):
        b.chassis(f"hv{n}", f"192.0.2.{n}", physnet1="br-ex")
    b.network("net-a", "geneve", 10).network("net-b", "geneve", 11)
    b.network("net-v", "vlan", 100, "physnet1")
    b.group("sg-web").group("sg-db")
    b.rule("r1", "sg-web", protocol="tcp", remote_group_id="sg-db")
    b.port("a1", "net-a", ("s", "10.0.0.1"), host="hv1", groups=("sg-web",))
    b.port("a2", "net-a", ("s", "10.0.0.2"), host="hv2")
    b.port("b3", "net-b", ("s2", "10.1.0.3"), host="hv3", groups=("sg-db",))
    b.port("b4", "net-b", host="hv4")
    b.port("v5", "net-v", host="hv5")
    return b


def changed_chassis(before: Intent, after: Intent) -> set[str]:
    hosts = {f"hv{n}" for n in range(1, 6)}
    return {h for h in hosts if compile_chassis(before, h) != compile_chassis(after, h)}


def check(before: Intent, after: Intent, changes: list[Change], expected: set[str]) -> None:
    affected = affected_chassis(before, after, changes)
    assert affected == expected
    assert changed_chassis(before, after) <= affected


def test_port_of_an_address_set_reaches_its_consumers() -> None:
    before = base().build()
    after = replace(before, ports={**before.ports, "b3": replace(before.ports["b3"],
                                                                fixed_ips=(("s2", "10.1.0.30"),))})
    # hv3 (its host), hv4 (same network), hv1 (sg-web's rule names sg-db as remote)
    check(before, after, [Change("port", "b3", "update")], {"hv1", "hv3", "hv4"})


def test_port_moving_host() -> None:
    before = base().build()
    after = replace(before, ports={**before.ports, "a2": replace(before.ports["a2"], host="hv5")})
    check(before, after, [Change("port", "a2", "update")], {"hv1", "hv2", "hv5"})


def test_rule_change_reaches_group_users_only() -> None:
    before = base().build()
    after = replace(before, rules={})
    check(before, after, [Change("security_group_rule", "r1", "delete")], {"hv1"})


def test_chassis_tunnel_ip_reaches_overlay_peers() -> None:
    before = base().build()
    after = replace(before, chassis={**before.chassis,
                                     "hv2": replace(before.chassis["hv2"], tunnel_ip="192.0.2.99")})
    check(before, after, [Change("chassis", "hv2", "update")], {"hv1"})


def test_new_physnet_renumbers_provider_networks() -> None:
    before = base().build()
    # a physnet sorting before physnet1 shifts its index: net-v's tunnel key changes on hv5
    after = replace(before, chassis={**before.chassis,
                                     "hv1": ChassisRow("hv1", "192.0.2.1", (("aaa", "br-a"),))})
    # hv2: hv1's overlay peer (its tunnel item reads hv1's row); hv5: the renumbered vlan network
    check(before, after, [Change("chassis", "hv1", "update")], {"hv2", "hv5"})
    assert changed_chassis(before, after) == {"hv5"}


def test_unknown_kind_affects_everyone() -> None:
    before = base().build()
    assert affected_chassis(before, before, [Change("segment", "x", "update")]) == {
        f"hv{n}" for n in range(1, 6)}
