"""An attach storm on a real lab: 50 hosts, each with its own Open vSwitch and agent; the server
restarts and all 50 agents reconnect at once (registration, token, policy stream resume,
heartbeats) while a client keeps using the API. Every agent converges on a change written right
after the restart, no API request fails, and traffic between instances on two of the hosts
flows before and after.

BFD is off in this lab (`--bfd-interval 0`): 50 userspace switches with 30 ms sessions to their
peers are more than this machine's two cores can run. The API latencies are reported here
(-s) and compared in bench/storm.py, never asserted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.support import E2ELab, lab_up
from neutrino.lab.storm import measure_attach_storm, populate

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("e2e-storm")]

HOSTS = 50
NETWORKS = 5  # host i is on network storm-(i mod 5): host1 and host6 share storm-1


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2ELab]:
    with lab_up(tmp_path_factory, hosts=HOSTS, extra=("--bridge-mapping", "",
                                                       "--external-physnet", "",
                                                       "--bfd-interval", "0")) as lab:
        yield lab


def test_fifty_agents_reconnecting_at_once_all_converge_and_the_api_keeps_answering(
        lab: E2ELab) -> None:
    ports = populate(lab.state_dir, networks=NETWORKS)
    assert len(ports) == HOSTS
    a = lab.boot("sa", "host1", port=ports[0])
    b = lab.boot("sb", "host6", port=ports[5])
    assert a["network_id"] == b["network_id"]
    address = b["fixed_ips"][0]["ip_address"]
    lab.wait_ping("sa", address, timeout=30)

    result = measure_attach_storm(lab.state_dir, idle=2.0, min_storm=2.0, timeout=180,
                                  log=print)
    print(f"\nattach storm: {result.agents} agents converged {result.converged_s:.1f} s after "
          f"the restart; API p99 {result.storm.p99_ms:.0f} ms vs {result.idle.p99_ms:.0f} ms "
          f"idle (x{result.p99_ratio:.2f}), {result.storm.requests} requests")
    assert result.agents == HOSTS
    assert result.idle.errors == result.storm.errors == 0
    assert result.storm.requests > 0
    lab.wait_ping("sa", address, timeout=10)
