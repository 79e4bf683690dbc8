"""WebSockets over HTTP/2 (RFC 8441) on the hypercorn backend get the HTTP/1.1 fixes.

hypercorn speaks HTTP/2 with ALPN over TLS, and with any client that sends the
HTTP/2 preface on a plain connection (h2c "prior knowledge"), which is how
these tests reach it; it advertises extended CONNECT, so a WebSocket can be a
stream of an HTTP/2 connection.  Without triows' classes there, that stream
would negotiate permessage-deflate (a deflate bomb) and report 1006 for every
client close.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import h2.config
import h2.connection
import h2.events
import trio

import triows
from triows import testing

from .raw_client import frame

#: Every server here is the hypercorn backend (native is the default).
live_server = functools.partial(testing.live_server, backend="hypercorn")


def _echo_app(ended: list[tuple[int | None, str]]) -> triows.App:
    app = triows.App()

    @app.websocket_route("/echo", caught_close_codes=all)
    async def echo(ws: triows.WebSocket) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            ended.append((ws.client_close_code, ws.client_close_reason))

    return app


@attrs.define
class H2Client:
    """An HTTP/2 client connection whose streams are WebSockets (extended CONNECT)."""

    stream: trio.SocketStream
    connection: h2.connection.H2Connection
    received: dict[int, trio.MemorySendChannel[h2.events.Event]] = attrs.field(factory=dict)

    async def flush(self) -> None:
        data = self.connection.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def read(self) -> None:
        while data := await self.stream.receive_some(65536):
            for event in self.connection.receive_data(data):
                channel = self.received.get(getattr(event, "stream_id", 0) or 0)
                if channel is not None:
                    channel.send_nowait(event)
            await self.flush()

    async def websocket(
        self, stream_id: int, *extra: tuple[bytes, bytes]
    ) -> tuple[list[tuple[bytes, bytes]], trio.MemoryReceiveChannel[h2.events.Event]]:
        """Open a WebSocket on ``stream_id``: the response headers and the stream's events."""
        send, receive = trio.open_memory_channel[h2.events.Event](100)
        self.received[stream_id] = send
        request = [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"http"),
            (b":path", b"/echo"),
            (b":authority", b"127.0.0.1"),
            (b"sec-websocket-version", b"13"),
            *extra,
        ]
        self.connection.send_headers(stream_id, request)
        await self.flush()
        with trio.fail_after(5):
            response = await receive.receive()
        assert isinstance(response, h2.events.ResponseReceived), response
        return list(response.headers), receive

    async def send(self, stream_id: int, data: bytes) -> None:
        self.connection.send_data(stream_id, data)
        await self.flush()


@asynccontextmanager
async def h2c_client(port: int) -> AsyncIterator[H2Client]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    client = H2Client(stream, h2.connection.H2Connection(config))
    client.connection.initiate_connection()
    async with stream, trio.open_nursery() as nursery:
        await client.flush()
        nursery.start_soon(client.read)
        with trio.fail_after(5):  # the server's settings allow extended CONNECT
            while not client.connection.remote_settings.enable_connect_protocol:  # noqa: ASYNC110
                await trio.sleep(0.01)
        yield client
        nursery.cancel_scope.cancel()


async def _data(events: trio.MemoryReceiveChannel[h2.events.Event]) -> bytes:
    with trio.fail_after(5):
        while True:
            event = await events.receive()
            if isinstance(event, h2.events.DataReceived):
                return bytes(event.data)


async def test_websockets_over_http2_get_the_fixes() -> None:
    ended: list[tuple[int | None, str]] = []
    async with live_server(_echo_app(ended)) as server, h2c_client(server.port) as client:
        offer = (b"sec-websocket-extensions", b"permessage-deflate")
        headers, events = await client.websocket(1, offer)
        assert (b":status", b"200") in headers
        assert not any(name == b"sec-websocket-extensions" for name, _ in headers)
        await client.send(1, frame(0x1, b"hello"))
        assert await _data(events) == b"\x81\x05hello"
        # The client's own close code and reason reach the view.
        await client.send(1, frame(0x8, struct.pack("!H", 4321) + b"bye"))
        assert (await _data(events))[:4] == b"\x88\x05\x10\xe1"
        with trio.fail_after(5):
            while not ended:  # noqa: ASYNC110 - polls the view's finally; bounded
                await trio.sleep(0.02)
        assert ended == [(4321, "bye")]

        # permessage-deflate was not negotiated: a compressed frame (a would-be
        # deflate bomb) is a protocol error, never inflated.
        _, events = await client.websocket(3, offer)
        await client.send(3, frame(0x2, b"\x00" * 16, rsv=0b100))
        close = await _data(events)
        assert close[:1] == b"\x88" and close[2:4] == struct.pack("!H", 1002), close
