"""Plain HTTP on the native backend: request heads, h11 exchanges, short answers."""

from __future__ import annotations

import functools
import re
from http import HTTPStatus
from typing import Any, Final

import h11
import trio
from websockets.datastructures import Headers as WSHeaders
from websockets.http11 import Response as WSResponse

from .._types import Message
from ._writer import RECV_SIZE, _send_all

#: The largest request head (request line and headers) accepted.
MAX_HEAD_SIZE: Final = 16384
_UPGRADE_WEBSOCKET = re.compile(rb"\r\nupgrade[ \t]*:[ \t]*websocket", re.IGNORECASE)
_HEAD_END = b"\r\n\r\n"


@functools.cache
def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _plain_response(status: int, text: str) -> bytes:
    body = text.encode()
    headers = WSHeaders(
        [
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", "text/plain; charset=utf-8"),
        ]
    )
    return WSResponse(status, _reason(status), headers, body).serialize()


class _HTTPExchange:
    """One HTTP request/response on an h11 connection, as an ASGI receive/send pair."""

    __slots__ = ("_body_done", "_conn", "_responded", "_sock", "_started", "_status")

    def __init__(self, conn: h11.Connection, sock: trio.socket.SocketType) -> None:
        self._conn = conn
        self._sock = sock
        self._body_done = False
        self._started: h11.Response | None = None
        self._responded = trio.Event()
        self._status = 0

    async def receive(self) -> Message:
        if self._body_done:
            await self._responded.wait()
            return {"type": "http.disconnect"}
        conn = self._conn
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await self._sock.recv(RECV_SIZE)
                except (OSError, trio.ClosedResourceError):
                    data = b""
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Data):
                return {"type": "http.request", "body": bytes(event.data), "more_body": True}
            self._body_done = True
            if isinstance(event, h11.EndOfMessage):
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        conn = self._conn
        if kind == "http.response.start":
            self._status = int(message["status"])
            self._started = h11.Response(
                status_code=self._status,
                headers=list(message.get("headers", [])),
                reason=_reason(self._status).encode(),
            )
            return
        if kind != "http.response.body":
            raise ValueError(f"the native backend cannot send an ASGI {kind!r} event here")
        if self._responded.is_set():
            return
        out: list[bytes] = []
        if self._started is not None:
            out.append(conn.send(self._started) or b"")
            self._started = None
        body = bytes(message.get("body", b""))
        if body:
            out.append(conn.send(h11.Data(data=body)) or b"")
        if not message.get("more_body", False):
            out.append(conn.send(h11.EndOfMessage()) or b"")
            self._responded.set()
        await _send_all(self._sock, b"".join(out))

    @property
    def complete(self) -> bool:
        return self._responded.is_set()

    @property
    def status(self) -> int:
        return self._status


async def _read_head(sock: trio.socket.SocketType, head: bytearray) -> bool | None:
    """Read until the end of the request head: True; EOF first: False; too large: None."""
    start = 0
    while True:
        try:
            data = await sock.recv(RECV_SIZE)
        except (OSError, trio.ClosedResourceError):
            return False
        if not data:
            return False
        head += data
        if head.find(_HEAD_END, start) != -1:
            return True
        if len(head) > MAX_HEAD_SIZE:
            return None
        start = max(0, len(head) - 3)


async def _next_h11_event(conn: h11.Connection, sock: trio.socket.SocketType) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await sock.recv(RECV_SIZE)
        except (OSError, trio.ClosedResourceError):
            data = b""
        conn.receive_data(data)
