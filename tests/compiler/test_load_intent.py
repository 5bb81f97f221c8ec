"""load_intent against a real database populated through the real API, then compiled."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import insert

from api.helpers import body, network, port, rule, security_group, subnet
from neutrino.compiler import compile_chassis, load_intent, tunnel_key
from neutrino.db.engine import Database
from neutrino.db.schema import chassis
from neutrino.policy.model import item_key, parse_key


def add_chassis(db: Database, name: str, tunnel_ip: str, mappings: dict[str, str]) -> None:
    now = "2026-01-01T00:00:00Z"
    with db.write() as conn:
        conn.execute(insert(chassis).values(
            name=name, agent_id=str(uuid.uuid4()), tunnel_ip=tunnel_ip, bridge_mappings=mappings,
            configurations={}, created_at=now, started_at=now, heartbeat_at=now))


def host(name: str) -> dict[str, Any]:
    return {"binding:host_id": name}


def ips(view: dict[str, Any]) -> list[str]:
    return [f["ip_address"] for f in view["fixed_ips"]]


def test_load_and_compile(client: TestClient, db: Database) -> None:
    add_chassis(db, "hv1", "192.0.2.1", {"physnet1": "br-ex"})
    add_chassis(db, "hv2", "192.0.2.2", {})
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/24")
    sub6 = subnet(client, net["id"], "fd00::/64", ipv6_address_mode="slaac", ipv6_ra_mode="slaac")
    provider: dict[str, Any] = {"provider:network_type": "vlan",
                                "provider:physical_network": "physnet1",
                                "provider:segmentation_id": 42}
    vlan = network(client, **provider)
    vlan_sub = subnet(client, vlan["id"], "10.5.0.0/24")
    web = security_group(client, name="web")
    default = next(g for g in body(client.get("/v2.0/security-groups"))["security_groups"]
                   if g["name"] == "default")
    rule(client, web["id"], protocol="tcp", port_range_min=22, port_range_max=22)
    rule(client, web["id"], protocol="17", remote_group_id=default["id"])
    p1 = port(client, net["id"], security_groups=[web["id"]],
              allowed_address_pairs=[{"ip_address": "10.0.0.200"}], **host("hv1"))
    p2 = port(client, net["id"], **host("hv2"))  # in the project's default group
    p3 = port(client, vlan["id"], port_security_enabled=False, security_groups=[], **host("hv1"))
    unbound = port(client, net["id"])
    assert p2["security_groups"] == [default["id"]]
    # the DHCP ports the server keeps for the networks' DHCP subnets (test_dhcp_ports.py)
    [dhcp] = body(client.get(f"/v2.0/ports?device_owner=network:dhcp&network_id={net['id']}"))["ports"]
    [vlan_dhcp] = body(client.get(
        f"/v2.0/ports?device_owner=network:dhcp&network_id={vlan['id']}"))["ports"]

    with db.read() as conn:
        intent = load_intent(conn)
    with db.read() as conn:
        assert load_intent(conn) == intent
    assert set(intent.ports) == {dhcp["id"], vlan_dhcp["id"], p1["id"], p2["id"], p3["id"],
                                 unbound["id"]}
    assert intent.ports[p1["id"]].fixed_ips == tuple(
        (f["subnet_id"], f["ip_address"]) for f in p1["fixed_ips"])
    assert intent.ports[p1["id"]].host == "hv1" and intent.ports[unbound["id"]].host == ""
    assert intent.ports[p1["id"]].allowed_address_pairs == (("10.0.0.200", p1["mac_address"]),)
    assert intent.ports_by_chassis == {"hv1": tuple(sorted([p1["id"], p3["id"]])),
                                       "hv2": (p2["id"],)}

    docs = compile_chassis(intent, "hv1")
    assert sorted(parse_key(k)[1:] for k in docs) == sorted([
        ("port", p1["id"]), ("port", p3["id"]), ("network", net["id"]), ("network", vlan["id"]),
        ("security_group", web["id"]), ("address_set", default["id"]), ("tunnel", "hv2")])

    port1 = docs[item_key("hv1", "port", p1["id"])].model_dump(mode="json")
    assert port1["fixed_ips"] == [{"subnet_id": f["subnet_id"], "ip_address": f["ip_address"]}
                                  for f in p1["fixed_ips"]]
    assert port1["security_group_ids"] == [web["id"]]
    assert docs[item_key("hv1", "port", p3["id"])].model_dump()["security_group_ids"] == ()

    overlay = docs[item_key("hv1", "network", net["id"])].model_dump(mode="json")
    assert overlay["network_type"] == "geneve"
    assert overlay["tunnel_key"] == 1 << 32 | net["provider:segmentation_id"]
    assert overlay["remote_ports"] == [{"id": p2["id"], "mac_address": p2["mac_address"],
                                        "ip_addresses": sorted(ips(p2)), "chassis": "hv2"}]
    assert overlay["flood_chassis"] == ["hv2"]
    subnets = {s["id"]: s for s in overlay["subnets"]}
    for subnet_id in (sub["id"], sub6["id"]):
        # the DHCP port's address on the subnet, if it has one (it has 10.0.0.2 on `sub`; on the
        # SLAAC subnet its EUI-64 address)
        held = [f["ip_address"] for f in dhcp["fixed_ips"] if f["subnet_id"] == subnet_id]
        assert (subnets[subnet_id]["dhcp_server_ip"], subnets[subnet_id]["dhcp_server_mac"]) == (
            (held[0], dhcp["mac_address"]) if held else (None, None))
    assert subnets[sub["id"]]["dhcp_server_ip"] == "10.0.0.2"
    assert subnets[sub6["id"]]["ipv6_address_mode"] == "slaac"

    provider = docs[item_key("hv1", "network", vlan["id"])].model_dump(mode="json")
    assert provider["physical_network"] == "physnet1" and provider["segmentation_id"] == 42
    assert provider["tunnel_key"] == tunnel_key(intent, intent.networks[vlan["id"]])
    assert provider["tunnel_key"] != overlay["tunnel_key"]
    assert provider["remote_ports"] == [] and provider["flood_chassis"] == []
    assert [(s["id"], s["dhcp_server_ip"], s["dhcp_server_mac"]) for s in provider["subnets"]] == [
        (vlan_sub["id"], "10.5.0.2", vlan_dhcp["mac_address"])]

    group = docs[item_key("hv1", "security_group", web["id"])].model_dump(mode="json")
    protocols = sorted((r["protocol"], r["remote_group_id"]) for r in group["rules"]
                       if r["protocol"] is not None)
    assert protocols == [(6, None), (17, default["id"])]
    assert {r["direction"] for r in group["rules"]} == {"ingress", "egress"}  # + default egress

    members = docs[item_key("hv1", "address_set", default["id"])].model_dump(mode="json")
    in_default = [view for view in body(client.get("/v2.0/ports"))["ports"]
                  if default["id"] in view["security_groups"]]
    addresses = {ip for view in in_default for ip in ips(view)}
    assert members["ipv4"] == sorted(a for a in addresses if ":" not in a)
    assert members["ipv6"] == sorted(a for a in addresses if ":" in a)
    assert unbound["id"] in {view["id"] for view in in_default}  # unbound ports are members too

    assert docs[item_key("hv1", "tunnel", "hv2")].model_dump(mode="json") == {
        "id": "hv2", "ip": "192.0.2.2", "encap": "geneve"}
    hv2 = compile_chassis(intent, "hv2")
    assert hv2[item_key("hv2", "tunnel", "hv1")].model_dump()["ip"] == "192.0.2.1"
    assert item_key("hv2", "network", vlan["id"]) not in hv2
