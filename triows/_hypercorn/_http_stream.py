"""hypercorn's HTTP stream as triows serves it: the handshake rule and a body timeout.

:class:`TriowsHTTPStream` is built where hypercorn builds an ``HTTPStream``
(see ``_protocols``).  It refuses a request that asks for a WebSocket but that
hypercorn took for plain HTTP (no ``Connection: Upgrade``, not ``GET``), as the
native server does, and it bounds the time a request body may take: hypercorn
times the wait for a request head, never for a body.  Every override calls
hypercorn's method and adds behaviour before or after it.
"""

from __future__ import annotations

from typing import Final

import trio
from hypercorn.protocol.events import Body, EndBody, Request, Response, StreamClosed
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.protocol.ws_stream import WSStream

from .._serving._handshake import BAD_HANDSHAKE, Refusal, asks_for_websocket, refusal

__all__ = ["BODY_TIMEOUT", "HTTP1", "TriowsHTTPStream", "send_refusal"]

#: The HTTP versions whose upgrades the handshake rule checks.
HTTP1 = ("1.0", "1.1")
#: Seconds a request body may take, in all (the native server's default too).
BODY_TIMEOUT: Final = 30.0


async def send_refusal(stream: WSStream | HTTPStream, refused: Refusal) -> None:
    """Answer a refused request as the shared rule says, as hypercorn answers its own."""
    await _answer(stream, refused.status, list(refused.headers))


async def _answer(
    stream: WSStream | HTTPStream, status: int, headers: list[tuple[bytes, bytes]]
) -> None:
    stream.closed = True
    await stream.send(Response(stream_id=stream.stream_id, status_code=status, headers=headers))
    await stream.send(EndBody(stream_id=stream.stream_id))
    # The connection closes, as on the native server (Connection: close).
    await stream.send(StreamClosed(stream_id=stream.stream_id))


def _has_body(request: Request) -> bool:
    for name, value in request.headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


class TriowsHTTPStream(HTTPStream):
    """hypercorn's HTTP stream, with the shared handshake rule and a body timeout."""

    #: Set once the request's body is complete (or the stream ended).
    body_done: trio.Event | None = None

    async def handle(self, event: StreamEvent) -> None:
        if isinstance(event, Request) and not self.closed:
            if event.http_version in HTTP1 and asks_for_websocket(event.headers):
                refused = refusal(event.http_version, event.method.encode("latin-1"), event.headers)
                await send_refusal(self, refused or BAD_HANDSHAKE)
                return
            await super().handle(event)
            if _has_body(event) and not self.closed:
                self.body_done = trio.Event()
                self.task_group.spawn(self._time_the_body, self.body_done)
            return
        if isinstance(event, (EndBody, StreamClosed)) and self.body_done is not None:
            self.body_done.set()
        if isinstance(event, Body) and self.closed:
            return  # the body timed out: the rest is dropped
        await super().handle(event)

    async def _time_the_body(self, done: trio.Event) -> None:
        """408 and the end of the stream if the body is not complete in time (a task)."""
        with trio.move_on_after(BODY_TIMEOUT):
            await done.wait()
            return
        if self.closed:
            return
        await _answer(self, 408, [(b"content-length", b"0"), (b"connection", b"close")])
        # The app reading the body learns the client is gone (http.disconnect).
        if self.app_put is not None:
            await self.app_put({"type": "http.disconnect"})
