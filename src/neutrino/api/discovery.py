"""Version discovery (`GET /`, `GET /v2.0/`) and the extension list, as Neutron answers them.

Only extensions whose behaviour is implemented and tested are listed.
"""

from __future__ import annotations

from typing import Any

UPDATED = "2026-11-21T00:00:00-00:00"

# alias -> (name, description)
EXTENSIONS: dict[str, tuple[str, str]] = {
    "allowed-address-pairs": ("Allowed Address Pairs",
                              "Provides allowed address pairs"),
    "binding": ("Port Binding", "Expose port bindings of a virtual port to external application"),
    "dvr": ("Distributed Virtual Router", "Enables configuration of Distributed Virtual Routers."),
    "expose-port-forwarding-in-fip": ("Expose Floating IP port forwardings",
                                      "Expose port forwarding fields in floating IP response"),
    "ext-gw-mode": ("Neutron L3 Configurable external gateway mode",
                    "Extension of the router abstraction for specifying whether SNAT should occur "
                    "on the external gateway"),
    "external-net": ("Neutron external network",
                     "Adds external network attribute to network resource."),
    "extra_dhcp_opt": ("Neutron Extra DHCP options",
                       "Extra options configuration for DHCP. For example PXE boot options to "
                       "DHCP clients can be specified (e.g. tftp-server, server-ip-address, "
                       "bootfile-name)"),
    "extraroute": ("Neutron Extra Route", "Extra routes configuration for L3 router"),
    "extraroute-atomic": ("Atomically add/remove extra routes",
                          "Edit extra routes of a router on server side by atomically "
                          "adding/removing extra routes"),
    "fields": ("Fields", "Field selection with the fields query parameter"),
    "filter-validation": ("Filter parameters validation",
                          "Provides validation on filter parameters."),
    "fip-port-details": ("Floating IP Port Details Extension",
                         "Add port_details attribute to Floating IP resource"),
    "floating-ip-port-forwarding": ("Floating IP Port Forwarding",
                                    "Allow port forwarding from floating IP port to an internal "
                                    "port"),
    "floating-ip-port-forwarding-description": (
        "Floating IP Port Forwarding new attribute description",
        "Add a description field to Port Forwarding rules"),
    "l3-ha": ("HA Router extension", "Adds HA capability to routers."),
    "l3_agent_scheduler": ("L3 Agent Scheduler", "Schedule routers among l3 agents"),
    "net-mtu": ("Network MTU", "Provides MTU attribute for a network resource."),
    "net-mtu-writable": ("Network MTU (writable)",
                         "Provides a writable MTU attribute for a network resource."),
    "pagination": ("Pagination support", "Extension that indicates that pagination is enabled."),
    "port-security": ("Port Security", "Provides port security"),
    "project-id": ("project_id field enabled",
                   "Extension that indicates that project_id field is enabled."),
    "provider": ("Provider Network", "Expose mapping of virtual networks to physical networks"),
    "revision-if-match": ("If-Match constraints based on revision_number",
                          "Extension indicating that If-Match based on revision_number is "
                          "supported."),
    "router": ("Neutron L3 Router",
               "Router abstraction for basic L3 forwarding between L2 Neutron networks and access "
               "to external networks via a NAT gateway."),
    "security-group": ("security-group", "The security groups extension."),
    "sorting": ("Sorting support", "Extension that indicates that sorting is enabled."),
    "standard-attr-description": ("standard-attr-description",
                                  "Extension to add descriptions to standard attributes"),
    "standard-attr-revisions": ("Resource revision numbers",
                                "This extension will display the revision number of neutron "
                                "resources."),
    "standard-attr-tag": ("Tag support for resources with standard attribute",
                          "Enables to set tag on resources with standard attribute."),
    "standard-attr-timestamp": ("Resource timestamps",
                                "Adds created_at and updated_at fields to all Neutron resources "
                                "that have Neutron standard attributes."),
    "stateful-security-group": ("Stateful security group",
                                "Indicates if the security group is stateful or not"),
}


def versions(root_url: str) -> dict[str, Any]:
    return {
        "versions": [
            {"id": "v2.0", "status": "CURRENT",
             "links": [{"href": f"{root_url}/v2.0/", "rel": "self"}]}
        ]
    }


def v2_index(root_url: str, collections: list[tuple[str, str, str]]) -> dict[str, Any]:
    """(name, collection, url path) of each resource."""
    return {
        "resources": [
            {"name": name, "collection": collection,
             "links": [{"href": f"{root_url}/v2.0/{path}", "rel": "self"}]}
            for name, collection, path in collections
        ]
    }


def extension(alias: str) -> dict[str, Any]:
    name, description = EXTENSIONS[alias]
    return {"alias": alias, "name": name, "description": description, "updated": UPDATED,
            "links": []}


def extensions() -> dict[str, Any]:
    return {"extensions": [extension(alias) for alias in sorted(EXTENSIONS)]}
