"""The whole lab: the fabric, the hosts and the instances of one state directory.

May touch: what its parts may touch (see `fabric`, `host`, `instance`, `state`); this module
only sequences them and keeps `lab.json` in step.  This is what `neutrino lab ...` commands
drive; each command is its own process:

    lab = Lab.up(state_dir, hosts=2,              # neutrino lab up (the datapath part)
                 bridge_mappings={"physnet1": "br-physnet1"})
    with Lab.session(state_dir) as lab:           # any later command: lock, load, ..., save
        lab.plug("vm1", "host1", port_id=...)     # neutrino lab boot (the datapath part)
        lab.host("host2").fail("vswitchd")
    Lab.down(state_dir)                           # neutrino lab down

The server and the agents are not started here; a host runs `agent_command` if one is given
("{host}", "{namespace}", "{run_dir}" and "{underlay_ip}" in it are replaced per host).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from neutrino.lab import netns
from neutrino.lab.errors import LabError, require_lab_prerequisites
from neutrino.lab.fabric import DEFAULT_UNDERLAY, Fabric
from neutrino.lab.host import FailureMode, LabHost, check_bridge_mappings, check_host_name
from neutrino.lab.instance import DEFAULT_MTU, LabInstance, new_instance_record
from neutrino.lab.state import HostRecord, LabState, TeardownReport, lab_prefix, locked, teardown

MAX_HOSTS = 64


class Lab:
    """A lab that is up, built from its saved state."""

    def __init__(self, state: LabState) -> None:
        self.state = state
        self.fabric = Fabric(state.fabric_namespace, ipaddress.IPv4Network(state.underlay),
                             state.underlay_mtu)

    # --- up / load / down ---------------------------------------------------------------------

    @classmethod
    def up(cls, state_dir: Path, *, hosts: int = 2, underlay: str = str(DEFAULT_UNDERLAY),
           underlay_mtu: int = 1500, bridge_mappings: dict[str, str] | None = None,
           agent_command: Sequence[str] | None = None,
           gateway_agent_args: Mapping[str, Sequence[str]] | None = None,
           external: tuple[str, str] | None = None) -> Lab:
        """Create the fabric and hosts host1..host<hosts>.  On any failure, remove whatever was
        made and raise.  A LabError if a lab is already up in `state_dir`.

        `bridge_mappings` (physnet -> bridge, the same on every host): each host gets that
        provider bridge with a NIC on the physnet's shared segment in the fabric namespace.
        `gateway_agent_args`: host -> arguments added to its agent command (gateway hosts).
        `external`: (physnet, address/prefix) of the `external` namespace, the upstream
        network: a namespace whose only link is on that physnet's segment."""
        require_lab_prerequisites()
        if not 1 <= hosts <= MAX_HOSTS:
            raise LabError(f"--hosts must be between 1 and {MAX_HOSTS}")
        try:
            subnet = ipaddress.IPv4Network(underlay)
        except ValueError as error:
            raise LabError(f"invalid underlay subnet {underlay!r}: {error}") from None
        mappings = check_bridge_mappings(dict(bridge_mappings or {}))
        state_dir = state_dir.expanduser().resolve()
        with locked(state_dir):
            cls._refuse_if_up(state_dir)
            lab = cls(LabState.new(state_dir, underlay=str(subnet), underlay_mtu=underlay_mtu))
            for index in range(1, hosts + 1):
                lab.fabric.host_address(index)  # fits the subnet?
            try:
                lab.state.save()
                lab.fabric.create()
                for index in range(1, hosts + 1):
                    name = f"host{index}"
                    extra = list((gateway_agent_args or {}).get(name, ()))
                    lab._add_host(name, index, mappings,
                                  [*agent_command, *extra] if agent_command else None)
                    lab.state.save()
                if external is not None:
                    lab._add_external(*external)
                    lab.state.save()
            except BaseException:
                with contextlib.suppress(LabError):
                    teardown(lab.state)
                raise
            return lab

    @staticmethod
    def _refuse_if_up(state_dir: Path) -> None:
        prefix = lab_prefix(state_dir)
        leftovers = netns.list_namespaces(prefix + "-")
        if LabState.exists(state_dir) or leftovers:
            raise LabError(f"a lab is already up in {state_dir} (namespaces {prefix}-*"
                           + (f": {', '.join(leftovers)}" if leftovers else "")
                           + f"); run `neutrino lab down --state-dir {state_dir}` first")

    @classmethod
    def load(cls, state_dir: Path) -> Lab:
        """The lab saved in `state_dir` (a LabError if there is none)."""
        require_lab_prerequisites()
        return cls(LabState.load(state_dir))

    @classmethod
    @contextlib.contextmanager
    def session(cls, state_dir: Path) -> Iterator[Lab]:
        """Lock the state directory, load the lab, and save it afterwards (also after an error,
        so that what was done is recorded)."""
        with locked(state_dir):
            lab = cls.load(state_dir)
            try:
                yield lab
            finally:
                lab.state.save()

    @staticmethod
    def down(state_dir: Path) -> TeardownReport:
        """Remove everything the lab in `state_dir` made (works from the prefix alone if the
        state file is lost or was never written)."""
        require_lab_prerequisites()
        with locked(state_dir):
            return teardown(LabState.load_or_bare(state_dir))

    def save(self) -> None:
        self.state.save()

    # --- hosts --------------------------------------------------------------------------------

    def _add_host(self, name: str, index: int, mappings: dict[str, str],
                  agent_command: Sequence[str] | None) -> LabHost:
        check_host_name(name)
        if name in self.state.hosts:
            raise LabError(f"host {name} already exists")
        namespace = self.state.host_namespace(name)
        run_dir = self.state.run_dir / name
        address = self.fabric.host_address(index)
        command = None
        if agent_command:
            fields = {"{host}": name, "{namespace}": namespace, "{run_dir}": str(run_dir),
                      "{underlay_ip}": str(address.ip)}
            command = [_substitute(arg, fields) for arg in agent_command]
        record = HostRecord(name=name, index=index, namespace=namespace, underlay_address=str(address),
                            run_dir=str(run_dir), bridge_mappings=dict(mappings), agent_command=command)
        self.state.hosts[name] = record  # recorded before start, so a failed start is torn down
        host = LabHost(record, self.fabric)
        host.start()
        return host

    def _add_external(self, physnet: str, address: str) -> None:
        """The `external` namespace: eth0 on `physnet`'s segment with `address` (it plays the
        upstream router of the provider network, reachable only through that network)."""
        interface = ipaddress.IPv4Interface(address)
        namespace = self.state.external_namespace
        self.state.external_address, self.state.external_physnet = str(interface), physnet
        netns.create_namespace(namespace)
        self.fabric.attach_physnet(physnet, "external", namespace, "eth0")
        netns.add_address(namespace, "eth0", str(interface))
        # as on an instance: TCP into the userspace datapath needs full checksums on the wire
        netns.set_tx_checksum(namespace, "eth0", False)
        netns.ip("link", "set", "eth0", "up", namespace=namespace)

    def external_command(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` in the external namespace."""
        if self.state.external_address is None or \
                not netns.namespace_exists(self.state.external_namespace):
            raise LabError("this lab has no external namespace")
        return netns.exec_argv(self.state.external_namespace, argv)

    def host(self, name: str) -> LabHost:
        try:
            return LabHost(self.state.hosts[name], self.fabric)
        except KeyError:
            raise LabError(f"no host {name!r} in this lab (hosts: "
                           f"{', '.join(self.state.hosts) or 'none'})") from None

    @property
    def hosts(self) -> list[LabHost]:
        return [self.host(name) for name in self.state.hosts]

    def fail(self, host: str, how: FailureMode) -> None:
        self.host(host).fail(how)
        self.save()

    def heal(self, host: str) -> list[str]:
        repaired = self.host(host).heal()
        self.save()
        return repaired

    # --- instances ----------------------------------------------------------------------------

    def instance(self, name: str) -> LabInstance:
        try:
            record = self.state.instances[name]
        except KeyError:
            raise LabError(f"no instance {name!r} in this lab") from None
        return LabInstance(record, self.host(record.host))

    @property
    def instances(self) -> list[LabInstance]:
        return [self.instance(name) for name in self.state.instances]

    def plug(self, name: str, host: str, *, port_id: str | None = None, mac: str | None = None,
             mtu: int = DEFAULT_MTU, device_id: str | None = None) -> LabInstance:
        """Create instance `name` on `host` and plug it into br-int (no addresses yet)."""
        if name in self.state.instances:
            raise LabError(f"instance {name} already exists (on {self.state.instances[name].host})")
        lab_host = self.host(host)
        record = new_instance_record(
            name=name, host=lab_host, namespace=self.state.instance_namespace(name),
            run_dir=self.state.run_dir / f"i-{name}", port_id=port_id, mac=mac, mtu=mtu,
            device_id=device_id)
        clash = [i.name for i in self.state.instances.values()
                 if i.host == host and i.host_ifname == record.host_ifname]
        if clash:
            raise LabError(f"port {record.port_id} would reuse {record.host_ifname} of instance {clash[0]}")
        self.state.instances[name] = record
        self.save()  # recorded first: a half-plugged instance is still found by unplug/down
        instance = LabInstance(record, lab_host)
        try:
            instance.plug()
        except BaseException:
            with contextlib.suppress(LabError, OSError):
                instance.unplug()
            del self.state.instances[name]
            self.save()
            raise
        return instance

    def unplug(self, name: str) -> None:
        self.instance(name).unplug()
        del self.state.instances[name]
        self.save()

    # --- observation --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A JSON-ready picture of the lab as it is right now."""
        return {
            "state_dir": str(self.state.state_dir),
            "prefix": self.state.prefix,
            "underlay": self.state.underlay,
            "fabric": {"namespace": self.fabric.namespace, "exists": self.fabric.exists(),
                       "address": str(self.fabric.gateway),
                       "physnet_bridges": self.fabric.physnet_bridges()},
            "hosts": [host.status().as_dict() for host in self.hosts],
            "instances": [inst.status().as_dict() for inst in self.instances],
            "external": None if self.state.external_address is None else {
                "namespace": self.state.external_namespace,
                "exists": netns.namespace_exists(self.state.external_namespace),
                "physical_network": self.state.external_physnet,
                "address": self.state.external_address},
            "external_ip": None if self.state.external_address is None
            else str(ipaddress.IPv4Interface(self.state.external_address).ip),
        }


def _substitute(arg: str, fields: dict[str, str]) -> str:
    for key, value in fields.items():
        arg = arg.replace(key, value)
    return arg
