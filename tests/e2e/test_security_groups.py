"""Security groups on the real data path: rules admit exactly what they say, and changes to
rules and to group membership take effect on the running traffic.

One network; `srv` (host2) is in three groups: `sg-range` (TCP 8000-8010 from anywhere),
`sg-members` (TCP 9000 from members of `sg-clients`) and `sg-live` (no ingress rule; the
tests add and delete its rules). `cli` (host1) and `near` (host2, srv's host) are in the
project's default group only, so nothing but those rules lets them reach srv. Every test puts
back what it changed.

A negative check is made only after the agents have applied every change (so that "blocked"
never means "not there yet"); a positive one polls until the change is live.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from e2e.support import E2ELab, wait_until

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("e2e-security-groups")]


@dataclass
class Setup:
    lab: E2ELab
    groups: dict[str, Any]
    ports: dict[str, Any]
    ip: dict[str, str]

    @property
    def cloud(self) -> Any:
        return self.lab.cloud

    def rule(self, group: str, **rule: Any) -> Any:
        return self.cloud.network.create_security_group_rule(
            security_group_id=self.groups[group].id, direction="ingress", ethertype="IPv4", **rule)

    def tcp(self, client: str, port: int, *, timeout: float = 1.0) -> bool:
        return self.lab.tcp(client, "srv", self.ip["srv"], port, timeout=timeout)

    def ping(self, client: str) -> bool:
        return self.lab.ping(client, self.ip["srv"], count=1, wait=1.0)

    def settle(self) -> None:
        self.lab.wait_converged("host1", "host2")


@pytest.fixture(scope="module")
def setup(lab: E2ELab) -> Setup:
    cloud = lab.cloud
    net = cloud.network.create_network(name="sg-net")
    cloud.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.63.0.0/24")
    groups = {name: cloud.network.create_security_group(name=name)
              for name in ("sg-range", "sg-members", "sg-clients", "sg-live")}
    done = Setup(lab, groups, {}, {})
    done.rule("sg-range", protocol="tcp", port_range_min=8000, port_range_max=8010,
              remote_ip_prefix="0.0.0.0/0")
    done.rule("sg-members", protocol="tcp", port_range_min=9000, port_range_max=9000,
              remote_group_id=groups["sg-clients"].id)
    default = next(iter(cloud.network.security_groups(name="default",
                                                       project_id=net.project_id)))
    groups["default"] = default
    plan = []
    for name, host, member_of in (("srv", "host2", ["sg-range", "sg-members", "sg-live"]),
                                  ("cli", "host1", ["default"]), ("near", "host2", ["default"])):
        port = cloud.network.create_port(network_id=net.id, name=name,
                                         security_group_ids=[groups[g].id for g in member_of])
        plan.append((name, host, port.id))
    done.ports = lab.boot_all(plan)
    done.ip = {name: port.fixed_ips[0]["ip_address"] for name, port in done.ports.items()}
    return done


@contextlib.contextmanager
def rules_removed_afterwards(setup: Setup) -> Iterator[list[Any]]:
    """Rules the test creates (appended to the list) are deleted at the end."""
    created: list[Any] = []
    try:
        yield created
    finally:
        for rule in created:
            setup.cloud.network.delete_security_group_rule(rule, ignore_missing=True)
        setup.settle()


def test_a_port_range_rule_admits_exactly_its_range(setup: Setup) -> None:
    """TCP 8000-8010: every port of the range connects (8000-8007, 8008-8009 and 8010 are three
    masked matches in OpenFlow), 7999 and 8011 do not, from the other host and from srv's own."""
    setup.settle()
    edges = [7999, 8000, 8005, 8007, 8008, 8009, 8010, 8011]
    expected = {port: 8000 <= port <= 8010 for port in edges}
    assert setup.lab.tcp_ports("cli", "srv", setup.ip["srv"], edges, timeout=1.0) == expected
    assert setup.lab.tcp_ports("near", "srv", setup.ip["srv"], [8005, 8011], timeout=1.0) == {
        8005: True, 8011: False}


def test_icmp_rules_admit_exactly_the_icmp_they_name(setup: Setup) -> None:
    """No ICMP rule: ping is dropped. A rule for ICMP type 0 (echo reply) still drops echo
    requests. A rule for any ICMP admits ping as soon as it is applied; once it is deleted, new
    pings are dropped again."""
    setup.settle()
    assert not setup.ping("cli")
    with rules_removed_afterwards(setup) as created:
        created.append(setup.rule("sg-live", protocol="icmp", port_range_min=0, port_range_max=0))
        setup.settle()
        assert not setup.ping("cli"), "an echo-reply rule admits no echo request"
        any_icmp = setup.rule("sg-live", protocol="icmp", remote_ip_prefix="0.0.0.0/0")
        created.append(any_icmp)
        wait_until(lambda: setup.ping("cli") and setup.ping("near"), timeout=10,
                   message="ping admitted by the new ICMP rule")
        setup.cloud.network.delete_security_group_rule(any_icmp)
        wait_until(lambda: not setup.ping("cli"), timeout=10, message="ping dropped after the delete")
        setup.settle()
        assert not setup.ping("cli") and not setup.ping("near")


def test_remote_group_membership_changes_take_effect_live(setup: Setup) -> None:
    """`sg-members` admits TCP 9000 from members of `sg-clients` only. Adding cli's port to
    `sg-clients` lets cli in (near stays out); adding near lets near in; taking cli out shuts
    cli out again while near stays in; taking near out shuts it out."""
    network = setup.cloud.network
    clients = setup.groups["sg-clients"].id
    default = setup.groups["default"].id

    def member(name: str, yes: bool) -> None:
        network.update_port(setup.ports[name].id,
                            security_group_ids=[default, clients] if yes else [default])

    try:
        setup.settle()
        assert not setup.tcp("cli", 9000) and not setup.tcp("near", 9000)
        member("cli", True)
        wait_until(lambda: setup.tcp("cli", 9000), timeout=10, message="cli admitted")
        setup.settle()
        assert not setup.tcp("near", 9000)
        member("near", True)
        wait_until(lambda: setup.tcp("near", 9000), timeout=10, message="near admitted")
        member("cli", False)
        wait_until(lambda: not setup.tcp("cli", 9000), timeout=10, message="cli shut out")
        setup.settle()
        assert not setup.tcp("cli", 9000) and setup.tcp("near", 9000)
        member("near", False)
        wait_until(lambda: not setup.tcp("near", 9000), timeout=10, message="near shut out")
    finally:
        member("cli", False)
        member("near", False)
        setup.settle()


def test_deleting_a_rule_blocks_new_connections(setup: Setup) -> None:
    """A rule for TCP 9100 admits connections; after it is deleted no new connection gets
    through, from either host."""
    with rules_removed_afterwards(setup) as created:
        rule = setup.rule("sg-live", protocol="tcp", port_range_min=9100, port_range_max=9100)
        created.append(rule)
        wait_until(lambda: setup.tcp("cli", 9100) and setup.tcp("near", 9100), timeout=10,
                   message="TCP 9100 admitted")
        setup.cloud.network.delete_security_group_rule(rule)
        wait_until(lambda: not setup.tcp("cli", 9100), timeout=10, message="TCP 9100 blocked")
        setup.settle()
        assert not setup.tcp("cli", 9100) and not setup.tcp("near", 9100)


def test_a_stateless_group_needs_a_rule_for_each_direction(setup: Setup) -> None:
    """A group with stateful=false: its ingress ICMP rule lets echo requests in, but without
    conntrack the replies need an egress rule of their own. The same rules in a stateful group
    let the replies out as part of the connection."""
    cloud = setup.cloud
    groups = {}
    for name, stateful in (("sg-stateless", False), ("sg-stateful-twin", True)):
        group = cloud.network.create_security_group(name=name, stateful=stateful)
        for rule in list(cloud.network.security_group_rules(security_group_id=group.id)):
            cloud.network.delete_security_group_rule(rule)  # no egress rule at all
        cloud.network.create_security_group_rule(
            security_group_id=group.id, direction="ingress", ethertype="IPv4", protocol="icmp",
            remote_ip_prefix="0.0.0.0/0")
        groups[name] = group
    port = cloud.network.create_port(network_id=setup.ports["srv"].network_id, name="sl",
                                     security_group_ids=[groups["sg-stateless"].id])
    setup.lab.boot("sl", "host2", port=port.id)
    address = port.fixed_ips[0]["ip_address"]
    setup.settle()
    assert not setup.lab.ping("cli", address, count=2), "a reply left without an egress rule"
    cloud.network.update_port(port, security_group_ids=[groups["sg-stateful-twin"].id])
    setup.settle()
    setup.lab.wait_ping("cli", address)  # stateful: the reply belongs to the connection
    cloud.network.update_port(port, security_group_ids=[groups["sg-stateless"].id])
    setup.settle()
    assert not setup.lab.ping("cli", address, count=2)
    cloud.network.create_security_group_rule(
        security_group_id=groups["sg-stateless"].id, direction="egress", ethertype="IPv4",
        protocol="icmp", remote_ip_prefix="0.0.0.0/0")
    setup.settle()
    setup.lab.wait_ping("cli", address)
