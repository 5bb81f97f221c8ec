"""Persistence: SQLAlchemy Core tables, engine set-up, migrations and the change outbox."""
