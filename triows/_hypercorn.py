"""The hypercorn fixes that ``triows.serve`` and ``triows run`` apply.

hypercorn 0.18's WebSocket stream (``hypercorn.protocol.ws_stream.WSStream``):

1. reports every client-initiated close to the app as code 1006, dropping the code
   and reason from the client's close frame; and after a 1009 (message too big) it
   tells the app nothing until the socket closes;
2. silently discards ``websocket.send`` events once the client has gone, where the
   ASGI spec asks for an ``OSError`` so the app can tell;
3. sends pings but never checks that pongs come back, so a peer that vanished
   without closing (or stopped reading) holds its connection and view forever.
   With a TriowsConfig, one :class:`Keepalive` task per server pings and closes
   a connection whose pong is late: the view sees a disconnect with code 1006
   and reason ``"ping timeout"``;
4. fails a connection on a client's protocol error (bad frame, invalid UTF-8)
   by dropping the TCP connection without a close frame: with a TriowsConfig the
   client gets a close frame with the code (1002, 1007) first;
5. accepts any ``Sec-WebSocket-Key`` (RFC 6455: base64 of 16 bytes) and refuses
   an unsupported ``Sec-WebSocket-Version`` with a bare 400: triows refuses a bad
   key with 400, and a wrong version with 426 and ``Sec-WebSocket-Version: 13``;
6. (its trio ``TCPServer``) lets a write race the connection's close: ``_close()``
   half-closes the stream without the send lock, and a concurrent write then
   fails with ``trio.BusyResourceError``, which reaches the app's ``send``.  With
   a TriowsConfig that write counts as a closed connection, as ``_close()``
   itself counts the race.

It also adds triows' ``triows.send_batch`` extension (see ``triows._broadcast``):
a batch of messages is framed by wsproto (or, with no extension negotiated,
taken from the frames a :class:`~triows.Broadcast` shares) and written as one
``Data`` event, so one socket write.  Its ``send_now`` writes a batch from the
calling task without yielding (every ``WebSocket.send``, and a hub delivering
to an idle subscriber): when
the connection's send lock is free, the frames go to the socket with one
non-blocking write; a tail the kernel did not take waits in
``TCPServer._triows_pending``, which the connection's next write (or a task
spawned to flush it) sends first, under the lock.

And it trims two per-connection costs of hypercorn's trio ``TCPServer``: its
idle timeout (the slowloris guard before a request head, and between
keep-alive requests) is a deadline checked by one :class:`IdleTimeouts` task
per server instead of a task started and cancelled per connection, and with
no ``read_timeout`` its read loop has no ``trio.fail_after(inf)`` scope per
read.

(hypercorn also drops WebSockets without a close frame at shutdown; triows fixes
that in the App itself, see ``App.close_connections``, so it needs no patch.)

The fix wraps a few methods of ``WSStream`` and ``TCPServer`` once per process.
The wrappers act only on streams whose config is a :class:`TriowsConfig`, the
config ``serve()`` builds; a plain ``hypercorn -k trio`` server in the same
process, or any other config, runs hypercorn's code unchanged.  The patch
refuses to install on a hypercorn series it was not tested with.
"""

from __future__ import annotations

import binascii
import contextlib
import logging
import math
import os
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from time import time  # hypercorn's clock for a stream's start_time
from typing import Any

import attrs
import trio
from hypercorn.config import Config
from hypercorn.events import Closed, RawData
from hypercorn.protocol import ws_stream
from hypercorn.protocol.events import Data, EndBody, Request, Response, StreamClosed
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage

from ._broadcast import BATCH_EVENT, BATCH_EXTENSION, Prepared
from ._transport import DEPARTURE_EXTENSION, Departure

__all__ = ["TESTED_SERIES", "TriowsConfig", "install"]

#: The hypercorn release series these wrappers were written and tested against.
TESTED_SERIES = ("0.18.",)

_installed = False


logger = logging.getLogger("triows")


class TriowsConfig(Config):
    """A hypercorn Config that turns on triows' fixes for the streams it serves."""

    #: The server's keepalive (pings and pong deadlines); None: hypercorn's pings.
    triows_keepalive: Keepalive | None = None
    #: The server's idle timeouts; None: hypercorn's task per connection.
    triows_idle: IdleTimeouts | None = None


@attrs.define
class IdleTimeouts:
    """One task per server closes connections idle for ``keep_alive_timeout``.

    hypercorn gives every TCP connection an idle-timeout *task*, started when the
    connection opens (waiting for a request head: the slowloris guard) and
    cancelled once the head is in, so each WebSocket handshake costs a task
    start and a cancellation.  Here a connection's ``idle_task`` is an
    :class:`_IdleTimer`, a deadline in :attr:`timers`, and :meth:`run` closes
    the connections past it, within a quarter of the timeout, and every idle
    one at once when the server stops (as hypercorn does).
    """

    timeout: float
    timers: set[_IdleTimer] = attrs.field(factory=set)
    stopping: bool = False

    async def run(self, stop: trio.Event) -> None:
        """Run until ``stop`` is set (the server's shutdown), then close every idle connection."""
        step = min(max(self.timeout / 4, 0.01), 1.0)
        while not self.stopping:
            with trio.move_on_after(step):
                await stop.wait()
                self.stopping = True
            now = trio.current_time()
            for timer in list(self.timers):
                if self.stopping or now >= timer.deadline:
                    timer.expire()


class _IdleTimer:
    """A TCPServer's ``idle_task`` under :class:`IdleTimeouts` (hypercorn's SingleTask API)."""

    __slots__ = ("deadline", "owner", "server")

    def __init__(self, owner: IdleTimeouts, server: Any) -> None:
        self.owner = owner
        self.server = server
        self.deadline = math.inf

    async def restart(self, task_group: Any, action: Any) -> None:
        owner = self.owner
        if owner.stopping:
            self.expire()  # hypercorn: an idle connection closes at once once terminated
            return
        self.deadline = trio.current_time() + owner.timeout
        owner.timers.add(self)

    async def stop(self) -> None:
        self.owner.timers.discard(self)

    def expire(self) -> None:
        self.owner.timers.discard(self)
        # The connection's task group is closing or gone, and so is it.
        with contextlib.suppress(AttributeError, RuntimeError):
            self.server._task_group.spawn(_close_idle, self.server)


async def _close_idle(server: Any) -> None:
    # As hypercorn's _idle_timeout, once its wait is over.
    with trio.CancelScope(shield=True):
        await server._initiate_server_close()


@attrs.define
class Keepalive:
    """One task per server pings every WebSocket and closes those that stop answering.

    A task per connection would cost each idle connection a few KiB for a job
    done every ``interval`` seconds.  Pings are sent from short-lived tasks in
    the connection's own task group, because a write to a peer that stopped
    reading blocks (hypercorn shields it); a peer whose pong is ``timeout``
    seconds late is closed (its view sees 1006 "ping timeout"), which also ends
    any write stuck on its socket.
    """

    interval: float
    timeout: float
    #: The watched streams.  A plain set (a WeakSet costs a weakref per connection
    #: and Python-level add/discard): a stream leaves it at its StreamClosed (see
    #: handle()), or at the next pass once closed, or when its task group is gone.
    streams: set[Any] = attrs.field(factory=set)

    def watch(self, stream: Any) -> None:
        stream._triows_ping_at = None
        stream._triows_next_ping = trio.current_time() + self.interval
        self.streams.add(stream)

    async def run(self) -> None:
        """Run for the server's lifetime."""
        step = max(min(self.interval, self.timeout) / 4, 0.01)
        while True:
            await trio.sleep(step)
            now = trio.current_time()
            for stream in list(self.streams):
                if stream.closed:
                    self.streams.discard(stream)
                    continue
                sent = stream._triows_ping_at
                if sent is None and now >= stream._triows_next_ping:
                    stream._triows_ping_at = now
                    self._spawn(stream, _send_ping)
                elif sent is not None and now - sent > self.timeout:
                    self.streams.discard(stream)
                    self._spawn(stream, _close_silent_peer)

    def _spawn(self, stream: Any, job: Callable[[Any], Awaitable[None]]) -> None:
        try:
            stream.task_group.spawn(job, stream)
        except (AttributeError, RuntimeError):
            self.streams.discard(stream)  # its connection is already being torn down


async def _send_ping(stream: Any) -> None:
    await stream._send_wsproto_event(Ping(b"triows"))


async def _close_silent_peer(stream: Any) -> None:
    logger.info("closing a WebSocket whose pong did not come in time")
    stream._triows_close = (1006, "ping timeout")
    # hypercorn's StreamClosed path reports the disconnect to the app and closes
    # the socket, which also ends a ping write stuck on it.
    await stream.send(StreamClosed(stream_id=stream.stream_id))


class ClientGone(OSError):
    """Raised to the app for a send after the client left (ASGI: an OSError subclass)."""


def _ours(stream: Any) -> bool:
    return isinstance(stream.config, TriowsConfig)


_CLOSE_HEADERS = ((b"content-length", b"0"), (b"connection", b"close"))


def _handshake_refusal(headers: list[tuple[bytes, bytes]]) -> tuple[int, list[Any]] | None:
    """Status and headers refusing an upgrade whose key or version is wrong, else None."""
    key = version = None
    for name, value in headers:
        name = name.lower()
        if name == b"sec-websocket-key":
            key = value
        elif name == b"sec-websocket-version":
            version = value
    if version is not None and version.strip() != b"13":
        return 426, [(b"sec-websocket-version", b"13"), *_CLOSE_HEADERS]
    if key is not None:
        try:
            valid = len(binascii.a2b_base64(key.strip(), strict_mode=True)) == 16
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            return 400, list(_CLOSE_HEADERS)
    return None


SEND_EVENTS = frozenset(("websocket.send", BATCH_EVENT))


def _batch_bytes(stream: Any, messages: list[Prepared]) -> bytes:
    """The frames of ``messages`` for ``stream`` (the app checked: accepted, not closed).

    A plain function, not a coroutine: nothing extra stays alive per subscriber
    while its write is suspended (see serve()'s gc_freeze for why that counts).
    """
    if stream.state != ws_stream.ASGIWebsocketState.CONNECTED:
        raise RuntimeError(f"{BATCH_EVENT} in hypercorn state {stream.state.name}")
    connection = stream.connection
    if connection._proto.extensions:
        # permessage-deflate keeps per-connection state: wsproto frames each one.
        return b"".join(
            [
                connection.send(
                    TextMessage(data=m.event["text"])
                    if m.event.get("text") is not None
                    else BytesMessage(data=bytes(m.event["bytes"]))
                )
                for m in messages
            ]
        )
    if len(messages) == 1:
        return messages[0].frame()
    return b"".join([m.frame() for m in messages])


def _send_now(send: Any, messages: list[Prepared]) -> bool:
    """The ``send_now`` of the batch extension: write ``messages`` without yielding.

    False (nothing done) unless ``send`` is a triows-served hypercorn WebSocket
    over plain HTTP/1.1 whose connection is open, is not being written to, and
    has no tail pending.  True once the frames are the connection's: written,
    or their unwritten tail left in ``_triows_pending`` for the next write,
    with a flushing task spawned so that it goes out even if nothing else does.
    """
    stream = getattr(send, "__self__", None)
    if (
        stream.__class__ is not ws_stream.WSStream
        or stream.closed
        or not _ours(stream)
        or stream.state != ws_stream.ASGIWebsocketState.CONNECTED
        or stream.connection.state is not ConnectionState.OPEN
    ):
        return False
    protocol = getattr(stream.send, "__self__", None)
    if protocol.__class__ is not H11Protocol:
        return False  # HTTP/2 multiplexes streams over one socket
    server = getattr(protocol.send, "__self__", None)
    if (
        server.__class__ is not TCPServer
        or server.send_lock.locked()
        or "_triows_pending" in server.__dict__
    ):
        return False
    transport: Any = server.stream
    if transport.__class__ is not trio.SocketStream:
        return False  # TLS: only the SSL object may write
    data = _batch_bytes(stream, messages)
    try:
        sent = os.write(transport.socket.fileno(), data)
    except BlockingIOError:
        sent = 0
    except OSError:
        # Gone: the normal path (the subscriber's next send) reports it.
        return False
    if sent < len(data):
        server._triows_pending = data[sent:]  # type: ignore[attr-defined]
        # Its task group is closing or gone, and so is the connection.
        with contextlib.suppress(AttributeError, RuntimeError):
            stream.task_group.spawn(server.protocol_send, RawData(data=b""))
    return True


#: The batch extension as hypercorn offers it (shared by every connection).
SEND_NOW_OFFER: dict[str, object] = {"send_now": _send_now}


def install() -> None:
    """Install the wrappers (idempotent).  Raises RuntimeError on an untested hypercorn."""
    global _installed
    if _installed:
        return
    found = version("hypercorn")
    if not found.startswith(TESTED_SERIES):
        raise RuntimeError(
            f"triows.serve patches hypercorn's WebSocket close handling and was tested with "
            f"hypercorn {', '.join(s + '*' for s in TESTED_SERIES)}; found {found}. "
            "Install a tested version (pip install 'hypercorn>=0.18,<0.19')."
        )
    cls = ws_stream.WSStream
    original_handle: Callable[[Any, Any], Awaitable[None]] = cls.handle
    original_app_send: Callable[[Any, Any], Awaitable[None]] = cls.app_send
    original_handle_events: Callable[[Any], Awaitable[None]] = cls._handle_events
    original_accept: Callable[[Any, Any], Awaitable[None]] = cls._accept
    original_protocol_send: Callable[[Any, Any], Awaitable[None]] = TCPServer.protocol_send
    original_read_data: Callable[[Any], Awaitable[None]] = TCPServer._read_data
    original_tcp_init: Callable[..., None] = TCPServer.__init__

    app_closed = frozenset(
        {ws_stream.ASGIWebsocketState.HTTPCLOSED, ws_stream.ASGIWebsocketState.CLOSED}
    )

    async def handle(self: Any, event: Any) -> None:
        # One check of the config and one of the event's type per event: Data
        # (every incoming frame) goes straight to hypercorn.
        if not isinstance(self.config, TriowsConfig) or isinstance(event, Data):
            await original_handle(self, event)
            return
        if isinstance(event, Request):
            if event.http_version == "1.1":
                refusal = _handshake_refusal(event.headers)
                if refusal is not None and not self.closed:
                    self.closed = True
                    await self.send(
                        Response(
                            stream_id=self.stream_id, status_code=refusal[0], headers=refusal[1]
                        )
                    )
                    await self.send(EndBody(stream_id=self.stream_id))
                    return
            await original_handle(self, event)
            # Read by the app lazily, only when its view lags (see triows._transport).
            extensions = getattr(self, "scope", {}).get("extensions")
            if extensions is not None:
                extensions[DEPARTURE_EXTENSION] = self._triows_departure = Departure()
                extensions[BATCH_EXTENSION] = SEND_NOW_OFFER
            return
        if not isinstance(event, StreamClosed):
            await original_handle(self, event)
            return
        keepalive = self.config.triows_keepalive
        if keepalive is not None:
            keepalive.streams.discard(self)
        if self.closed or self.app_put is None:
            await original_handle(self, event)
            return
        # The same as hypercorn, but with the client's own close code.
        self.closed = True
        code, reason = getattr(self, "_triows_close", (None, ""))
        if code is None:
            code = 1000 if self.state in app_closed else 1006
        departure = getattr(self, "_triows_departure", None)
        if departure is not None:
            departure.set(code, reason)
        disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        try:
            self.app_put.__self__.send_nowait(disconnect)
        except trio.WouldBlock:
            # The app lags and its queue is full.  Never block here (this runs
            # in hypercorn's reader or our pong watchdog): queue the event in
            # order from a task that lives no longer than the app does.
            put_scope = self._triows_put_scope = trio.CancelScope()

            async def put_later() -> None:
                with put_scope:
                    await self.app_put(disconnect)

            self.task_group.spawn(put_later)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await trio.lowlevel.checkpoint()

    async def app_send(self: Any, message: Any) -> None:
        if message is None and _ours(self):
            # The app has finished: nobody will read a disconnect still waiting.
            put_scope = getattr(self, "_triows_put_scope", None)
            if put_scope is not None:
                put_scope.cancel()
        if (
            _ours(self)
            and message is not None
            and message["type"] in SEND_EVENTS
            and (
                self.closed
                # The client's close frame arrived; hypercorn would drop the send
                # silently (and without yielding) until the stream closes.
                or (
                    self.state == ws_stream.ASGIWebsocketState.CONNECTED
                    and self.connection.state is not ConnectionState.OPEN
                )
            )
        ):
            raise ClientGone("the client has closed this WebSocket")
        if message is not None and message["type"] == BATCH_EVENT and _ours(self):
            data = _batch_bytes(self, message["messages"])
            await self.send(Data(stream_id=self.stream_id, data=data))
            return
        await original_app_send(self, message)

    async def handle_events(self: Any) -> None:
        if not isinstance(self.config, TriowsConfig):
            await original_handle_events(self)
            return
        # hypercorn's loop, recording the client's close frame (and our own 1009)
        # so that handle() can report the real code.
        for event in self.connection.events():
            if isinstance(event, Message):
                try:
                    self.buffer.extend(event)
                except ws_stream.FrameTooLargeError:
                    self._triows_close = (1009, "message too big")
                    await self._send_wsproto_event(CloseConnection(code=1009))
                    break
                if event.message_finished:
                    await self.app_put(self.buffer.to_message())
                    self.buffer.clear()
            elif isinstance(event, Ping):
                await self._send_wsproto_event(event.response())
            elif isinstance(event, Pong):
                self._triows_ping_at = None
                keepalive = getattr(self.config, "triows_keepalive", None)
                if keepalive is not None:
                    self._triows_next_ping = trio.current_time() + keepalive.interval
            elif isinstance(event, CloseConnection):
                if not hasattr(self, "_triows_close"):
                    self._triows_close = (event.code, event.reason or "")
                if self.connection.state == ConnectionState.OPEN:
                    # wsproto failed the connection (bad frame 1002, invalid
                    # UTF-8 1007) without telling the client: send the code.
                    await self._send_wsproto_event(CloseConnection(event.code, event.reason))
                elif self.connection.state == ConnectionState.REMOTE_CLOSING:
                    await self._send_wsproto_event(event.response())
                await self.send(StreamClosed(stream_id=self.stream_id))

    async def accept(self: Any, message: Any) -> None:
        config = self.config
        if not isinstance(config, TriowsConfig):
            await original_accept(self, message)
            return
        # hypercorn's _accept, inline (one coroutine frame less per handshake) and
        # without its access-log call when there is no access log.
        self.state = ws_stream.ASGIWebsocketState.CONNECTED
        status_code, headers, self.connection = self.handshake.accept(
            message.get("subprotocol"), message.get("headers", [])
        )
        await self.send(
            Response(stream_id=self.stream_id, status_code=status_code, headers=headers)
        )
        log = config.log
        if getattr(log, "access_logger", log) is not None:
            await log.access(
                self.scope, {"status": status_code, "headers": []}, time() - self.start_time
            )
        if config.websocket_ping_interval is not None:
            self.task_group.spawn(self._send_pings)
        keepalive = config.triows_keepalive
        if keepalive is not None:
            # Watched by the server's one keepalive task from now on (serve() turns
            # hypercorn's pinger task per connection off).
            keepalive.watch(self)

    async def protocol_send(self: Any, event: Any) -> None:
        if not isinstance(event, RawData) or not isinstance(self.config, TriowsConfig):
            await original_protocol_send(self, event)
            return
        # hypercorn's write, but (1) a tail that _send_now left goes first, under
        # the same lock, so frames never interleave; (2) a write racing the
        # connection's close (hypercorn's _close() half-closes the stream without
        # the lock, and trio refuses concurrent sends with BusyResourceError)
        # counts as a closed connection, as hypercorn's _close() itself does.
        async with self.send_lock:
            pending = self.__dict__.pop("_triows_pending", None)
            data = event.data if pending is None else pending + event.data
            try:
                with trio.CancelScope(shield=True):
                    await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
                await self.protocol.handle(Closed())

    async def read_data(self: Any) -> None:
        config = self.config
        if not isinstance(config, TriowsConfig) or config.read_timeout is not None:
            await original_read_data(self)
            return
        # hypercorn's read loop, without its trio.fail_after(inf) around every
        # read when there is no read timeout: one cancel scope less per message.
        receive_some = self.stream.receive_some
        handle = self.protocol.handle
        while True:
            try:
                data = await receive_some(MAX_RECV)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                break
            await handle(RawData(bytes(data)))  # bytes already for plain TCP: no copy
            if not data:
                break
        await handle(Closed())
        if self.idle_task.__class__ is _IdleTimer:
            await self.idle_task.stop()  # nothing more to read: nothing to time out

    def tcp_init(self: Any, app: Any, config: Any, *args: Any) -> None:
        original_tcp_init(self, app, config, *args)
        if isinstance(config, TriowsConfig) and config.triows_idle is not None:
            self.idle_task = _IdleTimer(config.triows_idle, self)

    cls.handle = handle  # type: ignore[method-assign]
    cls.app_send = app_send  # type: ignore[method-assign]
    cls._handle_events = handle_events  # type: ignore[method-assign]
    cls._accept = accept  # type: ignore[method-assign]
    TCPServer.protocol_send = protocol_send  # type: ignore[method-assign]
    TCPServer._read_data = read_data  # type: ignore[method-assign]
    TCPServer.__init__ = tcp_init  # type: ignore[method-assign,assignment]
    _installed = True
