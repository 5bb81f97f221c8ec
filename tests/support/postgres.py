"""A private, throw-away PostgreSQL cluster for tests.

Uses the server binaries of Debian's ``postgresql`` package (``/usr/lib/postgresql/*/bin``,
newest version wins; ``NEUTRINO_PG_BINDIR`` overrides).  The cluster lives in a fresh
directory under ``/tmp``, listens only on a unix socket inside that directory (no TCP port, so
any number of clusters, e.g. one per pytest-xdist worker, can run side by side), runs with
fsync off and trusts local connections.

PostgreSQL refuses to run as root: when the tests run as root, initdb/pg_ctl run as the
``postgres`` system user (created by the Debian package) via ``runuser``.

Use it from pytest (``pytest_plugins = ["support.postgres"]`` in ``tests/conftest.py``)::

    def test_something(postgres_db: str) -> None:      # fresh, empty database per test
        db = Database(postgres_db)

    def test_other(postgres_server: PostgresServer) -> None:   # the session's cluster
        url = postgres_server.create_database("mydb")

or directly::

    server = PostgresServer.start()
    try:
        ...server.url...
    finally:
        server.stop()
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

__all__ = [
    "PostgresNotAvailable",
    "PostgresServer",
    "find_pg_bindir",
    "postgres_db",
    "postgres_server",
]

SUPERUSER = "neutrino"
DEFAULT_DB = "neutrino"
RUN_AS = "postgres"  # system user created by Debian's postgresql package
PG_PORT = 5432  # only names the socket file (.s.PGSQL.5432); no TCP listener

_SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
    "max_connections": "200",
    "max_wal_size": "256MB",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] %d '",
    "timezone": "'UTC'",
}


# database names accepted by create_database()/drop_database() (kept URL-safe)
_DBNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class PostgresNotAvailable(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def _version_key(path: str) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin -> (15,); /usr/lib/postgresql/9.6/bin -> (9, 6)
    version = Path(path).parent.name
    return tuple(int(p) for p in re.findall(r"\d+", version)) or (0,)


def find_pg_bindir() -> Path:
    """The newest directory holding ``initdb`` and ``pg_ctl``."""
    candidates: list[str] = []
    override = os.environ.get("NEUTRINO_PG_BINDIR")
    if override:
        candidates.append(override)
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for cand in candidates:
        d = Path(cand)
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    raise PostgresNotAvailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin; "
        "install Debian's 'postgresql' package (bash scripts/install-deps.sh) "
        "or set NEUTRINO_PG_BINDIR"
    )


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    env.pop("LANGUAGE", None)
    return env


class PostgresServer:
    """One running private cluster.  ``url`` points at database ``neutrino``."""

    def __init__(self, bindir: Path, basedir: Path, run_as: str | None) -> None:
        self.bindir = bindir
        self.basedir = basedir
        self.datadir = basedir / "data"
        self.socket_dir = basedir
        self.logfile = basedir / "postgres.log"
        self.run_as = run_as
        self.user = SUPERUSER
        self._stopped = False
        self._lock = threading.Lock()
        self._counter = itertools.count(1)

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def start(cls, bindir: Path | None = None, timeout: float = 60.0) -> PostgresServer:
        bindir = bindir or find_pg_bindir()
        run_as: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(RUN_AS)
            except KeyError as exc:
                raise RuntimeError(
                    f"running as root but system user {RUN_AS!r} does not exist; PostgreSQL "
                    "refuses to run as root (install Debian's 'postgresql' package)"
                ) from exc
            run_as = RUN_AS
        # mkdtemp makes the dir 0700; /tmp and 0755 keep it traversable for the postgres user
        # and for the (root) client connecting to the socket.
        basedir = Path(tempfile.mkdtemp(prefix="neutrino-pg-", dir="/tmp"))
        basedir.chmod(0o755)
        server = cls(bindir, basedir, run_as)
        try:
            if run_as is not None:
                pw = pwd.getpwnam(run_as)
                os.chown(basedir, pw.pw_uid, pw.pw_gid)
            server._initdb(timeout)
            server._configure()
            server._pg_ctl_start(timeout)
        except BaseException:
            server._cleanup_after_failure()
            raise
        atexit.register(server.stop)
        return server

    def _initdb(self, timeout: float) -> None:
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            timeout=timeout,
        )

    def _configure(self) -> None:
        lines = [f"{k} = {v}" for k, v in _SETTINGS.items()]
        lines.append(f"unix_socket_directories = '{self.socket_dir}'")
        lines.append(f"port = {PG_PORT}")
        conf = self.datadir / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as f:  # root may append; owner stays postgres
            f.write("\n# neutrino test cluster\n" + "\n".join(lines) + "\n")

    def _pg_ctl_start(self, timeout: float) -> None:
        try:
            self._run(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self.logfile),
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "start",
                ],
                timeout=timeout + 10,
            )
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- postgres.log ---\n{self.log_tail()}") from exc
        # create the default database owned by the superuser role
        self._create_db(DEFAULT_DB)

    def stop(self) -> None:
        """Fast shutdown of this cluster (by its own data dir / pid), then delete its files."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self.datadir.exists():
            try:
                self._run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.datadir),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        "30",
                        "stop",
                    ],
                    timeout=40,
                )
            except Exception:
                self._kill_postmaster()
        shutil.rmtree(self.basedir, ignore_errors=True)

    def _cleanup_after_failure(self) -> None:
        self._stopped = True
        self._kill_postmaster()
        shutil.rmtree(self.basedir, ignore_errors=True)

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.datadir / "postmaster.pid").read_text().splitlines()[0]
            return int(first.strip())
        except (OSError, ValueError, IndexError):
            return None

    def _kill_postmaster(self) -> None:
        pid = self._postmaster_pid()
        if pid is None or pid <= 1:
            return
        # SIGQUIT = immediate shutdown; then SIGKILL if it is still around.
        for sig, wait in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            except PermissionError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)

    # -- helpers -----------------------------------------------------------------------------

    def _run(self, argv: Sequence[str], timeout: float) -> str:
        cmd = list(argv)
        if self.run_as is not None:
            if shutil.which("runuser"):
                cmd = ["runuser", "-u", self.run_as, "--", *cmd]
            else:  # no util-linux: let Python drop privileges itself
                return self._run_direct(cmd, timeout, user=self.run_as)
        return self._run_direct(cmd, timeout, user=None)

    def _run_direct(self, cmd: list[str], timeout: float, user: str | None) -> str:
        uid = gid = None
        groups: list[int] | None = None
        if user is not None:
            pw = pwd.getpwnam(user)
            uid, gid, groups = pw.pw_uid, pw.pw_gid, []
        proc = subprocess.run(
            cmd,
            cwd=self.basedir,  # the postgres user cannot enter e.g. /root
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout}"
            )
        return proc.stdout

    def _admin_connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=str(self.socket_dir),
            port=PG_PORT,
            user=SUPERUSER,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
        )

    def _admin_execute(self, statement: sql.Composed) -> None:
        with self._admin_connect() as conn:
            conn.execute(statement)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- public API --------------------------------------------------------------------------

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of database ``dbname`` on this cluster."""
        return f"postgresql+psycopg://{self.user}@/{dbname}?host={self.socket_dir}&port={PG_PORT}"

    @property
    def url(self) -> str:
        return self.url_for(DEFAULT_DB)

    @property
    def dsn(self) -> str:
        """libpq connection string (for psycopg.connect / psql)."""
        return f"host={self.socket_dir} port={PG_PORT} user={self.user} dbname={DEFAULT_DB}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (owned by the superuser role); return its SQLAlchemy URL."""
        if name is None:
            name = f"t{os.getpid()}_{next(self._counter)}"
        if not _DBNAME.fullmatch(name):
            raise ValueError(f"invalid database name {name!r}")
        self._create_db(name)
        return self.url_for(name)

    def _create_db(self, name: str) -> None:
        self._admin_execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(SUPERUSER)
            )
        )

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting any sessions still using it."""
        if not _DBNAME.fullmatch(name):
            raise ValueError(f"invalid database name {name!r}")
        self._admin_execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PostgresServer(bindir={self.bindir}, dir={self.basedir})"


# -- pytest fixtures ---------------------------------------------------------------------------


def _must_have_postgres() -> bool:
    """In CI the binaries are installed by `make deps`: absence is an error there, not a skip."""
    flag = os.environ.get("NEUTRINO_REQUIRE_POSTGRES", os.environ.get("CI", ""))
    return flag.lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster for this test session (one per pytest-xdist worker)."""
    try:
        bindir = find_pg_bindir()
    except PostgresNotAvailable as exc:
        if _must_have_postgres():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    server = PostgresServer.start(bindir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database, dropped after the test."""
    url = postgres_server.create_database()
    name = url.split("@/", 1)[1].split("?", 1)[0]
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            postgres_server.drop_database(name)
