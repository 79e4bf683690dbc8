"""Shared fixtures: real servers on loopback for the real-socket tests."""

from __future__ import annotations

import math
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import pytest
import trio
import trio_websocket
from xdist.scheduler import LoadGroupScheduling

import triows
from triows.testing import live_server

# -- pytest-xdist: which tests share a worker ------------------------------------------

#: Test modules whose tests run on one pytest-xdist worker, one after the other, by
#: group name (scripts/test: ``-n 2 --dist loadgroup``); every other test goes to
#: whichever worker is free.  Named here rather than with ``xdist_group`` marks,
#: which pytest-xdist 3.8 passes on by rewriting node ids: pytest 9.2 ignores that,
#: and the marks silently group nothing (pytest-dev/pytest-xdist#1386).
XDIST_GROUPS = {
    # The session fixture ``parsed``: one node process parses every document (10 to
    # 25 s); in one worker it runs once, not once per worker.
    "tests/test_asyncapi_parser.py": "asyncapi-parsed",
}


class GroupScheduling(LoadGroupScheduling):
    """``--dist loadgroup``, with the groups of :data:`XDIST_GROUPS` as well as marks."""

    def _split_scope(self, nodeid: str) -> str:
        group = XDIST_GROUPS.get(nodeid.split("::", 1)[0])
        return group if group is not None else super()._split_scope(nodeid)


@pytest.hookimpl(optionalhook=True)  # pytest -p no:xdist still runs
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` schedules by :class:`GroupScheduling`; other modes as usual."""
    return GroupScheduling(config, log) if config.getvalue("dist") == "loadgroup" else None


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

    async def serve_websocket(self, transport: Any) -> BaseException | None:
        """The native server's entry point: the view's crash is returned, not raised."""
        error: BaseException | None = await self.app.serve_websocket(transport)
        if error is None:
            self.finished += 1
        else:
            self.errors.append(error)
        self._send.send_nowait(error)
        return error

    async def next_outcome(self, timeout: float = 3.0) -> BaseException | None:
        """The next WebSocket connection's outcome: its exception, or None if it ended cleanly."""
        with trio.fail_after(timeout):
            return await self._receive.receive()


@pytest.fixture
def make_recorder() -> Callable[[triows.App], ErrorRecorder]:
    return ErrorRecorder


def _make_certificate(directory: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1: (cert.pem, key.pem)."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "the TLS tests need the openssl command (scripts/test installs it)"
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
    command += ["-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def tls_certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1: (cert.pem, key.pem)."""
    return _make_certificate(tmp_path)


# -- the one backend fixture: every real-socket test runs on every server ----------------


@attrs.define
class Served:
    """A running server: its URL, and real trio-websocket clients for it."""

    url_base: str
    ssl_context: ssl.SSLContext | None

    @property
    def port(self) -> int:
        """The server's TCP port on 127.0.0.1."""
        port = urlsplit(self.url_base).port
        assert port is not None, self.url_base
        return port

    def url(self, path: str = "/") -> str:
        return self.url_base + path

    def connect(self, path: str, **options: Any) -> Any:
        """``trio_websocket.open_websocket_url`` for ``path`` (TLS set up when needed)."""
        if self.ssl_context is not None:
            options.setdefault("ssl_context", self.ssl_context)
        return trio_websocket.open_websocket_url(self.url(path), **options)


@attrs.define
class Backend:
    """One way of serving an App for real: native, native over TLS, or hypercorn."""

    name: str
    server: str
    certificate: tuple[Path, Path] | None = None

    def options(self, **options: Any) -> dict[str, Any]:
        """``triows.serve``'s keywords for this backend (its server, TLS files) and ``options``."""
        options["backend"] = self.server
        if self.certificate is not None:
            cert, key = self.certificate
            options.update(certfile=str(cert), keyfile=str(key))
        return options

    def cli_options(self) -> list[str]:
        """``triows run``'s options for this backend: ``--backend``, the TLS files."""
        options = ["--backend", self.server]
        if self.certificate is not None:
            cert, key = self.certificate
            options += ["--certfile", str(cert), "--keyfile", str(key)]
        return options

    def served(self, port: int) -> Served:
        """The server this backend runs on ``port`` of 127.0.0.1 (for a ``triows.serve``
        started by the test itself with :meth:`options`)."""
        if self.certificate is None:
            return Served(f"ws://127.0.0.1:{port}", None)
        context = ssl.create_default_context(cafile=str(self.certificate[0]))
        return Served(f"wss://127.0.0.1:{port}", context)

    @asynccontextmanager
    async def serve(self, app: Any, **options: Any) -> AsyncIterator[Served]:
        async with live_server(app, **self.options(**options)) as server:
            yield self.served(server.port)


BACKENDS = ("native", "native-tls", "hypercorn")


@pytest.fixture(scope="session")
def backend_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The native-tls backend's certificate: one for the session (making one takes a
    second on a loaded machine, and the servers only read it)."""
    return _make_certificate(tmp_path_factory.mktemp("backend-tls"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Every real-socket test runs once per backend: native, native over TLS, hypercorn."""
    name: str = request.param
    if name == "native-tls":
        certificate: tuple[Path, Path] = request.getfixturevalue("backend_certificate")
        return Backend(name, "native", certificate)
    return Backend(name, name)
