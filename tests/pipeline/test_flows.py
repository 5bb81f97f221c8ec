"""The generation-time check: a flow must fit its stage's declaration."""

from __future__ import annotations

import pytest

from neutrino.pipeline.flows import Flow, PipelineError, check_flow, cookie_for, mask_tables, resubmit
from neutrino.pipeline.stages import STAGES, table


def test_a_flow_that_fits_its_stage_is_accepted() -> None:
    flow = Flow.make("l2_lookup", 100, {"metadata": 5, "dl_dst": "fa:16:3e:00:00:01"},
                     ["set_field:0x2->reg7", resubmit("acl_ingress")], cookie=1)
    assert flow.ofctl() == (f"cookie=0x1,table={table('l2_lookup')},priority=100,metadata=5,"
                            f"dl_dst=fa:16:3e:00:00:01,actions=set_field:0x2->reg7,"
                            f"resubmit(,{table('acl_ingress')})")
    assert flow.describe() == ("l2_lookup 100 metadata=5,dl_dst=fa:16:3e:00:00:01 "
                               "set_field:0x2->reg7,resubmit(,acl_ingress)")


def test_a_flow_matching_a_field_its_stage_does_not_declare_is_rejected() -> None:
    with pytest.raises(PipelineError, match=r"output flow matches undeclared field.*nw_src"):
        Flow.make("output", 100, {"reg7": 2, "nw_src": "10.0.0.1"}, ["output:2"], cookie=1)


@pytest.mark.parametrize("jump", [f"resubmit(,{table('output')})", f"goto_table:{table('output')}",
                                  f"ct(table={table('output')},zone=NXM_NX_REG5[0..15])"])
def test_a_flow_jumping_to_a_stage_it_may_not_reach_is_rejected(jump: str) -> None:
    # classify must go through port security (or l2_lookup for tunnels), never straight out
    with pytest.raises(PipelineError, match="classify may not go to output"):
        Flow.make("classify", 100, {"in_port": 3}, [jump], cookie=1)


def test_unknown_stages_and_tables_are_rejected() -> None:
    with pytest.raises(PipelineError, match=r"no pipeline stage 'nat'"):
        check_flow(Flow("nat", 1, (), (), 1))
    with pytest.raises(PipelineError, match=r"table 33, which is no stage"):
        Flow.make("classify", 1, {}, ["resubmit(,33)"], cookie=1)


def test_every_stage_can_be_reached_from_classify() -> None:
    by_name = {s.name: s for s in STAGES}
    seen, todo = {"classify"}, ["classify"]
    while todo:
        for nxt in by_name[todo.pop()].next - seen:
            seen.add(nxt)
            todo.append(nxt)
    assert seen == set(by_name)


def test_cookies_are_deterministic_per_item() -> None:
    assert cookie_for("port", "p1") == cookie_for("port", "p1") != cookie_for("port", "p2")
    assert 0 < cookie_for("network", "n") < 1 << 63


def test_table_numbers_are_masked_to_stage_names() -> None:
    text = f"ct(table={table('acl_egress')},zone=NXM_NX_REG5[0..15]),resubmit(,{table('output')})"
    assert mask_tables(text) == "ct(table=acl_egress,zone=NXM_NX_REG5[0..15]),resubmit(,output)"
