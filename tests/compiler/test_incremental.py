"""The incremental pass, as properties of the pure functions on random intents and changes:

- `updated_intent(before, rows read again)` is the intent built from scratch on the new rows,
  indexes included, and keeps every row nobody changed (the same object);
- `recompile_chassis(before, after, chassis, compile_chassis(before, chassis), changes)` is
  `compile_chassis(after, chassis)`, for every chassis, and keeps every document the changes
  cannot alter (the same object).

The random intents and changes are test_properties.py's: each change creates, updates or
deletes one row of one table, and `changes` names it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.builder import IntentBuilder
from compiler.test_properties import TABLES, changed, every_chassis, intents
from neutrino.compiler import Intent, compile_chassis, recompile_chassis
from neutrino.compiler.intent import RowChanges, intent_differences, updated_intent
from neutrino.db.outbox import PORT_STATUS_KIND, Change
from neutrino.policy.model import item_key

KIND_TABLES = {"network": "networks", "subnet": "subnets", "port": "ports",
               "security_group": "security_groups", "security_group_rule": "rules",
               "chassis": "chassis", "router": "routers", "floatingip": "floatingips"}


def rows_read_again(before: Intent, after: Intent, changes: list[Change],
                    also: dict[str, str]) -> RowChanges:
    """What the loader gives for `changes`: each named row as it is in `after` (None: gone),
    with a port its router port row and a router the router port rows it had or has, plus the
    rows of `also` ({table: id}), named but not changed."""
    rows = RowChanges()
    named = [(KIND_TABLES[c.kind], c.id) for c in changes] + list(also.items())
    for change in changes:
        if change.kind == "port":
            named.append(("router_ports", change.id))
        elif change.kind == "router":
            named += [("router_ports", p) for intent in (before, after)
                      for p, row in intent.router_ports.items() if row.router_id == change.id]
    for table, id in named:
        getattr(rows, table)[id] = getattr(after, table).get(id)
    return rows


@st.composite
def unchanged_rows(draw: st.DrawFn, intent: Intent) -> dict[str, str]:
    """Some rows of `intent`, by table, to read again although nothing changed them."""
    picked = {}
    for table in TABLES:
        ids = sorted(getattr(intent, table))
        if ids and draw(st.booleans()):
            picked[table] = draw(st.sampled_from(ids))
    return picked


@settings(max_examples=200, deadline=None)
@given(data=st.data(), before=intents(), count=st.integers(1, 4))
def test_an_updated_intent_is_the_intent_built_from_scratch(
        data: st.DataObject, before: Intent, count: int) -> None:
    after, changes = data.draw(changed(before, count))
    also = data.draw(unchanged_rows(after))
    also = {t: i for t, i in also.items() if not any(
        KIND_TABLES[c.kind] == t and c.id == i for c in changes)}
    updated = updated_intent(before, rows_read_again(before, after, changes, also))
    assert intent_differences(updated, after) == []
    assert updated == after and updated.all_indexes() == after.all_indexes()
    for table in TABLES:
        rows_before = getattr(before, table)
        for id, row in getattr(updated, table).items():
            if row == rows_before.get(id):
                assert row is rows_before[id], "an unchanged row was replaced"


@settings(max_examples=200, deadline=None)
@given(data=st.data(), before=intents(), count=st.integers(1, 4))
def test_recompiling_a_chassis_gives_its_full_compile(
        data: st.DataObject, before: Intent, count: int) -> None:
    after, changes = data.draw(changed(before, count))
    for name in sorted(every_chassis(before, after)):
        previous = compile_chassis(before, name)
        assert recompile_chassis(before, after, name, previous, changes) == \
            compile_chassis(after, name), (name, changes)


@settings(max_examples=50, deadline=None)
@given(before=intents())
def test_without_changes_recompiling_keeps_every_document(before: Intent) -> None:
    for name in sorted(every_chassis(before)):
        previous = compile_chassis(before, name)
        again = recompile_chassis(before, before, name, previous, [])
        assert again == previous
        assert all(again[key] is doc for key, doc in previous.items())


# --- examples ------------------------------------------------------------------------------------


def two_networks() -> IntentBuilder:
    b = IntentBuilder().chassis("hv1", "192.0.2.1").chassis("hv2", "192.0.2.2")
    b.network("net-a").subnet("sub-a", "net-a", "10.0.0.0/24")
    b.network("net-b").subnet("sub-b", "net-b", "10.0.1.0/24")
    b.group("web").rule("ssh", "web", protocol="tcp", port_range_min=22, port_range_max=22)
    b.rule("from-web", "web", remote_group_id="web")
    b.port("a1", "net-a", ("sub-a", "10.0.0.5"), host="hv1", groups=("web",))
    b.port("b1", "net-b", ("sub-b", "10.0.1.5"), host="hv1")
    return b


def test_a_new_port_compiles_only_what_it_touches() -> None:
    """A port created on hv1 in net-a and group web: its own item, net-a's item and web's
    address set are compiled again; net-b's item and the other port's stay the same objects."""
    builder = two_networks()
    before = builder.build()
    builder.port("a2", "net-a", ("sub-a", "10.0.0.6"), host="hv1", groups=("web",))
    after = builder.build()
    previous = compile_chassis(before, "hv1")
    docs = recompile_chassis(before, after, "hv1", previous, [Change("port", "a2", "create")])
    assert docs == compile_chassis(after, "hv1")
    for unchanged in (item_key("hv1", "port", "a1"), item_key("hv1", "port", "b1"),
                      item_key("hv1", "network", "net-b")):
        assert docs[unchanged] is previous[unchanged]
    assert docs[item_key("hv1", "address_set", "web")] != previous[item_key("hv1", "address_set", "web")]


def test_a_port_moving_to_another_chassis_brings_tunnels_on_both() -> None:
    builder = two_networks()
    builder.port("a2", "net-a", ("sub-a", "10.0.0.6"), host="hv1")
    before = builder.build()
    builder.port("a2", "net-a", ("sub-a", "10.0.0.6"), host="hv2", mac="fa:16:3e:00:00:03")
    after = builder.build()
    change = [Change("port", "a2", "update")]
    for name in ("hv1", "hv2"):
        docs = recompile_chassis(before, after, name, compile_chassis(before, name), change)
        assert docs == compile_chassis(after, name)
    assert item_key("hv1", "tunnel", "hv2") in compile_chassis(after, "hv1")


def test_status_reports_and_floating_ips_alter_no_document() -> None:
    before = two_networks().build()
    previous = compile_chassis(before, "hv1")
    changes = [Change(PORT_STATUS_KIND, "a1", "update"), Change("floatingip", "f1", "update"),
               Change("port_forwarding", "pf1", "delete")]
    docs = recompile_chassis(before, before, "hv1", previous, changes)
    assert all(docs[key] is doc for key, doc in previous.items()) and docs == previous


def test_an_unknown_change_kind_compiles_the_chassis_in_full() -> None:
    before = two_networks().build()
    previous = compile_chassis(before, "hv1")
    docs = recompile_chassis(before, before, "hv1", previous, [Change("segment", "s1", "create")])
    assert docs == previous and all(docs[key] is not doc for key, doc in previous.items())


def test_a_deleted_row_leaves_the_intent() -> None:
    builder = two_networks()
    before = builder.build()
    rows = RowChanges(ports={"b1": None}, subnets={"sub-b": None}, networks={"net-b": None})
    updated = updated_intent(before, rows)
    del builder.ports["b1"], builder.subnets["sub-b"], builder.networks["net-b"]
    expected: Any = builder.build()
    assert intent_differences(updated, expected) == []
    assert "net-b" not in updated.chassis_by_network and "b1" not in updated.ports
