"""ChassisRenderer: an agent's long-lived renderer always holds exactly what a fresh render of
the current inputs gives, and reports exactly the difference from its previous table."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.test_isolation_property import CHASSIS, DHCP_OFPORT, intents
from neutrino.compiler import compile_chassis
from neutrino.pipeline.flows import Flow, FlowKey
from neutrino.pipeline.render import ChassisRenderer, render_chassis
from neutrino.policy.model import Document, NetworkPolicy, PortPolicy, SecurityGroupRulePolicy
from pipeline.policies import GROUPS, chassis_documents

VIF, TUNNEL = 10, 1


def fresh(documents: dict[str, Document], inputs: dict[str, Any]) -> dict[FlowKey, Flow]:
    return {f.key: f for f in render_chassis(documents, **inputs)}


def apply(table: dict[FlowKey, Flow], changes: dict[FlowKey, Flow | None]) -> dict[FlowKey, Flow]:
    out = dict(table)
    for key, flow in changes.items():
        if flow is None:
            del out[key]
        else:
            out[key] = flow
    return out


@st.composite
def chassis_inputs(draw: st.DrawFn) -> tuple[dict[str, Document], dict[str, Any]]:
    """One chassis's documents (compiled from a random intent) and random switch-side inputs:
    which ports are plugged at which ofport, which tunnels and patches exist, DHCP on or off."""
    intent = draw(intents())
    name = draw(st.sampled_from(CHASSIS))
    documents = dict(compile_chassis(intent, name))
    ports = sorted(d.id for d in documents.values() if isinstance(d, PortPolicy))
    networks = sorted(d.id for d in documents.values() if isinstance(d, NetworkPolicy))
    plugged = draw(st.lists(st.sampled_from(ports), unique=True)) if ports else []
    first = draw(st.integers(100, 103))
    inputs = {
        "local_ofports": {p: first + i for i, p in enumerate(plugged)},
        "tunnel_ofports": {peer: 1 + i for i, peer in enumerate(CHASSIS)
                           if peer != name and draw(st.booleans())},
        "ct_zones": {n: 1 + i for i, n in enumerate(networks)},
        "dhcp_ofport": draw(st.sampled_from((None, DHCP_OFPORT))),
        "provider_ofports": {p: 50 + i for i, p in enumerate(("physA", "physB")) if draw(st.booleans())},
    }
    return documents, inputs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(chassis_inputs(), min_size=2, max_size=5))
def test_a_renderer_that_saw_any_history_equals_a_fresh_render(
        steps: list[tuple[dict[str, Document], dict[str, Any]]]) -> None:
    renderer = ChassisRenderer()
    assert renderer.update(*_args(*steps[0])) is None  # the first update rebuilds everything
    table = dict(renderer.flows)
    assert table == fresh(*steps[0])
    for documents, inputs in steps[1:]:
        changes = renderer.update(*_args(documents, inputs))
        assert changes is not None
        assert renderer.flows == fresh(documents, inputs)
        assert apply(table, changes) == renderer.flows  # the changes are exactly the difference
        assert all(table.get(key) != flow for key, flow in changes.items())  # and nothing more
        table = dict(renderer.flows)


def _args(documents: dict[str, Document], inputs: dict[str, Any]) -> tuple[Any, ...]:
    return (documents, inputs["local_ofports"], inputs["tunnel_ofports"], inputs["ct_zones"],
            inputs["dhcp_ofport"], inputs["provider_ofports"])


def test_a_change_to_one_item_touches_only_its_flows() -> None:
    documents = chassis_documents("p1")
    renderer = ChassisRenderer()
    renderer.update(documents, {"p1": VIF}, {"host2": TUNNEL})
    group_key = next(k for k in documents if k.endswith("/security_group/open"))
    rule = SecurityGroupRulePolicy(id="open-tcp-7000", direction="ingress", ethertype="IPv4",
                                   protocol=6, port_range_min=7000, port_range_max=7000)
    group = GROUPS["open"].model_copy(update={"rules": (*GROUPS["open"].rules, rule)})
    changes = renderer.update({**documents, group_key: group}, {"p1": VIF}, {"host2": TUNNEL})
    assert changes is not None
    described = sorted(f.describe() for f in changes.values() if f is not None)
    assert any("tp_dst=7000" in d for d in described)  # clause 2 of the new rule
    assert any(d.startswith("acl_ingress 1000 conj_id=") for d in described)  # its conjunction
    assert any(d.startswith(f"acl_ingress 1000 reg7={VIF} ") for d in described)  # p1's clause 1
    assert len(changes) == 3
    assert renderer.update({**documents, group_key: group}, {"p1": VIF}, {"host2": TUNNEL}) == {}


def test_clauses_shared_by_two_groups_merge_and_split_again() -> None:
    # p1 in both groups: their identical "tcp 5001 from anywhere" clause is one flow with two
    # conjunction actions; when p1 leaves one group, the flow keeps only the other's action
    documents = chassis_documents("p1")
    port_key = next(k for k in documents if k.endswith("/port/p1"))
    closed_key = port_key.replace("/port/p1", "/security_group/closed")
    closed = GROUPS["closed"].model_copy(update={"rules": (SecurityGroupRulePolicy(
        id="closed-any-5001", direction="ingress", ethertype="IPv4", protocol=6,
        port_range_min=5001, port_range_max=5001, remote_ip_prefix="0.0.0.0/0"),)})
    both = documents[port_key].model_copy(update={"security_group_ids": ("closed", "open")})
    documents = {**documents, closed_key: closed, port_key: both}
    renderer = ChassisRenderer()
    renderer.update(documents, {"p1": VIF}, {"host2": TUNNEL})
    shared = [f for f in renderer.flows.values() if ("tp_dst", "5001") in f.match
              and ("nw_src", "0.0.0.0/0") not in f.match]
    assert len(shared) == 1 and len(shared[0].actions) == 2
    one = both.model_copy(update={"security_group_ids": ("open",)})
    changes = renderer.update({**documents, port_key: one}, {"p1": VIF}, {"host2": TUNNEL})
    assert changes is not None
    assert renderer.flows == fresh({**documents, port_key: one},
                                   {"local_ofports": {"p1": VIF}, "tunnel_ofports": {"host2": TUNNEL}})
    merged = renderer.flows[shared[0].key]
    assert len(merged.actions) == 1


def test_unplugging_a_port_removes_its_flows_and_its_network_flood_entry() -> None:
    documents = chassis_documents("p1")
    renderer = ChassisRenderer()
    renderer.update(documents, {"p1": VIF}, {"host2": TUNNEL})
    changes = renderer.update(documents, {}, {"host2": TUNNEL})
    assert changes is not None
    removed = [k for k, f in changes.items() if f is None]
    rewritten = [f for f in changes.values() if f is not None]
    assert removed and all(f"reg7=0x{VIF:x}" not in ",".join(f.actions) for f in rewritten)
    assert renderer.flows == fresh(documents, {"local_ofports": {}, "tunnel_ofports": {"host2": TUNNEL}})


def test_clauses_shared_inside_one_unit_merge_too() -> None:
    # two ingress rules of `open` naming `closed` as remote group: clause 3 of both matches each
    # address of `closed`, in one address-set unit; and two rules of one group with one match
    documents = chassis_documents("p1")
    group_key = next(k for k in documents if k.endswith("/security_group/open"))
    extra = (SecurityGroupRulePolicy(id="open-udp", direction="ingress", ethertype="IPv4",
                                     protocol=17, remote_group_id="closed"),
             SecurityGroupRulePolicy(id="open-tcp-again", direction="ingress", ethertype="IPv4",
                                     protocol=6, port_range_min=5001, port_range_max=5001,
                                     remote_ip_prefix="0.0.0.0/0"))
    group = GROUPS["open"].model_copy(update={"rules": (*GROUPS["open"].rules, *extra)})
    renderer = ChassisRenderer()
    renderer.update(documents, {"p1": VIF}, {"host2": TUNNEL})
    inputs = {"local_ofports": {"p1": VIF}, "tunnel_ofports": {"host2": TUNNEL}}
    changes = renderer.update({**documents, group_key: group}, {"p1": VIF}, {"host2": TUNNEL})
    assert changes is not None
    assert renderer.flows == fresh({**documents, group_key: group}, inputs)
    address = [f for f in renderer.flows.values() if ("nw_src", "10.0.0.2") in f.match]
    assert len(address) == 1 and len(address[0].actions) == 2  # icmp and udp from `closed`
    renderer.update(documents, {"p1": VIF}, {"host2": TUNNEL})
    assert renderer.flows == fresh(documents, inputs)
