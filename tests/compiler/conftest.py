"""The API fixtures (a Neutrino app on a fresh migrated database) for load_intent tests."""

from api.conftest import (  # noqa: F401  (fixtures are found by name)
    app_parts,
    client,
    database_url,
    db,
    postgres_template,
    shared_postgres,
    sqlite_template,
)
