"""The service catalog: the network service (this server) and the identity service (its /v3).

Nothing is stored: services and endpoints are derived from the server's root URL and the
region, with stable ids (UUID5 of their names) so clients see the same ids on every call.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

INTERFACES = ("public", "internal", "admin")
_NAMESPACE = uuid.UUID("6f1c1f3e-8a47-4d4e-9a55-2f6f3c1d7e10")


@dataclass(frozen=True)
class CatalogService:
    id: str
    type: str
    name: str
    description: str


@dataclass(frozen=True)
class CatalogEndpoint:
    id: str
    service: CatalogService
    interface: str
    region: str
    url: str


SERVICES = (
    CatalogService(
        id=uuid.uuid5(_NAMESPACE, "service:network").hex,
        type="network",
        name="neutron",
        description="Neutrino: OpenStack Networking API v2.0",
    ),
    CatalogService(
        id=uuid.uuid5(_NAMESPACE, "service:identity").hex,
        type="identity",
        name="keystone",
        description="Neutrino: OpenStack Identity API v3 subset",
    ),
)


def service_url(service: CatalogService, root_url: str) -> str:
    """Where `service` answers: the server root for network, root + /v3 for identity."""
    root = root_url.rstrip("/")
    return f"{root}/v3" if service.type == "identity" else root


def endpoints(root_url: str, region: str) -> list[CatalogEndpoint]:
    """One endpoint per service and interface, all in `region`."""
    return [
        CatalogEndpoint(
            id=uuid.uuid5(_NAMESPACE, f"endpoint:{service.type}:{interface}:{region}").hex,
            service=service,
            interface=interface,
            region=region,
            url=service_url(service, root_url),
        )
        for service in SERVICES
        for interface in INTERFACES
    ]


def token_catalog(root_url: str, region: str) -> list[dict[str, object]]:
    """The `catalog` of a token body, in Keystone's shape."""
    all_endpoints = endpoints(root_url, region)
    return [
        {
            "endpoints": [
                {
                    "id": endpoint.id,
                    "interface": endpoint.interface,
                    "region": endpoint.region,
                    "region_id": endpoint.region,
                    "url": endpoint.url,
                }
                for endpoint in all_endpoints
                if endpoint.service is service
            ],
            "id": service.id,
            "type": service.type,
            "name": service.name,
        }
        for service in SERVICES
    ]
