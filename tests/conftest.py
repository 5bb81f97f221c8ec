"""Shared test fixtures: PostgreSQL (support.postgres) and a running Neutrino server."""

pytest_plugins = ["support.postgres"]
