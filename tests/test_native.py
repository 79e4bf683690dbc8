"""The native backend (``triows.serve(app, backend="native")``) over real sockets.

trio-websocket is the client; a few tests speak raw bytes to reach what a polite
client never does (fragments, silence, a broken handshake).  Bounded, loopback only.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, open_websocket_url
from websockets.frames import Frame, Opcode

import triows
from triows._cli import main as cli_main
from triows._native._writer import _Writer
from triows.testing import LiveServer, live_server

from .raw_client import handshake, upgraded

native_server = functools.partial(live_server, backend="native")


async def _closed_code(ws: trio_websocket.WebSocketConnection) -> int:
    """Read until the server closes; return its close code."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await ws.get_message()
    assert closed.value.reason is not None
    return closed.value.reason.code


async def _http(server: LiveServer, request: bytes) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(request)
        received = b""
        while chunk := await stream.receive_some(65536):
            received += chunk
    return received


def _echo_app() -> triows.App:
    app = triows.App()

    @app.websocket_route("/text")
    async def text(ws: triows.WebSocket) -> None:
        async for message in ws:
            await ws.send(f"echo: {message}")

    @app.websocket_route("/bytes", value_type="bytes")
    async def binary(ws: triows.WebSocket) -> None:
        async for message in ws:
            await ws.send(message[::-1])

    @app.websocket_route("/json", value_type="json")
    async def as_json(ws: triows.WebSocket) -> None:
        async for message in ws:
            await ws.send({"got": message})

    @app.websocket_route("/items/{item_id}")
    async def item(ws: triows.WebSocket, item_id: int, verbose: bool = False) -> None:
        await ws.send(f"{item_id * 2} {verbose}")

    @app.route("/page")
    async def page(request: triows.Request) -> str:
        return f"<p>hello {request.query_parameters.get('name', '')}</p>"

    @app.route("/data", methods=["POST"])
    async def data(request: triows.Request) -> dict[str, Any]:
        return {"length": len(request.body)}

    return app


# -- messages -----------------------------------------------------------------------------


async def test_echo_text_bytes_and_json() -> None:
    with trio.fail_after(5):
        async with native_server(_echo_app()) as server:
            async with open_websocket_url(server.url("/text")) as ws:
                for text in ("hi", "", "héllo ☃", "x" * 70_000):
                    await ws.send_message(text)
                    assert await ws.get_message() == f"echo: {text}"
            async with open_websocket_url(server.url("/bytes")) as ws:
                await ws.send_message(b"\x00\x01\x02")
                assert await ws.get_message() == b"\x02\x01\x00"
            async with open_websocket_url(server.url("/json")) as ws:
                await ws.send_message('{"a": [1, 2]}')
                reply = await ws.get_message()
                assert isinstance(reply, str)  # JSON goes out as text frames
                assert json.loads(reply) == {"got": {"a": [1, 2]}}


async def test_many_messages_in_one_read_and_pipelined() -> None:
    with trio.fail_after(5):
        async with (
            native_server(_echo_app()) as server,
            open_websocket_url(server.url("/text")) as ws,
        ):
            for i in range(200):
                await ws.send_message(str(i))
            for i in range(200):
                assert await ws.get_message() == f"echo: {i}"


async def test_fragmented_message_is_reassembled() -> None:
    with trio.fail_after(5):
        async with native_server(_echo_app()) as server, upgraded(server, "/text") as stream:
            parts = [
                Frame(Opcode.TEXT, "hé".encode()[:2], fin=False),
                Frame(Opcode.PING, b"p"),  # control frames may come in between
                Frame(Opcode.CONT, "hé".encode()[2:] + b"l", fin=False),
                Frame(Opcode.CONT, b"lo", fin=True),
            ]
            await stream.send_all(b"".join(f.serialize(mask=True) for f in parts))
            received = b""
            while b"echo: h\xc3\xa9llo" not in received:
                received += await stream.receive_some(4096)
            assert received.startswith(b"\x8a\x01p")  # the pong came first


async def test_concurrent_senders_never_interleave_frames() -> None:
    app = triows.App()

    @app.websocket_route("/burst")
    async def burst(ws: triows.WebSocket) -> None:
        async def sender(n: int) -> None:
            for i in range(50):
                await ws.send(f"{n}:{i}:" + "y" * (i * 300))

        async with trio.open_nursery() as nursery:
            for n in range(8):
                nursery.start_soon(sender, n)
        await ws.receive()

    with trio.fail_after(10):
        async with native_server(app) as server, open_websocket_url(server.url("/burst")) as ws:
            seen: dict[int, int] = {}
            for _ in range(8 * 50):
                message = await ws.get_message()
                assert isinstance(message, str)
                n, i, pad = message.split(":")
                assert int(i) == seen.get(int(n), -1) + 1  # in order per sender
                assert pad == "y" * (int(i) * 300)
                seen[int(n)] = int(i)
            await ws.send_message("done")


# -- handshakes ---------------------------------------------------------------------------


async def test_subprotocol_and_accept_headers() -> None:
    app = triows.App()

    @app.websocket_route("/sub", auto_accept=False)
    async def sub(ws: triows.WebSocket) -> None:
        await ws.accept(subprotocol=ws.subprotocols[-1], headers=[("X-Hello", "yes")])
        await ws.send(",".join(ws.subprotocols))

    with trio.fail_after(5):
        async with (
            native_server(app) as server,
            open_websocket_url(server.url("/sub"), subprotocols=["a", "b"]) as ws,
        ):
            assert ws.subprotocol == "b"
            assert (b"x-hello", b"yes") in ws.handshake_headers
            assert await ws.get_message() == "a,b"


async def test_malformed_handshakes_get_400_and_slow_ones_time_out() -> None:
    with trio.fail_after(5):
        async with native_server(_echo_app(), handshake_timeout=0.3) as server:
            no_key = handshake("/text", Sec_WebSocket_Key=None)
            assert (await _http(server, no_key)).startswith(b"HTTP/1.1 400")
            garbage = b"GET /text\r\nUpgrade: websocket\r\n\r\n"
            assert (await _http(server, garbage)).startswith(b"HTTP/1.1 400")
            bad_version = handshake("/text", Sec_WebSocket_Version=b"8")
            # RFC 6455 4.2.2: 426 naming the version the server speaks.
            refused = await _http(server, bad_version)
            assert refused.startswith(b"HTTP/1.1 426"), refused
            assert b"Sec-WebSocket-Version: 13" in refused
            # Slowloris: half a request head, then nothing. The server hangs up.
            with trio.fail_after(2):
                assert await _http(server, b"GET /text HTTP/1.1\r\nHost: x\r\n") == b""


# -- close codes --------------------------------------------------------------------------


async def test_client_leaving_cancels_a_sleeping_view_promptly() -> None:
    app = triows.App()
    started, ended = trio.Event(), trio.Event()
    codes: list[int | None] = []

    @app.websocket_route("/sleep", caught_close_codes=all)
    async def view(ws: triows.WebSocket) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            codes.append(ws.client_close_code)
            ended.set()

    with trio.fail_after(5):
        async with native_server(app) as server:
            async with open_websocket_url(server.url("/sleep")) as ws:
                await started.wait()
                await ws.aclose(4003)
            with trio.fail_after(0.5):  # well under a second
                await ended.wait()
            assert codes == [4003]
            # A dropped TCP connection (no close frame) cancels it too.
            started, ended = trio.Event(), trio.Event()
            async with upgraded(server, "/sleep"):
                await started.wait()
            with trio.fail_after(0.5):
                await ended.wait()
            assert codes == [4003, 1006]


async def test_message_past_max_size_closes_with_1009() -> None:
    app = _echo_app()
    seen: list[int] = []

    @app.websocket_route("/big", caught_close_codes=all)
    async def big(ws: triows.WebSocket) -> None:
        try:
            await ws.receive()
        except triows.WebSocketDisconnect as exc:
            seen.append(exc.code)
            raise

    with trio.fail_after(5):
        async with native_server(app, max_message_size=1000) as server:
            async with open_websocket_url(server.url("/text")) as ws:
                await ws.send_message("x" * 1000)  # exactly the limit is fine
                assert await ws.get_message() == "echo: " + "x" * 1000
            async with open_websocket_url(server.url("/big")) as ws:
                await ws.send_message("x" * 1001)
                assert await _closed_code(ws) == 1009
    assert seen == [1009]


async def test_invalid_utf8_closes_with_1007() -> None:
    with trio.fail_after(5):
        async with native_server(_echo_app()) as server, upgraded(server, "/text") as stream:
            await stream.send_all(Frame(Opcode.TEXT, b"\xff\xfe").serialize(mask=True))
            received = b""
            while len(received) < 4:
                received += await stream.receive_some(4096)
            assert received[0] == 0x88  # a close frame
            assert int.from_bytes(received[2:4], "big") == 1007


async def test_shutdown_closes_clients_with_1001_and_runs_lifespan() -> None:
    app = triows.App()
    events: list[str] = []
    connected = trio.Event()

    @app.provider(scope="app")
    async def resource() -> AsyncIterator[str]:
        events.append("startup")
        yield "resource"
        events.append("shutdown")

    @app.websocket_route("/wait")
    async def wait(ws: triows.WebSocket, resource: str) -> None:
        await ws.send(resource)
        connected.set()
        try:
            await trio.sleep_forever()
        finally:
            events.append("view cancelled")

    with trio.fail_after(5):
        async with trio.open_nursery() as client_nursery:
            async with native_server(app, shutdown_timeout=2) as server:
                ws = await trio_websocket.connect_websocket_url(client_nursery, server.url("/wait"))
                assert await ws.get_message() == "resource"
                await connected.wait()
            assert await _closed_code(ws) == 1001
            await ws.aclose()
    assert events == ["startup", "view cancelled", "shutdown"]


# -- keepalive ----------------------------------------------------------------------------


async def test_ping_timeout_drops_a_silent_client_and_cancels_its_view() -> None:
    app = triows.App()
    started, ended = trio.Event(), trio.Event()
    departures: list[tuple[int | None, str]] = []

    @app.websocket_route("/quiet", caught_close_codes=all)
    async def quiet(ws: triows.WebSocket) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            departures.append((ws.client_close_code, ws.client_close_reason))
            ended.set()

    with trio.fail_after(5):
        async with native_server(app, ping_interval=0.1, ping_timeout=0.2) as server:
            # A polite client answers pings and stays connected.
            async with open_websocket_url(server.url("/quiet")):
                await started.wait()
                await trio.sleep(0.6)
                assert not ended.is_set()
            await ended.wait()
            assert departures == [(1000, "")]
            # A client that never reads (so never answers) is dropped.
            started, ended = trio.Event(), trio.Event()
            async with upgraded(server, "/quiet") as stream:
                await started.wait()
                with trio.fail_after(2):
                    await ended.wait()
                assert departures[1] == (1006, "ping timeout")
                # What it would have read: a ping, then a 1011 close frame.
                received = b""
                with trio.move_on_after(1):
                    while chunk := await stream.receive_some(4096):
                        received += chunk
                assert received.startswith(b"\x89")
                assert b"\x88" in received and b"\x03\xf3" in received  # 1011


# -- HTTP ---------------------------------------------------------------------------------


async def test_http_routes() -> None:
    with trio.fail_after(5):
        async with native_server(_echo_app()) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                # Keep-alive: two requests on one connection.
                for name in (b"a", b"b"):
                    await stream.send_all(b"GET /page?name=%s HTTP/1.1\r\nHost: x\r\n\r\n" % name)
                    received = b""
                    while not received.endswith(b"</p>"):
                        received += await stream.receive_some(4096)
                    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
                    assert received.endswith(b"<p>hello %s</p>" % name)
            posted = await _http(
                server,
                b"POST /data HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                b"Connection: close\r\n\r\nhello",
            )
            assert posted.startswith(b"HTTP/1.1 200")
            assert posted.endswith(b'{"length": 5}')
            missing = await _http(
                server, b"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert missing.startswith(b"HTTP/1.1 404")
            websocket_only = await _http(
                server, b"GET /text HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert websocket_only.startswith(b"HTTP/1.1 426")
            assert (await _http(server, b"NONSENSE\r\n\r\n")).startswith(b"HTTP/1.1 400")


def test_cli_accepts_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(func: Any, app: Any, target: str, args: Any) -> None:
        seen["backend"] = args.backend

    monkeypatch.setattr(trio, "run", fake_run)
    cli_main(["run", "examples.echo:app", "--backend", "native"])
    assert seen == {"backend": "native"}


# -- the writer: tails go first -----------------------------------------------------------------


async def _read_exactly(sock: trio.socket.SocketType, size: int) -> bytes:
    received = bytearray()
    while len(received) < size:
        chunk = await sock.recv(65536)
        assert chunk, "the writer's side closed early"
        received += chunk
    return bytes(received)


@pytest.mark.parametrize("how", ["cancelled write", "write_now"])
async def test_a_writers_unwritten_tail_goes_before_the_next_write(how: str) -> None:
    # A write cancelled after a partial send, or a write_now() the kernel took
    # only part of, leaves a tail; the next write must not overtake it.
    ours, peer = trio.socket.socketpair()
    with ours, peer:
        writer = _Writer(ours)
        first = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers hold
        got: list[bytes] = []

        async def read_all() -> None:
            got.append(await _read_exactly(peer, len(first) + len(b"after")))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                if how == "cancelled write":
                    with trio.move_on_after(0.2):
                        await writer.write(first)  # blocks: the peer is not reading
                    assert writer.pending_bytes, "the cancelled write left no tail"
                    nursery.start_soon(read_all)
                else:
                    nursery.start_soon(read_all)  # starts at the next checkpoint
                    assert writer.write_now(first, nursery)
                    assert writer.pending_bytes, "the kernel took the whole MiB"
                # At once: before the flushing task (or anything else) has run.
                await writer.write(b"after")
        assert got == [first + b"after"]
