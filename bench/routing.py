"""Routing against OVN: the FULL reference topology of /work/shared/bench/ovn (routers, router
interfaces, gateway ports on the external flat network, SNAT, floating IPs) built in Neutrino and
in OVN side by side on one host, which binds every VM port and is also the routers' gateway.

The procedure, the sides and the output are bench/dataplane.py's (this script reuses its
classes and functions); what differs:

  * the intent is all of `ovn_topo.gen_topology(T, P)`: per tenant 2 networks with a /24 subnet
    each and P ports per network, one security group (neutron's rules), one router with an
    interface on each subnet (.1), its gateway on the external flat network `public`
    (100.64.0.0/16 on physnet1, next hop 100.64.0.1) at 100.64.0.(16+t), SNAT of both subnets
    to the gateway address, and a floating IP (100.64.64.x) for every 10th port;
  * OVN: the harness's own NB transactions (`ovn_topo.nb_batches`, neutron's shapes: LRPs, the
    distributed gateway port with an HA_Chassis_Group holding hv1 (priority 10), the
    `provnet-` localnet port, NAT rows, the default route), and the harness's `br-ex` with
    `ovn-bridge-mappings=physnet1:br-ex`: hv1 is the one gateway chassis of every router
    (the harness's default, FAKE_GW=0), so it is a "gateway + compute" chassis;
  * Neutrino: `neutrino lab up --hosts 1 --gateways 1 --external-cidr 100.64.0.0/16` (host1 is
    a gateway agent, so it does the SNAT of ports without a floating IP, as hv1 does; `public`
    is the topology's external network: flat, physnet1, gateway 100.64.0.1), then through the
    REST API per tenant a distributed router with external_gateway_info (enable_snat, the
    topology's gateway address), `add_router_interface` by subnet for both subnets, and
    `POST /v2.0/floatingips` with port_id and the topology's address for each floating IP.

Measured on each side (medians, min, max over --reps):
  1. OpenFlow flows on br-int once everything is bound (also by table); and, as a check that
     the whole topology is realised, how many of the topology's floating IPs have their DNAT
     flow, how many subnets their route flow (the predicates below) and how many routers a
     flow that SNATs to their gateway address (`nat(src=<gateway IP>)` in its actions);
  2. floating IP add: the harness's `fip` op k (a new floating IP, the top of the external /16
     downwards, for a port of network 1 of tenant k%T that has none, the port bound): t0; the
     API call (Neutrino: POST /v2.0/floatingips with port_id; OVN: the harness's NAT
     dnat_and_snat transaction with `ovn-nbctl --wait=hv`); done when `ovs-ofctl monitor` sees
     a flow whose match has nw_dst=<floating IP> and whose actions DNAT to the fixed address
     (`nat(dst=<fixed IP>)`: Neutrino's l3_input flow, OVN's lr_in_dnat flow);
  3. router interface add: untimed first, a new network with subnet 10.250.k.0/24 (no DHCP) of
     tenant k%T and one port on it in the tenant's group, its VIF plugged and its flows in (so
     the host holds the network); then t0; the API call (Neutrino: PUT
     /v2.0/routers/<id>/add_router_interface {subnet_id}; OVN, in one transaction with
     `--wait=hv`, what neutron's OVN driver writes: the router-type LSP on the switch, the LRP
     (.1/24) on the router and the subnet's SNAT row); done when a flow whose match has
     nw_dst=<cidr> and whose actions copy the destination address into the next-hop register
     (`move:NXM_OF_IP_DST[]->`: Neutrino's ip_routing flow, OVN's lr_in_ip_routing flow)
     appears.
  Also: when OVN's --wait=hv returned, when the change reached host1's policy stream
  (Neutrino), the switch's floors, daemon CPU per operation, RSS, build times, load average.

Prints `routing.<size>.<system>.<metric> value unit` lines and a table (Neutrino, OVN, ratio,
targets: latency <= 1/5 of OVN's, flows <= 1/3), and writes JSON to --output. Everything it
starts is stopped by pid / `neutrino lab down`, also after an error or Ctrl-C.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dataplane as dp  # bench/dataplane.py, next to this file

GATEWAY_PRIORITY = 10  # hv1's priority in every router's HA_Chassis_Group (the harness's default)
NEW_SUBNETS = ipaddress.IPv4Network("10.250.0.0/16")  # the interface ops' subnets (10.250.k.0/24)
ROUTE_ACTION = "move:NXM_OF_IP_DST[]->"  # a route to a connected subnet: next hop := destination
INCLUDED = ("everything: routers, router interfaces, gateway ports on the external flat network, "
            "SNAT, floating IPs; the host is also the gateway (chassis) of every router")

ROUTING_OPS = (
    dp.OpSpec("fip_add", "floating IP add", "floating IP add -> DNAT flow on host, median", "fip_ack",
              "floating IP add -> OVN --wait=hv returned, median", ("", "--wait=hv")),
    dp.OpSpec("interface_add", "router interface add", "router interface add -> route flow, median",
              "interface_ack", "router interface add -> OVN --wait=hv, median", ("", "--wait=hv")),
)


def fip_predicate(fip: dict[str, Any]) -> tuple[list[str], str]:
    """(match tokens, action) of a floating IP's DNAT flow, on both sides."""
    return [f"nw_dst={fip['floating_ip_address']}"], f"nat(dst={fip['fixed_ip_address']})"


def route_predicate(cidr: str) -> tuple[list[str], str]:
    """(match tokens, action) of the route to a connected subnet, on both sides."""
    return [f"nw_dst={cidr}"], ROUTE_ACTION


def interface_intent(harness: ModuleType, topo: dict[str, Any], k: int) -> dict[str, Any]:
    """Router interface op k: tenant k%T gets a new network 10.250.k.0/24 with one port (.10)."""
    tenants = topo["tenants"]
    cidr = list(NEW_SUBNETS.subnets(new_prefix=24))[k]
    return {"tenant": tenants[k % len(tenants)], "cidr": str(cidr), "gateway_ip": str(cidr[1]),
            "name": f"ri-net{k}", "interface_mac": harness.mac((0xc1 << 16) + k),
            "port": {"name": f"ri-port{k}", "ip_address": str(cidr[10]),
                     "mac_address": harness.mac((0xc0 << 16) + k)}}


Flows = list[tuple[frozenset[str], str]]  # (match tokens, actions) of each flow


def dump_flows(side: dp.OvnSide | dp.NeutrinoSide) -> Flows:
    out = dp.run(["ovs-ofctl", "-O", "OpenFlow15", "--no-names", "--no-stats", "dump-flows",
                  side.target], env=side.env, timeout=600)
    return [(frozenset(re.split(r"[ ,]", m)), a) for m, _, a in
            (line.partition(" actions=") for line in out.splitlines()) if a]


def routing_coverage(flows: Flows, topo: dict[str, Any]) -> dict[str, int]:
    """How many of the topology's floating IPs have their DNAT flow, how many of its subnets
    their route flow (the predicates of the timed operations) and how many of its routers a flow
    that SNATs to their gateway address, in `flows`."""

    def present(match: Sequence[str], action: str) -> bool:
        return any(set(match) <= tokens and action in actions for tokens, actions in flows)

    fips = [f for t in topo["tenants"] for f in t["floating_ips"]]
    nets = [n for t in topo["tenants"] for n in t["networks"]]
    gateways = [t["router"]["gw_port"]["ip_address"] for t in topo["tenants"]]
    return {"fips": len(fips), "fips_with_dnat_flow": sum(present(*fip_predicate(f)) for f in fips),
            "subnets": len(nets),
            "subnets_with_route_flow": sum(present(*route_predicate(n["subnet"]["cidr"])) for n in nets),
            "routers": len(gateways),
            "routers_with_snat_flow": sum(present([], f"nat(src={ip})") for ip in gateways)}


def check_coverage(side: dp.OvnSide | dp.NeutrinoSide, topo: dict[str, Any], timeout: float = 60) -> None:
    """Record the coverage; wait up to `timeout` for it to be complete, and note what is not."""
    deadline = time.monotonic() + timeout
    while True:
        cov = routing_coverage(dump_flows(side), topo)
        done = all(cov[f"{what}_with_{flow}_flow"] == cov[what]
                   for what, flow in (("fips", "dnat"), ("subnets", "route"), ("routers", "snat")))
        if done or time.monotonic() > deadline:
            break
        time.sleep(1)
    side.result.metrics.update(cov)
    if not done:
        note = (f"INCOMPLETE topology on br-int: {cov['fips_with_dnat_flow']} of {cov['fips']} floating "
                f"IPs have a DNAT flow, {cov['subnets_with_route_flow']} of {cov['subnets']} subnets a "
                f"route flow, {cov['routers_with_snat_flow']} of {cov['routers']} routers an SNAT flow")
        side.result.notes.append(note)
        dp.log(f"{side.result.system}: {note}")


# --- OVN ------------------------------------------------------------------------------------------
class OvnRoutingSide(dp.OvnSide):
    """bench/dataplane.py's OVN stack, with the harness's br-ex (physnet1) and its whole NB."""

    def start(self) -> None:
        super().start()
        self.vsctl("--", "add-br", "br-ex", "--", "set", "Bridge", "br-ex", "datapath_type=netdev",
                   "--", "set", "Open_vSwitch", ".",
                   f"external_ids:ovn-bridge-mappings={self.topo['external_network']['provider:physical_network']}"
                   ":br-ex")
        self.nbctl(["sync"], wait="hv", timeout=60)

    def batches(self) -> Iterator[list[str]]:
        yield from self.h.nb_batches(self.topo, [(dp.CHASSIS, GATEWAY_PRIORITY)])

    def measure_flows(self) -> None:
        super().measure_flows()
        check_coverage(self, self.topo)
        self.flows_by_datapath()

    def flows_by_datapath(self) -> None:
        """The flows of router datapaths, of switch datapaths, and of none (by metadata=<the
        datapath's tunnel key>): what routing costs OVN on this chassis."""
        select = {"op": "select", "table": "Datapath_Binding", "where": [],
                  "columns": ["tunnel_key", "external_ids"]}
        out = dp.run(["ovsdb-client", "transact", self.env["OVN_SB_DB"],
                      json.dumps(["OVN_Southbound", select])], env=self.env, timeout=120)
        kinds = {}
        for row in json.loads(out)[0]["rows"]:
            ext = dict(row["external_ids"][1])
            kinds[f"metadata={row['tunnel_key']:#x}"] = "router" if "logical-router" in ext else "switch"
        counts: Counter[str] = Counter()
        for tokens, _actions in dump_flows(self):
            counts[next((kinds[t] for t in tokens if t in kinds), "none")] += 1
        self.result.metrics["of_flows_by_datapath_kind"] = dict(counts)

    def fip_add(self, k: int, timeout: float) -> dp.OpSample:
        fip = self.h.intent_add_fip(self.topo, k)["fip"]
        return self.timed_change(k, self.h.op_add_fip(self.topo, k), *fip_predicate(fip), timeout)

    def interface_add(self, k: int, timeout: float) -> dp.OpSample:
        h, q = self.h, self.h.q
        it = interface_intent(self.h, self.topo, k)
        tenant, port = it["tenant"], it["port"]
        sg = tenant["security_group"]
        net_id, port_id, rif_id = h.uid("bench-ri-net", k), h.uid("bench-ri-port", k), h.uid("bench-rif", k)
        # untimed: the network with one bound port (the harness's `port` op shapes)
        port = {**port, "id": port_id}
        setup = h.lsp_cmd("@p", port)
        setup += ["--", "create", "Logical_Switch", "name=neutron-" + net_id, "ports=@p",
                  "other_config:mcast_snoop=false", "other_config:mcast_flood_unregistered=false",
                  'external_ids:"neutron:network_name"=' + q(it["name"])]
        setup += ["--", "add", "Port_Group", h.pg_name(sg["id"]), "ports", "@p"]
        setup += ["--", "add", "Port_Group", "neutron_pg_drop", "ports", "@p"]
        setup += ["--", "add", "Address_Set", h.as_name(sg["id"]), "addresses", q(port["ip_address"])]
        self.nbctl(setup)
        self.add_vifs([port_id], "ri")
        deadline = time.monotonic() + timeout
        while self.nbctl(["get", "Logical_Switch_Port", port_id, "up"]).strip() != "true":
            if time.monotonic() > deadline:
                raise dp.BenchError(f"OVN port {port_id} did not come up")
            time.sleep(0.05)
        self.nbctl(["sync"], wait="hv")
        # timed: what neutron's OVN driver writes for add_router_interface
        router = tenant["router"]
        plen = ipaddress.ip_network(it["cidr"]).prefixlen
        change = ["--", "--id=@rp", "create", "Logical_Switch_Port", "name=" + rif_id, "type=router",
                  "addresses=router", "options:router-port=lrp-" + rif_id,
                  "--", "add", "Logical_Switch", "neutron-" + net_id, "ports", "@rp",
                  "--", "--id=@lrp", "create", "Logical_Router_Port", "name=lrp-" + rif_id,
                  "mac=" + q(it["interface_mac"]), "networks=" + q(f"{it['gateway_ip']}/{plen}"),
                  "--", "add", "Logical_Router", "neutron-" + router["id"], "ports", "@lrp",
                  "--", "--id=@sn", "create", "NAT", "type=snat",
                  "external_ip=" + q(router["gw_port"]["ip_address"]), "logical_ip=" + q(it["cidr"]),
                  "--", "add", "Logical_Router", "neutron-" + router["id"], "nat", "@sn"]
        return self.timed_change(k, change, *route_predicate(it["cidr"]), timeout)


# --- Neutrino -------------------------------------------------------------------------------------
class NeutrinoRoutingSide(dp.NeutrinoSide):
    """bench/dataplane.py's Neutrino lab with host1 as the gateway, `public` on the topology's
    external subnet, and the routers and floating IPs through the API."""

    def __init__(self, harness: ModuleType, tenants: int, ports: int, links_up: bool = False) -> None:
        super().__init__(harness, tenants, ports, links_up)
        self.router_ids: dict[str, str] = {}  # topology router id -> Neutrino id
        self.ext_net_id = ""
        self.ext_subnet_id = ""

    def lab_up_args(self) -> list[str]:
        return ["--hosts", "1", "--gateways", "1",
                "--external-physnet", self.topo["external_network"]["provider:physical_network"],
                "--external-cidr", self.topo["external_network"]["subnet"]["cidr"]]

    def external_network(self) -> None:
        """`public`, as lab up made it, checked against the topology's external network."""
        ext = self.topo["external_network"]
        found = self.api("GET", "/v2.0/networks?router:external=true&name=" + ext["name"])["networks"]
        if len(found) != 1:
            raise dp.BenchError(f"lab up made {len(found)} external networks named {ext['name']}")
        net = found[0]
        subnets = self.api("GET", "/v2.0/subnets?network_id=" + net["id"])["subnets"]
        want = ext["subnet"]
        if net.get("provider:physical_network") != ext["provider:physical_network"] or \
                [(s["cidr"], s["gateway_ip"]) for s in subnets] != [(want["cidr"], want["gateway_ip"])]:
            raise dp.BenchError(f"`{ext['name']}` does not match the topology's external network: "
                                f"{net.get('provider:physical_network')}, "
                                f"{[(s['cidr'], s['gateway_ip']) for s in subnets]}")
        self.ext_net_id, self.ext_subnet_id = net["id"], subnets[0]["id"]
        self.net_ids[ext["id"]] = net["id"]
        self.subnet_ids[want["id"]] = subnets[0]["id"]

    def create_intent(self) -> None:
        super().create_intent()
        self.external_network()
        for tenant in self.topo["tenants"]:
            router = tenant["router"]
            made = self.api("POST", "/v2.0/routers", {"router": {
                "name": router["name"], "project_id": tenant["project_id"], "distributed": True,
                "external_gateway_info": {
                    "network_id": self.ext_net_id, "enable_snat": True,
                    "external_fixed_ips": [{"subnet_id": self.ext_subnet_id,
                                            "ip_address": router["gw_port"]["ip_address"]}]}}})["router"]
            self.router_ids[router["id"]] = made["id"]
            for net in tenant["networks"]:
                self.api("PUT", f"/v2.0/routers/{made['id']}/add_router_interface",
                         {"subnet_id": self.subnet_ids[net["subnet"]["id"]]})
            for fip in tenant["floating_ips"]:
                self.api("POST", "/v2.0/floatingips", {"floatingip": self.fip_body(tenant, fip)})

    def fip_body(self, tenant: dict[str, Any], fip: dict[str, Any]) -> dict[str, Any]:
        return {"project_id": tenant["project_id"], "floating_network_id": self.ext_net_id,
                "floating_ip_address": fip["floating_ip_address"], "port_id": self.port_ids[fip["port_id"]]}

    def policy_items(self) -> Iterator[tuple[str, str]]:
        yield from super().policy_items()
        yield from (("router", r) for r in self.router_ids.values())

    def measure_flows(self) -> None:
        super().measure_flows()
        check_coverage(self, self.topo)

    def fip_add(self, k: int, timeout: float) -> dp.OpSample:
        it = self.h.intent_add_fip(self.topo, k)
        fip, tenant = it["fip"], it["tenant"]
        router_id = self.router_ids[tenant["router"]["id"]]
        return self.timed_change(k, "POST", "/v2.0/floatingips", {"floatingip": self.fip_body(tenant, fip)},
                                 *fip_predicate(fip), f"/router/{router_id}", timeout)

    def interface_add(self, k: int, timeout: float) -> dp.OpSample:
        it = interface_intent(self.h, self.topo, k)
        tenant, port = it["tenant"], it["port"]
        router_id = self.router_ids[tenant["router"]["id"]]
        proj = tenant["project_id"]
        # untimed: the network with one bound port, its flows in
        net = self.api("POST", "/v2.0/networks", {"network": {"name": it["name"], "project_id": proj}})
        net_id = net["network"]["id"]
        subnet_id = self.api("POST", "/v2.0/subnets", {"subnet": {
            "network_id": net_id, "project_id": proj, "ip_version": 4, "cidr": it["cidr"],
            "gateway_ip": it["gateway_ip"], "enable_dhcp": False, "name": it["name"] + "-subnet"}}
        )["subnet"]["id"]
        made = self.api("POST", "/v2.0/ports", {"port": {
            "network_id": net_id, "name": port["name"], "project_id": proj,
            "mac_address": port["mac_address"],
            "fixed_ips": [{"subnet_id": subnet_id, "ip_address": port["ip_address"]}],
            "security_groups": [self.sg_ids[tenant["security_group"]["id"]]],
            "binding:host_id": dp.HOST, "device_owner": "compute:nova",
            "device_id": f"bench-ri-{k}"}})["port"]
        assert self.monitor is not None
        mark = self.monitor.mark()
        name = self.plug([(made["id"], port["mac_address"])], "ri")[0]
        ofport = int(self.host.ovs.ofport(name))
        self.monitor.wait_for(mark, [f"in_port={ofport}", f"dl_src={port['mac_address']}"], timeout)
        self.wait_realised(60)
        return self.timed_change(k, "PUT", f"/v2.0/routers/{router_id}/add_router_interface",
                                 {"subnet_id": subnet_id}, *route_predicate(it["cidr"]),
                                 f"/router/{router_id}", timeout)


def title(cmp: dict[str, Any]) -> str:
    return (f"routing, full reference topology, {cmp['size']} ({cmp['ports']} ports, all bound on one "
            f"host, which is every router's gateway); included: {INCLUDED}")


def main(argv: Sequence[str] | None = None) -> int:
    args = dp.parse_args(argv, __doc__)
    report = {
        "included": INCLUDED,
        "method": {
            "flows": "ovs-ofctl -O OpenFlow15 dump-flows br-int, flow lines (reply headers excluded)",
            "fip_add": "API call issued (a floating IP with port_id, the port bound) -> a flow with "
                       "nw_dst=<floating IP> and nat(dst=<fixed IP>) in its actions, seen by "
                       "ovs-ofctl monitor",
            "interface_add": "API call issued (add_router_interface of a new subnet whose network "
                             "has a bound port) -> a flow with nw_dst=<cidr> and "
                             f"{ROUTE_ACTION} in its actions, seen by ovs-ofctl monitor",
            "fip_ack": "OVN: ovn-nbctl --wait=hv returned",
            "interface_ack": "OVN: ovn-nbctl --wait=hv returned"}}
    return dp.run_sizes(args, {"ovn": OvnRoutingSide, "neutrino": NeutrinoRoutingSide}, ROUTING_OPS,
                        report, name="routing", title=title)


if __name__ == "__main__":
    sys.exit(main())
