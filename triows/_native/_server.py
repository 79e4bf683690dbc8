"""The native server: listening, dispatching connections, lifespan, shutdown."""

from __future__ import annotations

import logging
import math
import ssl
from typing import Any, cast
from urllib.parse import unquote

import h11
import trio

from .._app import App
from .._connection._transport import ClientGone, HandshakeRequest
from .._lifespan import Lifespan
from .._serving._logs import access_line, client_address, logger
from .._types import Scope
from ._connection import NativeConnection
from ._http import (
    _HEAD_END,
    _UPGRADE_WEBSOCKET,
    MAX_HEAD_SIZE,
    _HTTPExchange,
    _next_h11_event,
    _plain_response,
    _read_head,
)
from ._protocol import handshake
from ._tls import TLSSocket, server_context
from ._writer import _send_all

access_logger = logging.getLogger("triows.access")


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
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        #: TLS, when serving https/wss.
        self.ssl_context = ssl_context
        self.host = host
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.handshake_timeout = handshake_timeout
        self.access_log = access_log
        self.state: dict[str, Any] = {}
        self.port = 0
        self._live: set[NativeConnection] = set()
        #: Where connections (and their short-lived helper tasks) run, once serving.
        self.nursery: trio.Nursery | None = None
        #: HTTP connections waiting for their next request, and whether we stop.
        self._waiting_http: set[trio.CancelScope] = set()
        self._stopping = False

    def log_access(self, conn: NativeConnection, status: int) -> None:
        if self.access_log:
            access_line(conn.request.client, "WebSocket", conn.target, status)

    # -- per connection -------------------------------------------------------------------

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one TCP connection (run by ``trio.serve_listeners``)."""
        tls = None if self.ssl_context is None else TLSSocket(stream, self.ssl_context)
        # Over TLS, the SSLStream behind the socket methods the server calls.
        sock = stream.socket if tls is None else cast(trio.socket.SocketType, tls)
        try:
            head = bytearray()
            conn: NativeConnection | None = None
            with trio.move_on_after(self.handshake_timeout) as waiting:
                complete = await _read_head(sock, head)
                if complete is None:
                    await _send_all(sock, _plain_response(431, "request head too large\n"))
                    return
                if not complete:
                    return  # the client left before sending a request
                end = head.find(_HEAD_END)
                if _UPGRADE_WEBSOCKET.search(head, 0, end) is not None:
                    conn = await self._handshake(sock, bytes(head))
                    if conn is None:
                        return
            if waiting.cancelled_caught:
                return  # slowloris: no complete request head in time
            if conn is None:
                await self._serve_http(sock, head)
            else:
                await self._serve_websocket(conn)
        except ClientGone:
            pass
        except Exception:
            # Never let one connection take the server down.
            logger.exception("unexpected error serving a connection")
        finally:
            if tls is not None:
                await tls.aclose()
            sock.close()

    async def _handshake(
        self, sock: trio.socket.SocketType, head: bytes
    ) -> NativeConnection | None:
        handshaken = await handshake(sock, head, self.max_message_size)
        if handshaken is None:
            return None
        protocol, ws_request, response, early = handshaken
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in ws_request.headers.raw_items()
        ]
        request = HandshakeRequest.from_target(
            ws_request.path,
            headers,
            client=_address(sock, peer=True),
            server=_address(sock, peer=False),
            scheme="ws" if self.ssl_context is None else "wss",
            state=dict(self.state),
        )
        return NativeConnection(
            self,
            sock,
            protocol,
            request,
            response,
            target=ws_request.path,
            early=early,
            plain=self.ssl_context is None,
        )

    async def _serve_websocket(self, conn: NativeConnection) -> None:
        """Run the App's WebSocket entry point next to the connection's reader task."""
        async with trio.open_nursery() as nursery:
            conn.start(nursery)
            try:
                error = await self.app.serve_websocket(conn)
                if error is not None:
                    logger.error(
                        "error in the view serving WebSocket %s for %s",
                        conn.request.path,
                        client_address(conn.request.client),
                        exc_info=error,
                    )
                await conn.finish()
            finally:
                self.forget(conn)
                nursery.cancel_scope.cancel()

    def opened(self, conn: NativeConnection) -> None:
        """An accepted connection: from now on the keepalive loop pings it."""
        if self.ping_interval is not None:
            conn.next_ping = trio.current_time() + self.ping_interval
            self._live.add(conn)

    def forget(self, conn: NativeConnection) -> None:
        """A connection the keepalive loop no longer pings (its client has gone)."""
        self._live.discard(conn)

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

    async def _serve_http(self, sock: trio.socket.SocketType, head: bytearray) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
        conn.receive_data(bytes(head))
        kept_alive = False
        while True:
            if kept_alive and self._stopping:
                return  # shutting down: no new request on a kept-alive connection
            kept_alive = True
            try:
                with trio.move_on_after(self.handshake_timeout) as waiting:
                    # Until a request starts, shutdown may close the connection.
                    self._waiting_http.add(waiting)
                    try:
                        event = await _next_h11_event(conn, sock)
                    finally:
                        self._waiting_http.discard(waiting)
                if waiting.cancelled_caught or not isinstance(event, h11.Request):
                    return
            except h11.RemoteProtocolError as exc:
                with trio.move_on_after(1):
                    await _send_all(sock, _plain_response(exc.error_status_hint, f"{exc}\n"))
                return
            exchange = _HTTPExchange(conn, sock)
            scope = self._http_scope(event, sock)
            try:
                await self.app(scope, exchange.receive, exchange.send)
            except ClientGone:
                return
            except Exception:
                logger.exception("triows: error in the App serving HTTP %s", scope["path"])
                if not exchange.complete and conn.our_state is h11.SEND_RESPONSE:
                    await _send_all(sock, _plain_response(500, "internal server error\n"))
                return
            if not exchange.complete:
                return
            if self.access_log:
                access_logger.info(
                    "%s %s %s %d",
                    scope["client"],
                    event.method.decode(),
                    event.target.decode(),
                    exchange.status,
                )
            # A request body the App did not read: skip what has already arrived
            # (a GET's end of message); one still on the wire ends the connection.
            try:
                while conn.their_state is h11.SEND_BODY:
                    if conn.next_event() is h11.NEED_DATA:
                        return
            except h11.RemoteProtocolError:
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

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
        backlog: int,
        stop: trio.Event,
        shutdown_timeout: float,
        task_status: trio.TaskStatus[int],
    ) -> None:
        async with trio.open_nursery() as lifespan_nursery:
            lifespan = Lifespan(self.app, self.state, "the App")
            await lifespan.startup(lifespan_nursery)
            try:
                listeners = await trio.open_tcp_listeners(port, host=self.host, backlog=backlog)
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
                        logger.exception("the App's shutdown failed")
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
    certfile: str | None = None,
    keyfile: str | None = None,
    backlog: int = 1024,
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

    With ``certfile`` (and ``keyfile``, unless the key is in ``certfile``) every
    connection is TLS (https/wss).  ``backlog`` is the listening socket's accept
    queue.

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
        ssl_context=None if certfile is None else server_context(certfile, keyfile),
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        # The server runs shielded: cancelling serve_native() must become a
        # graceful shutdown, not an abrupt cancel of every connection.
        server_scope = trio.CancelScope(shield=True)

        async def run_server(task_status: trio.TaskStatus[int]) -> None:
            with server_scope:
                await server.run(port, backlog, stop, shutdown_timeout, task_status)

        bound: int = await nursery.start(run_server)
        task_status.started(bound)
        try:
            await trio.sleep_forever()
        finally:
            stop.set()
            server_scope.deadline = trio.current_time() + 2 * shutdown_timeout + 1
