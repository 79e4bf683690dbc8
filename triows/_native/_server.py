"""The native server: listening, dispatching connections, lifespan, shutdown."""

from __future__ import annotations

import ssl
from typing import Any, cast

import trio

from .._app import App
from .._connection._pacing import current_pace
from .._connection._transport import ClientGone, HandshakeRequest
from .._lifespan import Lifespan
from .._serving._keepalive import Keepalive
from .._serving._listen import (
    Address,
    accept_sockets_until_cancelled,
    address,
    open_listeners,
    set_stream_options,
)
from .._serving._logs import access_line, client_address, logger
from .._serving._shutdown import FORCE, UNWIND, Shutdown
from ._connection import NativeConnection
from ._head import RequestReader, UpgradeHead
from ._http import BODY_TIMEOUT, HTTPExchange, http_scope
from ._reading import AwayViews
from ._reaper import Served, reap
from ._tls import TLSSocket, server_context
from ._upgrade import handshake


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
        body_timeout: float = BODY_TIMEOUT,
        reuse_port: bool = False,
    ) -> None:
        self.app = app
        #: Listen with SO_REUSEPORT, next to other processes; a drain stops accepting.
        self.reuse_port = reuse_port
        #: Around the accept loop: cancelled to stop accepting.
        self.accepting = trio.CancelScope()
        #: TLS, when serving https/wss.
        self.ssl_context = ssl_context
        self.host = host
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.handshake_timeout = handshake_timeout
        self.access_log = access_log
        self.body_timeout = body_timeout
        self.state: dict[str, Any] = {}
        self.port = 0
        #: One task pings every open WebSocket (triows._serving._keepalive).
        self.keepalive = None if ping_interval is None else Keepalive(ping_interval, ping_timeout)
        #: Views away from receive(): each gets a reader task (triows._native._reading).
        self.away_views = AwayViews()
        #: The trio run's stamp for forced yields: a view's receive() moves it when
        #: it parked (triows._connection._pacing).
        self.pace = current_pace()
        #: Where connections (and their short-lived helper tasks) run, once serving.
        self.nursery: trio.Nursery | None = None
        #: Every connection served, by socket, until it ends (see ``_reaper``).
        self.open: dict[trio.socket.SocketType, Served] = {}
        #: HTTP connections waiting for their next request, and whether we stop.
        self._waiting_http: set[trio.CancelScope] = set()
        self._stopping = False

    def log_access(self, conn: NativeConnection, status: int) -> None:
        if self.access_log:
            access_line(conn.request.client, "GET", conn.request.path, status)

    # -- per connection -------------------------------------------------------------------

    async def handle(self, raw: trio.socket.SocketType, client: Address, server: Address) -> None:
        """Serve one TCP connection: a task of the accept loop (``triows._serving._listen``),
        with the client's address and the server's (None: ask the socket)."""
        tls: TLSSocket | None = None
        sock = raw
        self.open[raw] = None
        try:
            if self.ssl_context is None:
                set_stream_options(raw)
            else:
                # trio's SocketStream sets the same options.
                tls = TLSSocket(trio.SocketStream(raw), self.ssl_context)
                # Over TLS, the SSLStream behind the socket methods the server calls.
                sock = cast(trio.socket.SocketType, tls)
            addresses = (client, _address(raw, peer=False) if server is None else server)
            head = bytearray()
            conn: NativeConnection | None = None
            http: RequestReader | None = None
            with trio.move_on_after(self.handshake_timeout) as waiting:
                # HTTP's rules for every head, a handshake's too (see _http).
                reader = RequestReader(sock, head)
                if not await reader.next_request():
                    return  # the client left, or its head was refused (answered)
                if reader.upgrade is None:
                    http = self.open[raw] = reader
                else:
                    conn = await self._handshake(sock, reader.upgrade, bytes(head), addresses)
                    del reader, head  # a WebSocket keeps no HTTP state, nor its request head
                    if conn is None:
                        return
                    self.open[raw] = conn
            if waiting.cancelled_caught:
                return  # slowloris: no complete request head in time
            if conn is None:
                assert http is not None
                await self._serve_http(http, addresses)
            else:
                await self._serve_websocket(conn)
        except ClientGone:
            pass
        except Exception:
            # Never let one connection take the server down.
            logger.exception("unexpected error serving a connection")
        finally:
            del self.open[raw]
            if tls is not None:
                await tls.aclose()
            sock.close()

    async def _handshake(
        self,
        sock: trio.socket.SocketType,
        head_request: UpgradeHead,
        head: bytes,
        addresses: tuple[Address, Address],
    ) -> NativeConnection | None:
        handshaken = await handshake(sock, head_request, head, self.max_message_size)
        if handshaken is None:
            return None
        request = HandshakeRequest.from_target(
            handshaken.target,
            head_request.headers,
            client=addresses[0],
            server=addresses[1],
            scheme="ws" if self.ssl_context is None else "wss",
            state=dict(self.state),
        )
        return NativeConnection(
            self,
            sock,
            handshaken.protocol,
            request,
            handshaken.answer,
            target=handshaken.target,
            early=handshaken.early,
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
                if nursery.child_tasks:  # (a cancel costs: trio records who cancelled)
                    nursery.cancel_scope.cancel()

    def opened(self, conn: NativeConnection) -> None:
        """An accepted connection: from now on the keepalive pings it."""
        if self.keepalive is not None:
            self.keepalive.opened(conn)

    def forget(self, conn: NativeConnection) -> None:
        """A connection the keepalive no longer pings (its client has gone)."""
        if self.keepalive is not None:
            self.keepalive.forget(conn)

    async def _keepalive(self, nursery: trio.Nursery, interval: float) -> None:
        """The one keepalive task, shared with hypercorn's (``triows._serving._keepalive``).

        Pings and drops run in ``nursery``; ``interval`` is the keepalive's.
        """
        assert self.keepalive is not None and self.keepalive.interval == interval
        await self.keepalive.run(nursery)

    async def _serve_http(self, http: RequestReader, addresses: tuple[Address, Address]) -> None:
        """Serve the request just read by ``http``, and the next ones (keep-alive)."""
        sock = http.sock
        while True:
            exchange = HTTPExchange(http.conn, sock, self.body_timeout)
            request = http.request
            scheme = "http" if self.ssl_context is None else "https"
            scope = http_scope(request, scheme, addresses, dict(self.state))
            await exchange.run(self.app, scope)
            if not exchange.complete:
                return
            if self.access_log:
                access_line(scope["client"], scope["method"], scope["path"], exchange.status)
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

    # -- lifetime -------------------------------------------------------------------------

    async def run(
        self,
        port: int,
        backlog: int,
        stop: trio.Event,
        shutdown: Shutdown,
        task_status: trio.TaskStatus[int],
    ) -> None:
        """Serve until ``stop`` is set, then shut down in the stages of ``shutdown``.

        Every task is a child of this one: the App's lifespan, the connections
        (in :attr:`nursery`), the accept loop and the keepalive.
        """
        lifespan = Lifespan(self.app, self.state, "the App")
        async with trio.open_nursery() as lifespan_nursery:
            try:
                await lifespan.startup(lifespan_nursery)
                listeners = await open_listeners(self.host, port, backlog, self.reuse_port)
                self.port = listeners[0].socket.getsockname()[1]
                await self._serve(listeners, stop, shutdown, task_status)
            finally:
                # Once every connection has ended: the App's shutdown, within the
                # bound (none is left if a view overran it: the App's lifespan is
                # then cancelled, and unwinds its hub and app.nursery in order).
                shutdown.begin()
                with trio.CancelScope(shield=True):
                    ends = min(trio.current_time() + shutdown.timeout, shutdown.bound - UNWIND)
                    with shutdown.stage(ends):
                        try:
                            await lifespan.shutdown()
                        except RuntimeError:
                            logger.exception("the App's shutdown failed")
                lifespan_nursery.cancel_scope.cancel()

    def _stop_accepting(self) -> None:
        """A drain began: the other processes on this port take the new connections."""
        logger.info("draining: stopped accepting connections on port %d", self.port)
        self.accepting.cancel()

    async def _serve(
        self,
        listeners: list[trio.SocketListener],
        stop: trio.Event,
        shutdown: Shutdown,
        task_status: trio.TaskStatus[int],
    ) -> None:
        """Accept connections until ``stop``; then close them (``_reaper``), wait for them."""
        async with trio.open_nursery() as reaping:
            async with trio.open_nursery() as connections:
                self.nursery = connections
                try:
                    async with trio.open_nursery() as services:
                        if self.ping_interval is not None:
                            services.start_soon(self._keepalive, connections, self.ping_interval)
                        services.start_soon(self.away_views.run)
                        accept = accept_sockets_until_cancelled
                        services.start_soon(
                            accept, self.handle, listeners, connections, self.accepting
                        )
                        if self.reuse_port:
                            self.app.websockets.on_drain.append(self._stop_accepting)
                        task_status.started(self.port)
                        await stop.wait()
                        # Close every WebSocket with 1001 (new ones get 503 meanwhile),
                        # then stop listening.
                        shutdown.begin()
                        with shutdown.stage(shutdown.deadline):
                            await self.app.close_connections(shutdown.timeout)
                        services.cancel_scope.cancel()
                    # Idle keep-alive connections close at once, as on hypercorn.
                    self._stopping = True
                    for waiting in list(self._waiting_http):
                        waiting.cancel()
                finally:
                    if self._stop_accepting in self.app.websockets.on_drain:
                        self.app.websockets.on_drain.remove(self._stop_accepting)
                    # What is still open is cancelled, then closed from the outside.
                    shutdown.begin()
                    reaping.start_soon(reap, self.open, shutdown, connections, self.app.websockets)
            reaping.cancel_scope.cancel()  # every connection has ended


def _address(sock: trio.socket.SocketType, *, peer: bool) -> Address:
    try:
        return address(sock.getpeername() if peer else sock.getsockname())
    except OSError:
        return None


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
    body_timeout: float = BODY_TIMEOUT,
    reuse_port: bool = False,
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
    queue.  With ``reuse_port`` the server listens with ``SO_REUSEPORT``, next to
    other processes on the same port, and stops accepting when the App drains
    (``App.drain()``): the others take the new connections.

    Every request head, a handshake's too, follows the HTTP rules of ``_http``
    (at most ``MAX_HEAD_SIZE`` bytes, CRLF line ends, one Host header).  A
    request body gets ``body_timeout`` seconds of waiting for its bytes, in
    all: past it the client gets 408 and the connection closes.

    Cancellation is a graceful shutdown, within ``2 * shutdown_timeout + 1``
    seconds: open WebSockets are closed with 1001 (views cancelled), new ones are
    refused with 503, listening stops; views get ``shutdown_timeout`` seconds to
    end, then their connections are cancelled and, 0.5 s later, closed (a
    WebSocket gets 1001 if it has not yet); then the App's lifespan shutdown runs.
    A trio task cannot be killed: a view that shields itself from cancellation
    keeps running after its connection is closed, and this function returns only
    once it has (one WARNING names it at the bound; ``triows run`` exits instead).
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
        body_timeout=body_timeout,
        reuse_port=reuse_port,
    )
    stop = trio.Event()
    shutdown = Shutdown(shutdown_timeout)
    force = FORCE.get()

    async def run_server(task_status: trio.TaskStatus[int]) -> None:
        # Shielded: cancelling serve_native() must become a graceful shutdown in
        # stages (triows._serving._shutdown), not an abrupt cancel of everything.
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as watching:
                if force is not None:
                    watching.start_soon(shutdown.watch, force)
                await server.run(port, backlog, stop, shutdown, task_status)
                watching.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        try:
            bound: int = await nursery.start(run_server)
            task_status.started(bound)
            await trio.sleep_forever()
        finally:
            shutdown.begin()
            stop.set()
