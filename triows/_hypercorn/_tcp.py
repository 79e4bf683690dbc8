"""hypercorn's trio TCP server as triows serves it.

``serve_hypercorn`` runs its own accept loop (``trio.serve_listeners``) with
:class:`TriowsTCPServer`, where hypercorn's worker uses ``TCPServer``; its
``protocol`` is a :class:`~._protocols.TriowsProtocolWrapper`.
"""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, LifespanState

from .._serving._keepalive import Keepalive
from ._protocols import TriowsProtocolWrapper

__all__ = ["Connections", "TriowsTCPServer"]

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
    def protocol(self, built: ProtocolWrapper) -> None:
        # hypercorn's run() assigns the ProtocolWrapper it has just built, before
        # any byte is read: ours is built the same way (its protocols are ours).
        self._protocol = TriowsProtocolWrapper(
            built.app,
            built.config,
            built.context,
            built.task_group,
            built.state,
            built.ssl,
            built.client,
            built.server,
            built.send,
            "h2" if isinstance(built.protocol, H2Protocol) else None,
            keepalive=self._keepalive,
        )

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
