"""The incremental compiler pass against the real API: after every write of a long sequence
(networks, subnets, ports with fixed IPs, groups and address pairs, groups, rules, chassis,
bindings and moves, status reports, routers, gateways and floating IPs), and of random
sequences,

- the intent the loop keeps (`update_intent`, from the previous one and the rows the changes
  name) equals a full `load_intent` of the database, indexes included;
- the policy store holds exactly what a from-scratch `compile_chassis` of every chassis gives;
- no pass needed the safety net: the loop runs with `check_incremental`, which compares each
  incremental pass with a full one and counts differences in `loop.mismatches`;
- every pass that had a previous intent was incremental (`update_intent` was called).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, select

from distribution.conftest import ADMIN
from neutrino.api.app import create_app
from neutrino.compiler import compile_chassis, load_intent
from neutrino.compiler.intent import intent_differences
from neutrino.config import Settings
from neutrino.db.engine import Database
from neutrino.db.outbox import Change, current_revision
from neutrino.db.schema import chassis as chassis_table
from neutrino.distribution.compiler_loop import CompilerLoop, default_compiler
from neutrino.distribution.store import EmbeddedPolicyStore


class Cloud:
    """The API in-process and a compiler loop with its checks on; `step` runs a pass after a
    write and checks it."""

    def __init__(self, http: TestClient, db: Database) -> None:
        self.http = http
        self.db = db
        compiler = default_compiler()
        assert compiler is not None and compiler.update_intent is not None
        self.incremental_loads = 0
        update = compiler.update_intent

        def counting_update(conn: Connection, before: Any, changes: list[Change]) -> Any:
            self.incremental_loads += 1
            return update(conn, before, changes)

        self.loop = CompilerLoop(db, EmbeddedPolicyStore(db),
                                 replace(compiler, update_intent=counting_update),
                                 check_incremental=True)
        self.passes = 0

    # --- API ---------------------------------------------------------------------------------
    def call(self, method: str, path: str, json: Any = None, ok: tuple[int, ...] = (200, 201, 204),
             **headers: str) -> Any:
        response = self.http.request(method, path, json=json, headers=headers or None)
        assert response.status_code in ok, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def create(self, collection: str, resource: str, **attrs: Any) -> dict[str, Any]:
        made: dict[str, Any] = self.call("POST", f"/v2.0/{collection}", {resource: attrs})[resource]
        self.step()
        return made

    def update(self, collection: str, resource: str, id: str, **attrs: Any) -> None:
        self.call("PUT", f"/v2.0/{collection}/{id}", {resource: attrs})
        self.step()

    def delete(self, collection: str, id: str) -> None:
        self.call("DELETE", f"/v2.0/{collection}/{id}")
        self.step()

    def register(self, name: str, tunnel_ip: str, **mappings: str) -> dict[str, Any]:
        made: dict[str, Any] = self.call("POST", "/v2.0/neutrino/chassis", {"chassis": {
            "name": name, "tunnel_ip": tunnel_ip, "bridge_mappings": mappings}})["chassis"]
        self.step()
        return made

    def report(self, port_id: str, status: str, chassis: str) -> None:
        self.call("PUT", f"/v2.0/neutrino/ports/{port_id}/status",
                  {"status": status, "chassis": chassis})
        self.step()

    # --- a pass and its checks ---------------------------------------------------------------
    def step(self) -> None:
        with self.db.read() as conn:
            pending = current_revision(conn) > self.loop.store.revision()
        incremental = pending and self.loop.before is not None
        loads = self.incremental_loads
        self.loop.run_once()
        self.passes += 1
        assert self.loop.mismatches == 0, "an incremental pass differed from a full one"
        assert self.incremental_loads == loads + incremental, "the pass was not incremental"
        assert_store_is_a_full_compile(self.db, self.loop)


def assert_store_is_a_full_compile(db: Database, loop: CompilerLoop) -> None:
    with db.read() as conn:
        intent = load_intent(conn)
        head = current_revision(conn)
        registered = {row[0] for row in conn.execute(select(chassis_table.c.name))}
    if loop.before is not None:  # None while no chassis is registered: nothing is compiled
        assert intent_differences(loop.before, intent) == []
    reader = EmbeddedPolicyStore(db)  # reads the table, remembers nothing
    assert reader.revision() == head
    for name in sorted(registered | reader.known_chassis() | set(intent.ports_by_chassis)):
        expected = {key: doc.model_dump(mode="json")
                    for key, doc in compile_chassis(intent, name).items()}
        assert reader.snapshot(name)[1] == (expected if name in registered else {}), name


def holds(c: Cloud, chassis: str, kind: str, item_id: str) -> bool:
    """Whether the policy store holds that item of the chassis."""
    return f"/chassis/{chassis}/{kind}/{item_id}" in EmbeddedPolicyStore(c.db).snapshot(chassis)[1]


def make_cloud(database_url: str, state_dir: Path) -> tuple[Cloud, Database]:
    settings = Settings(state_dir=state_dir, database=database_url, auth="noauth",
                        compiler_enabled=False)
    db = Database(database_url)
    return Cloud(TestClient(create_app(settings, db), headers=ADMIN), db), db


@pytest.fixture
def cloud(database_url: str, tmp_path: Path) -> Iterator[Cloud]:
    made, db = make_cloud(database_url, tmp_path)
    try:
        made.step()  # the first (full) pass, on an empty database
        yield made
    finally:
        made.http.close()
        db.dispose()


def test_a_long_sequence_of_writes(cloud: Cloud) -> None:
    c = cloud
    c.register("hv1", "192.0.2.1", physnet1="br-ex")
    c.register("hv2", "192.0.2.2")
    # networks and subnets; a DHCP-enabled IPv4 subnet brings the network's DHCP port
    net = c.create("networks", "network", name="a")
    sub4 = c.create("subnets", "subnet", network_id=net["id"], cidr="10.0.0.0/24", ip_version=4,
                    dns_nameservers=["192.0.2.53"])
    sub6 = c.create("subnets", "subnet", network_id=net["id"], cidr="fd00::/64", ip_version=6,
                    ipv6_address_mode="slaac", ipv6_ra_mode="slaac")
    vlan = c.create("networks", "network", name="b", **{
        "provider:network_type": "vlan", "provider:physical_network": "physnet1",
        "provider:segmentation_id": 42})
    vlan_sub = c.create("subnets", "subnet", network_id=vlan["id"], cidr="10.5.0.0/24",
                        ip_version=4)
    # groups and rules (a new group comes with its egress rules, which no change names)
    web = c.create("security-groups", "security_group", name="web")
    default = next(g for g in c.call("GET", "/v2.0/security-groups")["security_groups"]
                   if g["name"] == "default")
    ssh = c.create("security-group-rules", "security_group_rule", security_group_id=web["id"],
                   direction="ingress", protocol="tcp", port_range_min=22, port_range_max=22)
    c.create("security-group-rules", "security_group_rule", security_group_id=web["id"],
             direction="ingress", protocol="17", remote_group_id=default["id"])
    # ports: fixed IPs, groups, address pairs; bound, unbound, without port security
    p1 = c.create("ports", "port", network_id=net["id"], security_groups=[web["id"]],
                  fixed_ips=[{"subnet_id": sub4["id"], "ip_address": "10.0.0.5"}],
                  allowed_address_pairs=[{"ip_address": "10.0.0.200"}],
                  **{"binding:host_id": "hv1"})
    p2 = c.create("ports", "port", network_id=net["id"], **{"binding:host_id": "hv2"})
    p3 = c.create("ports", "port", network_id=vlan["id"], port_security_enabled=False,
                  security_groups=[], **{"binding:host_id": "hv1"})
    p4 = c.create("ports", "port", network_id=net["id"])
    # the agents report their ports
    c.report(p1["id"], "ACTIVE", "hv1")
    c.report(p2["id"], "ACTIVE", "hv2")
    c.report(p3["id"], "ACTIVE", "hv1")
    # bindings move; addresses, pairs and groups change
    c.update("ports", "port", p2["id"], **{"binding:host_id": "hv1"})
    c.report(p2["id"], "DOWN", "hv1")
    c.update("ports", "port", p4["id"], **{"binding:host_id": "hv2"})
    c.update("ports", "port", p1["id"], fixed_ips=[
        {"subnet_id": sub4["id"], "ip_address": "10.0.0.5"},
        {"subnet_id": sub4["id"], "ip_address": "10.0.0.9"}])
    c.update("ports", "port", p1["id"], allowed_address_pairs=[
        {"ip_address": "10.0.0.0/28", "mac_address": "fa:16:3e:aa:bb:cc"}])
    c.update("ports", "port", p1["id"], security_groups=[web["id"], default["id"]])
    c.update("ports", "port", p4["id"], admin_state_up=False,
             extra_dhcp_opts=[{"opt_name": "mtu", "opt_value": "1400"}])
    c.update("ports", "port", p3["id"], mac_address="fa:16:3e:12:34:56")
    c.call("PUT", f"/v2.0/ports/{p2['id']}/tags/blue")  # tags: a port change, no policy
    c.step()
    # rules and groups change
    c.update("security-group-rules", "security_group_rule", ssh["id"], description="ssh")
    c.delete("security-group-rules", ssh["id"])
    spare = c.create("security-groups", "security_group", name="spare")
    c.update("security-groups", "security_group", spare["id"], stateful=False)
    c.create("security-group-rules", "security_group_rule", security_group_id=web["id"],
             direction="ingress", remote_group_id=spare["id"])
    c.delete("security-groups", spare["id"])  # takes web's rule naming it along
    # subnets and networks change
    c.update("subnets", "subnet", sub4["id"], dns_nameservers=["192.0.2.54"],
             host_routes=[{"destination": "10.9.0.0/16", "nexthop": "10.0.0.254"}])
    c.update("subnets", "subnet", sub4["id"], enable_dhcp=False)  # the DHCP port goes
    c.update("subnets", "subnet", sub4["id"], enable_dhcp=True)  # and comes back
    c.update("networks", "network", net["id"], mtu=1400)
    c.create("subnets", "subnet", network_id=net["id"], cidr="fd01::/64", ip_version=6,
             ipv6_address_mode="slaac", ipv6_ra_mode="slaac")  # every port gets an address
    c.delete("subnets", sub6["id"])  # and loses one
    # routers and floating IPs: their ports are port changes
    ext = c.create("networks", "network", name="ext", **{
        "router:external": True, "provider:network_type": "flat",
        "provider:physical_network": "physnet1"})
    ext_sub = c.create("subnets", "subnet", network_id=ext["id"], cidr="203.0.113.0/24",
                       ip_version=4, allocation_pools=[{"start": "203.0.113.2",
                                                        "end": "203.0.113.200"}])
    router = c.create("routers", "router", name="r",
                      external_gateway_info={"network_id": ext["id"]})
    c.call("PUT", f"/v2.0/routers/{router['id']}/add_router_interface",
           {"subnet_id": sub4["id"]})
    c.step()
    # a second routed network, with a port on hv2: hv1 and hv2 route between them
    routed = c.create("networks", "network", name="routed")
    routed_sub = c.create("subnets", "subnet", network_id=routed["id"], cidr="10.7.0.0/24",
                          ip_version=4)
    c.create("ports", "port", network_id=routed["id"], **{"binding:host_id": "hv2"})
    c.call("PUT", f"/v2.0/routers/{router['id']}/add_router_interface",
           {"subnet_id": routed_sub["id"]})
    c.step()
    c.call("PUT", f"/v2.0/routers/{router['id']}/add_extraroutes", {"router": {"routes": [
        {"destination": "10.99.0.0/16", "nexthop": "10.7.0.99"}]}})
    c.step()
    c.update("routers", "router", router["id"], admin_state_up=False)
    c.update("routers", "router", router["id"], distributed=True)  # interfaces change owner
    c.update("routers", "router", router["id"], admin_state_up=True)
    # an interface by port: an existing port taken over
    spare_port = c.create("ports", "port", network_id=vlan["id"])
    c.call("PUT", f"/v2.0/routers/{router['id']}/add_router_interface",
           {"port_id": spare_port["id"]})
    c.step()
    c.update("ports", "port", p3["id"], **{"binding:host_id": "hv2"})  # routes into vlan
    c.update("ports", "port", p3["id"], **{"binding:host_id": "hv1"})
    c.call("PUT", f"/v2.0/routers/{router['id']}/remove_router_interface",
           {"port_id": spare_port["id"]})
    c.step()
    c.call("PUT", f"/v2.0/routers/{router['id']}/remove_extraroutes", {"router": {"routes": [
        {"destination": "10.99.0.0/16", "nexthop": "10.7.0.99"}]}})
    c.step()
    c.call("PUT", f"/v2.0/routers/{router['id']}/remove_router_interface",
           {"subnet_id": routed_sub["id"]})
    c.step()
    # floating IPs: the chassis of the port holds the external network
    fip = c.create("floatingips", "floatingip", floating_network_id=ext["id"], port_id=p1["id"],
                   fixed_ip_address="10.0.0.5")
    assert holds(c, "hv1", "network", ext["id"]) and not holds(c, "hv2", "network", ext["id"])
    spare_fip = c.create("floatingips", "floatingip", floating_network_id=ext["id"])
    c.update("ports", "port", p1["id"], **{"binding:host_id": "hv2"})  # ext moves along
    assert holds(c, "hv2", "network", ext["id"]) and not holds(c, "hv1", "network", ext["id"])
    c.update("ports", "port", p1["id"], **{"binding:host_id": "hv1"})
    c.update("floatingips", "floatingip", fip["id"], port_id=p2["id"])  # another port
    c.update("floatingips", "floatingip", spare_fip["id"], port_id=p1["id"],
             fixed_ip_address="10.0.0.5")
    c.update("routers", "router", router["id"], external_gateway_info={
        "network_id": ext["id"], "enable_snat": False})
    c.update("subnets", "subnet", ext_sub["id"], gateway_ip="203.0.113.254")
    floating_port = c.call("GET", f"/v2.0/ports?device_id={fip['id']}")["ports"][0]
    c.update("ports", "port", floating_port["id"], mac_address="fa:16:3e:00:f1:99")
    c.update("ports", "port", p1["id"], fixed_ips=[  # releases spare_fip
        {"subnet_id": sub4["id"], "ip_address": "10.0.0.9"}])
    c.update("floatingips", "floatingip", fip["id"], port_id=None)
    c.delete("floatingips", fip["id"])
    c.delete("floatingips", spare_fip["id"])
    c.call("PUT", f"/v2.0/routers/{router['id']}/remove_router_interface",
           {"subnet_id": sub4["id"]})
    c.step()
    c.delete("routers", router["id"])
    # chassis change: a new tunnel address, a new physnet, then one goes away
    c.register("hv2", "192.0.2.22")
    c.register("hv2", "192.0.2.22", physnet2="br-two")
    c.register("hv3", "192.0.2.3")
    c.update("ports", "port", p4["id"], **{"binding:host_id": "hv3"})
    agent = next(a for a in c.call("GET", "/v2.0/agents")["agents"] if a["host"] == "hv2")
    c.delete("agents", agent["id"])
    # deletions
    c.delete("ports", p3["id"])
    c.delete("subnets", vlan_sub["id"])
    c.delete("networks", vlan["id"])
    c.update("ports", "port", p1["id"], security_groups=[])
    c.delete("security-groups", web["id"])
    c.delete("ports", p2["id"])
    c.delete("ports", p4["id"])
    c.delete("ports", p1["id"])
    c.delete("networks", net["id"])  # its DHCP port and subnets with it
    assert c.passes > 60


# --- random sequences ----------------------------------------------------------------------------

HOSTS = ("", "hv1", "hv2")
operations = st.lists(st.tuples(
    st.sampled_from(("port", "move", "groups", "pairs", "delete port", "rule", "delete rule",
                     "status", "subnet", "network", "delete network", "chassis", "router",
                     "attach", "take", "detach", "routes", "router state", "delete router",
                     "gateway", "fip", "associate", "delete fip")),
    st.integers(0, 5), st.integers(0, 5)), min_size=5, max_size=25)


@dataclass
class World:
    """What the random sequence made so far (ids by creation order)."""

    networks: list[tuple[str, str]]  # (network id, subnet id)
    ports: list[str]
    groups: list[str]
    rules: list[str]
    routers: list[str]
    external: str = ""  # the external network (floating IPs, gateways)
    fips: list[str] = field(default_factory=list)


def apply_operation(c: Cloud, world: World, op: str, a: int, b: int) -> None:
    """One API-like write chosen by (op, a, b); the API may refuse it (a conflict, a port of a
    deleted network): refusals change nothing and are still followed by a pass."""
    refused = (200, 201, 204, 400, 404, 409)
    if op == "port" and world.networks:
        net, sub = world.networks[a % len(world.networks)]
        made = c.call("POST", "/v2.0/ports", {"port": {
            "network_id": net, "security_groups": [world.groups[b % len(world.groups)]],
            "binding:host_id": HOSTS[b % len(HOSTS)]}}, ok=refused)
        if made and "port" in made:
            world.ports.append(made["port"]["id"])
    elif op == "move" and world.ports:
        c.call("PUT", f"/v2.0/ports/{world.ports[a % len(world.ports)]}",
               {"port": {"binding:host_id": HOSTS[b % len(HOSTS)]}}, ok=refused)
    elif op == "groups" and world.ports:
        groups = [g for i, g in enumerate(world.groups) if (b >> i) & 1]
        c.call("PUT", f"/v2.0/ports/{world.ports[a % len(world.ports)]}",
               {"port": {"security_groups": groups}}, ok=refused)
    elif op == "pairs" and world.ports:
        pairs = [{"ip_address": f"10.{b}.0.{n + 100}"} for n in range(b % 3)]
        c.call("PUT", f"/v2.0/ports/{world.ports[a % len(world.ports)]}",
               {"port": {"allowed_address_pairs": pairs}}, ok=refused)
    elif op == "delete port" and world.ports:
        c.call("DELETE", f"/v2.0/ports/{world.ports.pop(a % len(world.ports))}", ok=refused)
    elif op == "rule":
        group = world.groups[a % len(world.groups)]
        remote = world.groups[b % len(world.groups)] if b % 2 else None
        made = c.call("POST", "/v2.0/security-group-rules", {"security_group_rule": {
            "security_group_id": group, "direction": "ingress", "protocol": "tcp",
            "port_range_min": 1000 + a * 10 + b, "port_range_max": 1000 + a * 10 + b,
            "remote_group_id": remote}}, ok=refused)
        if made and "security_group_rule" in made:
            world.rules.append(made["security_group_rule"]["id"])
    elif op == "delete rule" and world.rules:
        c.call("DELETE", f"/v2.0/security-group-rules/{world.rules.pop(a % len(world.rules))}",
               ok=refused)
    elif op == "status" and world.ports:
        c.call("PUT", f"/v2.0/neutrino/ports/{world.ports[a % len(world.ports)]}/status",
               {"status": ("ACTIVE", "DOWN")[b % 2]}, ok=refused)
    elif op == "subnet" and world.networks:
        _net, sub = world.networks[a % len(world.networks)]
        c.call("PUT", f"/v2.0/subnets/{sub}", {"subnet": {
            "enable_dhcp": bool(b % 2), "dns_nameservers": [f"192.0.2.{b + 1}"]}}, ok=refused)
    elif op == "network":
        net = c.call("POST", "/v2.0/networks", {"network": {"name": f"n{a}"}})["network"]
        sub = c.call("POST", "/v2.0/subnets", {"subnet": {
            "network_id": net["id"], "cidr": f"10.{len(world.networks) + 10}.0.0/24",
            "ip_version": 4, "enable_dhcp": bool(b % 2)}})["subnet"]
        world.networks.append((net["id"], sub["id"]))
        c.step()  # the network and its subnet were two writes
    elif op == "delete network" and world.networks:
        net, _sub = world.networks[a % len(world.networks)]
        answer = c.http.delete(f"/v2.0/networks/{net}")
        if answer.status_code == 204:
            world.networks.remove((net, _sub))
    elif op == "router":
        made = c.call("POST", "/v2.0/routers", {"router": {"name": f"r{a}"}})
        world.routers.append(made["router"]["id"])
    elif op == "attach" and world.routers and world.networks:  # an interface by subnet
        _net, sub = world.networks[a % len(world.networks)]
        c.call("PUT", f"/v2.0/routers/{world.routers[b % len(world.routers)]}/add_router_interface",
               {"subnet_id": sub}, ok=refused)
    elif op == "take" and world.routers and world.ports:  # an interface by port
        c.call("PUT", f"/v2.0/routers/{world.routers[b % len(world.routers)]}/add_router_interface",
               {"port_id": world.ports[a % len(world.ports)]}, ok=refused)
    elif op == "detach" and world.routers and world.networks:
        _net, sub = world.networks[a % len(world.networks)]
        c.call("PUT",
               f"/v2.0/routers/{world.routers[b % len(world.routers)]}/remove_router_interface",
               {"subnet_id": sub}, ok=refused)
    elif op == "routes" and world.routers and world.networks:
        net_index = a % len(world.networks)
        routes = [{"destination": f"10.{100 + b}.0.0/16",
                   "nexthop": f"10.{net_index + 10}.0.{200 + b}"}] if b % 3 else []
        c.call("PUT", f"/v2.0/routers/{world.routers[a % len(world.routers)]}",
               {"router": {"routes": routes}}, ok=refused)
    elif op == "router state" and world.routers:
        c.call("PUT", f"/v2.0/routers/{world.routers[a % len(world.routers)]}",
               {"router": {"admin_state_up": bool(b % 2)}}, ok=refused)
    elif op == "delete router" and world.routers:
        router = world.routers[a % len(world.routers)]
        if c.http.delete(f"/v2.0/routers/{router}").status_code == 204:
            world.routers.remove(router)
    elif op == "gateway" and world.routers:  # set (enable_snat by b) or clear
        info = {"network_id": world.external, "enable_snat": bool(b % 3)} if b % 4 else None
        c.call("PUT", f"/v2.0/routers/{world.routers[a % len(world.routers)]}",
               {"router": {"external_gateway_info": info}}, ok=refused)
    elif op == "fip":
        attrs: dict[str, Any] = {"floating_network_id": world.external}
        if world.ports and b % 3:
            attrs["port_id"] = world.ports[a % len(world.ports)]
        made = c.call("POST", "/v2.0/floatingips", {"floatingip": attrs}, ok=refused)
        if made and "floatingip" in made:
            world.fips.append(made["floatingip"]["id"])
    elif op == "associate" and world.fips:  # to a port, or none
        target = world.ports[b % len(world.ports)] if world.ports and b % 3 else None
        c.call("PUT", f"/v2.0/floatingips/{world.fips[a % len(world.fips)]}",
               {"floatingip": {"port_id": target}}, ok=refused)
    elif op == "delete fip" and world.fips:
        c.call("DELETE", f"/v2.0/floatingips/{world.fips.pop(a % len(world.fips))}", ok=refused)
    elif op == "chassis":
        name = ("hv1", "hv2")[a % 2]
        c.call("POST", "/v2.0/neutrino/chassis", {"chassis": {
            "name": name, "tunnel_ip": f"192.0.2.{b + 1}"}})
    c.step()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=operations)
def test_random_sequences_of_writes(sqlite_template: Path, steps: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "neutrino.sqlite"
        shutil.copyfile(sqlite_template, path)
        c, db = make_cloud(f"sqlite:///{path}", Path(tmp))
        try:
            c.call("POST", "/v2.0/neutrino/chassis",
                   {"chassis": {"name": "hv1", "tunnel_ip": "192.0.2.1"}})
            c.call("POST", "/v2.0/neutrino/chassis",
                   {"chassis": {"name": "hv2", "tunnel_ip": "192.0.2.2"}})
            c.step()
            groups = [c.call("POST", "/v2.0/security-groups", {"security_group": {
                "name": f"g{i}"}})["security_group"]["id"] for i in range(3)]
            c.step()
            external = c.call("POST", "/v2.0/networks", {"network": {
                "name": "ext", "router:external": True, "provider:network_type": "flat",
                "provider:physical_network": "physnet1"}})["network"]["id"]
            c.call("POST", "/v2.0/subnets", {"subnet": {
                "network_id": external, "cidr": "203.0.113.0/24", "ip_version": 4}})
            c.step()
            world = World(networks=[], ports=[], groups=groups, rules=[], routers=[],
                          external=external)
            apply_operation(c, world, "network", 0, 1)
            # a router with a gateway and an interface on the first network, and a port there,
            # so that floating IPs can be associated (and the steps can clear the gateway,
            # detach, move or delete the port, ...)
            apply_operation(c, world, "router", 0, 0)
            apply_operation(c, world, "gateway", 0, 1)
            apply_operation(c, world, "attach", 0, 0)
            apply_operation(c, world, "port", 0, 1)  # on hv1
            apply_operation(c, world, "fip", 0, 1)  # associated with it
            for op, a, b in steps:
                apply_operation(c, world, op, a, b)
        finally:
            c.http.close()
            db.dispose()


# --- the safety net ------------------------------------------------------------------------------


def two_chassis_sharing_a_network(c: Cloud) -> None:
    c.register("hv1", "192.0.2.1")
    c.register("hv2", "192.0.2.2")
    net = c.create("networks", "network", name="a")
    c.create("subnets", "subnet", network_id=net["id"], cidr="10.0.0.0/24", ip_version=4)
    for host in ("hv1", "hv2"):
        c.create("ports", "port", network_id=net["id"], **{"binding:host_id": host})


def move_tunnel_ip_behind_the_outbox(db: Database, name: str, ip: str) -> None:
    """A write the outbox does not name: what a bug in a writer would do."""
    with db.write() as conn:
        conn.execute(chassis_table.update().where(chassis_table.c.name == name)
                     .values(tunnel_ip=ip))


def tunnel_ip_held_by(db: Database, chassis: str, peer: str) -> str:
    items = EmbeddedPolicyStore(db).snapshot(chassis)[1]
    ip: str = items[f"/chassis/{chassis}/tunnel/{peer}"]["ip"]
    return ip


def test_the_check_catches_a_wrong_incremental_intent_and_uses_the_full_one(
        cloud: Cloud, caplog: pytest.LogCaptureFixture) -> None:
    two_chassis_sharing_a_network(cloud)
    move_tunnel_ip_behind_the_outbox(cloud.db, "hv2", "192.0.2.22")
    cloud.call("POST", "/v2.0/networks", {"network": {"name": "b"}})  # names something else
    with caplog.at_level(logging.ERROR, logger="neutrino.distribution.compiler_loop"):
        cloud.loop.run_once()
    assert cloud.loop.mismatches == 1
    assert "incremental intent differs from a full load" in caplog.text
    assert "chassis hv2" in caplog.text
    assert tunnel_ip_held_by(cloud.db, "hv1", "hv2") == "192.0.2.22"  # the full pass's result
    assert_store_is_a_full_compile(cloud.db, cloud.loop)


def test_a_drift_check_finds_what_the_outbox_missed_and_the_next_pass_repairs_it(
        cloud: Cloud, caplog: pytest.LogCaptureFixture) -> None:
    two_chassis_sharing_a_network(cloud)
    compiler = default_compiler()
    assert compiler is not None
    loop = CompilerLoop(cloud.db, EmbeddedPolicyStore(cloud.db), compiler,
                        check_incremental=False)
    loop.run_once()
    assert loop.check_drift() is False  # nothing differs
    move_tunnel_ip_behind_the_outbox(cloud.db, "hv2", "192.0.2.22")
    with caplog.at_level(logging.ERROR, logger="neutrino.distribution.compiler_loop"):
        assert loop.check_drift() is True
    assert "drifted" in caplog.text and loop.mismatches == 1
    assert tunnel_ip_held_by(cloud.db, "hv1", "hv2") == "192.0.2.2"  # not yet
    result = loop.run_once()  # no new outbox row, yet a full pass
    assert result.compiled == {"hv1", "hv2"}
    assert tunnel_ip_held_by(cloud.db, "hv1", "hv2") == "192.0.2.22"
    assert_store_is_a_full_compile(cloud.db, loop)


def test_the_server_loop_checks_for_drift_when_idle(cloud: Cloud) -> None:
    two_chassis_sharing_a_network(cloud)
    compiler = default_compiler()
    assert compiler is not None
    loop = CompilerLoop(cloud.db, EmbeddedPolicyStore(cloud.db), compiler,
                        check_incremental=False, drift_check_seconds=0.0)

    async def scenario() -> None:
        running = asyncio.create_task(loop.run_forever(poll_seconds=0.05))
        try:
            deadline = time.monotonic() + 10
            while loop.before is None:  # its first (full) pass
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            move_tunnel_ip_behind_the_outbox(cloud.db, "hv2", "192.0.2.22")
            while tunnel_ip_held_by(cloud.db, "hv1", "hv2") != "192.0.2.22":
                assert time.monotonic() < deadline, "the drift was not repaired"
                await asyncio.sleep(0.05)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

    asyncio.run(scenario())
    assert loop.mismatches == 1
    assert_store_is_a_full_compile(cloud.db, loop)
