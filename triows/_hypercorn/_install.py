"""The wrappers: installed once per process, acting only for a TriowsConfig."""

from __future__ import annotations

import binascii
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from time import time  # hypercorn's clock for a stream's start_time
from typing import Any

import trio
from hypercorn.events import Closed, RawData
from hypercorn.protocol import ws_stream
from hypercorn.protocol.events import Data, EndBody, Request, Response, StreamClosed
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Message, Ping, Pong

from .._broadcast import BATCH_EVENT, BATCH_EXTENSION
from .._transport import DEPARTURE_EXTENSION, Departure
from ._config import TriowsConfig, ours
from ._timers import IdleTimer
from ._writes import SEND_NOW_OFFER, batch_bytes

__all__ = ["TESTED_SERIES", "ClientGone", "install"]

#: The hypercorn release series these wrappers were written and tested against.
TESTED_SERIES = ("0.18.",)

_installed = False


class ClientGone(OSError):
    """Raised to the app for a send after the client left (ASGI: an OSError subclass)."""


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
        if message is None and ours(self):
            # The app has finished: nobody will read a disconnect still waiting.
            put_scope = getattr(self, "_triows_put_scope", None)
            if put_scope is not None:
                put_scope.cancel()
        if (
            ours(self)
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
        if message is not None and message["type"] == BATCH_EVENT and ours(self):
            data = batch_bytes(self, message["messages"])
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
        if self.idle_task.__class__ is IdleTimer:
            await self.idle_task.stop()  # nothing more to read: nothing to time out

    def tcp_init(self: Any, app: Any, config: Any, *args: Any) -> None:
        original_tcp_init(self, app, config, *args)
        if isinstance(config, TriowsConfig) and config.triows_idle is not None:
            self.idle_task = IdleTimer(config.triows_idle, self)

    cls.handle = handle  # type: ignore[method-assign]
    cls.app_send = app_send  # type: ignore[method-assign]
    cls._handle_events = handle_events  # type: ignore[method-assign]
    cls._accept = accept  # type: ignore[method-assign]
    TCPServer.protocol_send = protocol_send  # type: ignore[method-assign]
    TCPServer._read_data = read_data  # type: ignore[method-assign]
    TCPServer.__init__ = tcp_init  # type: ignore[method-assign,assignment]
    _installed = True
