"""Assemble a running server: database (migrated), identity (bootstrapped), the ASGI app.

Used by `neutrino server`, the demo and the tests, so all of them run the same wiring.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI

from neutrino.api.app import create_app
from neutrino.api.auth import TokenValidator
from neutrino.config import Settings
from neutrino.db.engine import Database
from neutrino.db.migrate import upgrade

if TYPE_CHECKING:
    from neutrino.identity.service import IdentityService

ADMIN_PASSWORD_FILE = "admin-password"


@dataclass
class Server:
    app: FastAPI
    db: Database
    identity: IdentityService | None
    generated_password: str | None


def build_server(settings: Settings) -> Server:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    identity: IdentityService | None = None
    validator: TokenValidator | None = None
    generated: str | None = None
    if settings.keystone_url:
        from neutrino.identity.external import ExternalKeystoneValidator

        validator = ExternalKeystoneValidator(settings.keystone_url)
    elif settings.auth != "noauth":
        from neutrino.identity.service import IdentityService

        identity = IdentityService(db, settings)
        generated = identity.bootstrap()
        if generated:
            remember_admin_password(settings.state_dir, generated)
        validator = identity
    installer = None
    if identity is not None:
        from neutrino.identity.api import install

        service = identity
        installer = lambda app: install(app, service)  # noqa: E731
    app = create_app(settings, db, validator, installer)
    return Server(app=app, db=db, identity=identity, generated_password=generated)


def remember_admin_password(state_dir: Path, password: str) -> None:
    """Keep a generated admin password (mode 0600) so `neutrino clouds` can print it later."""
    path = state_dir / ADMIN_PASSWORD_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")


def admin_password(settings: Settings) -> str | None:
    if settings.admin_password:
        return settings.admin_password
    if os.environ.get("NEUTRINO_ADMIN_PASSWORD"):
        return os.environ["NEUTRINO_ADMIN_PASSWORD"]
    path = settings.state_dir / ADMIN_PASSWORD_FILE
    return path.read_text().strip() if path.exists() else None
