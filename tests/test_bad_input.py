"""Bad input over real sockets, on every backend: every byte from the client is untrusted.

Each test sends something a polite client never would (crafted with raw trio
streams where trio-websocket refuses to: TCP, or TLS on the native-tls backend of
the ``backend`` fixture), asserts the exact close code or HTTP
status the server answers with, and then checks that the server still serves a
fresh client.  Loopback only, every wait bounded.
"""

from __future__ import annotations

import logging
import struct
from contextlib import suppress
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

import triows

from .conftest import Backend, Served
from .echo_apps import echo_app
from .raw_client import frame, handshake, open_stream, upgraded


async def still_serves(served: Served) -> None:
    """A fresh, polite client gets its echo."""
    with trio.fail_after(5):
        async with served.connect("/text") as ws:
            await ws.send_message("still here")
            assert await ws.get_message() == "still here"


async def close_code(stream: trio.abc.Stream) -> int | None:
    """Read server frames until its close frame; return its code (None: EOF, no close)."""
    buffer = b""
    while True:
        while len(buffer) >= 2:
            opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                (length,) = struct.unpack("!H", buffer[2:4])
                offset = 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                (length,) = struct.unpack("!Q", buffer[2:10])
                offset = 10
            if len(buffer) < offset + length:
                break
            payload, buffer = buffer[offset : offset + length], buffer[offset + length :]
            if opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0]) if payload else 1005
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            return None
        if not chunk:
            return None
        buffer += chunk


async def http_exchange(served: Served, request: bytes) -> bytes:
    """Send raw bytes; return the response head (or what came before the server hung up)."""
    stream = await open_stream(served)
    async with stream:
        with suppress(trio.BrokenResourceError):  # it may hang up before reading it all
            await stream.send_all(request)
        received = b""
        try:
            while b"\r\n\r\n" not in received and (chunk := await stream.receive_some(65536)):
                received += chunk
        except trio.BrokenResourceError:
            pass
    return received


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


# -- limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["serve", "app"])
async def test_message_past_max_message_size_closes_with_1009(backend: Backend, where: str) -> None:
    """The limit comes from serve(max_message_size=...) or App(max_message_size=...)."""
    app = echo_app(**({"max_message_size": 1000} if where == "app" else {}))
    options: dict[str, Any] = {"max_message_size": 1000} if where == "serve" else {}
    with trio.fail_after(10):
        async with backend.serve(app, **options) as served:
            async with served.connect("/text", max_message_size=10**6) as ws:
                await ws.send_message("x" * 1000)  # exactly the limit: fine
                assert await ws.get_message() == "x" * 1000
                await ws.send_message("x" * 1001)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason is not None
                assert closed.value.reason.code == 1009
            # The limit is per message, not per frame: fragments add up.
            async with upgraded(served) as stream:
                await stream.send_all(frame(0x1, b"y" * 600, fin=False))
                await stream.send_all(frame(0x0, b"y" * 600))
                assert await close_code(stream) == 1009
            await still_serves(served)


async def test_serve_limit_wins_over_the_apps(backend: Backend) -> None:
    app = echo_app(max_message_size=10)
    with trio.fail_after(10):
        async with backend.serve(app, max_message_size=2000) as served:
            await still_serves(served)
            async with served.connect("/text") as ws:
                await ws.send_message("z" * 2000)
                assert await ws.get_message() == "z" * 2000


def test_app_refuses_a_nonsense_limit() -> None:
    with pytest.raises(ValueError, match="max_message_size"):
        triows.App(max_message_size=0)


# -- the wrong kind of message -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message", "code"),
    [
        ("/text", b"\x00\x01binary", 1003),
        ("/bytes", "text", 1003),
        ("/json", "{not json", 1007),
        ("/json", b"\xff\xfe", 1007),
    ],
)
async def test_wrong_message_type_or_payload_is_a_client_error(
    backend: Backend, path: str, message: str | bytes, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    """1003 / 1007, never 1011; logged as a warning without a traceback."""
    caplog.set_level(logging.INFO)
    with trio.fail_after(10):
        async with backend.serve(echo_app()) as served:
            async with served.connect(path) as ws:
                await ws.send_message(message)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason is not None
                assert closed.value.reason.code == code
            await still_serves(served)
    warnings = [r for r in caplog.records if "client error" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# -- broken frames ---------------------------------------------------------------------------


INVALID_UTF8 = [
    b"\xff",  # never valid
    b"\xc0\xaf",  # overlong "/"
    b"\xed\xa0\x80",  # a UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"hello \xce",  # truncated sequence at the end
]


async def test_invalid_utf8_in_a_text_frame_closes_with_1007(backend: Backend) -> None:
    with trio.fail_after(10):
        async with backend.serve(echo_app()) as served:
            for payload in INVALID_UTF8:
                async with upgraded(served) as stream:
                    await stream.send_all(frame(0x1, payload))
                    assert await close_code(stream) == 1007, payload
            # ...also split across fragments, each half valid on its own.
            async with upgraded(served) as stream:
                await stream.send_all(frame(0x1, b"\xce", fin=False) + frame(0x0, b"\xff"))
                assert await close_code(stream) == 1007
            await still_serves(served)


BAD_FRAMES = {
    "rsv1 set (no extension negotiated)": frame(0x1, b"hi", rsv=4),
    "rsv2 set": frame(0x1, b"hi", rsv=2),
    "rsv3 set": frame(0x2, b"hi", rsv=1),
    "unmasked client frame": frame(0x1, b"hi", mask=False),
    "fragmented ping": frame(0x9, b"ping", fin=False),
    "fragmented close": frame(0x8, struct.pack("!H", 1000), fin=False),
    "ping payload over 125 bytes": frame(0x9, b"p" * 126),
    "reserved data opcode 0x3": frame(0x3, b"hi"),
    "reserved control opcode 0xB": frame(0xB, b"hi"),
    "continuation with nothing to continue": frame(0x0, b"hi"),
    "new message inside a fragmented one": frame(0x1, b"a", fin=False) + frame(0x1, b"b"),
    "close frame with a 1-byte payload": frame(0x8, b"\x03"),
    "close code 1005 (never sent on the wire)": frame(0x8, struct.pack("!H", 1005)),
    "close code 999": frame(0x8, struct.pack("!H", 999)),
    # Registered after RFC 6455; wsproto refuses it, so both servers do.
    "close code 1014": frame(0x8, struct.pack("!H", 1014)),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
async def test_protocol_violations_close_with_1002(backend: Backend, name: str) -> None:
    with trio.fail_after(10):
        async with backend.serve(echo_app()) as served:
            async with upgraded(served) as stream:
                await stream.send_all(BAD_FRAMES[name])
                assert await close_code(stream) == 1002
            await still_serves(served)


# -- broken handshakes -----------------------------------------------------------------------


BAD_HANDSHAKES = {
    "no Sec-WebSocket-Key": handshake(Sec_WebSocket_Key=None),
    "Sec-WebSocket-Key not base64": handshake(Sec_WebSocket_Key=b"not base64!"),
    "Sec-WebSocket-Key of 8 bytes": handshake(Sec_WebSocket_Key=b"AAAAAAAAAAA="),
    "no Sec-WebSocket-Version": handshake(Sec_WebSocket_Version=None),
    "Sec-WebSocket-Version 8": handshake(Sec_WebSocket_Version=b"8"),
    "Connection: keep-alive (no Upgrade token)": handshake(Connection=b"keep-alive"),
    "no Upgrade header": handshake(Upgrade=None),
    "Upgrade: websocketx": handshake(Upgrade=b"websocketx"),
    "HTTP/1.0": handshake().replace(b"HTTP/1.1", b"HTTP/1.0", 1),
}

# RFC 6455 4.2.2: a wrong version gets 426 with the versions the server speaks; a
# request that is not a WebSocket upgrade reaches the App as plain HTTP, and the
# route is WebSocket-only: 426 Upgrade Required as well.  Both backends refuse a
# handshake by the one rule of triows._serving._handshake (tests/test_server_pieces.py
# checks the headers too).
HANDSHAKE_STATUS = {
    "hypercorn": {
        "no Sec-WebSocket-Key": 400,
        "Sec-WebSocket-Key not base64": 400,
        "Sec-WebSocket-Key of 8 bytes": 400,
        "no Sec-WebSocket-Version": 400,
        "Sec-WebSocket-Version 8": 426,
        "Connection: keep-alive (no Upgrade token)": 426,
        "no Upgrade header": 426,
        "Upgrade: websocketx": 426,
        "HTTP/1.0": 400,
    },
    "native": {
        "no Sec-WebSocket-Key": 400,
        "Sec-WebSocket-Key not base64": 400,
        "Sec-WebSocket-Key of 8 bytes": 400,
        "no Sec-WebSocket-Version": 400,
        "Sec-WebSocket-Version 8": 426,
        "Connection: keep-alive (no Upgrade token)": 426,
        "no Upgrade header": 426,
        "Upgrade: websocketx": 426,
        "HTTP/1.0": 400,
    },
}


@pytest.mark.parametrize("name", list(BAD_HANDSHAKES))
async def test_bad_handshakes_are_refused(backend: Backend, name: str) -> None:
    with trio.fail_after(10):
        async with backend.serve(echo_app()) as served:
            response = await http_exchange(served, BAD_HANDSHAKES[name])
            assert status_of(response) == HANDSHAKE_STATUS[backend.server][name]
            if status_of(response) == 426 and b"Version: 8" in BAD_HANDSHAKES[name]:
                assert b"sec-websocket-version: 13" in response.lower()
            await still_serves(served)


OVERSIZE_STATUS = {"hypercorn": 431, "native": 431}


async def test_oversize_request_head_is_refused(backend: Backend) -> None:
    big = b"X-Filler: " + b"a" * (64 * 1024)
    request = handshake().replace(b"\r\n\r\n", b"\r\n" + big + b"\r\n\r\n")
    with trio.fail_after(10):
        async with backend.serve(echo_app()) as served:
            response = await http_exchange(served, request)
            assert status_of(response) == OVERSIZE_STATUS[backend.server]
            # Many small headers that add up count too.  (hypercorn's limit, h11's
            # 16 KiB max_incomplete_event_size, only applies to a head still
            # incomplete after a read: one that arrives whole in a single 64 KiB
            # read is parsed, so its real bound is about 80 KiB; this one is 110 KiB.)
            many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(1000))
            request = handshake().replace(b"\r\n\r\n", b"\r\n" + many + b"\r\n", 1)
            assert (
                status_of(await http_exchange(served, request)) == OVERSIZE_STATUS[backend.server]
            )
            await still_serves(served)


async def test_slowloris_partial_handshake_is_dropped_after_handshake_timeout(
    backend: Backend,
) -> None:
    """A client trickling a request head is hung up on after handshake_timeout."""
    timeout = 0.5
    with trio.fail_after(15):
        async with backend.serve(echo_app(), handshake_timeout=timeout) as served:
            request = handshake()[:-4]  # never finishes the head
            stream = await open_stream(served)
            async with stream:
                started = trio.current_time()
                hung_up_at: list[float] = []

                async def trickle() -> None:
                    # One byte every 50 ms: each byte is progress, none resets the clock.
                    try:
                        for byte in request:
                            await stream.send_all(bytes([byte]))
                            await trio.sleep(0.05)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass

                async def watch(cancel: trio.CancelScope) -> None:
                    try:
                        while await stream.receive_some(4096):
                            pass
                    except trio.BrokenResourceError:
                        pass
                    hung_up_at.append(trio.current_time() - started)
                    cancel.cancel()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(trickle)
                    nursery.start_soon(watch, nursery.cancel_scope)
                    # A polite client is served while the slow one is pending.
                    await still_serves(served)
                assert hung_up_at, "the server never hung up"
                assert timeout * 0.8 <= hung_up_at[0] < timeout + 2.0, hung_up_at
            await still_serves(served)


KEEP_ALIVE_REQUEST = b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def _served_keep_alive(served: Served) -> trio.abc.Stream:
    """A connection that has had one HTTP response and stays open (keep-alive)."""
    stream = await open_stream(served)
    await stream.send_all(KEEP_ALIVE_REQUEST)
    received = b""
    while b"\r\n\r\n" not in received:
        received += await stream.receive_some(65536)
    assert status_of(received) == 404
    assert b"connection: close" not in received.lower()
    return stream


async def _seconds_until_hung_up(stream: trio.abc.Stream) -> float:
    started = trio.current_time()
    with suppress(trio.BrokenResourceError):
        while await stream.receive_some(65536):
            pass
    return trio.current_time() - started


async def test_an_idle_keep_alive_connection_is_closed_after_handshake_timeout(
    backend: Backend,
) -> None:
    timeout = 0.5
    with trio.fail_after(15):
        async with backend.serve(echo_app(), handshake_timeout=timeout) as served:
            stream = await _served_keep_alive(served)
            async with stream:
                waited = await _seconds_until_hung_up(stream)
            assert timeout * 0.7 <= waited < timeout + 2.0, waited
            await still_serves(served)


async def test_shutdown_closes_idle_keep_alive_connections_at_once(backend: Backend) -> None:
    # Not after the idle timeout (60 s) nor after the shutdown budget (5 s).
    with trio.fail_after(15):
        async with backend.serve(echo_app(), handshake_timeout=60) as served:
            stream = await _served_keep_alive(served)
            stopping = trio.current_time()
        async with stream:
            assert await _seconds_until_hung_up(stream) < 2.0
        assert trio.current_time() - stopping < 3.0
