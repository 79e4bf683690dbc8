"""The native server: listening, dispatching connections, lifespan, shutdown."""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import unquote

import h11
import trio
from websockets.datastructures import Headers as WSHeaders
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.http11 import Request as WSRequest
from websockets.http11 import Response as WSResponse
from websockets.protocol import Protocol

from .._app import App
from .._broadcast import BATCH_EXTENSION
from .._exceptions import WebSocketDisconnect
from .._lifespan import Lifespan
from .._transport import DEPARTURE_EXTENSION
from .._types import Scope
from ._connection import SEND_NOW_OFFER, _ServerProtocol, _WebSocketConnection, logger
from ._http import (
    _HEAD_END,
    BODY_TIMEOUT,
    HTTPExchange,
    RequestReader,
    _plain_response,
    _reason,
    wants_websocket,
)
from ._writer import ClientGone, _send_all

#: permessage-deflate, negotiated when the client offers it (browsers do), as on
#: hypercorn; websockets' default settings: 4 KiB windows (12 bits) and memLevel 5,
#: about 50 KiB of zlib state per compressed connection (tracemalloc) where zlib's
#: defaults (15 bits, memLevel 8) take about 300 KiB.
COMPRESSION = enable_server_permessage_deflate(None)

access_logger = logging.getLogger("triows.access")


# websockets logs "connection open/closed" at INFO for every connection; that is an
# access log, which triows controls itself (access_log=True).
_protocol_logger = logging.getLogger("triows.native.protocol")
_protocol_logger.setLevel(logging.WARNING)


class _NativeServer:
    def __init__(
        self,
        app: App,
        *,
        host: str,
        max_message_size: int,
        ping_interval: float | None,
        ping_timeout: float,
        handshake_timeout: float,
        access_log: bool,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self.app = app
        self.host = host
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.handshake_timeout = handshake_timeout
        self.access_log = access_log
        self.body_timeout = body_timeout
        self.state: dict[str, Any] = {}
        self.port = 0
        self._live: set[_WebSocketConnection] = set()
        #: Where connections (and their short-lived helper tasks) run, once serving.
        self.nursery: trio.Nursery | None = None
        #: HTTP connections waiting for their next request, and whether we stop.
        self._waiting_http: set[trio.CancelScope] = set()
        self._stopping = False

    def log_access(self, conn: _WebSocketConnection, status: int) -> None:
        if self.access_log:
            access_logger.info("%s WebSocket %d", conn.client, status)

    # -- per connection -------------------------------------------------------------------

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one TCP connection (run by ``trio.serve_listeners``)."""
        sock = stream.socket
        try:
            head = bytearray()
            conn: _WebSocketConnection | None = None
            http: RequestReader | None = None
            with trio.move_on_after(self.handshake_timeout) as waiting:
                # HTTP's rules for every head, a handshake's too (see _http).
                reader = RequestReader(sock, head)
                if not await reader.next_request():
                    return  # the client left, or its head was refused (answered)
                if not wants_websocket(reader.request):
                    http = reader
                else:
                    del reader  # a WebSocket keeps no HTTP state
                    conn = await self._handshake(sock, bytes(head))
                    if conn is None:
                        return
            if waiting.cancelled_caught:
                return  # slowloris: no complete request head in time
            if conn is None:
                assert http is not None
                await self._serve_http(http)
            else:
                await self._serve_websocket(conn)
        except ClientGone:
            pass
        except Exception:
            # Never let one connection take the server down.
            logger.exception("triows: unexpected error serving a connection")
        finally:
            sock.close()

    async def _handshake(
        self, sock: trio.socket.SocketType, head: bytes
    ) -> _WebSocketConnection | None:
        protocol = _ServerProtocol(
            extensions=COMPRESSION, max_size=self.max_message_size, logger=_protocol_logger
        )
        protocol.receive_data(head)
        events = protocol.events_received()
        request = events[0] if events else None
        if not isinstance(request, WSRequest):
            # websockets already wrote 414/431 for an oversized head; 400 otherwise.
            writes = b"".join(protocol.data_to_send())
            if not writes.startswith(b"HTTP/"):
                writes = _plain_response(400, "malformed WebSocket handshake\n")
            await _send_all(sock, writes)
            return None
        response = protocol.accept(request)
        if response.status_code != 101:
            # Not a valid handshake (missing key, wrong version, not GET): websockets'
            # own 400/405/426 answer, without bothering the App.
            if [v.strip() for v in request.headers.get_all("Sec-WebSocket-Version")] not in (
                [],
                ["13"],
            ):
                # RFC 6455 4.2.2: a wrong version gets the versions this server speaks.
                headers = WSHeaders([("Sec-WebSocket-Version", "13"), ("Connection", "close")])
                headers["Content-Length"] = "0"
                response = WSResponse(426, _reason(426), headers, b"")
            protocol.send_response(response)
            await _send_all(sock, b"".join(protocol.data_to_send()))
            return None
        # Frames a client sent before our answer stay queued in the protocol.
        protocol.events[:0] = events[1:]
        if len(events) == 1 and not protocol.reader.buffer and head.endswith(_HEAD_END):
            # The parser (a generator) keeps the handshake request, headers and
            # all, in its frame for the connection's lifetime.  It consumed
            # exactly the request and waits at the start of the frame loop, so
            # restart it there with the frame parser alone.
            protocol.parser = Protocol.parse(protocol)
            next(protocol.parser)
        return _WebSocketConnection(self, sock, protocol, request, response)

    async def _serve_websocket(self, conn: _WebSocketConnection) -> None:
        scope = self._websocket_scope(conn)
        try:
            await self.app(scope, conn.receive, conn.send)
        except WebSocketDisconnect as exc:
            # A close code the route does not catch: the App re-raises it to the server.
            logger.info("triows: %s %s: %s", conn.client, scope["path"], exc)
        except Exception:
            logger.exception("triows: error in the App serving WebSocket %s", scope["path"])
        finally:
            self._live.discard(conn)
        await conn.finish()

    def opened(self, conn: _WebSocketConnection) -> None:
        """An accepted connection: from now on the keepalive loop pings it."""
        if self.ping_interval is not None:
            conn.next_ping = trio.current_time() + self.ping_interval
            self._live.add(conn)

    @property
    def ping_interval_or_inf(self) -> float:
        return math.inf if self.ping_interval is None else self.ping_interval

    async def _keepalive(self, nursery: trio.Nursery, interval: float) -> None:
        """One task for every connection's keepalive: no task or timer per connection.

        Each connection is pinged ``interval`` seconds after its last pong (or its
        accept) and dropped when the pong is ``ping_timeout`` seconds late, with a
        precision of a quarter of the shorter of the two.
        """
        timeout = self.ping_timeout
        tick = min(interval, timeout) / 4
        while True:
            await trio.sleep(tick)
            now = trio.current_time()
            for conn in list(self._live):
                deadline = conn.ping_deadline
                if deadline is not None:
                    if now >= deadline:
                        self._live.discard(conn)
                        nursery.start_soon(conn.drop_silent_client)
                elif now >= conn.next_ping:
                    conn.ping_deadline = now + timeout
                    nursery.start_soon(conn.ping)

    def _websocket_scope(self, conn: _WebSocketConnection) -> Scope:
        request = conn.request
        assert request is not None
        conn.request = None  # an idle connection keeps only what it needs
        raw_path, _, query = request.path.partition("?")
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.raw_items()
        ]
        subprotocols = [
            item.strip()
            for value in request.headers.get_all("Sec-WebSocket-Protocol")
            for item in value.split(",")
            if item.strip()
        ]
        return {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": unquote(raw_path),
            "raw_path": raw_path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": headers,
            "client": _address(conn.sock, peer=True),
            "server": _address(conn.sock, peer=False),
            "subprotocols": subprotocols,
            "extensions": {
                "websocket.http.response": {},
                BATCH_EXTENSION: SEND_NOW_OFFER,
                DEPARTURE_EXTENSION: conn.departure,
            },
            "state": dict(self.state),
        }

    async def _serve_http(self, http: RequestReader) -> None:
        """Serve the request just read by ``http``, and the next ones (keep-alive)."""
        sock = http.sock
        while True:
            exchange = HTTPExchange(http.conn, sock, self.body_timeout)
            request = http.request
            scope = self._http_scope(request, sock)
            await exchange.run(self.app, scope)
            if not exchange.complete:
                return
            if self.access_log:
                access_logger.info(
                    "%s %s %s %d",
                    scope["client"],
                    request.method.decode(),
                    request.target.decode(),
                    exchange.status,
                )
            if self._stopping or not await http.next_cycle():
                return  # shutting down (no new request on a kept-alive connection), or done
            got = False
            with trio.move_on_after(self.handshake_timeout) as waiting:
                # Until a request starts, shutdown may close the connection.
                self._waiting_http.add(waiting)
                try:
                    got = await http.next_request()
                finally:
                    self._waiting_http.discard(waiting)
            if not got:
                return

    def _http_scope(self, request: h11.Request, sock: trio.socket.SocketType) -> Scope:
        raw_path, _, query = request.target.partition(b"?")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode(),
            "method": request.method.decode(),
            "scheme": "http",
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": [(name, value) for name, value in request.headers],
            "client": _address(sock, peer=True),
            "server": _address(sock, peer=False),
            "state": dict(self.state),
        }

    # -- lifetime -------------------------------------------------------------------------

    async def run(
        self,
        port: int,
        stop: trio.Event,
        shutdown_timeout: float,
        task_status: trio.TaskStatus[int],
    ) -> None:
        async with trio.open_nursery() as lifespan_nursery:
            lifespan = Lifespan(self.app, self.state, "the App")
            await lifespan.startup(lifespan_nursery)
            try:
                listeners = await trio.open_tcp_listeners(port, host=self.host)
                self.port = listeners[0].socket.getsockname()[1]
                async with trio.open_nursery() as connections:
                    self.nursery = connections
                    accepting = trio.CancelScope()

                    async def accept() -> None:
                        with accepting:
                            async with trio.open_nursery() as services:
                                if self.ping_interval is not None:
                                    services.start_soon(
                                        self._keepalive, connections, self.ping_interval
                                    )
                                await trio.serve_listeners(
                                    self.handle, listeners, handler_nursery=connections
                                )

                    connections.start_soon(accept)
                    task_status.started(self.port)
                    await stop.wait()
                    # Close every WebSocket with 1001 (new ones get 503 meanwhile),
                    # then stop listening; connections still open get the rest of
                    # the budget to finish their closing handshake.
                    deadline = trio.current_time() + shutdown_timeout
                    with trio.move_on_at(deadline):
                        await self.app.close_connections(shutdown_timeout)
                    accepting.cancel()
                    # Idle keep-alive connections close at once, as on hypercorn.
                    self._stopping = True
                    for waiting in list(self._waiting_http):
                        waiting.cancel()
                    connections.cancel_scope.deadline = max(deadline, trio.current_time() + 0.1)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(shutdown_timeout):
                    try:
                        await lifespan.shutdown()
                    except RuntimeError:
                        logger.exception("triows: the App's shutdown failed")
            lifespan_nursery.cancel_scope.cancel()


def _address(sock: trio.socket.SocketType, *, peer: bool) -> tuple[str, int] | None:
    try:
        address = sock.getpeername() if peer else sock.getsockname()
    except OSError:
        return None
    return (str(address[0]), int(address[1]))


async def serve_native(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    shutdown_timeout: float = 5.0,
    max_message_size: int = 1024 * 1024,
    ping_interval: float | None = None,
    ping_timeout: float = 20.0,
    handshake_timeout: float = 10.0,
    access_log: bool = False,
    body_timeout: float = BODY_TIMEOUT,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on trio sockets until cancelled (``triows.serve(backend="native")``).

    Runs the App's lifespan startup, then listens on ``host:port`` and passes the
    bound port to ``task_status.started()``.  Each connection is either a
    WebSocket handshake (served by the App's WebSocket routes) or plain HTTP/1.1
    (its HTTP routes, keep-alive included).  A request head must arrive within
    ``handshake_timeout`` seconds.  With ``ping_interval`` the server pings every
    client that often and drops one whose pong does not come within
    ``ping_timeout`` seconds (its view is cancelled).  Messages larger than
    ``max_message_size`` bytes close the connection with 1009.

    Every request head, a handshake's too, follows the HTTP rules of ``_http``
    (at most ``MAX_HEAD_SIZE`` bytes, CRLF line ends, one Host header).  A
    request body gets ``body_timeout`` seconds of waiting for its bytes, in
    all: past it the client gets 408 and the connection closes.

    Cancellation is a graceful shutdown: open WebSockets are closed with 1001
    (views cancelled), new ones are refused with 503, listening stops, and within
    about ``shutdown_timeout`` seconds remaining connections are dropped and the
    App's lifespan shutdown runs.
    """
    server = _NativeServer(
        app,
        host=host,
        max_message_size=max_message_size,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        handshake_timeout=handshake_timeout,
        access_log=access_log,
        body_timeout=body_timeout,
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        # The server runs shielded: cancelling serve_native() must become a
        # graceful shutdown, not an abrupt cancel of every connection.
        server_scope = trio.CancelScope(shield=True)

        async def run_server(task_status: trio.TaskStatus[int]) -> None:
            with server_scope:
                await server.run(port, stop, shutdown_timeout, task_status)

        bound: int = await nursery.start(run_server)
        task_status.started(bound)
        try:
            await trio.sleep_forever()
        finally:
            stop.set()
            server_scope.deadline = trio.current_time() + 2 * shutdown_timeout + 1
