"""Plain HTTP on the native backend: request heads, h11 exchanges, short answers.

Every request head, a WebSocket handshake's included, is read by
``triows._native._head.RequestReader`` and parsed by h11 (a plain, well-formed
upgrade request by a strict subset of h11's grammar), so the same rules hold
for both:

* a head (request line, headers, blank line) is at most :data:`MAX_HEAD_SIZE`
  bytes however it arrives, in one read or trickled: 431 past it;
* its lines end with CRLF: a bare LF or CR gets 400 as soon as it arrives
  (h11 would take a bare LF; a reader waiting for CRLF CRLF would wait for it
  until the handshake timeout);
* h11's checks: the request line, header syntax, exactly one Host header in
  HTTP/1.1, Content-Length and Transfer-Encoding values (400);
* not both Content-Length and Transfer-Encoding (400; h11 lets
  Transfer-Encoding win and keeps the connection, RFC 9112 6.3 says close).

Bytes that come after a head stay buffered: pipelined requests are served in
order, and a WebSocket handshake takes the whole buffer, so frames sent right
behind it are WebSocket input.

:class:`HTTPExchange` is one request/response for the App.  ``Expect:
100-continue`` is answered when the App first reads the body.  The time spent
waiting for body bytes, summed over the body, is at most ``body_timeout``
seconds.  If the body never comes whole (that timeout, a client that leaves
mid-body, a broken chunked encoding) the App is cancelled inside ``receive()``
(an ``http.disconnect`` would let it take the part for the whole body), the
client gets 408 or 400 when no response has started, and the connection
closes: a DEBUG line, no error.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import unquote

import h11
import trio
from websockets.datastructures import Headers as WSHeaders
from websockets.http11 import Response as WSResponse

from .._connection._transport import ClientGone
from .._serving._date import http_date
from .._types import ASGIApp, Message, Scope
from ._tls import TLSSocket
from ._writer import RECV_SIZE, _send_all

#: The largest request head (request line and headers, blank line included) accepted.
MAX_HEAD_SIZE: Final = 16384
#: Default of ``body_timeout``: seconds of waiting for a request body, in all.
BODY_TIMEOUT: Final = 30.0
#: When the server closes with input unread, how long it reads and drops that input.
CLOSE_LINGER: Final = 2.0
#: Over TLS, how long input must stay quiet before the server closes (see close_gently).
TLS_CLOSE_QUIET: Final = 0.05


logger = logging.getLogger("triows")


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
            ("Date", http_date()),
        ]
    )
    return WSResponse(status, _reason(status), headers, body).serialize()


async def close_gently(sock: trio.socket.SocketType) -> None:
    """Half-close, then drop input until EOF or for :data:`CLOSE_LINGER` seconds.

    Closing a socket with unread input resets the connection, and a reset can
    destroy the answer just sent before the client reads it.  TLS has no
    half-close: a client reading to the end would wait for the server as the
    server waits for it, so over TLS input is dropped only until it has been
    quiet for :data:`TLS_CLOSE_QUIET` seconds.
    """
    try:
        sock.shutdown(trio.socket.SHUT_WR)
    except OSError:
        return
    quiet = TLS_CLOSE_QUIET if isinstance(sock, TLSSocket) else math.inf
    with trio.move_on_after(CLOSE_LINGER), contextlib.suppress(OSError, trio.ClosedResourceError):
        while True:
            with trio.move_on_after(quiet):
                if await sock.recv(RECV_SIZE):
                    continue
            return


async def refuse(sock: trio.socket.SocketType, status: int, text: str) -> None:
    """Answer ``status`` and close: the request is not served."""
    await _send_all(sock, _plain_response(status, text))
    await close_gently(sock)


def http_scope(
    request: h11.Request,
    scheme: str,
    addresses: tuple[tuple[str, int] | None, tuple[str, int] | None],
    state: dict[str, Any],
) -> Scope:
    """The ASGI scope of an HTTP request: ``addresses`` are the client's and the server's."""
    raw_path, _, query = request.target.partition(b"?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.http_version.decode(),
        "method": request.method.decode(),
        "scheme": scheme,
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(name, value) for name, value in request.headers],
        "client": addresses[0],
        "server": addresses[1],
        "state": state,
    }


class HTTPExchange:
    """One HTTP request/response on an h11 connection, as an ASGI receive/send pair."""

    __slots__ = (
        "_body_done",
        "_conn",
        "_failure",
        "_head_only",
        "_received",
        "_responded",
        "_scope",
        "_sock",
        "_started",
        "_status",
        "_wait_left",
    )

    def __init__(
        self, conn: h11.Connection, sock: trio.socket.SocketType, body_timeout: float
    ) -> None:
        self._conn = conn
        self._sock = sock
        self._body_done = False
        #: Body events taken from h11 before the App asked for them.
        self._received: list[object] = []
        #: The response's headers, from ``http.response.start`` until it is written.
        self._started: list[tuple[bytes, bytes]] | None = None
        self._responded = trio.Event()
        self._status = 0
        self._scope = trio.CancelScope()
        self._wait_left = body_timeout
        #: Why the body never came whole: the status to answer (0: none) and a reason.
        self._failure: tuple[int, str] | None = None
        #: A HEAD request: the response's body is not sent (h11 refuses one).
        self._head_only = False

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        """Run the App on this exchange; raises ClientGone if the client left."""
        self._head_only = scope["method"] == "HEAD"
        try:
            with self._scope:
                await app(scope, self.receive, self.send)
        except ClientGone:
            raise
        except Exception:
            # Never let one request take the connection's task down.
            logger.exception("triows: error in the App serving HTTP %s", scope["path"])
            await self._answer_if_silent(500, "internal server error\n")
            return
        if self._failure is not None:
            status, reason = self._failure
            logger.debug(
                "triows: %s %s %s: %s", scope["client"], scope["method"], scope["path"], reason
            )
            if status:
                await self._answer_if_silent(status, reason + "\n")

    async def _answer_if_silent(self, status: int, text: str) -> None:
        if self._conn.our_state is h11.SEND_RESPONSE:
            with contextlib.suppress(ClientGone):
                await _send_all(self._sock, _plain_response(status, text))
                if status != 408:  # a stalled client sends nothing more
                    await close_gently(self._sock)

    async def _fail(self, status: int, reason: str) -> None:
        """The body will not come whole: cancel the App (here, in its receive())."""
        if self._failure is None:
            self._failure = (status, reason)
        self._scope.cancel()
        await trio.lowlevel.checkpoint()

    def _next_event(self) -> object:
        if self._received:
            return self._received.pop(0)
        return self._conn.next_event()

    async def receive(self) -> Message:
        if self._failure is not None:
            await trio.lowlevel.checkpoint()
            return {"type": "http.disconnect"}
        if self._body_done:
            await self._responded.wait()
            return {"type": "http.disconnect"}
        while True:
            try:
                event = self._next_event()
            except h11.RemoteProtocolError as exc:
                await self._fail(exc.error_status_hint, f"bad request body: {exc}")
                return {"type": "http.disconnect"}
            if event is h11.NEED_DATA:
                if not await self._receive_data():
                    return {"type": "http.disconnect"}
                continue
            if isinstance(event, h11.Data):
                return {"type": "http.request", "body": bytes(event.data), "more_body": True}
            self._body_done = True
            if isinstance(event, h11.EndOfMessage):
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.disconnect"}

    async def _receive_data(self) -> bool:
        """Read body bytes into h11; False (App cancelled) if they do not come."""
        conn = self._conn
        if conn.they_are_waiting_for_100_continue:
            interim = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            await _send_all(self._sock, conn.send(interim) or b"")
        data: bytes | None = None
        started = trio.current_time()
        with trio.move_on_after(max(self._wait_left, 0.0)):
            try:
                data = await self._sock.recv(RECV_SIZE)
            except (OSError, trio.ClosedResourceError):
                data = b""
        self._wait_left -= trio.current_time() - started
        if data is None:
            await self._fail(408, "request body timeout")
            return False
        if not data:
            await self._fail(0, "the client left before the end of the request body")
            return False
        conn.receive_data(data)
        return True

    def _whole_body_received(self) -> bool:
        """Whether the request body is all here (taking what arrived for receive())."""
        conn = self._conn
        try:
            while conn.their_state is h11.SEND_BODY:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    return False
                self._received.append(event)
        except h11.RemoteProtocolError:
            return False
        return True

    async def send(self, message: Message) -> None:
        kind = message["type"]
        conn = self._conn
        if kind == "http.response.start":
            self._status = int(message["status"])
            self._started = [
                (bytes(name), bytes(value)) for name, value in message.get("headers", ())
            ]
            return
        if kind != "http.response.body":
            raise ValueError(f"the native backend cannot send an ASGI {kind!r} event here")
        if self._failure is not None:
            raise ClientGone(1006, "the request failed: " + self._failure[1])
        if self._responded.is_set():
            return
        out: list[bytes] = []
        if self._started is not None:
            headers, self._started = self._started, None
            if not self._whole_body_received():
                # The connection closes after this response: the client may stop sending.
                headers.append((b"connection", b"close"))
            if not any(name.lower() == b"date" for name, _ in headers):
                headers.append((b"date", http_date().encode()))
            status = self._status
            response = h11.Response(
                status_code=status, headers=headers, reason=_reason(status).encode()
            )
            out.append(conn.send(response) or b"")
        body = bytes(message.get("body", b""))
        if body and not self._head_only:
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
