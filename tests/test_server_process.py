"""`neutrino server` as a process: SIGTERM stops it promptly and cleanly even while agents hold
their never-ending policy streams open (a restart must not wait for every agent to hang up)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from neutrino.launcher import start_server


def test_sigterm_ends_open_policy_streams_and_the_server_exits_cleanly(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server", auth="noauth")
    ended = threading.Event()
    try:
        registered = httpx.post(f"{server.url}/v2.0/neutrino/chassis", json={"chassis": {
            "name": "h1", "tunnel_ip": "192.0.2.1"}})
        assert registered.status_code == 201, registered.text
        opened = threading.Event()

        def follow() -> None:
            try:
                with httpx.stream("GET", f"{server.url}/v2.0/neutrino/chassis/h1/policy",
                                  timeout=None) as response:
                    for _line in response.iter_lines():
                        opened.set()
            except httpx.HTTPError:
                pass
            ended.set()

        threading.Thread(target=follow, daemon=True).start()
        assert opened.wait(10), "the policy stream did not open"
        started = time.monotonic()
        server.process.terminate()
        server.process.wait(timeout=15)
        assert server.process.returncode in (0, -15), server.log()  # uvicorn re-raises SIGTERM
        assert "Traceback" not in server.log(), server.log()
        assert ended.wait(5), "the stream did not end with the server"
        print(f"\nSIGTERM -> exit: {time.monotonic() - started:.2f} s")
    finally:
        server.stop()
