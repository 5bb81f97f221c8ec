"""IPAM properties checked through the API with hypothesis: on a small subnet with arbitrary
pools and gateway, under any sequence of port creations (automatic or at a chosen address),
moves and deletions, no address is ever held twice, automatic addresses come from the pools
(never the gateway), creation fails with 409 IpAddressGenerationFailure exactly when the pools
are full, and deleted or moved ports give their addresses back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import netaddr
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.helpers import body, network, neutron_error

CIDR = netaddr.IPNetwork("10.20.30.0/28")  # hosts .1-.14
HOSTS = list(range(1, 15))


def address(offset: int) -> str:
    return str(CIDR.network + offset)


def offset_of(ip: str) -> int:
    return int(netaddr.IPAddress(ip)) - int(CIDR.network)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[int | None, list[list[int]] | None]:
    """(gateway offset or None, pools as runs of host offsets, or None for Neutron's default)."""
    gateway = draw(st.one_of(st.none(), st.sampled_from(HOSTS)))
    if draw(st.booleans()):
        return gateway, None
    chosen = sorted(draw(st.sets(st.sampled_from([h for h in HOSTS if h != gateway]), max_size=14)))
    runs: list[list[int]] = []
    for host in chosen:
        if runs and host == runs[-1][-1] + 1 and draw(st.integers(0, 3)) > 0:
            runs[-1].append(host)
        else:
            runs.append([host])
    return gateway, runs


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.just(0), st.just(0)),
        st.tuples(st.just("request"), st.integers(0, 15), st.just(0)),
        st.tuples(st.just("delete"), st.integers(0, 30), st.just(0)),
        st.tuples(st.just("move"), st.integers(0, 30), st.integers(0, 15)),
    ),
    max_size=24,
)


@dataclass
class Model:
    gateway: int | None
    pool: set[int]
    held: dict[str, int] = field(default_factory=dict)  # port id -> offset

    def taken(self) -> set[int]:
        return set(self.held.values())

    def free_in_pool(self) -> set[int]:
        return self.pool - self.taken()


def create_subnet(client: TestClient, net_id: str, gateway: int | None,
                  runs: list[list[int]] | None) -> dict[str, Any]:
    # without DHCP: the model owns every pool address (a DHCP port would hold the lowest one)
    attrs: dict[str, Any] = {"network_id": net_id, "cidr": str(CIDR), "ip_version": 4,
                             "gateway_ip": None if gateway is None else address(gateway),
                             "enable_dhcp": False}
    if runs is not None:
        attrs["allocation_pools"] = [{"start": address(r[0]), "end": address(r[-1])} for r in runs]
    result: dict[str, Any] = body(client.post("/v2.0/subnets", json={"subnet": attrs}), 201)["subnet"]
    return result


def pool_offsets(sub: dict[str, Any]) -> set[int]:
    return {o for p in sub["allocation_pools"]
            for o in range(offset_of(p["start"]), offset_of(p["end"]) + 1)}


def port_offsets(view: dict[str, Any]) -> list[int]:
    return [offset_of(f["ip_address"]) for f in view["fixed_ips"]]


def apply(client: TestClient, model: Model, net_id: str, sub_id: str,
          op: tuple[str, int, int]) -> None:
    kind, a, b = op
    ids = sorted(model.held)
    if kind == "create":
        response = client.post("/v2.0/ports", json={"port": {"network_id": net_id}})
        if not model.free_in_pool():
            neutron_error(response, 409, "IpAddressGenerationFailure")
            return
        created = body(response, 201)["port"]
        [got] = port_offsets(created)
        assert got in model.free_in_pool(), (got, model)
        model.held[created["id"]] = got
    elif kind == "request":
        if a == model.gateway:
            return  # whether a plain port may take the gateway address is not specified here
        response = client.post("/v2.0/ports", json={"port": {
            "network_id": net_id, "fixed_ips": [{"subnet_id": sub_id, "ip_address": address(a)}]}})
        if a in (0, 15):
            neutron_error(response, 400)
        elif a in model.taken():
            neutron_error(response, 409, "IpAddressAlreadyAllocated")
        else:
            created = body(response, 201)["port"]
            assert port_offsets(created) == [a]
            model.held[created["id"]] = a
    elif kind == "delete" and ids:
        port_id = ids[a % len(ids)]
        assert client.delete(f"/v2.0/ports/{port_id}").status_code == 204
        del model.held[port_id]
    elif kind == "move" and ids and b != model.gateway:
        port_id = ids[a % len(ids)]
        response = client.put(f"/v2.0/ports/{port_id}", json={"port": {
            "fixed_ips": [{"subnet_id": sub_id, "ip_address": address(b)}]}})
        others = model.taken() - {model.held[port_id]}
        if b in (0, 15):
            neutron_error(response, 400)
        elif b in others:
            neutron_error(response, 409, "IpAddressAlreadyAllocated")
        else:
            assert port_offsets(body(response)["port"]) == [b]
            model.held[port_id] = b


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=layouts(), operations=OPERATIONS)
def test_ipam_never_hands_out_an_address_twice(
    client: TestClient, layout: tuple[int | None, list[list[int]] | None],
    operations: list[tuple[str, int, int]],
) -> None:
    gateway, runs = layout
    net = network(client)
    sub = create_subnet(client, net["id"], gateway, runs)
    pool = pool_offsets(sub)
    assert gateway not in pool
    assert pool <= set(HOSTS)
    model = Model(gateway, pool)
    for op in operations:
        apply(client, model, net["id"], sub["id"], op)
    listed = body(client.get(f"/v2.0/ports?network_id={net['id']}"))["ports"]
    held = {p["id"]: port_offsets(p) for p in listed}
    assert held == {port_id: [offset] for port_id, offset in model.held.items()}
    everything = [o for offsets in held.values() for o in offsets]
    assert len(everything) == len(set(everything))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=layouts(), deletions=st.lists(st.integers(0, 20), max_size=6))
def test_a_full_subnet_refuses_then_reuses_freed_addresses(
    client: TestClient, layout: tuple[int | None, list[list[int]] | None], deletions: list[int],
) -> None:
    gateway, runs = layout
    net = network(client)
    sub = create_subnet(client, net["id"], gateway, runs)
    pool = pool_offsets(sub)
    ports = body(client.post("/v2.0/ports", json={"ports": [{"network_id": net["id"]}] * len(pool)}),
                 201)["ports"] if pool else []
    assert sorted(o for p in ports for o in port_offsets(p)) == sorted(pool)
    neutron_error(client.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}), 409,
                  "IpAddressGenerationFailure")
    freed = set()
    for index in deletions:
        if not ports:
            break
        victim = ports.pop(index % len(ports))
        assert client.delete(f"/v2.0/ports/{victim['id']}").status_code == 204
        freed.update(port_offsets(victim))
    again = [body(client.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}), 201)["port"]
             for _ in freed]
    assert sorted(o for p in again for o in port_offsets(p)) == sorted(freed)
    neutron_error(client.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}), 409,
                  "IpAddressGenerationFailure")
