"""Shared test fixtures: PostgreSQL (support.postgres) and a running Neutrino server."""

import pytest

pytest_plugins = ["support.postgres"]


def pytest_configure(config: pytest.Config) -> None:
    # pyproject.toml lists the other markers
    config.addinivalue_line("markers", "fuzz: schemathesis against the app's own OpenAPI document")
