"""The client side of an in-memory WebSocket connection, and what it raises."""

from __future__ import annotations

import json
import math
from typing import Any

import trio

from .._datastructures import Headers
from .._types import ASGIApp, Message, Scope

__all__ = ["AppTask", "HandshakeRejected", "ServerClosed", "TestWebSocket"]


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


class AppTask:
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

    async def app_receive(self) -> Message:
        """The App's ASGI ``receive`` for this connection (called by the TestClient)."""
        return await self._to_app.receive()

    async def app_send(self, message: Message) -> None:
        """The App's ASGI ``send`` for this connection (called by the TestClient)."""
        kind = message["type"]
        if self._client_closed and kind == "websocket.send":
            raise OSError("the test client has closed this WebSocket")
        await self._from_app_send.send(message)

    # -- the client's side ---------------------------------------------------------------

    async def _next_from_app(self, task: AppTask, waiting_for: str) -> Message:
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

    async def handshake(self, task: AppTask) -> None:
        """Send the connect event and wait for the App's answer (called by the TestClient)."""
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
