"""Specification of networks: defaults, provider segments allocated from ranges, segment
conflicts, MTU defaults and limits, sharing, external networks, port security, AZ hints,
updates and deletion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.helpers import UNKNOWN_ID, as_project, body, network, neutron_error, port, subnet
from neutrino.api.app import create_app
from neutrino.config import SegmentRange, Settings
from neutrino.db.engine import Database

PROVIDER = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")


# --- creation and defaults -------------------------------------------------------------------


def test_a_new_network_has_neutrons_defaults(client: TestClient) -> None:
    net = network(client, name="blue")
    assert net["name"] == "blue"
    assert net["status"] == "ACTIVE"
    assert net["admin_state_up"] is True
    assert net["shared"] is False
    assert net["router:external"] is False
    assert net["port_security_enabled"] is True
    assert net["availability_zone_hints"] == []
    assert net["availability_zones"] == []
    assert net["subnets"] == []
    assert net["project_id"] == net["tenant_id"] == "admin-project"


def test_a_tenant_network_is_geneve_with_a_segment_id_from_the_range(client: TestClient) -> None:
    first, second = network(client), network(client)
    assert first["provider:network_type"] == second["provider:network_type"] == "geneve"
    assert first["provider:physical_network"] is None
    assert 1 <= first["provider:segmentation_id"] <= 65535
    assert first["provider:segmentation_id"] != second["provider:segmentation_id"]


def test_a_network_can_be_shown_by_id(client: TestClient) -> None:
    net = network(client, name="shown")
    assert body(client.get(f"/v2.0/networks/{net['id']}"))["network"] == net


def test_an_unknown_network_is_not_found(client: TestClient) -> None:
    error = neutron_error(client.get(f"/v2.0/networks/{UNKNOWN_ID}"), 404, "NetworkNotFound")
    assert UNKNOWN_ID in error["message"]


@pytest.mark.parametrize("network_type", ["vxlan", "geneve"])
def test_an_overlay_network_gets_an_allocated_vni(client: TestClient, network_type: str) -> None:
    nets = [network(client, **{"provider:network_type": network_type}) for _ in range(3)]
    vnis = [n["provider:segmentation_id"] for n in nets]
    assert len(set(vnis)) == 3
    assert all(1 <= vni <= 65535 for vni in vnis)
    assert all(n["provider:network_type"] == network_type for n in nets)


@pytest.mark.parametrize("network_type", ["vxlan", "geneve"])
def test_an_overlay_network_may_ask_for_its_vni(client: TestClient, network_type: str) -> None:
    net = network(client, **{"provider:network_type": network_type,
                             "provider:segmentation_id": 70000})
    assert net["provider:segmentation_id"] == 70000


def test_a_vlan_network_gets_a_vlan_id_from_the_physnet_range(client: TestClient) -> None:
    nets = [network(client, **{"provider:network_type": "vlan",
                               "provider:physical_network": "physnet1"}) for _ in range(2)]
    ids = [n["provider:segmentation_id"] for n in nets]
    assert all(100 <= i <= 4094 for i in ids)
    assert ids[0] != ids[1]
    assert all(n["provider:physical_network"] == "physnet1" for n in nets)


def test_a_vlan_network_may_ask_for_its_vlan_id(client: TestClient) -> None:
    net = network(client, **{"provider:network_type": "vlan",
                             "provider:physical_network": "physnet1",
                             "provider:segmentation_id": 42})
    assert (net["provider:network_type"], net["provider:physical_network"],
            net["provider:segmentation_id"]) == ("vlan", "physnet1", 42)
    assert net["mtu"] == 1500


def test_an_allocated_vlan_id_skips_the_ids_already_taken(client: TestClient) -> None:
    network(client, **{"provider:network_type": "vlan", "provider:physical_network": "physnet1",
                       "provider:segmentation_id": 100})
    allocated = network(client, **{"provider:network_type": "vlan",
                                   "provider:physical_network": "physnet1"})
    assert allocated["provider:segmentation_id"] == 101


def test_a_flat_network_has_no_segment_id(client: TestClient) -> None:
    net = network(client, **{"provider:network_type": "flat",
                             "provider:physical_network": "public"})
    assert net["provider:segmentation_id"] is None
    assert net["provider:physical_network"] == "public"
    assert net["mtu"] == 1500


def test_a_second_flat_network_on_one_physnet_conflicts(client: TestClient) -> None:
    attrs = {"provider:network_type": "flat", "provider:physical_network": "public"}
    network(client, **attrs)
    neutron_error(client.post("/v2.0/networks", json={"network": attrs}), 409, "FlatNetworkInUse")


def test_a_vlan_id_in_use_on_the_physnet_conflicts(client: TestClient) -> None:
    attrs = {"provider:network_type": "vlan", "provider:physical_network": "physnet1",
             "provider:segmentation_id": 300}
    network(client, **attrs)
    neutron_error(client.post("/v2.0/networks", json={"network": attrs}), 409, "VlanIdInUse")


def test_the_same_vlan_id_on_another_physnet_is_free(client: TestClient) -> None:
    network(client, **{"provider:network_type": "vlan", "provider:physical_network": "physnet1",
                       "provider:segmentation_id": 300})
    other = network(client, **{"provider:network_type": "vlan",
                               "provider:physical_network": "public",
                               "provider:segmentation_id": 300})
    assert other["provider:segmentation_id"] == 300


@pytest.mark.parametrize("network_type", ["vxlan", "geneve"])
def test_a_vni_in_use_conflicts(client: TestClient, network_type: str) -> None:
    attrs = {"provider:network_type": network_type, "provider:segmentation_id": 5000}
    network(client, **attrs)
    neutron_error(client.post("/v2.0/networks", json={"network": attrs}), 409, "TunnelIdInUse")


@pytest.mark.parametrize(("first", "second"), [("geneve", "vxlan"), ("vxlan", "geneve")])
def test_geneve_and_vxlan_share_one_vni_space(client: TestClient, first: str, second: str) -> None:
    """Both overlays ride on the one tunnel port a chassis has per peer, where the VNI alone
    tells networks apart: a VNI taken by one type is taken for the other, and automatic
    allocation skips it."""
    taken = network(client, **{"provider:network_type": first})["provider:segmentation_id"]
    attrs = {"provider:network_type": second, "provider:segmentation_id": taken}
    neutron_error(client.post("/v2.0/networks", json={"network": attrs}), 409, "TunnelIdInUse")
    auto = network(client, **{"provider:network_type": second})
    assert auto["provider:segmentation_id"] != taken


def test_a_deleted_networks_segment_can_be_used_again(client: TestClient) -> None:
    attrs = {"provider:network_type": "vlan", "provider:physical_network": "physnet1",
             "provider:segmentation_id": 300}
    first = network(client, **attrs)
    assert client.delete(f"/v2.0/networks/{first['id']}").status_code == 204
    assert network(client, **attrs)["provider:segmentation_id"] == 300


@pytest.mark.parametrize(
    "attrs",
    [
        {"provider:network_type": "flat"},  # no physnet
        {"provider:network_type": "flat", "provider:physical_network": "public",
         "provider:segmentation_id": 5},
        {"provider:network_type": "vlan", "provider:physical_network": "physnet1",
         "provider:segmentation_id": 4095},
        {"provider:network_type": "vlan", "provider:physical_network": "nowhere"},
        {"provider:network_type": "vxlan", "provider:physical_network": "physnet1"},
        {"provider:network_type": "vxlan", "provider:segmentation_id": 0},
        {"provider:network_type": "gre"},
        {"provider:segmentation_id": 10},  # an id without a type
        {"provider:physical_network": "physnet1"},
    ],
    ids=["flat-no-physnet", "flat-with-id", "vlan-4095", "unknown-physnet", "vxlan-physnet",
         "vxlan-0", "gre", "id-without-type", "physnet-without-type"],
)
def test_an_invalid_provider_segment_is_a_bad_request(
    client: TestClient, attrs: dict[str, Any]
) -> None:
    neutron_error(client.post("/v2.0/networks", json={"network": attrs}), 400)


def test_provider_attributes_cannot_be_updated(client: TestClient) -> None:
    net = network(client)
    response = client.put(f"/v2.0/networks/{net['id']}",
                          json={"network": {"provider:segmentation_id": 77}})
    neutron_error(response, 400)


def test_tenant_segments_run_out_with_409(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/small.sqlite"
    from neutrino.db.migrate import upgrade

    upgrade(url)
    settings = Settings(state_dir=tmp_path, database=url, auth="noauth",
                        segment_ranges=(SegmentRange("geneve", 7, 8),))
    db = Database(url)
    try:
        with TestClient(create_app(settings, db)) as client:
            ids = {network(client)["provider:segmentation_id"] for _ in range(2)}
            assert ids == {7, 8}
            neutron_error(client.post("/v2.0/networks", json={"network": {}}), 409,
                          "NoNetworkAvailable")
    finally:
        db.dispose()


# --- MTU ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("network_type", "mtu"), [("geneve", 1442), ("vxlan", 1450)])
def test_an_overlay_networks_mtu_leaves_room_for_encapsulation(
    client: TestClient, network_type: str, mtu: int
) -> None:
    assert network(client, **{"provider:network_type": network_type})["mtu"] == mtu


def test_a_smaller_mtu_may_be_asked_for(client: TestClient) -> None:
    assert network(client, mtu=1400)["mtu"] == 1400


def test_a_null_mtu_means_the_default(client: TestClient) -> None:
    assert network(client, mtu=None)["mtu"] == 1442


@pytest.mark.parametrize("mtu", [1443, 9000, 67, 65536, "big", True])
def test_an_mtu_beyond_the_limits_is_a_bad_request(client: TestClient, mtu: Any) -> None:
    neutron_error(client.post("/v2.0/networks", json={"network": {"mtu": mtu}}), 400)


def test_the_mtu_can_be_lowered_but_not_raised_beyond_the_limit(client: TestClient) -> None:
    net = network(client)
    url = f"/v2.0/networks/{net['id']}"
    assert body(client.put(url, json={"network": {"mtu": 1300}}))["network"]["mtu"] == 1300
    neutron_error(client.put(url, json={"network": {"mtu": 1500}}), 400)
    neutron_error(client.put(url, json={"network": {"mtu": None}}), 400)
    assert body(client.get(url))["network"]["mtu"] == 1300


# --- flags -------------------------------------------------------------------------------------


def test_port_security_can_be_disabled_on_a_network(client: TestClient) -> None:
    net = network(client, port_security_enabled=False)
    assert net["port_security_enabled"] is False
    updated = client.put(f"/v2.0/networks/{net['id']}",
                         json={"network": {"port_security_enabled": True}})
    assert body(updated)["network"]["port_security_enabled"] is True


def test_availability_zone_hints_are_kept_and_cannot_be_updated(client: TestClient) -> None:
    net = network(client, availability_zone_hints=["az1", "az2"])
    assert net["availability_zone_hints"] == ["az1", "az2"]
    response = client.put(f"/v2.0/networks/{net['id']}",
                          json={"network": {"availability_zone_hints": ["az3"]}})
    neutron_error(response, 400)


@pytest.mark.parametrize("hints", ["az1", [1], [None]])
def test_availability_zone_hints_must_be_a_list_of_strings(client: TestClient, hints: Any) -> None:
    response = client.post("/v2.0/networks", json={"network": {"availability_zone_hints": hints}})
    neutron_error(response, 400)


def test_an_admin_may_create_a_shared_external_network(client: TestClient) -> None:
    net = network(client, shared=True, **{"router:external": True})
    assert net["shared"] is True
    assert net["router:external"] is True


def test_a_network_can_be_renamed_and_disabled(client: TestClient) -> None:
    net = network(client, name="old")
    updated = body(client.put(f"/v2.0/networks/{net['id']}",
                              json={"network": {"name": "new", "admin_state_up": False,
                                                "description": "d"}}))["network"]
    assert (updated["name"], updated["admin_state_up"], updated["description"]) == (
        "new", False, "d")
    assert body(client.get(f"/v2.0/networks/{net['id']}"))["network"] == updated


def test_unsharing_a_network_other_projects_use_conflicts(client: TestClient) -> None:
    net = network(client, shared=True)
    subnet(client, net["id"])
    port(client, net["id"], headers=as_project("other"))
    response = client.put(f"/v2.0/networks/{net['id']}", json={"network": {"shared": False}})
    neutron_error(response, 409, "InvalidSharedSetting")


def test_unsharing_a_network_only_its_project_uses_is_allowed(client: TestClient) -> None:
    net = network(client, shared=True)
    subnet(client, net["id"])
    port(client, net["id"])
    response = client.put(f"/v2.0/networks/{net['id']}", json={"network": {"shared": False}})
    assert body(response)["network"]["shared"] is False


# --- deletion ----------------------------------------------------------------------------------


def test_a_deleted_network_is_gone(client: TestClient) -> None:
    net = network(client)
    assert client.delete(f"/v2.0/networks/{net['id']}").status_code == 204
    neutron_error(client.get(f"/v2.0/networks/{net['id']}"), 404, "NetworkNotFound")
    neutron_error(client.delete(f"/v2.0/networks/{net['id']}"), 404, "NetworkNotFound")


def test_deleting_a_network_deletes_its_subnets(client: TestClient) -> None:
    net = network(client)
    sub = subnet(client, net["id"])
    assert client.delete(f"/v2.0/networks/{net['id']}").status_code == 204
    neutron_error(client.get(f"/v2.0/subnets/{sub['id']}"), 404, "SubnetNotFound")


def test_a_network_with_ports_is_in_use(client: TestClient) -> None:
    net = network(client)
    subnet(client, net["id"])
    p = port(client, net["id"])
    neutron_error(client.delete(f"/v2.0/networks/{net['id']}"), 409, "NetworkInUse")
    assert body(client.get(f"/v2.0/ports/{p['id']}"))["port"]["id"] == p["id"]


def test_a_network_with_only_a_dhcp_port_can_be_deleted(client: TestClient) -> None:
    net = network(client)
    subnet(client, net["id"])
    dhcp = port(client, net["id"], device_owner="network:dhcp")
    assert client.delete(f"/v2.0/networks/{net['id']}").status_code == 204
    neutron_error(client.get(f"/v2.0/ports/{dhcp['id']}"), 404, "PortNotFound")
