"""hypercorn's protocols as triows serves them: WebSockets get :class:`TriowsWSStream`.

hypercorn's ``TCPServer.run`` builds a ``ProtocolWrapper``, which builds an
``H11Protocol`` (or an ``H2Protocol``: ALPN ``h2`` over TLS, or a client that
switches to h2c), which builds a ``WSStream`` for each WebSocket.  Each class
here is bound where hypercorn assigns the object it has just built, before it
is used: :class:`TriowsProtocolWrapper` (by ``TriowsTCPServer.protocol``)
builds :class:`TriowsH11Protocol` and :class:`TriowsH2Protocol`, whose streams
(``H11Protocol.stream``, the ``H2Protocol.streams`` dict) get a
:class:`TriowsWSStream` for a WebSocket, and a :class:`TriowsHTTPStream` for
plain HTTP (it refuses an upgrade hypercorn took for plain HTTP, as the native
server does).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hypercorn.config import Config
from hypercorn.events import Event
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.protocol.ws_stream import WSStream
from hypercorn.typing import AppWrapper, ConnectionState, TaskGroup, WorkerContext

from .._serving._keepalive import Keepalive
from ._http_stream import TriowsHTTPStream
from ._stream import TriowsWSStream

__all__ = ["TriowsH2Protocol", "TriowsH11Protocol", "TriowsProtocolWrapper"]

Stream = HTTPStream | WSStream


def _ours(stream: Stream, keepalive: Keepalive | None) -> Stream:
    """A stream hypercorn has just built, as a :class:`TriowsWSStream` or :class:`TriowsHTTPStream`."""
    if type(stream) is HTTPStream:
        return TriowsHTTPStream(
            stream.app,
            stream.config,
            stream.context,
            stream.task_group,
            stream.scheme == "https",
            stream.client,
            stream.server,
            stream.send,
            stream.stream_id,
        )
    if type(stream) is not WSStream:
        return stream
    return TriowsWSStream(
        stream.app,
        stream.config,
        stream.context,
        stream.task_group,
        stream.scheme == "wss",
        stream.client,
        stream.server,
        stream.send,
        stream.stream_id,
        keepalive=keepalive,
    )


class TriowsH11Protocol(H11Protocol):
    """hypercorn's HTTP/1.1 protocol, serving WebSockets with :class:`TriowsWSStream`."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
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
        self._stream: Stream | None = None
        super().__init__(
            app, config, context, task_group, connection_state, ssl, client, server, send
        )

    @property
    def stream(self) -> Stream | None:
        return self._stream

    @stream.setter
    def stream(self, stream: Stream | None) -> None:
        # hypercorn's _create_stream assigns the stream it has just built, then
        # gives it the request.
        self._stream = None if stream is None else _ours(stream, self._keepalive)


class _Streams(dict[int, Stream]):
    """``H2Protocol.streams``: a WebSocket stream stored there is a :class:`TriowsWSStream`."""

    def __init__(self, streams: dict[int, Stream], keepalive: Keepalive | None) -> None:
        super().__init__(streams)
        self.keepalive = keepalive

    def __setitem__(self, stream_id: int, stream: Stream) -> None:
        # hypercorn's _create_stream stores the stream it has just built, then
        # gives it the request.
        super().__setitem__(stream_id, _ours(stream, self.keepalive))


class TriowsH2Protocol(H2Protocol):
    """hypercorn's HTTP/2 protocol, serving WebSockets (RFC 8441) with :class:`TriowsWSStream`."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
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
        self._streams = _Streams({}, keepalive)
        super().__init__(
            app, config, context, task_group, connection_state, ssl, client, server, send
        )

    @property
    def streams(self) -> dict[int, Stream]:
        return self._streams

    @streams.setter
    def streams(self, streams: dict[int, Stream]) -> None:
        self._streams = _Streams(streams, self._keepalive)


class TriowsProtocolWrapper(ProtocolWrapper):
    """hypercorn's protocol switch, whose HTTP/1.1 and HTTP/2 protocols are ours.

    Its ``protocol`` is assigned in hypercorn's constructor and again when a
    client switches to h2c (an ``Upgrade: h2c`` request or the HTTP/2 preface):
    each time, the protocol hypercorn has just built is replaced by ours, built
    with the same arguments, before it reads or writes anything.
    """

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        task_group: TaskGroup,
        state: ConnectionState,
        ssl: bool,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        send: Callable[[Event], Awaitable[None]],
        alpn_protocol: str | None = None,
        *,
        keepalive: Keepalive | None,
    ) -> None:
        self._keepalive = keepalive
        self._protocol: H11Protocol | H2Protocol | None = None
        super().__init__(
            app, config, context, task_group, state, ssl, client, server, send, alpn_protocol
        )

    @property
    def protocol(self) -> H11Protocol | H2Protocol:
        assert self._protocol is not None
        return self._protocol

    @protocol.setter
    def protocol(self, built: H11Protocol | H2Protocol) -> None:
        ours: type[TriowsH11Protocol] | type[TriowsH2Protocol] | None = None
        if type(built) is H11Protocol:
            ours = TriowsH11Protocol
        elif type(built) is H2Protocol:
            ours = TriowsH2Protocol
        if ours is not None:
            built = ours(
                self.app,
                self.config,
                self.context,
                self.task_group,
                self.state,
                self.ssl,
                self.client,
                self.server,
                self.send,
                keepalive=self._keepalive,
            )
        self._protocol = built
