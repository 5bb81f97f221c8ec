"""The identity tables: Keystone's data model reduced to what a network control plane needs.

Domains hold projects and users; a user holds roles on projects through `role_assignments`;
`tokens` keeps a SHA-256 digest of every issued token (never the token itself); `regions`
names the regions the service catalog advertises. Every table is declared on Neutrino's one
`metadata`, so Alembic migrations can be generated from it.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from neutrino.db.meta import metadata

ID_LENGTH = 64
NAME_LENGTH = 255

domains = Table(
    "domains",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("name", String(NAME_LENGTH), nullable=False, unique=True),
    Column("description", Text, nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
)

projects = Table(
    "projects",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column(
        "domain_id",
        String(ID_LENGTH),
        ForeignKey("domains.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("description", Text, nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
    UniqueConstraint("domain_id", "name"),
)

users = Table(
    "users",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column(
        "domain_id",
        String(ID_LENGTH),
        ForeignKey("domains.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("password_hash", String(NAME_LENGTH), nullable=True),  # None: cannot log in
    Column("enabled", Boolean, nullable=False, default=True),
    Column("email", String(NAME_LENGTH), nullable=True),
    Column("description", Text, nullable=True),
    # like Keystone, no foreign key: a deleted default project just stops being used
    Column("default_project_id", String(ID_LENGTH), nullable=True),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("domain_id", "name"),
)

roles = Table(
    "roles",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("name", String(NAME_LENGTH), nullable=False, unique=True),
    Column("description", Text, nullable=True),
)

role_assignments = Table(
    "role_assignments",
    metadata,
    Column(
        "user_id",
        String(ID_LENGTH),
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "project_id",
        String(ID_LENGTH),
        ForeignKey("projects.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
    Column(
        "role_id",
        String(ID_LENGTH),
        ForeignKey("roles.id", ondelete="CASCADE"),
        primary_key=True,
    ),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", String(ID_LENGTH), primary_key=True),  # sha256 hex of the token
    Column(
        "user_id",
        String(ID_LENGTH),
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column(
        "project_id",
        String(ID_LENGTH),
        ForeignKey("projects.id", ondelete="CASCADE"),
        nullable=True,  # None: unscoped token
        index=True,
    ),
    Column("methods", String(NAME_LENGTH), nullable=False),  # comma separated
    Column("audit_ids", String(NAME_LENGTH), nullable=False),  # comma separated, own first
    Column("issued_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False, index=True),
)

regions = Table(
    "regions",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("description", Text, nullable=True),
    Column(
        "parent_region_id",
        String(ID_LENGTH),
        ForeignKey("regions.id", ondelete="SET NULL"),
        nullable=True,
    ),
)
