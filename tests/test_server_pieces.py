"""The server pieces written once for both servers behave the same on the wire.

Keepalive (``triows._serving._keepalive``) and the handshake rule
(``triows._serving._handshake``) on every backend of the ``backend`` fixture
(native, native over TLS, hypercorn), with raw bytes on real sockets; and the
scheduler and the rule on their own.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest
import trio
import trio.testing

import triows
from triows._connection._transport import ClientGone
from triows._hypercorn import _stream as hypercorn_stream
from triows._serving._handshake import asks_for_websocket, refusal
from triows._serving._keepalive import Keepalive, PingState

from .conftest import Backend, Served
from .raw_client import frame, handshake, open_stream

Ended = list[tuple[int | None, str]]

# -- raw bytes over TCP or TLS ------------------------------------------------------------


@asynccontextmanager
async def _raw(served: Served) -> AsyncIterator[trio.abc.Stream]:
    """A raw stream to the server (TLS when the backend serves wss)."""
    async with await open_stream(served) as stream:
        yield stream


async def _receive(stream: trio.abc.Stream) -> bytes:
    """The next bytes, ``b""`` at the end of the stream (or its reset)."""
    try:
        return bytes(await stream.receive_some(65536))
    except trio.BrokenResourceError:
        return b""


async def _response_head(stream: trio.abc.Stream) -> tuple[bytes, bytes]:
    """The response head, and what came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await _receive(stream)
        assert chunk, f"the server hung up before its response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


@attrs.define
class _Frames:
    """The server's frames (unmasked) on a raw stream."""

    stream: trio.abc.Stream
    buffer: bytes = b""

    async def _fill(self, size: int) -> bool:
        while len(self.buffer) < size:
            chunk = await _receive(self.stream)
            if not chunk:
                return False
            self.buffer += chunk
        return True

    async def next(self) -> tuple[int, bytes] | None:
        """The next frame's opcode and payload, None at the end of the stream."""
        if not await self._fill(2):
            return None
        opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
        start = 2
        if length == 126:
            start, length = 4, struct.unpack("!H", self.buffer[2:4])[0]
        elif length == 127:
            start, length = 10, struct.unpack("!Q", self.buffer[2:10])[0]
        if not await self._fill(start + length):
            return None
        payload = self.buffer[start : start + length]
        self.buffer = self.buffer[start + length :]
        return opcode, payload

    async def close_frame(self) -> tuple[int, str] | None:
        """The code and reason of the server's close frame (pings skipped), None if none came."""
        while (got := await self.next()) is not None:
            opcode, payload = got
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()
        return None


@asynccontextmanager
async def _upgraded(served: Served) -> AsyncIterator[_Frames]:
    async with _raw(served) as stream:
        await stream.send_all(handshake("/idle"))
        head, rest = await _response_head(stream)
        assert head.startswith(b"HTTP/1.1 101"), head
        yield _Frames(stream, rest)


def _idle_app(ended: Ended) -> triows.App:
    app = triows.App()

    @app.websocket_route("/idle", caught_close_codes=all)
    async def idle(ws: triows.WebSocket) -> None:
        try:
            await ws.send("ready")
            await trio.sleep_forever()
        finally:
            ended.append((ws.client_close_code, ws.client_close_reason))

    return app


async def _wait_for(ended: Ended) -> None:
    while not ended:  # noqa: ASYNC110 - polls the view's finally; bounded by the caller
        await trio.sleep(0.02)


# -- keepalive on every backend -----------------------------------------------------------


async def test_a_client_that_never_answers_pings_gets_1011_and_its_view_1006(
    backend: Backend,
) -> None:
    ended: Ended = []
    with trio.fail_after(10):
        async with (
            backend.serve(_idle_app(ended), ping_interval=0.2, ping_timeout=0.3) as served,
            _upgraded(served) as frames,
        ):
            # Reads everything (the "ready" message, the pings), answers nothing.
            assert await frames.next() == (0x1, b"ready")
            started = trio.current_time()
            assert await frames.close_frame() == (1011, "ping timeout")
            assert trio.current_time() - started < 0.2 + 0.3 + 0.5
            await _wait_for(ended)
    assert ended == [(1006, "ping timeout")]


async def test_unsolicited_pongs_do_not_keep_a_non_reading_client_alive(
    backend: Backend,
) -> None:
    ended: Ended = []
    with trio.fail_after(10):
        async with (
            backend.serve(_idle_app(ended), ping_interval=0.2, ping_timeout=0.3) as served,
            _upgraded(served) as frames,
        ):
            # Reads nothing; a pong every 0.1 s, never the answer to a ping.
            started = trio.current_time()
            with trio.move_on_after(3):
                while not ended:
                    await frames.stream.send_all(frame(0xA, b"unsolicited"))
                    await trio.sleep(0.1)
            assert ended == [(1006, "ping timeout")]
            assert trio.current_time() - started < 0.2 + 0.3 + 0.5
            # The server ended the connection.  Its close frame may be lost to the
            # reset that closing with our pongs unread causes; if it came, it is 1011.
            assert await frames.close_frame() in (None, (1011, "ping timeout"))


async def test_a_client_that_answers_pings_stays(backend: Backend) -> None:
    ended: Ended = []
    with trio.fail_after(10):
        async with (
            backend.serve(_idle_app(ended), ping_interval=0.1, ping_timeout=0.2) as served,
            _upgraded(served) as frames,
        ):
            assert await frames.next() == (0x1, b"ready")
            with trio.move_on_after(1.2):
                while (got := await frames.next()) is not None:
                    opcode, payload = got
                    assert opcode == 0x9, got  # pings only: no close
                    await frames.stream.send_all(frame(0xA, payload))
            assert ended == []


# -- the handshake rule on every backend --------------------------------------------------

_NOT_AN_UPGRADE = (
    426,
    [(b"Upgrade", b"websocket"), (b"Content-Length", b"0"), (b"Connection", b"close")],
)
_WRONG_VERSION = (
    426,
    [
        (b"Upgrade", b"websocket"),
        (b"Sec-WebSocket-Version", b"13"),
        (b"Content-Length", b"0"),
        (b"Connection", b"close"),
    ],
)
_BAD = (400, [(b"Content-Length", b"0"), (b"Connection", b"close")])

REFUSED = {
    "no Sec-WebSocket-Key": (handshake(Sec_WebSocket_Key=None), _BAD),
    "Sec-WebSocket-Key not base64": (handshake(Sec_WebSocket_Key=b"not base64!"), _BAD),
    "Sec-WebSocket-Key of 8 bytes": (handshake(Sec_WebSocket_Key=b"AAAAAAAAAAA="), _BAD),
    "no Sec-WebSocket-Version": (handshake(Sec_WebSocket_Version=None), _BAD),
    "Sec-WebSocket-Version 8": (handshake(Sec_WebSocket_Version=b"8"), _WRONG_VERSION),
    "no Connection header": (handshake(Connection=None), _NOT_AN_UPGRADE),
    "Connection: keep-alive": (handshake(Connection=b"keep-alive"), _NOT_AN_UPGRADE),
    "Upgrade: websocket, h2c": (handshake(Upgrade=b"websocket, h2c"), _NOT_AN_UPGRADE),
    "POST": (handshake().replace(b"GET", b"POST", 1), _BAD),
    "HTTP/1.0": (handshake().replace(b"HTTP/1.1", b"HTTP/1.0", 1), _BAD),
}

#: What each server adds to every response of its own (hypercorn: date, server).
_SERVER_HEADERS = {b"date", b"server"}


def _status_and_headers(head: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    status_line, *lines = head.split(b"\r\n")
    headers = [(name, value.strip()) for name, _, value in (line.partition(b":") for line in lines)]
    own = [(name, value) for name, value in headers if name.lower() not in _SERVER_HEADERS]
    return int(status_line.split()[1]), own


@pytest.mark.parametrize("name", list(REFUSED))
async def test_bad_handshakes_get_the_same_refusal_on_every_backend(
    backend: Backend, name: str
) -> None:
    request, expected = REFUSED[name]
    with trio.fail_after(10):
        async with backend.serve(_idle_app([])) as served, _raw(served) as stream:
            await stream.send_all(request)
            head, body = await _response_head(stream)
            assert _status_and_headers(head) == expected, head
            assert body == b"" and await _receive(stream) == b""  # closed, no body


async def test_a_request_without_upgrade_is_plain_http_on_every_backend(
    backend: Backend,
) -> None:
    # Not a WebSocket request at all: the App answers it (426 for a WebSocket route).
    with trio.fail_after(10):
        async with backend.serve(_idle_app([])) as served, _raw(served) as stream:
            await stream.send_all(handshake("/idle", Upgrade=None, Connection=b"close"))
            head, _ = await _response_head(stream)
            status, headers = _status_and_headers(head)
            assert status == 426
            assert (b"upgrade", b"websocket") in [(n.lower(), v) for n, v in headers]


#: One request of each kind of answer: the 101, a refused handshake (400), a
#: WebSocket to no route (403), an HTTP route's answer (426 here).
_ANSWERS = {
    "101": handshake("/idle"),
    "400": handshake("/idle", Sec_WebSocket_Key=None),
    "403": handshake("/nowhere"),
    "426": handshake("/idle", Upgrade=None, Connection=b"close"),
}


@pytest.mark.parametrize("status", list(_ANSWERS))
async def test_every_answer_carries_one_date_header_and_no_server_header(
    backend: Backend, status: str
) -> None:
    with trio.fail_after(10):
        async with backend.serve(_idle_app([])) as served, _raw(served) as stream:
            await stream.send_all(_ANSWERS[status])
            head, _ = await _response_head(stream)
    assert head.split(b" ")[1] == status.encode(), head
    names = [line.partition(b":")[0].lower() for line in head.split(b"\r\n")[1:]]
    assert names.count(b"date") == 1, head
    assert b"server" not in names, head


# -- the pieces on their own ---------------------------------------------------------------


def test_the_handshake_rule() -> None:
    good = [
        (b"host", b"x"),
        (b"upgrade", b"WebSocket"),
        (b"connection", b"keep-alive, Upgrade"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"sec-websocket-version", b"13"),
    ]
    assert refusal("1.1", b"GET", good) is None
    assert asks_for_websocket(good)
    assert not asks_for_websocket([(b"upgrade", b"h2c")])
    twice = [*good, (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")]
    refused = refusal("1.1", b"GET", twice)
    assert refused is not None and refused.status == 400


@attrs.define(eq=False)
class _FakeConnection:
    ping_state: PingState = attrs.field(factory=PingState)
    pings: list[bytes] = attrs.field(factory=list)
    dropped: bool = False

    async def ping(self, payload: bytes) -> None:
        self.pings.append(payload)
        await trio.lowlevel.checkpoint()

    async def drop_silent_client(self) -> None:
        self.dropped = True
        await trio.lowlevel.checkpoint()


async def test_only_the_pong_carrying_the_ping_payload_counts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    keepalive = Keepalive(1.0, 1.0)
    answering, unsolicited, stale = _FakeConnection(), _FakeConnection(), _FakeConnection()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keepalive.run, nursery)
        for conn in (answering, unsolicited, stale):
            keepalive.opened(conn)
        for _ in range(40):
            await trio.sleep(0.25)
            if answering.pings:
                assert keepalive.pong(answering, answering.pings[-1]) in (True, False)
            assert not keepalive.pong(unsolicited, b"unsolicited")
            if len(stale.pings) > 1:
                assert not keepalive.pong(stale, stale.pings[0])  # an older ping's answer
        assert len(answering.pings) >= 4
        assert len(set(answering.pings)) == len(answering.pings)  # a fresh payload each time
        assert not answering.dropped
        assert unsolicited.dropped and stale.dropped
        assert keepalive.pinged == 1
        keepalive.forget(answering)
        assert keepalive.pinged == 0
        nursery.cancel_scope.cancel()


def test_one_departure_exception_for_both_servers() -> None:
    assert not hasattr(hypercorn_stream, "ClientGone") or hypercorn_stream.ClientGone is ClientGone
    gone = ClientGone(1006, "ping timeout")
    assert isinstance(gone, OSError) and (gone.code, gone.reason) == (1006, "ping timeout")
