"""What the agent does with bad input from its policy stream (no root, no OVS, no server).

`Agent.apply_message` takes one line of the stream. A bad item (a key that is not a policy key
or names another chassis, a document that does not validate against its kind, an address or
number that could not go into a flow) is logged at ERROR with its key and the reason and left
out; every other item of the message still applies and the revision still moves on, so the
stream goes on from the next revision instead of failing on the same line forever. A message
without the fields of its type is logged and ignored as a whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from neutrino.agent.service import Agent, AgentConfig
from neutrino.policy.model import (
    FixedIp,
    NetworkPolicy,
    PortPolicy,
    SecurityGroupPolicy,
    SecurityGroupRulePolicy,
    TunnelPolicy,
    item_key,
)

HOST = "host1"
LOGGER = "neutrino.agent.service"

NETWORK = NetworkPolicy(id="net1", network_type="geneve", segmentation_id=7, tunnel_key=7)
PORT = PortPolicy(id="p1", network_id="net1", mac_address="fa:16:3e:00:00:01",
                  fixed_ips=(FixedIp(subnet_id="s1", ip_address="10.0.0.5"),))
GROUP = SecurityGroupPolicy(id="g1", rules=(
    SecurityGroupRulePolicy(id="r1", direction="ingress", ethertype="IPv4", protocol=6,
                            port_range_min=22, port_range_max=22),))
TUNNEL = TunnelPolicy(id="host2", ip="192.0.2.2")


def key(kind: str, item_id: str, chassis: str = HOST) -> str:
    return item_key(chassis, kind, item_id)  # type: ignore[arg-type]


GOOD: dict[str, Any] = {
    key("network", "net1"): NETWORK.model_dump(mode="json"),
    key("port", "p1"): PORT.model_dump(mode="json"),
    key("security_group", "g1"): GROUP.model_dump(mode="json"),
    key("tunnel", "host2"): TUNNEL.model_dump(mode="json"),
}

#: bad items of every sort: key -> document
BAD: dict[str, Any] = {
    key("port", "no-mac"): {"id": "no-mac", "network_id": "net1"},  # required field missing
    key("port", "extra"): {**PORT.model_dump(mode="json"), "id": "extra", "colour": "red"},
    key("network", "not-an-object"): ["geneve", 7],
    key("tunnel", "bad-encap"): {"id": "bad-encap", "ip": "192.0.2.3", "encap": "gre"},
    key("port", "bad-mac"): {**PORT.model_dump(mode="json"), "id": "bad-mac", "mac_address": "zz:16"},
    key("port", "bad-ip"): {**PORT.model_dump(mode="json"), "id": "bad-ip",
                            "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.300"}]},
    key("port", "bad-pair"): {**PORT.model_dump(mode="json"), "id": "bad-pair", "allowed_address_pairs": [
        {"ip_address": "10.0.0.0/33", "mac_address": "fa:16:3e:00:00:01"}]},
    key("security_group", "bad-port"): {"id": "bad-port", "rules": [
        {"id": "r9", "direction": "ingress", "ethertype": "IPv4", "protocol": 6,
         "port_range_min": 70000, "port_range_max": 70000}]},
    key("tunnel", "bad-peer-ip"): {"id": "bad-peer-ip", "ip": "not-an-address"},
    "/chassis/host1/router/r1": {"id": "r1"},  # no such kind
    "not-a-key": {"id": "x"},
    key("port", "p9", chassis="host2"): {**PORT.model_dump(mode="json"), "id": "p9"},  # another chassis
}


@pytest.fixture
def agent() -> Iterator[Agent]:
    """An agent that never connects anywhere: apply_message only touches its own state."""
    config = AgentConfig(host=HOST, server="http://127.0.0.1:9", ovsdb="unix:/nonexistent/db.sock",
                         ofctl_target="unix:/nonexistent/br-int.mgmt", tunnel_ip="192.0.2.1")
    agent = Agent(config)
    yield agent
    asyncio.run(agent.http.aclose())


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]


def test_a_snapshot_keeps_its_good_items_and_skips_each_bad_one(
        agent: Agent, caplog: pytest.LogCaptureFixture) -> None:
    """Every bad item is left out with one ERROR line naming its key and saying why; every good
    item is taken; the revision moves to the snapshot's."""
    caplog.set_level(logging.ERROR, LOGGER)
    agent.apply_message({"type": "snapshot", "revision": 12, "items": {**GOOD, **BAD}})
    assert set(agent.desired) == set(GOOD)
    assert agent.desired[key("port", "p1")] == PORT
    assert agent.revision == 12
    assert agent._wake.is_set()
    logged = errors(caplog)
    assert len(logged) == len(BAD)
    for bad_key in BAD:
        assert any(bad_key in line for line in logged), f"no ERROR names {bad_key}"
    reasons = "\n".join(logged)
    for why in ("mac_address", "Field required", "Extra inputs are not permitted", "zz:16",
                "10.0.0.300", "10.0.0.0/33", "70000", "not-an-address", "not a policy key",
                "chassis 'host2'"):
        assert why in reasons, f"the reason {why!r} is not logged:\n{reasons}"


def test_a_bad_change_removes_its_item_and_the_stream_moves_on(
        agent: Agent, caplog: pytest.LogCaptureFixture) -> None:
    """A change whose document does not validate is logged and its item is dropped (fail
    closed: the port loses its flows rather than keep a policy the server replaced); later
    changes apply as usual and the revision follows them."""
    caplog.set_level(logging.ERROR, LOGGER)
    agent.apply_message({"type": "snapshot", "revision": 10, "items": GOOD})
    port_key = key("port", "p1")
    agent.apply_message({"type": "change", "revision": 11, "key": port_key,
                         "document": {**PORT.model_dump(mode="json"), "mac_address": 42}})
    assert port_key not in agent.desired
    assert agent.revision == 11
    assert any(port_key in line and "mac_address" in line for line in errors(caplog))
    fixed = PORT.model_copy(update={"admin_state_up": False})
    agent.apply_message({"type": "change", "revision": 12, "key": port_key,
                         "document": fixed.model_dump(mode="json")})
    assert agent.desired[port_key] == fixed
    assert agent.revision == 12
    assert set(agent.desired) == set(GOOD)


@pytest.mark.parametrize("bad_key", sorted(BAD))
def test_no_bad_change_raises(agent: Agent, bad_key: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, LOGGER)
    agent.apply_message({"type": "snapshot", "revision": 3, "items": GOOD})
    agent.apply_message({"type": "change", "revision": 4, "key": bad_key, "document": BAD[bad_key]})
    assert set(agent.desired) == set(GOOD)
    assert agent.revision == 4
    assert any(bad_key in line for line in errors(caplog))


def test_a_deletion_of_an_unknown_or_odd_key_is_harmless(agent: Agent) -> None:
    agent.apply_message({"type": "snapshot", "revision": 3, "items": GOOD})
    for odd in ("not-a-key", key("port", "never-seen"), key("port", "p9", chassis="host2")):
        agent.apply_message({"type": "change", "revision": 4, "key": odd, "document": None})
    assert set(agent.desired) == set(GOOD)
    assert agent.revision == 4


@pytest.mark.parametrize("message", [
    {"type": "snapshot", "revision": 5},  # no items
    {"type": "snapshot", "revision": 5, "items": ["not", "an", "object"]},
    {"type": "snapshot", "items": {}},  # no revision
    {"type": "snapshot", "revision": "five", "items": {}},
    {"type": "change", "revision": 5, "document": None},  # no key
    {"type": "change", "key": key("port", "p1"), "document": None},  # no revision
], ids=["no-items", "items-not-object", "no-revision", "revision-not-int", "no-key", "change-no-rev"])
def test_a_message_without_its_fields_is_logged_and_ignored(
        agent: Agent, message: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    """Nothing of it applies: the desired items and the revision stay as they were."""
    caplog.set_level(logging.ERROR, LOGGER)
    agent.apply_message({"type": "snapshot", "revision": 3, "items": GOOD})
    before = dict(agent.desired)
    agent.apply_message(message)
    assert agent.desired == before
    assert agent.revision == 3
    assert any("malformed policy" in line for line in errors(caplog))


def test_other_message_types_change_nothing(agent: Agent, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    agent.apply_message({"type": "snapshot", "revision": 3, "items": GOOD})
    agent._wake.clear()
    agent.apply_message({"type": "hello", "revision": 99})
    agent.apply_message({"no": "type"})
    assert set(agent.desired) == set(GOOD) and agent.revision == 3
    assert not agent._wake.is_set()
    assert errors(caplog) == []


def test_a_keepalive_moves_the_revision_to_the_committed_one(agent: Agent) -> None:
    """A keepalive says "you have every change of your items up to revision N": the agent is in
    sync at N, and its realised revision (reported with each heartbeat) may say so."""
    agent.apply_message({"type": "snapshot", "revision": 3, "items": GOOD})
    agent.apply_message({"type": "keepalive", "revision": 8})
    assert agent.revision == 8


def test_no_policy_yet_is_not_an_empty_policy(agent: Agent) -> None:
    """Until its first snapshot the agent does not know what the host should have: a wake-up
    then changes nothing on the switch (no tunnel removed, no flow replaced). Once the snapshot
    is in, the reconciler works as usual."""
    from unittest.mock import MagicMock

    ovsdb = MagicMock()
    ovsdb.vifs.return_value = {}
    ovsdb.ct_zones.side_effect = lambda networks: {n: i + 1 for i, n in enumerate(sorted(networks))}
    ovsdb.tunnel_ofports.return_value = {}
    ovsdb.ensure_provider_patches.return_value = {}
    ovsdb.ofport_of.return_value = None
    agent.ovsdb = ovsdb
    agent.flows = MagicMock()

    async def woken(seconds: float) -> None:
        agent._wake.set()
        task = asyncio.create_task(agent._reconcile_forever())
        await asyncio.sleep(seconds)
        task.cancel()

    asyncio.run(woken(0.3))
    assert ovsdb.ensure_tunnels.call_count == 0 and agent.flows.apply.call_count == 0
    agent.apply_message({"type": "snapshot", "revision": 3, "items": GOOD})
    asyncio.run(woken(0.3))
    assert agent.flows.apply.call_count >= 1
