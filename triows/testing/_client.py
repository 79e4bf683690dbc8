"""The in-memory TestClient: the App called as an ASGI server would call it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import attrs
import trio

from .._datastructures import Headers
from .._lifespan import Lifespan
from .._types import ASGIApp, Message, Scope
from ._websocket import AppTask, TestWebSocket

__all__ = ["TestClient", "TestResponse"]


@attrs.frozen
class TestResponse:
    """An HTTP response received by :meth:`TestClient.request`."""

    __test__ = False  # not a pytest test class

    status: int
    headers: Headers
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


def _split(path: str, query: Mapping[str, Any] | None) -> tuple[str, bytes]:
    path, _, query_string = path.partition("?")
    if query:
        extra = urlencode({k: str(v) for k, v in query.items()})
        query_string = f"{query_string}&{extra}" if query_string else extra
    return path, query_string.encode()


def _raw_headers(
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None,
) -> list[tuple[bytes, bytes]]:
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items]
    if not any(name == b"host" for name, _ in raw):
        raw.insert(0, (b"host", b"testserver"))
    return raw


class TestClient:
    """An in-memory client for an App (or any ASGI app).

    ``async with TestClient(app) as client`` runs the App's lifespan (startup and
    shutdown, so app-scoped providers exist); without ``async with`` the client
    still works for apps that need no startup.
    """

    __test__ = False

    def __init__(
        self, app: ASGIApp, *, timeout: float = 5.0, raise_server_exceptions: bool = True
    ) -> None:
        self.app = app
        self.timeout = timeout
        self.raise_server_exceptions = raise_server_exceptions
        self._nursery_manager: Any = None
        #: The App's lifespan (triows' one lifespan driver), while the client is open.
        self._lifespan: Lifespan | None = None
        #: The lifespan's state: each request's scope gets a shallow copy (ASGI).
        self._state: dict[str, Any] = {}

    async def __aenter__(self) -> TestClient:
        self._nursery_manager = trio.open_nursery()
        nursery = await self._nursery_manager.__aenter__()
        self._lifespan = Lifespan(self.app, self._state, "the App", timeout=self.timeout)
        try:
            await self._lifespan.startup(nursery)
        except BaseException:
            nursery.cancel_scope.cancel()
            await self._nursery_manager.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._lifespan is not None
        try:
            await self._lifespan.shutdown()
        finally:
            await self._nursery_manager.__aexit__(exc_type, exc, tb)

    def _scope(
        self,
        kind: str,
        path: str,
        query: Mapping[str, Any] | None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None,
    ) -> Scope:
        path, query_string = _split(path, query)
        return {
            "type": kind,
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "ws" if kind == "websocket" else "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query_string,
            "root_path": "",
            "headers": _raw_headers(headers),
            "client": ("testclient", 50000),
            "server": ("testserver", 80),
            "state": dict(self._state),
        }

    @asynccontextmanager
    async def websocket_connect(
        self,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        subprotocols: Sequence[str] = (),
    ) -> AsyncIterator[TestWebSocket]:
        """Connect to ``path``; yields a TestWebSocket once the App accepts.

        Raises HandshakeRejected if the App refuses, and, when the block ends, the
        App's own exception if it raised one.  Leaving the block closes the
        connection with 1000 if neither side closed it.
        """
        scope = self._scope("websocket", path, query, headers)
        scope["subprotocols"] = list(subprotocols)
        ws = TestWebSocket(self.timeout)
        scope["extensions"] = {"websocket.http.response": {}}
        task = AppTask()
        error: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(task.run, self.app, scope, ws.app_receive, ws.app_send)
            try:
                await ws.handshake(task)
                yield ws
            except Exception as exc:
                # Raised below, outside the nursery, so tests see it unwrapped.
                error = exc
            finally:
                await ws.close()
                with trio.move_on_after(self.timeout) as waiting:
                    await task.done.wait()
                if waiting.cancelled_caught:
                    nursery.cancel_scope.cancel()
        if error is not None:
            if task.error is not None and task.error is not error and self.raise_server_exceptions:
                raise error from task.error
            raise error
        if waiting.cancelled_caught:
            raise TimeoutError(f"the App's view did not finish within {self.timeout} s")
        if task.error is not None and self.raise_server_exceptions:
            raise task.error

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        body: bytes | str = b"",
    ) -> TestResponse:
        """Send one HTTP request and return the complete response."""
        scope = self._scope("http", path, query, headers)
        scope["method"] = method.upper()
        payload = body.encode() if isinstance(body, str) else body
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": payload, "more_body": False}
            await trio.sleep_forever()
            raise AssertionError  # pragma: no cover

        messages: list[Message] = []

        async def send(message: Message) -> None:
            messages.append(message)

        task = AppTask()
        with trio.fail_after(self.timeout):
            await task.run(self.app, scope, receive, send)
        if task.error is not None and self.raise_server_exceptions:
            raise task.error
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        if start is None:
            raise RuntimeError("the App sent no HTTP response")
        content = b"".join(
            m.get("body", b"") for m in messages if m["type"] == "http.response.body"
        )
        return TestResponse(start["status"], Headers(start.get("headers", ())), content)

    async def get(
        self,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    ) -> TestResponse:
        """Send a GET request."""
        return await self.request("GET", path, query=query, headers=headers)
