"""The agent under change and under stress, on real Open vSwitch: its flows follow the API
(a deleted port leaves nothing behind), a restart costs no packet, an agent that missed changes
ends with exactly the flows a fresh agent installs, and bad input (VIFs it has no policy for, a
malformed policy item) is logged and survived: the process stays up and every other port
keeps working.

One network with vm1 (host1) and vm2 (host2) in the project's default group (members admit
each other). Tests that need more make their own ports and remove them afterwards.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.support import (
    BROADCAST,
    E2ELab,
    TenantNet,
    arp,
    free_address,
    marker,
    mentions_address,
    mentions_ofport,
    udp,
    wait_until,
)
from neutrino.lab.host import INTEGRATION_BRIDGE
from neutrino.pipeline.flows import cookie_for

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("e2e-agent-resilience")]


class Net(TenantNet):

    def boot(self, name: str, host: str, **port: Any) -> Any:
        created = self.lab.cloud.network.create_port(network_id=self.network.id, name=name, **port)
        booted = self.lab.boot(name, host, port=created.id)
        self.ip[name], self.mac[name] = booted.fixed_ips[0]["ip_address"], booted.mac_address
        self.port[name] = booted
        return booted

    def remove(self, name: str) -> None:
        """Unplug instance `name` if it is plugged and delete its port if it exists."""
        if name in self.lab.lab().state.instances:
            self.lab.unplug(name)
        if name in self.port:
            self.lab.cloud.network.delete_port(self.port.pop(name).id, ignore_missing=True)

    def healthy(self) -> None:
        """vm1 and vm2 still talk, and both agents are up and have applied everything."""
        for host in ("host1", "host2"):
            assert self.lab.agent_pid(host) is not None, f"the agent of {host} is gone"
        self.lab.wait_converged("host1", "host2")
        self.lab.wait_ping("vm1", self.ip["vm2"])
        self.lab.wait_ping("vm2", self.ip["vm1"])


@pytest.fixture(scope="module")
def net(lab: E2ELab) -> Net:
    cloud = lab.cloud
    network = cloud.network.create_network(name="res-net")
    subnet = cloud.network.create_subnet(network_id=network.id, ip_version=4, cidr="10.65.0.0/24")
    done = Net(lab, network, subnet, {}, {}, {})
    done.boot("vm1", "host1")
    done.boot("vm2", "host2")
    return done


@contextlib.contextmanager
def removed_afterwards(net: Net, *names: str) -> Iterator[None]:
    try:
        yield
    finally:
        for name in names:
            net.remove(name)


def new_log(lab: E2ELab, host: str, since: int) -> str:
    return lab.agent_log(host)[since:]


# --- (f) flows follow the API --------------------------------------------------------------------

def test_deleting_a_port_removes_all_its_flows(net: Net) -> None:
    """Once a port is deleted, its host keeps no flow with the port's cookie and none that
    matches or outputs to its VIF's OpenFlow port (although the VIF is still plugged), and no
    host keeps a flow naming its MAC or its address (remote MAC / ARP entries, address sets)."""
    lab = net.lab
    with removed_afterwards(net, "doomed"):
        port = net.boot("doomed", "host1")
        cookie, ofport = f"cookie={cookie_for('port', port.id):#x},", lab.ofport("doomed")
        mac, address = net.mac["doomed"], net.ip["doomed"]
        lab.wait_converged("host1", "host2")
        assert any(f.startswith(cookie) for f in lab.flows("host1"))
        assert any(mentions_ofport(f, ofport) for f in lab.flows("host1"))
        assert any(mac in f for f in lab.flows("host2")), "host2 knows the port as a remote one"
        lab.cloud.network.delete_port(net.port.pop("doomed").id)

        def leftovers() -> dict[str, list[str]]:
            found = {host: [f for f in lab.flows(host) if mac in f or mentions_address(f, address)]
                     for host in ("host1", "host2")}
            found["host1"] += [f for f in lab.flows("host1")
                               if f.startswith(cookie) or mentions_ofport(f, ofport)]
            return found

        wait_until(lambda: leftovers() == {"host1": [], "host2": []}, timeout=10,
                   message="every flow of the deleted port removed")
        lab.wait_converged("host1", "host2")
        assert leftovers() == {"host1": [], "host2": []}
        assert lab.ofport("doomed") == ofport, "the VIF itself is still plugged"
    net.healthy()


# --- (g) restart without loss --------------------------------------------------------------------

def test_agent_restarts_lose_no_packet(net: Net) -> None:
    """vm1 pings vm2 every 50 ms while host1's agent is killed (SIGKILL) and started again, and
    then host2's: every echo request gets its reply. A restarted agent diffs the bridge against
    its policy and changes nothing that is right; it never flushes it."""
    lab = net.lab
    lab.wait_converged("host1", "host2")
    pids = {host: lab.agent_pid(host) for host in ("host1", "host2")}
    ping = subprocess.Popen(lab.instance("vm1").command(
        ["ping", "-n", "-i", "0.05", "-W", "1", net.ip["vm2"]]), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        lab.restart_agent("host1")
        lab.restart_agent("host2")
        time.sleep(1.0)
        assert ping.poll() is None, "ping ended early"
    finally:
        ping.send_signal(signal.SIGINT)
        out, err = ping.communicate(timeout=15)
    assert all(lab.agent_pid(h) not in (None, pids[h]) for h in pids), "both agents were restarted"
    summary = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert summary, out + err
    sent = int(summary.group(1))
    answered = {int(n) for n in re.findall(r"bytes from .*icmp_seq=(\d+)", out)}
    lost = set(range(1, sent)) - answered  # the last one may have been in flight at SIGINT
    assert sent > 60, f"only {sent} echo requests sent"
    assert lost == set(), f"{len(lost)} of {sent} echo requests lost: {sorted(lost)}"


def test_a_restarted_vswitchd_gets_every_flow_back(net: Net) -> None:
    """ovs-vswitchd of host2 crashes (SIGKILL: every OpenFlow flow is gone with it) and is
    started again from the same database: the agent notices (its OpenFlow connection ended and
    holds again), installs the whole table again, and vm1 reaches vm2 again within seconds; the
    flows are those it had before."""
    lab = net.lab
    lab.wait_converged("host1", "host2")
    before = lab.flows("host2")
    lab.cli("lab", "fail", "host2", "--how", "vswitchd")
    lab.cli("lab", "heal", "host2")
    started = time.monotonic()
    lab.wait_ping("vm1", net.ip["vm2"], timeout=15)
    wait_until(lambda: lab.flows("host2") == before, timeout=10,
               message="host2's flows are those it had before the crash")
    assert time.monotonic() - started < 15


def test_bfd_on_the_tunnels_reports_a_dead_peer_and_its_return(net: Net) -> None:
    """Every tunnel runs BFD (100 ms); each agent reports its sessions in GET /v2.0/agents
    (configurations.bfd). host2's vswitchd dies: host1 reports host2 down within about a
    second (3 missed packets, then the next heartbeat); it comes back: up again."""
    lab = net.lab

    def host1_sees_host2() -> str | None:
        agents = {a.host: a for a in lab.cloud.network.agents()}
        return (agents["host1"].configuration.get("bfd") or {}).get("host2")

    wait_until(lambda: host1_sees_host2() == "up", timeout=15, message="BFD host1-host2 up")
    lab.cli("lab", "fail", "host2", "--how", "vswitchd")
    try:
        started = time.monotonic()
        wait_until(lambda: host1_sees_host2() == "down", timeout=10,
                   message="host1 reports host2's BFD session down")
        assert time.monotonic() - started < 5
    finally:
        lab.cli("lab", "heal", "host2")
    wait_until(lambda: host1_sees_host2() == "up", timeout=15, message="BFD host1-host2 up again")
    lab.wait_ping("vm1", net.ip["vm2"], timeout=15)


# --- (h) a restarted agent converges to what a fresh one installs --------------------------------

def test_an_agent_that_missed_changes_converges_to_a_fresh_agents_flows(net: Net) -> None:
    """host2's agent is down while the API changes much of what host2 holds: a port bound to
    host2 is created and plugged, another deleted and unplugged, a group's rules and a port's
    allowed address pairs change, host1 gets a new port and loses one (remote ports for host2),
    a new network comes to host2. Started again, the agent converges; its flows then equal,
    line for line (dump-flows without counters), those a fresh agent installs on an emptied
    bridge (all flows deleted, agent started again). Both reflect every change."""
    lab, cloud = net.lab, net.lab.cloud
    group = cloud.network.create_security_group(name="res-h")
    old_rule = cloud.network.create_security_group_rule(
        security_group_id=group.id, direction="ingress", ethertype="IPv4", protocol="tcp",
        port_range_min=6000, port_range_max=6000)
    net2 = cloud.network.create_network(name="res-h-net")
    cloud.network.create_subnet(network_id=net2.id, ip_version=4, cidr="10.66.0.0/24")
    names = ("h-keep", "h-gone", "h-remote-gone", "h-remote-new", "h-new", "h-net2")
    with removed_afterwards(net, *names):
        net.boot("h-keep", "host2", security_group_ids=[group.id])
        net.boot("h-gone", "host2")
        net.boot("h-remote-gone", "host1")
        gone = {n: (net.port[n].id, net.mac[n]) for n in ("h-gone", "h-remote-gone")}
        vip = free_address(cloud, net.subnet.id)

        def changes() -> None:
            for name in ("h-gone", "h-remote-gone"):
                net.remove(name)
            cloud.network.create_security_group_rule(
                security_group_id=group.id, direction="ingress", ethertype="IPv4", protocol="tcp",
                port_range_min=7000, port_range_max=7003)
            cloud.network.delete_security_group_rule(old_rule)
            cloud.network.update_port(net.port["h-keep"].id,
                                      allowed_address_pairs=[{"ip_address": vip}])
            net.boot("h-remote-new", "host1")
            for name, network in (("h-new", net.network), ("h-net2", net2)):
                port = cloud.network.create_port(network_id=network.id, name=name,
                                                 binding_host_id="host2", device_owner="compute:nova")
                net.port[name] = port
                lab.plug(name, "host2", port_id=port.id, mac=port.mac_address)

        lab.restart_agent("host2", while_down=changes)
        reconnected = lab.flows("host2")
        text = "\n".join(reconnected)
        for name in ("h-new", "h-net2", "h-keep"):
            assert f"cookie={cookie_for('port', net.port[name].id):#x}," in text, name
        for port_id, mac in gone.values():
            assert f"cookie={cookie_for('port', port_id):#x}," not in text and mac not in text
        assert net.port["h-remote-new"].mac_address in text
        assert "tp_dst=0x1b58/0xfffc" in text and "tp_dst=6000" not in text  # 7000-7003, not 6000
        assert mentions_address(text, vip)
        assert cloud.network.get_port(net.port["h-new"].id).status == "ACTIVE"
        h_new = net.port["h-new"].fixed_ips[0]["ip_address"]
        lab.exec("h-new", "ip", "address", "add", f"{h_new}/24", "dev", "eth0")

        def emptied() -> None:
            lab.host("host2").ovs.ofctl("del-flows")
            assert lab.flows("host2") == []

        lab.restart_agent("host2", while_down=emptied)
        fresh = lab.flows("host2")
        assert reconnected == fresh, "\n".join(
            [f"- {f}" for f in sorted(set(reconnected) - set(fresh))]
            + [f"+ {f}" for f in sorted(set(fresh) - set(reconnected))])
        lab.wait_ping("h-new", net.ip["vm1"])
    net.healthy()


# --- (j) bad input -------------------------------------------------------------------------------

def assert_untouched(net: Net, name: str, host: str, pid: int | None) -> None:
    """The VIF of instance `name` on `host` got no flow, the frames it sends (UDP to vm1 by
    broadcast and to vm1's and vm2's MACs, an ARP request) reach neither vm1 nor vm2, and the
    agent of `host` is the same process as before."""
    lab = net.lab
    ofport = lab.ofport(name)
    assert [f for f in lab.flows(host) if mentions_ofport(f, ofport)] == []
    mac = lab.instance(name).record.mac
    source = net.ip["vm1"]  # any source: none is the VIF's
    payload = marker()
    frames = [udp(src_mac=mac, dst_mac=dst, src_ip=source, dst_ip=net.ip["vm1"], payload=payload)
              for dst in (BROADCAST, net.mac["vm1"], net.mac["vm2"])]
    frames.append(arp(op=1, src_mac=mac, src_ip=source, dst_mac="00:00:00:00:00:00",
                      dst_ip=net.ip["vm2"]))
    with lab.capture("vm1", "vm2") as capture:
        lab.send(name, frames)
        got = capture.matching(
            lambda f: payload in f.data or (f.arp is not None and f.arp[1:3] == (mac, source)),
            seconds=0.5)
    assert got == {"vm1": [], "vm2": []}
    assert lab.agent_pid(host) == pid


def test_a_vif_with_an_unknown_iface_id_is_ignored(net: Net) -> None:
    """A VIF plugged into host1's br-int with an iface-id no port has: the agent gives it no
    flow (its frames go nowhere), stays up, logs no failure, and vm1 and vm2 still talk."""
    lab = net.lab
    pid, log_at = lab.agent_pid("host1"), len(lab.agent_log("host1"))
    with removed_afterwards(net, "stray"):
        lab.plug("stray", "host1", port_id=str(uuid.uuid4()))
        time.sleep(1.0)  # the agent reconciles on the OVSDB change
        lab.wait_converged("host1")
        assert_untouched(net, "stray", "host1", pid)
        net.healthy()
    logged = new_log(lab, "host1", log_at)
    assert "Traceback" not in logged and "reconcile failed" not in logged, logged


def test_a_port_bound_to_another_host_plugged_here_is_ignored(net: Net) -> None:
    """`legit` runs on host2. A VIF with its port id and MAC plugged on host1 gets no flow on
    host1, none of vm1's traffic for legit (which still goes to host2), and cannot send; the
    port stays ACTIVE and bound to host2, and host1's agent stays up."""
    lab = net.lab
    pid = lab.agent_pid("host1")
    with removed_afterwards(net, "impostor", "legit"):
        legit = net.boot("legit", "host2")
        lab.plug("impostor", "host1", port_id=legit.id, mac=legit.mac_address)
        time.sleep(1.0)
        lab.wait_converged("host1", "host2")
        assert_untouched(net, "impostor", "host1", pid)
        with lab.capture("impostor") as capture:
            assert lab.ping("vm1", net.ip["legit"], count=2)
            assert lab.tcp("vm1", "legit", net.ip["legit"], 5101)
            assert capture.matching(lambda f: f.ipv4 is not None, seconds=0.3) == {"impostor": []}
        time.sleep(1.0)
        port = lab.cloud.network.get_port(legit.id)
        assert (port.status, port.binding_host_id) == ("ACTIVE", "host2")
        net.healthy()


def test_a_second_vif_claiming_a_plugged_port_does_not_take_it_over(net: Net) -> None:
    """A stray VIF on host1 with vm1's iface-id and MAC (a leftover tap, a confused plug):
    whatever order OVSDB lists the two in (the stray's Port row is given the lowest and then
    the highest UUID), vm1 keeps its flows and its traffic, and the stray gets nothing."""
    lab = net.lab
    host = lab.host("host1")
    vm1 = net.port["vm1"]
    ofport = lab.ofport("vm1")
    for row_uuid in ("00000000-0000-4000-8000-000000000001", "ffffffff-ffff-4fff-bfff-ffffffffffff"):
        host.exec(["ip", "link", "add", "twin0", "type", "veth", "peer", "name", "twin1"])
        try:
            for link in ("twin0", "twin1"):
                host.exec(["ip", "link", "set", link, "up"])
            host.ovs.vsctl(
                "--", f"--id={row_uuid}", "create", "Port", "name=twin0", "interfaces=@i",
                "--", "--id=@i", "create", "Interface", "name=twin0",
                f'external_ids:iface-id="{vm1.id}"', f'external_ids:attached-mac="{vm1.mac_address}"',
                "external_ids:iface-status=active",
                "--", "add", "Bridge", INTEGRATION_BRIDGE, "ports", row_uuid)
            twin = host.ovs.ofport("twin0")
            time.sleep(1.0)
            flows = lab.flows("host1")
            assert [f for f in flows if mentions_ofport(f, twin)] == [], "the stray VIF got flows"
            assert any(f"in_port={ofport} " in f for f in flows), "vm1 lost its flows"
            assert lab.ping("vm1", net.ip["vm2"], count=2)
        finally:
            host.ovs.vsctl("--if-exists", "del-port", INTEGRATION_BRIDGE, "twin0")
            host.exec(["ip", "link", "del", "twin0"], check=False)
            lab.wait_ping("vm1", net.ip["vm2"])


def test_a_malformed_policy_item_is_logged_and_skipped(net: Net) -> None:
    """An item that does not validate reaches host1's agent, first as a change on its open
    stream, then (after a restart) inside its snapshot: each time the agent logs an ERROR naming
    the item's key, skips it, and applies everything else: it stays up, vm1 and vm2 still talk,
    and a port booted on host1 afterwards becomes ACTIVE (the stream goes on past the bad item).

    The item is written into the server's policy store directly (nothing in the API can make
    the compiler produce it), at the next revision, just before an API write that compiles
    nothing for host1 commits that revision."""
    lab = net.lab
    key = f"/chassis/host1/port/{uuid.uuid4()}"
    document = '{"id": "bogus", "network_id": 42}'
    pid, log_at = lab.agent_pid("host1"), len(lab.agent_log("host1"))
    database = lab.state_dir / "server" / "neutrino.sqlite"

    def errors_naming_key() -> int:
        return sum(1 for line in new_log(lab, "host1", log_at).splitlines()
                   if " ERROR " in line and key in line)

    with removed_afterwards(net, "after-bad"):
        for _attempt in range(5):
            lab.wait_converged("host1", "host2")
            position = lab.revision()
            revision = position["outbox_revision"] + 1
            with contextlib.closing(sqlite3.connect(database, timeout=10)) as db, db:
                db.execute("INSERT INTO policy_items (key, chassis, revision, document) "
                           "VALUES (?, ?, ?, ?)", (key, "host1", revision, document))
            if lab.revision()["revision"] < revision:
                break
            with contextlib.closing(sqlite3.connect(database, timeout=10)) as db, db:
                db.execute("DELETE FROM policy_items WHERE key = ?", (key,))  # raced: again
        else:
            pytest.fail("the server never stood still long enough to insert the item")
        lab.cloud.network.create_network(name="res-empty")  # compiles nothing for host1
        wait_until(errors_naming_key, timeout=20, message="the agent logs the bad item's key")
        assert lab.agent_pid("host1") == pid, "the agent process changed"
        net.healthy()
        lab.restart_agent("host1")  # its snapshot holds the bad item
        assert errors_naming_key() >= 2, new_log(lab, "host1", log_at)
        net.healthy()
        net.boot("after-bad", "host1")  # ACTIVE: boot waits for it
        lab.wait_ping("after-bad", net.ip["vm2"])
    assert "Traceback" not in new_log(lab, "host1", log_at)
