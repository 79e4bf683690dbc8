"""hypercorn's WebSocket stream as triows serves it: declared subclasses, no patches.

:class:`TriowsWSStream` is built by the protocols of ``_protocols`` where
hypercorn's ``H11Protocol`` and ``H2Protocol`` build a ``WSStream``; it builds
its own wsproto connection (:class:`TriowsConnection`) where hypercorn's
``Handshake.accept`` builds one, and its message buffer (:class:`BoundedBuffer`)
in its constructor.
(Its HTTP sibling is ``_http_stream.TriowsHTTPStream``.)
Every override calls hypercorn's method and adds behaviour before or after it.
Keepalive, the handshake rule and the departure are the ones both servers share
(``triows._serving._keepalive``, ``triows._serving._handshake``,
``triows._connection._transport.ClientGone``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator

import h11
import trio
from hypercorn.config import Config
from hypercorn.protocol.events import Body, Data, Request, StreamClosed
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.ws_stream import (
    ASGIWebsocketState,
    FrameTooLargeError,
    WebsocketBuffer,
    WSStream,
)
from hypercorn.typing import (
    AppWrapper,
    ASGIReceiveEvent,
    ASGISendEvent,
    TaskGroup,
    WorkerContext,
)
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import CloseConnection, Message, Ping, Pong
from wsproto.events import Event as WSEvent

from .._connection._transport import ClientGone
from .._serving._handshake import refusal
from .._serving._keepalive import (
    CLOSE_BUDGET,
    TIMEOUT_CLOSE,
    TIMEOUT_DEPARTURE,
    Keepalive,
    PingState,
)
from ._http_stream import HTTP1, send_refusal

__all__ = [
    "BoundedBuffer",
    "Keepalive",
    "TriowsConnection",
    "TriowsWSStream",
]

logger = logging.getLogger("triows")


class BoundedBuffer(WebsocketBuffer):
    """hypercorn's message buffer, refusing a message *before* it outgrows the limit.

    hypercorn's buffer writes a fragment and then compares the length, and keeps
    writing every later fragment of a refused message: data sent after a 1009
    grew it without bound.  This one raises before writing, frees what it held,
    and refuses everything after (the connection is closing with 1009).
    """

    overflowed: bool = False

    def extend(self, event: Message) -> None:  # type: ignore[type-arg]
        if self.overflowed or self.length + len(event.data) > self.max_length:
            self.overflowed = True
            self.clear()
            raise FrameTooLargeError()
        super().extend(event)


class TriowsConnection(Connection):
    """wsproto's server connection, noting what triows needs from the frames it parses."""

    def __init__(self) -> None:
        super().__init__(ConnectionType.SERVER)
        #: The first close the peer sent (or wsproto's failure of the connection).
        self.peer_close: CloseConnection | None = None
        #: wsproto failed the connection on a bad frame (1002, 1007); the peer is not told yet.
        self.failed = False
        #: Called with the payload of every pong (the keepalive matches it to its ping).
        self.on_pong: Callable[[bytes], None] | None = None

    def events(self) -> Generator[WSEvent, None, None]:
        for event in super().events():
            if isinstance(event, Pong) and self.on_pong is not None:
                self.on_pong(bytes(event.payload))
            elif isinstance(event, CloseConnection) and self.peer_close is None:
                self.peer_close = event
                # A close frame moves wsproto out of OPEN before the event is
                # yielded; a frame it refuses leaves it OPEN.
                self.failed = self.state is ConnectionState.OPEN
            yield event


class TriowsWSStream(WSStream):
    """hypercorn's WebSocket stream with triows' fixes (see the package docstring)."""

    buffer: BoundedBuffer

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        task_group: TaskGroup,
        ssl: bool,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        send: Callable[[StreamEvent], Awaitable[None]],
        stream_id: int,
        *,
        keepalive: Keepalive | None,
    ) -> None:
        self._send_to_protocol = send
        self._connection: TriowsConnection | None = None
        self._app_put: Callable[[ASGIReceiveEvent], Awaitable[None]] | None = None
        super().__init__(
            app, config, context, task_group, ssl, client, server, self._send_event, stream_id
        )
        self.buffer = BoundedBuffer(config.websocket_max_message_size)
        self._keepalive = keepalive
        #: The keepalive's bookkeeping for this WebSocket (see triows._serving._keepalive).
        self.ping_state = PingState()
        #: A keepalive ping is being written (a writer stuck on it gets no close frame).
        self._pinging = False
        #: A close triows decided (a ping timeout), reported to the app before any other.
        self._own_close: tuple[int, str] | None = None
        self._app_done = False
        self._disconnect_scope: trio.CancelScope | None = None
        self._ended = trio.Event()

    # -- the wsproto connection: ours, where hypercorn's Handshake.accept builds one ----------

    @property
    def connection(self) -> TriowsConnection:
        assert self._connection is not None, "no wsproto connection before the handshake"
        return self._connection

    @connection.setter
    def connection(self, built: Connection) -> None:
        # hypercorn's _accept assigns the connection Handshake.accept built: a
        # server connection with a permessage-deflate extension that app_send()
        # kept from being negotiated (so disabled, and dropped by wsproto).  Ours
        # is the same connection, recording pongs and the peer's close.
        assert self.handshake.extensions is None and built.state is ConnectionState.OPEN
        connection = TriowsConnection()
        if self._keepalive is not None:
            connection.on_pong = self._pong
        self._connection = connection

    # -- the app's queue: ours, where hypercorn's handle() spawns the app -------------------

    @property
    def app_put(self) -> Callable[[ASGIReceiveEvent], Awaitable[None]] | None:
        return None if self._app_put is None else self._put

    @app_put.setter
    def app_put(self, put: Callable[[ASGIReceiveEvent], Awaitable[None]] | None) -> None:
        self._app_put = put

    # -- events from the client -------------------------------------------------------------

    async def handle(self, event: StreamEvent) -> None:
        if isinstance(event, Request):
            if not self.closed and await self._refuse(event):
                return
            await super().handle(event)
            return
        # Data over HTTP/1.1, Body over HTTP/2.
        if isinstance(event, (Body, Data)) and self.buffer.overflowed:
            await self._drain(event.data)
            return
        if isinstance(event, StreamClosed):
            self._ended.set()
            if self._keepalive is not None:
                self._keepalive.forget(self)
        await super().handle(event)
        if isinstance(event, (Body, Data)) and self.buffer.overflowed:
            await self._drain(b"")  # the frames after the refused one in this read

    async def _refuse(self, request: Request) -> bool:
        """Refuse a bad handshake by the rule both servers share (triows._serving._handshake).

        hypercorn accepts any ``Sec-WebSocket-Key`` and refuses an unsupported
        version with a bare 400 (RFC 6455: 426 naming the versions it speaks).
        """
        if request.http_version not in HTTP1:
            return False  # HTTP/2 (RFC 8441): hypercorn's checks
        refused = refusal(request.http_version, request.method.encode("latin-1"), request.headers)
        if refused is None:
            return False
        await send_refusal(self, refused)
        return True

    async def _drain(self, data: bytes) -> None:
        """After a 1009: parse the client's frames for its close, keeping none of them."""
        connection = self.connection
        if self.closed or connection.state is ConnectionState.CLOSED:
            return
        connection.receive_data(data)
        for event in connection.events():
            if isinstance(event, CloseConnection):
                await self.send(StreamClosed(stream_id=self.stream_id))
                return

    async def _put(self, message: ASGIReceiveEvent) -> None:
        """The app's queue, as hypercorn's ``app_put``; a disconnect never waits in it.

        hypercorn reports every close the client starts as 1006: the disconnect
        carries the code and reason of the client's close frame instead (or the
        1009 this server sent, or its ping timeout).  It is put from a task of
        the connection, cancelled when the app ends: the reader (or the
        keepalive closing a silent client) never blocks behind an app that lags
        with a full queue, and the socket closes at once.
        """
        assert self._app_put is not None
        if message["type"] != "websocket.disconnect":
            await self._app_put(message)
            return
        code, reason = self._close_code(message["code"])
        if not self._app_done:
            self.task_group.spawn(
                self._put_disconnect,
                {"type": "websocket.disconnect", "code": code, "reason": reason},
            )
        await trio.lowlevel.checkpoint()

    def _close_code(self, hypercorns: int) -> tuple[int, str]:
        if self._own_close is not None:
            return self._own_close
        if self.buffer.overflowed:
            return 1009, "message too big"
        close = None if self._connection is None else self._connection.peer_close
        if close is not None:
            return close.code, close.reason or ""
        return hypercorns, ""

    async def _put_disconnect(self, message: ASGIReceiveEvent) -> None:
        assert self._app_put is not None
        with trio.CancelScope() as self._disconnect_scope:
            await self._app_put(message)

    # -- events from the app ----------------------------------------------------------------

    async def app_send(self, message: ASGISendEvent | None) -> None:
        if message is None:
            self._app_done = True  # nobody will read a disconnect still waiting
            if self._disconnect_scope is not None:
                self._disconnect_scope.cancel()
        elif message["type"] == "websocket.accept" and self.state is ASGIWebsocketState.HANDSHAKE:
            # No permessage-deflate: wsproto inflates a frame before anyone can
            # check its size (one 1 MiB frame can inflate to 1 GiB).
            self.handshake.extensions = None
        elif message["type"] == "websocket.send" and self._client_gone():
            # hypercorn drops the send silently; ASGI asks for an OSError: the
            # core's, with the close code the app would have been told.
            raise ClientGone(*self._close_code(1006))
        accepting = self.state is ASGIWebsocketState.HANDSHAKE
        try:
            await super().app_send(message)
        except h11.LocalProtocolError:
            # hypercorn already failed this connection (bytes after the upgrade
            # request: pgjones/hypercorn#225) and TriowsTCPServer ends it; for the
            # app the client is gone, which is not an error of the app's.
            raise ClientGone(1006, "the connection failed") from None
        if accepting and self.state is ASGIWebsocketState.CONNECTED and self._keepalive is not None:
            self._keepalive.opened(self)

    def _client_gone(self) -> bool:
        return self.closed or (
            self.state is ASGIWebsocketState.CONNECTED
            and self.connection.state is not ConnectionState.OPEN
        )

    # -- what goes to hypercorn's protocol --------------------------------------------------

    async def _send_event(self, event: StreamEvent) -> None:
        """hypercorn's ``send`` for this stream: a failed connection's close frame first.

        When wsproto fails the connection on a bad frame (1002) or invalid UTF-8
        (1007), hypercorn ends the stream and drops the TCP connection without
        telling the client why: the close frame with the code goes out first.
        """
        connection = self._connection
        if (
            isinstance(event, StreamClosed)
            and connection is not None
            and connection.failed
            and connection.state is ConnectionState.OPEN
            and connection.peer_close is not None
        ):
            close = connection.peer_close
            data = connection.send(CloseConnection(close.code, close.reason))
            await self._send_to_protocol(Data(stream_id=self.stream_id, data=data))
        await self._send_to_protocol(event)

    # -- keepalive: the server's one Keepalive task calls these -------------------------------

    def _pong(self, payload: bytes) -> None:
        assert self._keepalive is not None
        self._keepalive.pong(self, payload)

    async def ping(self, payload: bytes) -> None:
        """Write a keepalive ping, through hypercorn's send as its own pings go.

        hypercorn's own pings (one task per connection) never check for pongs.
        """
        connection = self.connection
        if self._ended.is_set() or connection.state is not ConnectionState.OPEN:
            return
        data = connection.send(Ping(payload))
        self._pinging = True
        try:
            await self.send(Data(stream_id=self.stream_id, data=data))
        finally:
            self._pinging = False

    async def drop_silent_client(self) -> None:
        """No pong in time: the app gets 1006, the client 1011 (best effort), the stream ends."""
        logger.info("closing a WebSocket whose pong did not come in time")
        self._own_close = TIMEOUT_DEPARTURE
        connection = self.connection
        if (
            not self._ended.is_set()
            and not self._pinging
            and connection.state is ConnectionState.OPEN
        ):
            # From a task of the connection: hypercorn shields its socket writes,
            # so a write to a client that stopped reading is bounded only by
            # leaving it behind (the socket's close below ends it).
            written = trio.Event()
            close = Data(
                stream_id=self.stream_id, data=connection.send(CloseConnection(*TIMEOUT_CLOSE))
            )
            self.task_group.spawn(self._send_then_set, close, written)
            with trio.move_on_after(CLOSE_BUDGET):
                await written.wait()
        if not self._ended.is_set():
            # hypercorn's own end of a stream: the app gets its disconnect, and
            # the socket closes, which also ends a write stuck on it.
            await self.send(StreamClosed(stream_id=self.stream_id))

    async def _send_then_set(self, event: StreamEvent, done: trio.Event) -> None:
        try:
            await self.send(event)
        finally:
            done.set()
