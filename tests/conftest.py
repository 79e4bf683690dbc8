"""Shared fixtures: real servers on loopback for the real-socket tests."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import triows

# -- core suite helpers (issue 2) ------------------------------------------------------


class ErrorRecorder:
    """Wraps an App as an ASGI app and records what the App raised to the server.

    Attribute access falls through to the App (``triows.serve`` calls
    ``close_connections`` on it).  ``wait_for_error`` blocks until one arrives.
    """

    def __init__(self, app: triows.App) -> None:
        self.app = app
        self.errors: list[BaseException] = []
        self.finished = 0
        self._send, self._receive = trio.open_memory_channel[BaseException | None](math.inf)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            if scope["type"] != "lifespan" and not isinstance(exc, trio.Cancelled):
                self.errors.append(exc)
                self._send.send_nowait(exc)
            raise
        else:
            if scope["type"] == "websocket":
                self.finished += 1
                self._send.send_nowait(None)

    async def next_outcome(self, timeout: float = 3.0) -> BaseException | None:
        """The next WebSocket connection's outcome: its exception, or None if it ended cleanly."""
        with trio.fail_after(timeout):
            return await self._receive.receive()


@pytest.fixture
def make_recorder() -> Callable[[triows.App], ErrorRecorder]:
    return ErrorRecorder


@pytest.fixture
def tls_certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1: (cert.pem, key.pem)."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "the TLS tests need the openssl command (scripts/test installs it)"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
    command += ["-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return cert, key
