"""Start and stop a `neutrino server` process (for the demo, the lab and tests).

The server runs in its own state directory and listens on loopback; it is stopped by its pid
(SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    url: str
    state_dir: Path
    process: subprocess.Popen[bytes]
    admin_password: str | None
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_server(
    state_dir: Path,
    *,
    port: int | None = None,
    admin_password: str | None = None,
    database: str | None = None,
    auth: str = "keystone",
    extra_args: tuple[str, ...] = (),
    unix_socket: Path | None = None,
    timeout: float = 30.0,
) -> ServerProcess:
    """Start `neutrino server` and wait until it answers `GET /`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [sys.executable, "-m", "neutrino.cli.main", "server", "--host", "127.0.0.1",
            "--port", str(port), "--state-dir", str(state_dir), "--auth", auth, *extra_args]
    if database:
        args += ["--database", database]
    if unix_socket is not None:
        args += ["--unix-socket", str(unix_socket)]
    env = dict(os.environ)
    env.pop("NEUTRINO_ADMIN_PASSWORD", None)
    if admin_password:
        env["NEUTRINO_ADMIN_PASSWORD"] = admin_password
    log_path = state_dir / "server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   stdin=subprocess.DEVNULL)
    server = ServerProcess(f"http://127.0.0.1:{port}", state_dir, process, admin_password,
                           log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"neutrino server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + "/", timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"neutrino server did not answer within {timeout}s:\n{server.log()}")
