"""hypercorn's trio TCP server and HTTP/1.1 protocol as triows serves them.

``serve_hypercorn`` runs its own accept loop (``trio.serve_listeners``) with
:class:`TriowsTCPServer`, where hypercorn's worker uses ``TCPServer``.  Each
binds the next declared subclass where hypercorn builds the object: the
server's ``protocol`` (hypercorn's ``ProtocolWrapper``) gets a
:class:`TriowsH11Protocol` for HTTP/1.1, whose ``stream`` is a
:class:`~._stream.TriowsWSStream` for a WebSocket.  HTTP/2 (over TLS with ALPN,
or h2c) keeps hypercorn's own classes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.protocol.ws_stream import WSStream
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState, TaskGroup
from hypercorn.typing import WorkerContext as WorkerContextType

from ._stream import Keepalive, TriowsWSStream

__all__ = ["Connections", "TriowsH11Protocol", "TriowsTCPServer"]

logger = logging.getLogger("triows")


class Connections:
    """The server's open connections: to wait for them at shutdown, or close their sockets."""

    def __init__(self) -> None:
        self._open: set[TriowsTCPServer] = set()
        self._empty = trio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, connection: TriowsTCPServer) -> None:
        if not self._open:
            self._empty = trio.Event()
        self._open.add(connection)

    def discard(self, connection: TriowsTCPServer) -> None:
        self._open.discard(connection)
        if not self._open:
            self._empty.set()

    async def wait_empty(self) -> None:
        await self._empty.wait()

    def abort_all(self) -> None:
        for connection in list(self._open):
            connection.abort()


class TriowsH11Protocol(H11Protocol):
    """hypercorn's HTTP/1.1 protocol, serving WebSockets with :class:`TriowsWSStream`."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContextType,
        task_group: TaskGroup,
        connection_state: ConnectionState,
        ssl: bool,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        send: Callable[[Event], Awaitable[None]],
        *,
        keepalive: Keepalive | None,
    ) -> None:
        self._keepalive = keepalive
        self._stream: HTTPStream | WSStream | None = None
        super().__init__(
            app, config, context, task_group, connection_state, ssl, client, server, send
        )

    @property
    def stream(self) -> HTTPStream | WSStream | None:
        return self._stream

    @stream.setter
    def stream(self, stream: HTTPStream | WSStream | None) -> None:
        # hypercorn's _create_stream assigns the stream it has just built, before
        # giving it the request: a WebSocket gets ours, built the same way.
        if type(stream) is WSStream:
            stream = TriowsWSStream(
                stream.app,
                stream.config,
                stream.context,
                stream.task_group,
                stream.scheme == "wss",
                stream.client,
                stream.server,
                stream.send,
                stream.stream_id,
                keepalive=self._keepalive,
            )
        self._stream = stream


class TriowsTCPServer(TCPServer):
    """hypercorn's trio TCP server: one connection, contained, and closable at a deadline."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        state: LifespanState,
        stream: trio.SSLStream[trio.SocketStream],
        *,
        connections: Connections,
        keepalive: Keepalive | None,
    ) -> None:
        super().__init__(app, config, context, state, stream)
        self._connections = connections
        self._keepalive = keepalive
        self._protocol: ProtocolWrapper | None = None

    @property
    def protocol(self) -> ProtocolWrapper:
        assert self._protocol is not None, "no protocol before the connection runs"
        return self._protocol

    @protocol.setter
    def protocol(self, wrapper: ProtocolWrapper) -> None:
        # hypercorn's run() assigns the ProtocolWrapper it has just built, before
        # any byte is read: HTTP/1.1 is served by ours, built the same way.
        if type(wrapper.protocol) is H11Protocol:
            wrapper.protocol = TriowsH11Protocol(
                wrapper.app,
                wrapper.config,
                wrapper.context,
                wrapper.task_group,
                wrapper.state,
                wrapper.ssl,
                wrapper.client,
                wrapper.server,
                wrapper.send,
                keepalive=self._keepalive,
            )
        self._protocol = wrapper

    async def run(self) -> None:
        """hypercorn's connection; an error in it ends this connection, not the server.

        hypercorn lets some protocol errors escape (h11's LocalProtocolError on a
        handshake followed by a body or a pipelined request): under hypercorn's
        own worker one such packet ends the whole server.
        """
        self._connections.add(self)
        try:
            await super().run()
        except* Exception as errors:
            # A warning, without the traceback unless debugging: any client can
            # send such a packet, as often as it likes.
            logger.warning("closed a connection that hypercorn failed on: %r", errors.exceptions)
            logger.debug("hypercorn's error", exc_info=errors)
            self.abort()
        finally:
            self._connections.discard(self)

    async def protocol_send(self, event: Event) -> None:
        try:
            await super().protocol_send(event)
        except trio.BusyResourceError:
            # hypercorn's _close() half-closes the stream without the send lock: a
            # write racing it is refused.  Count it as a closed connection, as
            # hypercorn does for the write that comes after.
            await self.protocol.handle(Closed())

    def abort(self) -> None:
        """Close the socket now: a write blocked on it (hypercorn shields them) fails at once."""
        transport = self.stream
        if isinstance(transport, trio.SSLStream):
            transport.transport_stream.socket.close()
        else:
            socket_stream: trio.SocketStream = transport
            socket_stream.socket.close()
