"""Alembic environment: migrate the database named by the config's sqlalchemy.url."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import neutrino.db.schema
import neutrino.identity.schema  # noqa: F401
from neutrino.db.meta import metadata

config = context.config


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url
    connectable = config.attributes.get("connection") or create_engine(url)
    if hasattr(connectable, "connect"):
        with connectable.connect() as connection:
            context.configure(connection=connection, target_metadata=metadata,
                              render_as_batch=url.startswith("sqlite"))
            with context.begin_transaction():
                context.run_migrations()
    else:  # an open Connection handed in by the caller
        context.configure(connection=connectable, target_metadata=metadata)  # type: ignore[arg-type]
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
