"""update_intent against a real database (SQLite and PostgreSQL) written through the real API:
after every write, the intent made from the previous one and the rows the write's outbox
changes name equals a full load_intent, indexes included, and keeps every row the write did
not change (the same object)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from api.helpers import body, network, port, rule, security_group, subnet
from neutrino.compiler import load_intent, update_intent
from neutrino.compiler.intent import intent_differences
from neutrino.db.engine import Database
from neutrino.db.outbox import Change, changes_since, current_revision


class Follower:
    """Keeps an intent up to date with `update_intent`, one outbox row at a time."""

    def __init__(self, db: Database) -> None:
        self.db = db
        with db.read() as conn:
            self.intent = load_intent(conn)
            self.revision = current_revision(conn)

    def follow(self) -> list[Change]:
        """Catch up with the outbox; check against a full load; the changes followed."""
        with self.db.read() as conn:
            changes = [c for _rev, items in changes_since(conn, self.revision) for c in items]
            self.revision = current_revision(conn)
            previous = self.intent
            self.intent = update_intent(conn, previous, changes)
            full = load_intent(conn)
        assert intent_differences(self.intent, full) == [], changes
        assert self.intent.all_indexes() == full.all_indexes()
        for table in ("networks", "subnets", "ports", "security_groups", "rules", "chassis",
                      "routers", "router_ports", "floatingips"):
            rows_before: dict[str, Any] = getattr(previous, table)
            for id, row in getattr(self.intent, table).items():
                if row == rows_before.get(id):  # unchanged (named or not): the same object
                    assert row is rows_before[id], (table, id)
        return changes


def test_every_write_is_followed_exactly(client: TestClient, db: Database) -> None:
    f = Follower(db)
    host = {"binding:host_id": "hv1"}
    net = network(client)
    f.follow()
    sub = subnet(client, net["id"], "10.0.0.0/24")  # and the network's DHCP port
    assert {c.kind for c in f.follow()} == {"subnet", "port"}
    subnet(client, net["id"], "fd00::/64", ipv6_address_mode="slaac", ipv6_ra_mode="slaac")
    f.follow()
    web = security_group(client, name="web")  # with the default group, and their rules
    f.follow()
    r = rule(client, web["id"], protocol="tcp", port_range_min=22, port_range_max=22)
    f.follow()
    p1 = port(client, net["id"], security_groups=[web["id"]],
              allowed_address_pairs=[{"ip_address": "10.0.0.200"}], **host)
    f.follow()
    p2 = port(client, net["id"])
    f.follow()
    for update in ({"binding:host_id": "hv2"}, {"security_groups": []},
                   {"fixed_ips": [{"subnet_id": sub["id"]}]}, {"admin_state_up": False}):
        body(client.put(f"/v2.0/ports/{p2['id']}", json={"port": update}))
        f.follow()
    body(client.put(f"/v2.0/neutrino/ports/{p1['id']}/status", json={"status": "ACTIVE"}))
    assert f.follow() == [Change("port_status", p1["id"], "update")]
    assert f.intent.ports[p1["id"]].status == "ACTIVE"
    body(client.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": {"enable_dhcp": False}}))
    f.follow()
    body(client.put(f"/v2.0/networks/{net['id']}", json={"network": {"mtu": 1400}}))
    f.follow()
    body(client.post("/v2.0/neutrino/chassis",
                     json={"chassis": {"name": "hv1", "tunnel_ip": "192.0.2.1",
                                       "bridge_mappings": {"physnet1": "br-ex"}}}), 201)
    f.follow()
    assert client.delete(f"/v2.0/security-group-rules/{r['id']}").status_code == 204
    f.follow()
    for gone in (p1, p2):
        assert client.delete(f"/v2.0/ports/{gone['id']}").status_code == 204
        f.follow()
    assert client.delete(f"/v2.0/security-groups/{web['id']}").status_code == 204
    f.follow()
    assert client.delete(f"/v2.0/networks/{net['id']}").status_code == 204
    f.follow()
    assert f.intent.networks == {} and f.intent.ports == {} and f.intent.subnets == {}


def test_every_router_write_is_followed_exactly(client: TestClient, db: Database) -> None:
    """Routers: create with a gateway, interfaces by subnet and by port, extra routes, a
    distributed migration, gateway cleared, interfaces removed, delete."""
    f = Follower(db)
    ext = network(client, **{"router:external": True})
    subnet(client, ext["id"], "203.0.113.0/24")
    a, b = network(client), network(client)
    sub_a = subnet(client, a["id"], "10.0.0.0/24")
    sub_b = subnet(client, b["id"], "10.0.1.0/24")
    taken = port(client, b["id"], fixed_ips=[{"subnet_id": sub_b["id"], "ip_address": "10.0.1.9"}],
                 **{"binding:host_id": "hv1"})
    f.follow()
    router = body(client.post("/v2.0/routers", json={"router": {
        "name": "r", "external_gateway_info": {"network_id": ext["id"]}}}), 201)["router"]
    assert "router" in {c.kind for c in f.follow()}
    rid = router["id"]
    gateway = f.intent.routers[rid].gw_port_id
    assert gateway is not None
    assert f.intent.router_ports[gateway].port_type == "network:router_gateway"
    body(client.put(f"/v2.0/routers/{rid}/add_router_interface", json={"subnet_id": sub_a["id"]}))
    f.follow()
    body(client.put(f"/v2.0/routers/{rid}/add_router_interface", json={"port_id": taken["id"]}))
    f.follow()
    assert f.intent.routers_by_network == {a["id"]: (rid,), b["id"]: (rid,)}
    body(client.put(f"/v2.0/routers/{rid}/add_extraroutes", json={"router": {"routes": [
        {"destination": "10.9.0.0/16", "nexthop": "10.0.0.9"}]}}))
    f.follow()
    assert f.intent.routers[rid].routes == (("10.9.0.0/16", "10.0.0.9"),)
    body(client.put(f"/v2.0/routers/{rid}", json={"router": {"admin_state_up": False}}))
    f.follow()
    body(client.put(f"/v2.0/routers/{rid}", json={"router": {"distributed": True}}))
    f.follow()
    body(client.put(f"/v2.0/routers/{rid}", json={"router": {"external_gateway_info": None}}))
    f.follow()
    body(client.put(f"/v2.0/routers/{rid}/remove_extraroutes", json={"router": {"routes": [
        {"destination": "10.9.0.0/16", "nexthop": "10.0.0.9"}]}}))
    f.follow()
    body(client.put(f"/v2.0/routers/{rid}/remove_router_interface",
                    json={"port_id": taken["id"]}))
    f.follow()
    body(client.put(f"/v2.0/routers/{rid}/remove_router_interface",
                    json={"subnet_id": sub_a["id"]}))
    f.follow()
    assert f.intent.routers_by_network == {} and f.intent.interfaces_by_router == {}
    assert client.delete(f"/v2.0/routers/{rid}").status_code == 204
    f.follow()
    assert f.intent.routers == {} and f.intent.router_ports == {}


def test_every_floating_ip_write_is_followed_exactly(client: TestClient, db: Database) -> None:
    """Floating IPs: create associated and not, disassociate, move to another port, a port
    forwarding giving an unassociated one a router and taking it back, the fixed port
    readdressed and deleted (l3.release_port), the gateway's addresses and the external
    subnet's gateway_ip changed, the floating IP port's MAC, delete, gateway cleared."""
    f = Follower(db)
    ext = network(client, **{"router:external": True})
    ext_sub = subnet(client, ext["id"], "203.0.113.0/24",
                     allocation_pools=[{"start": "203.0.113.2", "end": "203.0.113.200"}])
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/24")
    router = body(client.post("/v2.0/routers", json={"router": {
        "name": "r", "external_gateway_info": {"network_id": ext["id"]}}}), 201)["router"]
    rid = router["id"]
    body(client.put(f"/v2.0/routers/{rid}/add_router_interface", json={"subnet_id": sub["id"]}))
    p1 = port(client, net["id"], **{"binding:host_id": "hv1"})
    p2 = port(client, net["id"], **{"binding:host_id": "hv2"})
    f.follow()
    fip = body(client.post("/v2.0/floatingips", json={"floatingip": {
        "floating_network_id": ext["id"], "port_id": p1["id"]}}), 201)["floatingip"]
    assert {c.kind for c in f.follow()} == {"floatingip", "port"}
    assert f.intent.floatingips_by_router == {rid: (fip["id"],)}
    assert f.intent.external_hosts(rid) == {"hv1"}
    spare = body(client.post("/v2.0/floatingips", json={"floatingip": {
        "floating_network_id": ext["id"]}}), 201)["floatingip"]
    f.follow()
    for update in ({"port_id": None}, {"port_id": p2["id"]}, {"port_id": p1["id"]}):
        body(client.put(f"/v2.0/floatingips/{fip['id']}", json={"floatingip": update}))
        f.follow()
    forwardings = f"/v2.0/floatingips/{spare['id']}/port_forwardings"
    pf = body(client.post(forwardings, json={"port_forwarding": {
        "protocol": "tcp", "internal_port_id": p2["id"],
        "internal_ip_address": p2["fixed_ips"][0]["ip_address"], "internal_port": 22,
        "external_port": 2222}}), 201)["port_forwarding"]
    f.follow()
    assert f.intent.floatingips[spare["id"]].router_id == rid
    assert client.delete(f"{forwardings}/{pf['id']}").status_code == 204
    f.follow()
    assert f.intent.floatingips[spare["id"]].router_id is None
    body(client.put(f"/v2.0/ports/{p1['id']}", json={"port": {"binding:host_id": "hv2"}}))
    f.follow()
    assert f.intent.external_hosts(rid) == {"hv2"}
    body(client.put(f"/v2.0/ports/{p1['id']}", json={"port": {  # the floating IP lets go
        "fixed_ips": [{"subnet_id": sub["id"], "ip_address": "10.0.0.99"}]}}))
    assert "floatingip" in {c.kind for c in f.follow()}
    assert f.intent.floatingips[fip["id"]].fixed_port_id is None
    body(client.put(f"/v2.0/floatingips/{fip['id']}", json={"floatingip": {"port_id": p1["id"]}}))
    f.follow()
    assert client.delete(f"/v2.0/ports/{p1['id']}").status_code == 204  # and again
    f.follow()
    assert f.intent.floatingips_by_fixed_port == {}
    body(client.put(f"/v2.0/floatingips/{fip['id']}", json={"floatingip": {"port_id": p2["id"]}}))
    f.follow()
    body(client.put(f"/v2.0/routers/{rid}", json={"router": {"external_gateway_info": {
        "network_id": ext["id"], "enable_snat": False,
        "external_fixed_ips": [{"subnet_id": ext_sub["id"], "ip_address": "203.0.113.77"}]}}}))
    f.follow()
    body(client.put(f"/v2.0/subnets/{ext_sub['id']}", json={"subnet": {
        "gateway_ip": "203.0.113.254"}}))
    f.follow()
    floating_port = f.intent.floatingips[fip["id"]].floating_port_id
    body(client.put(f"/v2.0/ports/{floating_port}", json={"port": {
        "mac_address": "fa:16:3e:00:f1:99"}}))
    f.follow()
    for gone in (fip, spare):
        assert client.delete(f"/v2.0/floatingips/{gone['id']}").status_code == 204
        f.follow()
    body(client.put(f"/v2.0/routers/{rid}", json={"router": {"external_gateway_info": None}}))
    f.follow()
    assert f.intent.floatingips == {} and f.intent.routers_by_gateway_network == {}
