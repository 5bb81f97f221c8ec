"""The Neutron v2.0 HTTP API: resources, validation, RBAC policy and Neutron's error envelope."""
