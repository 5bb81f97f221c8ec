"""Specification of errors: every failure is Neutron's envelope
`{"NeutronError": {"type", "message", "detail"}}` with Neutron's status codes; bad input is a
400 (never FastAPI's 422), whatever is wrong with it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.helpers import UNKNOWN_ID, as_project, body, network, neutron_error, port, subnet

JSON = {"Content-Type": "application/json"}


# --- the envelope ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2.0/nothing-here", 404),
        ("GET", f"/v2.0/networks/{UNKNOWN_ID}", 404),
        ("GET", f"/v2.0/ports/{UNKNOWN_ID}/tags", 404),
        ("PUT", f"/v2.0/subnets/{UNKNOWN_ID}", 404),
        ("DELETE", f"/v2.0/security-groups/{UNKNOWN_ID}", 404),
        ("DELETE", "/v2.0/networks", 405),
        ("PATCH", f"/v2.0/networks/{UNKNOWN_ID}", 405),
        ("GET", "/v2.0/extensions/no-such-alias", 404),
    ],
)
def test_failures_use_neutrons_envelope(client: TestClient, method: str, path: str, status: int) -> None:
    kwargs: dict[str, Any] = {"json": {"subnet": {"name": "x"}}} if method == "PUT" else {}
    neutron_error(client.request(method, path, **kwargs), status)


@pytest.mark.parametrize(("path", "kind"), [("networks", "Network"), ("subnets", "Subnet"),
                                            ("ports", "Port"), ("security-groups", "SecurityGroup"),
                                            ("security-group-rules", "SecurityGroupRule")])
def test_an_unknown_id_names_the_resource(client: TestClient, path: str, kind: str) -> None:
    error = neutron_error(client.get(f"/v2.0/{path}/{UNKNOWN_ID}"), 404, f"{kind}NotFound")
    assert UNKNOWN_ID in error["message"]


# --- 400, never 422 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b"[]", b'"network"', b"null", b"42", b'{"network": "x"}',
     b'{"network": []}', b'{"network": null}', b'{"networks": []}', b'{"networks": {}}',
     b'{"networks": ["x"]}', b'{"port": {}}', b'{"network": {}, "extra": 1}', b"\xff\xfe"],
    ids=["empty", "truncated", "garbage", "array", "string", "null", "number", "string-item",
         "list-item", "null-item", "empty-bulk", "dict-bulk", "bulk-of-strings", "wrong-resource",
         "extra-key", "not-utf8"],
)
def test_a_malformed_create_body_is_a_bad_request(client: TestClient, raw: bytes) -> None:
    neutron_error(client.post("/v2.0/networks", content=raw, headers=JSON), 400)


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"[]", b'{"network": "x"}', b'{"subnet": {}}', b'{"network": {}, "x": {}}'],
    ids=["empty", "truncated", "array", "string-item", "wrong-resource", "extra-key"],
)
def test_a_malformed_update_body_is_a_bad_request(client: TestClient, raw: bytes) -> None:
    net = network(client)
    neutron_error(client.put(f"/v2.0/networks/{net['id']}", content=raw, headers=JSON), 400)


@pytest.mark.parametrize(
    "attrs",
    [
        {"name": 5}, {"name": None}, {"description": ["x"]}, {"admin_state_up": "maybe"},
        {"admin_state_up": None}, {"shared": 2}, {"mtu": "1400x"}, {"mtu": 1400.5},
        {"port_security_enabled": {}}, {"availability_zone_hints": "az1"},
    ],
)
def test_a_wrongly_typed_network_attribute_is_a_bad_request(client: TestClient,
                                                            attrs: dict[str, Any]) -> None:
    neutron_error(client.post("/v2.0/networks", json={"network": attrs}), 400)


@pytest.mark.parametrize(
    ("path", "resource", "attrs"),
    [
        ("networks", "network", {"colour": "red"}),
        ("networks", "network", {"id": UNKNOWN_ID}),
        ("networks", "network", {"status": "DOWN"}),
        ("networks", "network", {"subnets": []}),
        ("networks", "network", {"created_at": "2020-01-01T00:00:00Z"}),
        ("networks", "network", {"revision_number": 4}),
        ("networks", "network", {"tags": ["a"]}),
        ("networks", "network", {"availability_zones": []}),
        ("ports", "port", {"network_id": UNKNOWN_ID, "status": "ACTIVE"}),
        ("ports", "port", {"network_id": UNKNOWN_ID, "binding:vif_type": "ovs"}),
        ("subnets", "subnet", {"network_id": UNKNOWN_ID, "cidr": "10.0.0.0/24",
                               "subnetpool_id": None}),
        ("security-groups", "security_group", {"security_group_rules": []}),
    ],
)
def test_unknown_and_read_only_attributes_are_bad_requests(
    client: TestClient, path: str, resource: str, attrs: dict[str, Any]
) -> None:
    neutron_error(client.post(f"/v2.0/{path}", json={resource: attrs}), 400)


@pytest.mark.parametrize("attrs", [{"colour": "red"}, {"status": "DOWN"}, {"id": UNKNOWN_ID},
                                   {"availability_zone_hints": []}, {"mtu": "big"},
                                   {"provider:network_type": "vlan"}, {"tenant_id": "x"}])
def test_unknown_read_only_or_invalid_updates_are_bad_requests(client: TestClient,
                                                               attrs: dict[str, Any]) -> None:
    net = network(client)
    neutron_error(client.put(f"/v2.0/networks/{net['id']}", json={"network": attrs}), 400)
    assert body(client.get(f"/v2.0/networks/{net['id']}"))["network"] == net


def test_a_missing_required_attribute_is_a_bad_request(client: TestClient) -> None:
    neutron_error(client.post("/v2.0/subnets", json={"subnet": {"cidr": "10.0.0.0/24"}}), 400)
    neutron_error(client.post("/v2.0/ports", json={"port": {"name": "p"}}), 400)


def test_bad_list_parameters_are_bad_requests_not_422(client: TestClient) -> None:
    for query in ("limit=x", "sort_dir=sideways&sort_key=name", "fields_x=1", "sort_key=nope"):
        neutron_error(client.get(f"/v2.0/networks?{query}"), 400)


# --- 403, 409, 412 --------------------------------------------------------------------------------------


def test_refusals_by_policy_are_403(client: TestClient) -> None:
    reader = as_project("p1", "reader")
    neutron_error(client.post("/v2.0/networks", json={"network": {}}, headers=reader), 403)
    error = neutron_error(
        client.post("/v2.0/networks", json={"network": {"shared": True}}, headers=as_project("p1")),
        403)
    assert "shared" in error["message"]


def test_conflicts_are_409(client: TestClient) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/30", enable_dhcp=False)  # pool: .2 only
    p = port(client, net["id"])
    neutron_error(client.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}), 409,
                  "IpAddressGenerationFailure")
    neutron_error(client.post("/v2.0/ports", json={"port": {"network_id": net["id"],
                                                            "fixed_ips": p["fixed_ips"]}}), 409,
                  "IpAddressAlreadyAllocated")
    neutron_error(client.post("/v2.0/ports", json={"port": {"network_id": net["id"], "fixed_ips": [],
                                                            "mac_address": p["mac_address"]}}), 409,
                  "MacAddressInUse")
    neutron_error(client.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"],
                                                                "cidr": "10.0.0.0/24"}}), 409)
    neutron_error(client.delete(f"/v2.0/subnets/{p['fixed_ips'][0]['subnet_id']}"), 409,
                  "SubnetInUse")
    neutron_error(client.delete(f"/v2.0/networks/{net['id']}"), 409, "NetworkInUse")


def test_a_failed_precondition_is_412(client: TestClient) -> None:
    net = network(client)
    response = client.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "x"}},
                          headers={"If-Match": "revision_number=7"})
    neutron_error(response, 412)


def test_a_refused_request_is_never_answered_with_a_server_error(client: TestClient) -> None:
    """A grab bag of odd requests: whatever they are, the answer is a 4xx envelope."""
    net = network(client)
    odd: list[tuple[str, str, Any]] = [
        ("POST", "/v2.0/ports", {"port": {"network_id": net["id"], "fixed_ips": [{"subnet_id": None}]}}),
        ("POST", "/v2.0/ports", {"port": {"network_id": net["id"], "security_groups": [None]}}),
        ("POST", "/v2.0/ports", {"port": {"network_id": net["id"], "security_groups": "x"}}),
        ("POST", "/v2.0/ports", {"port": {"network_id": ["x"]}}),
        ("POST", "/v2.0/subnets", {"subnet": {"network_id": net["id"], "cidr": 10}}),
        ("POST", "/v2.0/subnets", {"subnet": {"network_id": net["id"], "cidr": "10.0.0.0/24",
                                              "allocation_pools": [None]}}),
        ("POST", "/v2.0/subnets", {"subnet": {"network_id": net["id"], "cidr": "10.0.0.0/24",
                                              "host_routes": [{"destination": 1, "nexthop": 2}]}}),
        ("POST", "/v2.0/security-group-rules", {"security_group_rule": {
            "security_group_id": UNKNOWN_ID, "direction": "ingress", "port_range_min": "x"}}),
        ("POST", "/v2.0/networks", {"network": {"provider:segmentation_id": "x",
                                                "provider:network_type": "vlan"}}),
        ("POST", "/v2.0/networks", {"network": {"mtu": 10**30}}),
        ("PUT", f"/v2.0/networks/{net['id']}/tags", {"tags": [None]}),
        ("GET", f"/v2.0/networks?limit={10**30}", None),
        ("GET", "/v2.0/networks?mtu=" + "9" * 40, None),
        ("GET", "/v2.0/networks?id=%00", None),
    ]
    for method, path, payload in odd:
        response = client.request(method, path, json=payload) if payload is not None else (
            client.request(method, path))
        assert response.status_code < 500, (method, path, response.text)
        if response.status_code >= 400:
            neutron_error(response, response.status_code)


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("GET", "/v2.0/networks/%00", None),
        ("PUT", "/v2.0/networks/%00", {"network": {"name": "x"}}),
        ("DELETE", "/v2.0/ports/%00", None),
        ("GET", "/v2.0/networks?id=%00", None),
        ("GET", "/v2.0/networks?name=a%00b", None),
        ("GET", "/v2.0/networks?tags=%00", None),
        ("GET", "/v2.0/networks?limit=1&marker=%00", None),
        ("GET", "/v2.0/networks?sort_key=%00", None),
        ("POST", "/v2.0/networks", {"network": {"name": "a\u0000b"}}),
        ("POST", "/v2.0/networks", {"network": {"project_id": "p\u0000"}}),
        ("POST", "/v2.0/security-groups", {"security_group": {"description": "\u0000"}}),
    ],
)
def test_nul_characters_are_refused_not_a_server_error(
    client: TestClient, method: str, path: str, payload: Any
) -> None:
    response = client.request(method, path, json=payload) if payload else client.request(method, path)
    assert 400 <= response.status_code < 500, response.text
    neutron_error(response, response.status_code)


def test_a_tag_with_a_nul_character_is_refused(client: TestClient) -> None:
    net = network(client)
    neutron_error(client.put(f"/v2.0/networks/{net['id']}/tags/a%00b"), 400)
    neutron_error(client.put(f"/v2.0/networks/{net['id']}/tags", json={"tags": ["a\u0000"]}), 400)
    assert client.get(f"/v2.0/networks/{net['id']}/tags/a%00b").status_code == 404
