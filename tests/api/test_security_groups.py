"""Specification of security groups and their rules: the per-project `default` group with
Neutron's four default rules, new groups, rule attributes (protocols by name or number, port
ranges, remote prefixes and groups, directions, ethertypes), duplicates, groups in use."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.helpers import (
    UNKNOWN_ID,
    as_project,
    body,
    network,
    neutron_error,
    port,
    rule,
    security_group,
)

RULES = "/v2.0/security-group-rules"
GROUPS = "/v2.0/security-groups"


def shape(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["direction"], r["ethertype"], r["protocol"], r["port_range_min"],
            r["port_range_max"], r["remote_ip_prefix"], r["remote_group_id"])


def post_rule(client: TestClient, group_id: str, headers: dict[str, str] | None = None,
              **attrs: Any) -> Any:
    attrs.setdefault("direction", "ingress")
    return client.post(RULES, json={"security_group_rule": {"security_group_id": group_id, **attrs}},
                       headers=headers)


@pytest.fixture
def group(client: TestClient) -> dict[str, Any]:
    return security_group(client, name="web")


# --- the default group ---------------------------------------------------------------------------


def test_a_project_gets_a_default_group_with_neutrons_four_rules(client: TestClient) -> None:
    me = as_project("p1")
    groups = body(client.get(GROUPS, headers=me))["security_groups"]
    assert [g["name"] for g in groups] == ["default"]
    default = groups[0]
    assert default["project_id"] == "p1"
    assert default["stateful"] is True
    assert sorted(shape(r) for r in default["security_group_rules"]) == sorted([
        ("egress", "IPv4", None, None, None, None, None),
        ("egress", "IPv6", None, None, None, None, None),
        ("ingress", "IPv4", None, None, None, None, default["id"]),
        ("ingress", "IPv6", None, None, None, None, default["id"]),
    ])
    assert all(r["security_group_id"] == default["id"] and r["project_id"] == "p1"
               for r in default["security_group_rules"])


def test_the_default_group_is_created_once(client: TestClient) -> None:
    me = as_project("p1")
    first = body(client.get(GROUPS, headers=me))["security_groups"]
    again = body(client.get(GROUPS, headers=me))["security_groups"]
    assert first == again


def test_a_projects_first_port_gets_the_default_group(client: TestClient) -> None:
    me = as_project("p1")
    net = network(client, headers=me)
    p = port(client, net["id"], headers=me)
    groups = body(client.get(GROUPS, headers=me))["security_groups"]
    assert p["security_groups"] == [g["id"] for g in groups if g["name"] == "default"]
    assert len(groups) == 1


def test_default_group_rules_are_listed_as_rules(client: TestClient) -> None:
    me = as_project("p1")
    default = body(client.get(GROUPS, headers=me))["security_groups"][0]
    rules = body(client.get(RULES, headers=me))["security_group_rules"]
    assert sorted(r["id"] for r in rules) == sorted(r["id"] for r in default["security_group_rules"])


def test_a_second_group_named_default_conflicts(client: TestClient) -> None:
    response = client.post(GROUPS, json={"security_group": {"name": "default"}})
    neutron_error(response, 409, "SecurityGroupDefaultAlreadyExists")


def test_the_default_group_cannot_be_renamed(client: TestClient) -> None:
    default = body(client.get(GROUPS + "?name=default"))["security_groups"][0]
    response = client.put(f"{GROUPS}/{default['id']}", json={"security_group": {"name": "other"}})
    neutron_error(response, 409, "SecurityGroupCannotUpdateDefault")
    described = client.put(f"{GROUPS}/{default['id']}",
                           json={"security_group": {"description": "mine"}})
    assert body(described)["security_group"]["description"] == "mine"


def test_a_member_cannot_delete_its_default_group(client: TestClient) -> None:
    me = as_project("p1")
    default = body(client.get(GROUPS, headers=me))["security_groups"][0]
    neutron_error(client.delete(f"{GROUPS}/{default['id']}", headers=me), 409,
                  "SecurityGroupCannotRemoveDefault")


def test_the_default_groups_rules_can_be_changed(client: TestClient) -> None:
    me = as_project("p1")
    default = body(client.get(GROUPS, headers=me))["security_groups"][0]
    ingress = next(r for r in default["security_group_rules"]
                   if r["direction"] == "ingress" and r["ethertype"] == "IPv4")
    assert client.delete(f"{RULES}/{ingress['id']}", headers=me).status_code == 204
    ssh = rule(client, default["id"], headers=me, protocol="tcp", port_range_min=22,
               port_range_max=22, remote_ip_prefix="0.0.0.0/0")
    rules = body(client.get(f"{GROUPS}/{default['id']}", headers=me))["security_group"][
        "security_group_rules"]
    assert ssh["id"] in {r["id"] for r in rules}
    assert ingress["id"] not in {r["id"] for r in rules}


# --- groups --------------------------------------------------------------------------------------


def test_a_new_group_allows_all_egress(client: TestClient) -> None:
    g = security_group(client, name="web", description="web servers")
    assert (g["name"], g["description"], g["stateful"], g["shared"]) == (
        "web", "web servers", True, False)
    assert sorted(shape(r) for r in g["security_group_rules"]) == [
        ("egress", "IPv4", None, None, None, None, None),
        ("egress", "IPv6", None, None, None, None, None),
    ]


def test_a_group_can_be_stateless(client: TestClient) -> None:
    g = security_group(client, stateful=False)
    assert g["stateful"] is False
    updated = client.put(f"{GROUPS}/{g['id']}", json={"security_group": {"stateful": True}})
    assert body(updated)["security_group"]["stateful"] is True


def test_a_port_cannot_mix_stateful_and_stateless_groups(client: TestClient) -> None:
    """As Neutron: 409 SecurityGroupConflict, on create and on update, and nothing changes."""
    stateful, stateless = security_group(client, name="full"), security_group(client, name="lite",
                                                                               stateful=False)
    net = network(client)
    ports_before = body(client.get("/v2.0/ports"))["ports"]
    refused = client.post("/v2.0/ports", json={"port": {
        "network_id": net["id"], "security_groups": [stateful["id"], stateless["id"]]}})
    assert "stateful and stateless" in neutron_error(refused, 409, "SecurityGroupConflict")["message"]
    assert body(client.get("/v2.0/ports"))["ports"] == ports_before
    p = port(client, net["id"], security_groups=[stateless["id"]])
    refused = client.put(f"/v2.0/ports/{p['id']}", json={"port": {
        "security_groups": [stateless["id"], stateful["id"]]}})
    neutron_error(refused, 409, "SecurityGroupConflict")
    assert body(client.get(f"/v2.0/ports/{p['id']}"))["port"]["security_groups"] == [stateless["id"]]
    both_stateless = security_group(client, name="lite2", stateful=False)
    ok = client.put(f"/v2.0/ports/{p['id']}", json={"port": {
        "security_groups": [stateless["id"], both_stateless["id"]]}})
    assert ok.status_code == 200


def test_a_group_can_be_renamed(client: TestClient, group: dict[str, Any]) -> None:
    updated = client.put(f"{GROUPS}/{group['id']}", json={"security_group": {"name": "www"}})
    assert body(updated)["security_group"]["name"] == "www"


def test_a_group_cannot_be_renamed_default(client: TestClient, group: dict[str, Any]) -> None:
    response = client.put(f"{GROUPS}/{group['id']}", json={"security_group": {"name": "default"}})
    neutron_error(response, 409)


def test_a_group_used_by_a_port_cannot_be_deleted(client: TestClient, group: dict[str, Any]) -> None:
    net = network(client)
    p = port(client, net["id"], security_groups=[group["id"]])
    neutron_error(client.delete(f"{GROUPS}/{group['id']}"), 409, "SecurityGroupInUse")
    client.put(f"/v2.0/ports/{p['id']}", json={"port": {"security_groups": []}})
    assert client.delete(f"{GROUPS}/{group['id']}").status_code == 204


def test_a_group_in_use_cannot_change_statefulness(client: TestClient, group: dict[str, Any]) -> None:
    net = network(client)
    port(client, net["id"], security_groups=[group["id"]])
    response = client.put(f"{GROUPS}/{group['id']}", json={"security_group": {"stateful": False}})
    neutron_error(response, 409, "SecurityGroupInUse")


def test_a_deleted_group_takes_its_rules_with_it(client: TestClient, group: dict[str, Any]) -> None:
    r = rule(client, group["id"], protocol="tcp", port_range_min=80, port_range_max=80)
    assert client.delete(f"{GROUPS}/{group['id']}").status_code == 204
    neutron_error(client.get(f"{GROUPS}/{group['id']}"), 404, "SecurityGroupNotFound")
    neutron_error(client.get(f"{RULES}/{r['id']}"), 404, "SecurityGroupRuleNotFound")


def test_deleting_a_group_removes_rules_naming_it_as_remote(client: TestClient,
                                                            group: dict[str, Any]) -> None:
    other = security_group(client, name="db")
    r = rule(client, other["id"], remote_group_id=group["id"])
    assert client.delete(f"{GROUPS}/{group['id']}").status_code == 204
    neutron_error(client.get(f"{RULES}/{r['id']}"), 404, "SecurityGroupRuleNotFound")


@pytest.mark.parametrize("attrs", [{"stateful": "maybe"}, {"name": 5}, {"security_group_rules": []},
                                   {"shared": True}, {"colour": "red"}])
def test_invalid_group_attributes_are_refused(client: TestClient, attrs: dict[str, Any]) -> None:
    neutron_error(client.post(GROUPS, json={"security_group": attrs}), 400)


# --- rules ---------------------------------------------------------------------------------------


def test_a_rule_is_shown_as_created(client: TestClient, group: dict[str, Any]) -> None:
    r = rule(client, group["id"], protocol="tcp", port_range_min=80, port_range_max=443,
             remote_ip_prefix="192.168.0.0/16", description="web")
    assert shape(r) == ("ingress", "IPv4", "tcp", 80, 443, "192.168.0.0/16", None)
    assert r["description"] == "web"
    assert r["security_group_id"] == group["id"]
    assert r["project_id"] == group["project_id"]
    assert body(client.get(f"{RULES}/{r['id']}"))["security_group_rule"] == r
    rules = body(client.get(f"{GROUPS}/{group['id']}"))["security_group"]["security_group_rules"]
    assert r["id"] in {x["id"] for x in rules}


@pytest.mark.parametrize(
    ("given", "stored"),
    [("tcp", "tcp"), ("TCP", "tcp"), ("6", "6"), (6, "6"), ("udp", "udp"), ("17", "17"),
     ("sctp", "sctp"), ("132", "132")],
)
def test_a_port_protocol_may_be_named_or_numbered(
    client: TestClient, group: dict[str, Any], given: Any, stored: str
) -> None:
    r = rule(client, group["id"], protocol=given, port_range_min=1000, port_range_max=2000)
    assert (r["protocol"], r["port_range_min"], r["port_range_max"]) == (stored, 1000, 2000)


@pytest.mark.parametrize(("given", "stored"), [("icmp", "icmp"), ("1", "1"), ("gre", "gre"),
                                               ("47", "47"), ("any", None), (None, None)])
def test_other_protocols_may_be_named_or_numbered(
    client: TestClient, group: dict[str, Any], given: Any, stored: str | None
) -> None:
    assert rule(client, group["id"], protocol=given)["protocol"] == stored


def test_an_icmp_rule_takes_a_type_and_code(client: TestClient, group: dict[str, Any]) -> None:
    r = rule(client, group["id"], protocol="icmp", port_range_min=8, port_range_max=0)
    assert (r["port_range_min"], r["port_range_max"]) == (8, 0)


def test_icmp_on_ipv6_is_stored_as_ipv6_icmp(client: TestClient, group: dict[str, Any]) -> None:
    assert rule(client, group["id"], ethertype="IPv6", protocol="icmp")["protocol"] == "ipv6-icmp"


def test_a_remote_prefix_is_normalised(client: TestClient, group: dict[str, Any]) -> None:
    r = rule(client, group["id"], remote_ip_prefix="10.1.2.3/8")
    assert r["remote_ip_prefix"] == r["normalized_cidr"] == "10.0.0.0/8"
    host = rule(client, group["id"], remote_ip_prefix="192.168.1.10")
    assert host["remote_ip_prefix"] == "192.168.1.10/32"


def test_an_ipv6_rule_takes_an_ipv6_prefix(client: TestClient, group: dict[str, Any]) -> None:
    r = rule(client, group["id"], ethertype="IPv6", direction="egress", remote_ip_prefix="fd00::/8")
    assert (r["ethertype"], r["direction"], r["remote_ip_prefix"]) == ("IPv6", "egress", "fd00::/8")


def test_a_rule_may_name_a_remote_group(client: TestClient, group: dict[str, Any]) -> None:
    other = security_group(client, name="db")
    r = rule(client, group["id"], remote_group_id=other["id"], protocol="tcp",
             port_range_min=5432, port_range_max=5432)
    assert (r["remote_group_id"], r["remote_ip_prefix"]) == (other["id"], None)


@pytest.mark.parametrize(
    ("attrs", "error_type"),
    [
        ({"protocol": "tcp", "port_range_min": 90, "port_range_max": 80},
         "SecurityGroupInvalidPortRange"),
        ({"protocol": "tcp", "port_range_min": 0, "port_range_max": 80},
         "SecurityGroupInvalidPortValue"),
        ({"protocol": "tcp", "port_range_min": 1, "port_range_max": 70000},
         "SecurityGroupInvalidPortValue"),
        ({"port_range_min": 80, "port_range_max": 80}, "SecurityGroupProtocolRequiredWithPorts"),
        ({"protocol": "gre", "port_range_min": 80, "port_range_max": 80},
         "SecurityGroupInvalidProtocolForPort"),
        ({"protocol": "icmp", "port_range_min": 300}, "SecurityGroupInvalidIcmpValue"),
        ({"protocol": "icmp", "port_range_max": 0}, "SecurityGroupMissingIcmpType"),
        ({"protocol": "bogus"}, "SecurityGroupRuleInvalidProtocol"),
        ({"protocol": "256"}, "SecurityGroupRuleInvalidProtocol"),
        ({"protocol": "ipv6-icmp"}, "SecurityGroupEthertypeConflictWithProtocol"),
        ({"ethertype": "IPv5"}, "SecurityGroupRuleInvalidEtherType"),
        ({"remote_ip_prefix": "fd00::/8"}, "SecurityGroupRuleParameterConflict"),
        ({"remote_ip_prefix": "10.0.0.0/33"}, "InvalidCIDR"),
        ({"direction": "sideways"}, None),
        ({"direction": None}, None),
        ({"remote_group_id": "not-a-uuid"}, None),
        ({"name": "rules have no name"}, None),
    ],
)
def test_invalid_rules_are_bad_requests(
    client: TestClient, group: dict[str, Any], attrs: dict[str, Any], error_type: str | None
) -> None:
    neutron_error(post_rule(client, group["id"], **attrs), 400, error_type)


def test_a_rule_needs_a_direction_and_a_group(client: TestClient, group: dict[str, Any]) -> None:
    neutron_error(client.post(RULES, json={"security_group_rule": {"security_group_id": group["id"]}}),
                  400)
    neutron_error(client.post(RULES, json={"security_group_rule": {"direction": "ingress"}}), 400)


def test_a_remote_prefix_and_a_remote_group_together_are_refused(
    client: TestClient, group: dict[str, Any]
) -> None:
    response = post_rule(client, group["id"], remote_ip_prefix="10.0.0.0/8",
                         remote_group_id=group["id"])
    neutron_error(response, 400)


def test_a_rule_of_an_unknown_group_is_not_found(client: TestClient) -> None:
    neutron_error(post_rule(client, UNKNOWN_ID), 404, "SecurityGroupNotFound")


def test_a_rule_naming_an_unknown_remote_group_is_not_found(client: TestClient,
                                                            group: dict[str, Any]) -> None:
    neutron_error(post_rule(client, group["id"], remote_group_id=UNKNOWN_ID), 404,
                  "SecurityGroupNotFound")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22},
         {"protocol": "tcp", "port_range_min": 22, "port_range_max": 22}),
        ({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22},
         {"protocol": "TCP", "port_range_min": 22, "port_range_max": 22}),
        ({"remote_ip_prefix": "10.0.0.0/8"}, {"remote_ip_prefix": "10.1.2.3/8"}),
        ({"direction": "egress", "ethertype": "IPv6"}, {"direction": "egress", "ethertype": "ipv6"}),
        ({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22},
         {"protocol": "6", "port_range_min": 22, "port_range_max": 22}),
        ({"protocol": "udp"}, {"protocol": 17}),
        ({"direction": "egress"}, {"direction": "egress", "remote_ip_prefix": "0.0.0.0/0"}),
        ({"direction": "egress", "ethertype": "IPv6"},
         {"direction": "egress", "ethertype": "IPv6", "remote_ip_prefix": "::/0"}),
        ({"ethertype": "IPv6", "protocol": "icmp"}, {"ethertype": "IPv6", "protocol": "58"}),
    ],
    ids=["same", "protocol-case", "same-network", "egress-default", "name-and-number",
         "number-as-integer", "any-ipv4-prefix", "any-ipv6-prefix", "icmpv6-spellings"],
)
def test_a_duplicate_rule_conflicts(
    client: TestClient, group: dict[str, Any], first: dict[str, Any], second: dict[str, Any]
) -> None:
    if first.get("direction") != "egress":  # the egress rules of a new group already exist
        rule(client, group["id"], **first)
    neutron_error(post_rule(client, group["id"], **second), 409, "SecurityGroupRuleExists")


def test_rules_differing_in_one_attribute_are_not_duplicates(client: TestClient,
                                                             group: dict[str, Any]) -> None:
    base = {"protocol": "tcp", "port_range_min": 22, "port_range_max": 22}
    rule(client, group["id"], **base)
    rule(client, group["id"], **{**base, "port_range_max": 23})
    rule(client, group["id"], **{**base, "direction": "egress"})
    rule(client, group["id"], **{**base, "remote_ip_prefix": "10.0.0.0/8"})
    rule(client, group["id"], **{**base, "protocol": "udp"})


def test_only_a_rules_description_can_be_updated(client: TestClient, group: dict[str, Any]) -> None:
    r = rule(client, group["id"], protocol="tcp", port_range_min=22, port_range_max=22)
    updated = client.put(f"{RULES}/{r['id']}", json={"security_group_rule": {"description": "ssh"}})
    assert body(updated)["security_group_rule"]["description"] == "ssh"
    response = client.put(f"{RULES}/{r['id']}", json={"security_group_rule": {"port_range_max": 23}})
    neutron_error(response, 400)


def test_adding_and_removing_rules_revises_the_group(client: TestClient, group: dict[str, Any]) -> None:
    r = rule(client, group["id"], protocol="udp", port_range_min=53, port_range_max=53)
    after_add = body(client.get(f"{GROUPS}/{group['id']}"))["security_group"]["revision_number"]
    assert after_add > group["revision_number"]
    assert client.delete(f"{RULES}/{r['id']}").status_code == 204
    after_delete = body(client.get(f"{GROUPS}/{group['id']}"))["security_group"]["revision_number"]
    assert after_delete > after_add
    neutron_error(client.get(f"{RULES}/{r['id']}"), 404, "SecurityGroupRuleNotFound")
