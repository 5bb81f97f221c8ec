"""Shared test fixtures, registered once for every test directory: a private PostgreSQL
cluster (support.postgres) and a Neutrino app on a fresh migrated database (support.api_app)."""

import pytest

pytest_plugins = ["support.postgres", "support.api_app"]


def pytest_configure(config: pytest.Config) -> None:
    # pyproject.toml lists the other markers
    config.addinivalue_line("markers", "fuzz: schemathesis against the app's own OpenAPI document")
