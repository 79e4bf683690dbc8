"""Testing helpers: an in-memory, trio-native client for your App.

No sockets and no server: the client calls the App as an ASGI server would, so
tests are fast and deterministic.  Every wait has a timeout, so a broken view
fails the test instead of hanging it::

    from triows.testing import TestClient

    async def test_echo():
        async with TestClient(app) as client:          # runs startup/shutdown
            async with client.websocket_connect("/echo") as ws:
                await ws.send_text("hi")
                assert await ws.receive_text() == "You said: hi"

Exceptions raised by the App are re-raised in the test when the connection or
request ends (``raise_server_exceptions=False`` turns that off).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import attrs
import trio

from ._datastructures import Headers
from ._types import ASGIApp, Message, Scope

__all__ = [
    "HandshakeRejected",
    "LiveServer",
    "ServerClosed",
    "TestClient",
    "TestResponse",
    "TestWebSocket",
    "live_server",
]


class HandshakeRejected(Exception):
    """The App refused the WebSocket handshake with an HTTP response."""

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        super().__init__(f"handshake refused with HTTP {status}: {body[:200]!r}")
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class ServerClosed(Exception):
    """The App closed the WebSocket; ``code`` and ``reason`` are what it sent."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"server closed the connection with code {code} {reason!r}")
        self.code = code
        self.reason = reason


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


class _AppTask:
    """Runs one ASGI call of the App and remembers how it ended."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: BaseException | None = None

    async def run(self, app: ASGIApp, scope: Scope, receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()


class TestWebSocket:
    """The client side of an in-memory WebSocket connection."""

    __test__ = False

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._to_app_send, self._to_app = trio.open_memory_channel[Message](math.inf)
        self._from_app_send, self._from_app = trio.open_memory_channel[Message](math.inf)
        self._client_closed = False
        self._server_close: tuple[int, str] | None = None
        self.subprotocol: str | None = None
        self.accept_headers: Headers = Headers()

    # -- the App's side ------------------------------------------------------------------

    async def _app_receive(self) -> Message:
        return await self._to_app.receive()

    async def _app_send(self, message: Message) -> None:
        kind = message["type"]
        if self._client_closed and kind == "websocket.send":
            raise OSError("the test client has closed this WebSocket")
        await self._from_app_send.send(message)

    # -- the client's side ---------------------------------------------------------------

    async def _next_from_app(self, task: _AppTask, waiting_for: str) -> Message:
        with trio.move_on_after(self._timeout):
            async with trio.open_nursery() as nursery:
                result: list[Message] = []

                async def get() -> None:
                    result.append(await self._from_app.receive())
                    nursery.cancel_scope.cancel()

                async def ended() -> None:
                    await task.done.wait()
                    await trio.lowlevel.checkpoint()  # let a final message land first
                    nursery.cancel_scope.cancel()

                nursery.start_soon(get)
                nursery.start_soon(ended)
            if result:
                return result[0]
            if task.error is not None:
                raise task.error
            raise RuntimeError(f"the App finished without sending {waiting_for}")
        raise TimeoutError(f"no {waiting_for} from the App within {self._timeout} s")

    async def _handshake(self, task: _AppTask) -> None:
        await self._to_app_send.send({"type": "websocket.connect"})
        message = await self._next_from_app(task, "handshake response")
        kind = message["type"]
        if kind == "websocket.accept":
            self.subprotocol = message.get("subprotocol")
            self.accept_headers = Headers(message.get("headers") or ())
            return
        if kind == "websocket.close":
            raise HandshakeRejected(403, Headers(), b"")
        if kind == "websocket.http.response.start":
            body = b""
            while True:
                part = await self._next_from_app(task, "response body")
                body += part.get("body", b"")
                if not part.get("more_body", False):
                    break
            raise HandshakeRejected(message["status"], Headers(message.get("headers", ())), body)
        raise RuntimeError(f"the App sent {kind!r} during the handshake")

    async def _receive(self) -> Message:
        if self._server_close is not None:
            raise ServerClosed(*self._server_close)
        with trio.fail_after(self._timeout):
            message = await self._from_app.receive()
        if message["type"] == "websocket.close":
            self._server_close = (int(message.get("code", 1000)), message.get("reason") or "")
            raise ServerClosed(*self._server_close)
        return message

    async def receive(self) -> str | bytes:
        """The next message: ``str`` for text frames, ``bytes`` for binary ones.

        Raises ServerClosed once the App has closed, TimeoutError after the timeout.
        """
        message = await self._receive()
        text = message.get("text")
        return text if text is not None else bytes(message.get("bytes") or b"")

    async def receive_text(self) -> str:
        message = await self._receive()
        if message.get("text") is None:
            raise AssertionError(f"expected a text message, got {message!r}")
        return str(message["text"])

    async def receive_bytes(self) -> bytes:
        message = await self._receive()
        if message.get("bytes") is None:
            raise AssertionError(f"expected a binary message, got {message!r}")
        return bytes(message["bytes"])

    async def receive_json(self) -> Any:
        message = await self._receive()
        return json.loads(message.get("text") or message.get("bytes") or b"")

    async def wait_closed(self) -> int:
        """Wait until the App closes the connection (skipping messages); return the code."""
        while True:
            try:
                await self._receive()
            except ServerClosed as closed:
                return closed.code

    @property
    def close_code(self) -> int | None:
        """The code the App closed with, once seen."""
        return None if self._server_close is None else self._server_close[0]

    async def send_text(self, data: str) -> None:
        await self._send({"type": "websocket.receive", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        await self._send({"type": "websocket.receive", "bytes": data})

    async def send_json(self, data: Any) -> None:
        await self._send({"type": "websocket.receive", "text": json.dumps(data)})

    async def _send(self, message: Message) -> None:
        if self._client_closed:
            raise RuntimeError("send after close() on the test client")
        await self._to_app_send.send(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Leave: the App sees a disconnect with ``code`` (e.g. 1006 for a dropped link)."""
        if not self._client_closed:
            self._client_closed = True
            await self._to_app_send.send(
                {"type": "websocket.disconnect", "code": code, "reason": reason}
            )


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
        self._lifespan_send: trio.MemorySendChannel[Message] | None = None
        self._lifespan_events: trio.MemoryReceiveChannel[Message] | None = None
        self._nursery_manager: Any = None
        self._lifespan_task: _AppTask | None = None
        #: The lifespan's state: each request's scope gets a shallow copy (ASGI).
        self._state: dict[str, Any] = {}

    async def __aenter__(self) -> TestClient:
        self._nursery_manager = trio.open_nursery()
        nursery = await self._nursery_manager.__aenter__()
        to_app_send, to_app = trio.open_memory_channel[Message](math.inf)
        from_app_send, from_app = trio.open_memory_channel[Message](math.inf)
        self._lifespan_send, self._lifespan_events = to_app_send, from_app
        task = self._lifespan_task = _AppTask()
        nursery.start_soon(
            task.run,
            self.app,
            {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self._state},
            to_app.receive,
            from_app_send.send,
        )
        await to_app_send.send({"type": "lifespan.startup"})
        try:
            await self._lifespan_reply("lifespan.startup")
        except BaseException:
            await self._nursery_manager.__aexit__(None, None, None)
            raise
        return self

    async def _lifespan_reply(self, stage: str) -> None:
        assert self._lifespan_events is not None and self._lifespan_task is not None
        with trio.fail_after(self.timeout):
            message = await self._lifespan_events.receive()
        if message["type"] == f"{stage}.failed":
            raise RuntimeError(f"{stage} failed: {message.get('message', '')}")
        if message["type"] != f"{stage}.complete":
            raise RuntimeError(f"{stage}: unexpected {message['type']!r}")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._lifespan_send is not None
        try:
            await self._lifespan_send.send({"type": "lifespan.shutdown"})
            await self._lifespan_reply("lifespan.shutdown")
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
        task = _AppTask()
        error: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(task.run, self.app, scope, ws._app_receive, ws._app_send)
            try:
                await ws._handshake(task)
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

        task = _AppTask()
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


@attrs.frozen
class LiveServer:
    """A real server started by :func:`live_server`."""

    host: str
    port: int

    def url(self, path: str = "/", scheme: str = "ws") -> str:
        """The URL of ``path`` on this server (``ws://127.0.0.1:PORT/path``)."""
        return f"{scheme}://{self.host}:{self.port}{path}"


@asynccontextmanager
async def live_server(
    app: Any, *, host: str = "127.0.0.1", **serve_options: Any
) -> AsyncIterator[LiveServer]:
    """Serve ``app`` with :func:`triows.serve` on a free loopback port for a block.

    Leaving the block shuts the server down gracefully (clients get 1001) and
    waits for it to stop.  Use a real client such as trio-websocket against
    ``server.url("/path")``.  ``serve_options`` go to ``serve()``; ``gc_freeze``
    defaults to False here (a test process starts many servers, and each freeze
    costs a full garbage collection).
    """
    from ._server import serve

    serve_options.setdefault("gc_freeze", False)

    error: Exception | None = None
    async with trio.open_nursery() as nursery:
        server_scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[int]) -> None:
            with server_scope:
                await serve(app, host=host, port=0, task_status=task_status, **serve_options)

        port: int = await nursery.start(run)
        try:
            yield LiveServer(host, port)
        except Exception as exc:
            # Raised below, outside the nursery, so tests see it unwrapped.
            error = exc
        finally:
            server_scope.cancel()
    if error is not None:
        raise error
