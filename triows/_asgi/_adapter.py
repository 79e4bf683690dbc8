"""The ASGI adapter: one WebSocket connection of an ASGI server as a Transport.

This is the only place a receive pump lives.  ASGI reports a client's departure
as a ``websocket.disconnect`` event queued *behind* the messages the app has not
read, so :meth:`ASGITransport.pump` (a task next to the view) reads the server's
events into a small :class:`~triows._serving._inbox.Inbox` and reports the
departure as soon as it reaches that event, even while the view is busy.  A
departure queued behind more unread messages than the inbox holds is seen when
the view reads again, or when a send fails.

Used under ``hypercorn -k trio``, ``serve(backend="hypercorn")`` and the
TestClient.  ASGI servers frame each message themselves, so :meth:`send_now`
always declines and a batch is one ``websocket.send`` per message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import trio

from .._connection._frames import Prepared
from .._connection._transport import ClientGone, DepartureCallback, HandshakeRequest, RawHeaders
from .._serving._inbox import Inbox
from .._types import Message, Receive, Scope, Send

__all__ = ["ASGITransport"]

#: After a send failed, how long to wait for the pump to read the server's
#: disconnect event (which carries the client's close code), when it can.
DEPARTURE_WAIT: Final = 0.5


def request_from_scope(scope: Scope) -> HandshakeRequest:
    """The HandshakeRequest an ASGI WebSocket scope describes."""
    headers = scope.get("headers") or ()
    extensions = [
        item.strip()
        for name, value in headers
        if name == b"sec-websocket-extensions"
        for item in value.decode("latin-1").split(",")
        if item.strip()
    ]
    client = scope.get("client")
    server = scope.get("server")
    return HandshakeRequest(
        path=scope["path"],
        query_string=scope.get("query_string", b""),
        headers=headers,
        client=None if client is None else (str(client[0]), int(client[1])),
        server=None if server is None else (str(server[0]), int(server[1] or 0)),
        scheme=scope.get("scheme") or "ws",
        raw_path=scope.get("raw_path"),
        root_path=scope.get("root_path", ""),
        subprotocols=scope.get("subprotocols") or (),
        extensions=extensions,
        http_version=scope.get("http_version", "1.1"),
        state=scope.setdefault("state", {}),
        scope=scope,
    )


class ASGITransport:
    """A Transport over an ASGI ``(scope, receive, send)`` triple."""

    __slots__ = ("_callback", "_departed", "_departure", "_inbox", "_receive", "_send", "request")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.request = request_from_scope(scope)
        self._receive = receive
        self._send = send
        self._inbox: Inbox[str | bytes] = Inbox()
        self._departure: ClientGone | None = None
        self._departed: trio.Event | None = None
        self._callback: DepartureCallback | None = None

    async def connect(self) -> bool:
        """Read the ``websocket.connect`` event; False if the client left before it."""
        event = await self._receive()
        return bool(event["type"] == "websocket.connect")

    async def pump(self) -> None:
        """Read the server's events into the inbox until the client leaves (a task)."""
        receive = self._receive
        inbox = self._inbox
        try:
            while True:
                event = await receive()
                kind = event["type"]
                if kind == "websocket.receive":
                    text = event.get("text")
                    await inbox.put(text if text is not None else event.get("bytes") or b"")
                elif kind == "websocket.disconnect":
                    self._left(int(event.get("code") or 1005), event.get("reason") or "")
                    return
        finally:
            inbox.close()

    def _left(self, code: int, reason: str) -> None:
        if self._departure is not None:
            return
        self._departure = ClientGone(code, reason)
        if self._departed is not None:
            self._departed.set()
        callback, self._callback = self._callback, None
        if callback is not None:
            callback(code, reason)

    # -- the Transport protocol --------------------------------------------------------

    def on_departure(self, callback: DepartureCallback) -> None:
        self._callback = callback

    async def receive(self) -> str | bytes:
        try:
            return await self._inbox.get()
        except trio.EndOfChannel:
            raise self._departure or ClientGone() from None

    async def send(self, messages: Sequence[Prepared]) -> None:
        send = self._send
        try:
            for prepared in messages:
                data = prepared.data
                if data.__class__ is str:
                    await send({"type": "websocket.send", "text": data})
                else:
                    await send({"type": "websocket.send", "bytes": data})
        except OSError:
            raise await self._after_failed_send() from None

    def send_now(self, messages: Sequence[Prepared]) -> bool:
        return False

    async def accept(self, subprotocol: str | None, headers: RawHeaders) -> None:
        event: Message = {"type": "websocket.accept", "subprotocol": subprotocol}
        if headers:
            event["headers"] = list(headers)
        try:
            await self._send(event)
        except OSError:
            raise await self._after_failed_send() from None

    async def refuse(self, status: int, headers: RawHeaders, body: bytes) -> None:
        extensions = self.request.scope.get("extensions") or {}
        plain = status == 403 and not headers and not body
        try:
            if plain or "websocket.http.response" not in extensions:
                await self._send({"type": "websocket.close", "code": 1000, "reason": ""})
                return
            raw = [*headers, (b"content-length", str(len(body)).encode())]
            await self._send(
                {"type": "websocket.http.response.start", "status": status, "headers": raw}
            )
            await self._send({"type": "websocket.http.response.body", "body": body})
        except OSError:
            self._left(1006, "")

    async def close(self, code: int, reason: str) -> None:
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except OSError:
            self._left(1006, "")

    async def _after_failed_send(self) -> ClientGone:
        """The departure, after the server refused a send (the client has gone).

        ASGI servers raise OSError for a send after the client left, usually
        before the pump has read the disconnect event that carries the client's
        close code: wait briefly for it, unless the pump cannot reach it (a
        full inbox, or no pump running).
        """
        if self._departure is None and not self._inbox.full:
            if self._departed is None:
                self._departed = trio.Event()
            with trio.move_on_after(DEPARTURE_WAIT):
                await self._departed.wait()
        self._left(1006, "")
        assert self._departure is not None
        return self._departure
