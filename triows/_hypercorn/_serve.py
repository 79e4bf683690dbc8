"""``serve_hypercorn``: hypercorn's trio server parts, run by triows' own worker loop."""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

import attrs
import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ASGIFramework, ConnectionState, LifespanState

from .._app import App
from .._serving._keepalive import Keepalive
from .._serving._listen import accept_until_cancelled, reuse_port_sockets
from .._serving._logs import ACCESS_LOG_FORMAT
from ._tcp import Connections, TriowsTCPServer

__all__ = ["TESTED_SERIES", "serve_hypercorn"]

#: The hypercorn release series whose classes triows' subclasses were written against.
TESTED_SERIES = ("0.18.",)


Listener = trio.SocketListener | trio.SSLListener[trio.SocketStream]
Handler = Callable[[Any], Awaitable[object]]


async def serve_hypercorn(
    app: App,
    *,
    host: str,
    port: int,
    shutdown_timeout: float,
    max_message_size: int,
    ping_interval: float | None,
    ping_timeout: float,
    handshake_timeout: float,
    access_log: bool,
    backlog: int,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    **hypercorn_options: Any,
) -> None:
    """Serve ``app`` with hypercorn's HTTP/1.1, HTTP/2 and WebSocket protocols until cancelled.

    ``triows.serve(backend="hypercorn")``: see its docstring for the parameters
    and docs/deployment.md for what differs from ``hypercorn -k trio``.  Other
    keyword arguments set hypercorn ``Config`` attributes.

    The worker loop is triows' (hypercorn's ``worker_serve`` builds its own
    ``TCPServer``): the App's lifespan through hypercorn's ``Lifespan``, an
    accept loop serving each connection with :class:`TriowsTCPServer`, and a
    shutdown that ends within its bound whatever clients do.  Cancellation is
    the graceful shutdown: ``app.close_connections()`` closes every view's
    WebSocket with 1001 (at most ``shutdown_timeout``); the server stops
    accepting and gives its connections ``shutdown_timeout`` more to end, then
    closes the sockets of those left (a write blocked on a client that stopped
    reading then fails) and cancels them; the App's lifespan shutdown gets the
    rest of ``2 * shutdown_timeout + 1`` seconds from the end of the first step.

    ``reuse_port``: listen with ``SO_REUSEPORT`` (sockets bound by triows, given
    to hypercorn as ``fd://`` binds); a drain (``App.drain()``) stops accepting.
    """
    found = version("hypercorn")
    if not found.startswith(TESTED_SERIES):
        raise RuntimeError(
            f"triows.serve(backend='hypercorn') extends hypercorn's classes and was tested "
            f"with hypercorn {', '.join(s + '*' for s in TESTED_SERIES)}; found {found}. "
            "Install a tested version (pip install 'hypercorn>=0.18,<0.19'), or use "
            "backend='native'."
        )
    config = hypercorn_config(
        host=host,
        port=port,
        max_message_size=max_message_size,
        handshake_timeout=handshake_timeout,
        shutdown_timeout=shutdown_timeout,
        access_log=access_log,
        backlog=backlog,
        options=hypercorn_options,
    )
    if reuse_port:
        config.bind = [f"fd://{sock.detach()}" for sock in reuse_port_sockets(host, port)]
    keepalive = None if ping_interval is None else Keepalive(ping_interval, ping_timeout)
    worker = _Worker(app, config, keepalive, shutdown_timeout, reuse_port)
    async with trio.open_nursery() as nursery:
        bound_port: int = await nursery.start(worker.run)
        try:
            task_status.started(bound_port)
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(shutdown_timeout):
                    await app.close_connections(shutdown_timeout)
                worker.stop()


def hypercorn_config(
    *,
    host: str,
    port: int,
    max_message_size: int,
    handshake_timeout: float,
    shutdown_timeout: float,
    access_log: bool,
    backlog: int,
    options: dict[str, Any],
) -> Config:
    """The hypercorn ``Config`` for ``serve()``'s settings; ``options`` set its attributes."""
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.backlog = backlog
    config.websocket_max_message_size = max_message_size
    # triows' keepalive pings and checks pongs (hypercorn's pings check nothing).
    config.websocket_ping_interval = None
    config.graceful_timeout = shutdown_timeout
    config.keep_alive_timeout = handshake_timeout
    config.include_server_header = False  # the native server sends none either
    config.accesslog = logging.getLogger("triows.access") if access_log else None
    config.access_log_format = ACCESS_LOG_FORMAT  # the native server's format too
    # hypercorn's own logger, without the stream handler hypercorn would add to it:
    # its lines go through the application's logging once, as the native server's.
    config.errorlog = logging.getLogger("hypercorn.error")
    for name, value in options.items():
        if not hasattr(config, name):
            raise TypeError(
                f"serve() got an unknown option {name!r} (not a hypercorn Config field)"
            )
        setattr(config, name, value)
    if config.quic_bind:
        raise ValueError("serve() does not serve HTTP/3 (quic_bind): use hypercorn's command line")
    return config


@attrs.define
class _Worker:
    """hypercorn's worker parts, with triows' accept loop and bounded shutdown."""

    app: App
    config: Config
    keepalive: Keepalive | None
    shutdown_timeout: float
    reuse_port: bool = False
    #: Around the accept loop: cancelled to stop accepting (a drain, with reuse_port).
    accepting: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    connections: Connections = attrs.field(factory=Connections)
    context: WorkerContext = attrs.field(factory=lambda: WorkerContext(None))
    stopping: trio.Event = attrs.field(factory=trio.Event)
    #: Set at stop(): the whole server, the App's lifespan shutdown included, ends by then.
    scope: trio.CancelScope = attrs.field(factory=lambda: trio.CancelScope(shield=True))

    def stop(self) -> None:
        """Start the shutdown (after ``app.close_connections()``); bound it."""
        self.scope.deadline = trio.current_time() + 2 * self.shutdown_timeout + 1
        self.stopping.set()

    async def run(self, task_status: trio.TaskStatus[int]) -> None:
        self.config.set_statsd_logger_class(StatsdLogger)
        state: LifespanState = {}
        # serve() takes a triows App, an ASGI 3 application.
        asgi: ASGIFramework = self.app  # type: ignore[assignment]
        wrapped = ASGIWrapper(asgi)
        lifespan = Lifespan(wrapped, self.config, state)
        # Shielded: cancelling serve() is a graceful shutdown (see stop()), which
        # the App's lifespan must outlive.
        with self.scope:
            async with trio.open_nursery() as lifespan_nursery:
                await lifespan_nursery.start(lifespan.handle_lifespan)
                await lifespan.wait_for_startup()
                handler = functools.partial(
                    TriowsTCPServer,
                    wrapped,
                    self.config,
                    self.context,
                    ConnectionState(state.copy()),
                    connections=self.connections,
                    keepalive=self.keepalive,
                )
                await self._serve(handler, task_status)
                await lifespan.wait_for_shutdown()
                lifespan_nursery.cancel_scope.cancel()

    async def _serve(self, handler: Handler, task_status: trio.TaskStatus[int]) -> None:
        listeners, port = await self._listen()
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                accepting.start_soon(
                    accept_until_cancelled, handler, listeners, connections, self.accepting
                )
                if self.reuse_port:
                    self.app.websockets.on_drain.append(self.accepting.cancel)
                if self.keepalive is not None:
                    # One task pings every WebSocket, as on the native server.
                    accepting.start_soon(self.keepalive.run, connections)
                task_status.started(port)
                try:
                    await self.stopping.wait()
                finally:
                    if self.accepting.cancel in self.app.websockets.on_drain:
                        self.app.websockets.on_drain.remove(self.accepting.cancel)
                accepting.cancel_scope.cancel()  # and the listeners close
            # No new request on a kept-alive connection; idle ones close now.
            await self.context.terminated.set()
            with trio.move_on_after(self.shutdown_timeout):
                await self.connections.wait_empty()
            # hypercorn shields its socket writes: one blocked on a client that
            # stopped reading ends only with its socket.
            self.connections.abort_all()
            connections.cancel_scope.cancel()

    async def _listen(self) -> tuple[list[Listener], int]:
        sockets = self.config.create_sockets()
        ssl_context = self.config.create_ssl_context()
        listeners: list[Listener] = []
        for sock in sockets.secure_sockets:
            assert ssl_context is not None  # secure sockets: TLS is configured
            sock.listen(self.config.backlog)
            plain = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
            listeners.append(trio.SSLListener(plain, ssl_context, https_compatible=True))
        for sock in sockets.insecure_sockets:
            sock.listen(self.config.backlog)
            listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        scheme = "https" if sockets.secure_sockets else "http"
        first = (sockets.secure_sockets or sockets.insecure_sockets)[0]
        address = first.getsockname()
        await self.config.log.info(f"Running on {scheme}://{_format(first.family, address)}")
        return listeners, address[1] if isinstance(address, tuple) else 0


def _format(family: int, address: Any) -> str:
    if family == socket.AF_INET6:
        return f"[{address[0]}]:{address[1]}"
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address)
