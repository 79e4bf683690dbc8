"""The hypercorn backend of ``triows.serve``: what plain hypercorn 0.18 gets wrong.

Each test drives a real server over loopback sockets with a hand-made client
that does what a hostile or broken client would: one packet after the
handshake, a deflate bomb, a flood after 1009, clients that never read while
the server shuts down, a burst of connections larger than hypercorn's default
listen backlog.  See docs/deployment.md (Plain hypercorn).
"""

from __future__ import annotations

import contextlib
import functools
import select
import socket
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from trio_websocket import open_websocket_url

import triows
from triows import testing

from .raw_client import frame, handshake

#: Every server here is the hypercorn backend (native is the default).
live_server = functools.partial(testing.live_server, backend="hypercorn")

ROOT = Path(__file__).resolve().parent.parent


def _echo_app(ended: list[tuple[int | None, str]] | None = None) -> triows.App:
    app = triows.App()

    @app.websocket_route("/echo", caught_close_codes=all)
    async def echo(ws: triows.WebSocket) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            if ended is not None:
                ended.append((ws.client_close_code, ws.client_close_reason))

    return app


async def _echo_works(port: int) -> None:
    with trio.fail_after(5):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/echo") as client:
            await client.send_message("still here")
            assert await client.get_message() == "still here"


async def _read_until_closed(stream: trio.SocketStream, limit: float = 5) -> bytes:
    received = b""
    with trio.fail_after(limit):
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:  # reset: the server dropped the connection
                break
            if not chunk:
                break
            received += chunk
    return received


# -- close codes: the client's own, and 1001 at shutdown ---------------------------------------


async def test_the_view_sees_the_clients_close_code_and_reason() -> None:
    # hypercorn reports every close the client starts as 1006, without a reason.
    ended: list[tuple[int | None, str]] = []
    async with live_server(_echo_app(ended)) as server:
        async with open_websocket_url(server.url("/echo")) as client:
            await client.send_message("hi")
            assert await client.get_message() == "hi"
            await client.aclose(code=4321, reason="bye")
        with trio.fail_after(5):
            while not ended:  # noqa: ASYNC110 - polls the view's finally; bounded
                await trio.sleep(0.02)
    assert ended == [(4321, "bye")]


async def test_every_client_gets_1001_at_shutdown() -> None:
    # The App closes its views' WebSockets through ASGI before the server stops:
    # the close frame reaches each client, and the connection ends once it answers.
    clients: list[trio.SocketStream] = []
    server_scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[int]) -> None:
        with server_scope:
            await triows.serve(_echo_app(), port=0, gc_freeze=False, task_status=task_status)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(run)
        for _ in range(3):
            client = await trio.open_tcp_stream("127.0.0.1", port)
            await _upgrade(client, handshake("/echo"))
            clients.append(client)
        started = trio.current_time()
        server_scope.cancel()
        for client in clients:
            with trio.fail_after(5):
                close = await client.receive_some(65536)
            assert close[:1] == b"\x88" and close[2:4] == struct.pack("!H", 1001), close
            await client.send_all(frame(0x8, struct.pack("!H", 1001)))
            assert await _read_until_closed(client) == b""
    assert trio.current_time() - started < 1.0
    for client in clients:
        await client.aclose()


# -- one packet must not end the server ----------------------------------------------------

_HEAD = handshake("/echo")[:-2]  # without the blank line that ends the head

ONE_PACKET = {
    "one-extra-byte": _HEAD + b"\r\nx",
    "content-length": _HEAD + b"Content-Length: 5\r\n\r\nhello",
    "chunked": _HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "expect-100-continue": _HEAD + b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
    "pipelined-request": _HEAD + b"\r\nGET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
}


@pytest.mark.parametrize("packet", ONE_PACKET.values(), ids=list(ONE_PACKET))
async def test_one_packet_after_a_handshake_does_not_end_the_server(packet: bytes) -> None:
    # Plain hypercorn answers 400 and then h11's LocalProtocolError escapes its
    # TCPServer: the whole server exits.  Here only that connection ends.
    async with live_server(_echo_app()) as server:
        for _ in range(5):  # the app's accept races the 400: try both orders
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(packet)
                received = await _read_until_closed(stream)
            assert received.startswith(b"HTTP/1.1 "), received[:80]
        await _echo_works(server.port)


# -- memory: no deflate bomb, nothing buffered after 1009 ------------------------------------


def _peak_rss_reset() -> bool:
    """Reset this process's peak RSS (VmHWM); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def _rss_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/self/status")


@contextlib.contextmanager
def _rss_growth_at_most(mib: float) -> Iterator[None]:
    """Fail if this process's RSS (its peak, where measurable) grows by more than ``mib``."""
    field = "VmHWM" if _peak_rss_reset() else "VmRSS"
    before = _rss_mib("VmRSS")
    yield
    growth = _rss_mib(field) - before
    assert growth < mib, f"{field} grew by {growth:.0f} MiB"


def _frame_head(opcode: int, length: int, *, rsv1: bool = False) -> bytes:
    """A masked client frame's head, with the all-zero masking key: the payload goes as is."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    return bytes([first, 0x80 | 127]) + struct.pack("!Q", length) + b"\0\0\0\0"


@functools.cache
def _deflate_bomb() -> bytes:
    """One permessage-deflate message of about 1 MiB that inflates to 1 GiB of zeros."""
    compressor = zlib.compressobj(wbits=-15)
    block = bytes(1 << 20)
    body = b"".join(compressor.compress(block) for _ in range(1024))
    body += compressor.flush(zlib.Z_SYNC_FLUSH)
    return body[:-4]  # RFC 7692: without the final 00 00 ff ff


async def _upgrade(stream: trio.SocketStream, request: bytes) -> bytes:
    """Send ``request``; return the 101 response head (raises on anything else)."""
    await stream.send_all(request)
    head = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some(65536)
            assert chunk, head
            head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert rest == b""
    return head


async def _close_code_while_sending(stream: trio.SocketStream, chunks: Iterator[bytes]) -> int:
    """Send every chunk (unless the server closes first) while reading its close frame."""
    code: list[int] = []

    async def read() -> None:
        received = await _read_until_closed(stream, limit=60)
        assert received[:1] == b"\x88", received[:20]
        code.append(struct.unpack("!H", received[2:4])[0])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            for chunk in chunks:
                await stream.send_all(chunk)
            await stream.send_all(frame(0x8, struct.pack("!H", 1000)))
    return code[0]


async def test_a_deflate_bomb_is_not_inflated() -> None:
    # hypercorn accepts permessage-deflate and wsproto inflates a frame before the
    # size check: one 1 MiB message took RSS to 1.3 GB.  serve() does not
    # negotiate permessage-deflate, so a compressed frame is a protocol error (1002).
    bomb = _deflate_bomb()
    request = handshake("/echo", Sec_WebSocket_Extensions=b"permessage-deflate")
    async with live_server(_echo_app()) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            head = await _upgrade(stream, request)
            assert b"permessage-deflate" not in head.lower()
            with _rss_growth_at_most(100):
                chunks = [_frame_head(0x2, len(bomb), rsv1=True), bomb]
                code = await _close_code_while_sending(stream, iter(chunks))
        assert code == 1002
        await _echo_works(server.port)


async def test_nothing_is_buffered_after_1009() -> None:
    # hypercorn keeps appending a message it refused with 1009 to its buffer:
    # 256 MiB sent after the 1009 took 256 MiB of RSS.
    ended: list[tuple[int | None, str]] = []
    chunk = bytes(1 << 20)
    async with live_server(_echo_app(ended), max_message_size=1 << 20) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await _upgrade(stream, handshake("/echo"))
            with _rss_growth_at_most(100):
                # One message of 257 MiB: refused after its first MiB, then 256 MiB more.
                chunks = iter([_frame_head(0x2, 257 << 20), *[chunk] * 257])
                code = await _close_code_while_sending(stream, chunks)
        assert code == 1009
        with trio.fail_after(5):
            while not ended:  # noqa: ASYNC110 - polls the view's finally; bounded
                await trio.sleep(0.02)
        assert ended == [(1009, "message too big")]
        await _echo_works(server.port)


# -- shutdown is bounded whatever clients do -------------------------------------------------


async def test_shutdown_is_bounded_with_clients_that_never_read() -> None:
    # Views stuck writing to clients that stopped reading held hypercorn's
    # shielded socket writes: the shutdown took 25 s and ignored its deadline.
    app = triows.App()
    streaming = trio.Semaphore(0)
    sent: list[int] = []

    @app.websocket_route("/stream")
    async def stream_forever(ws: triows.WebSocket) -> None:
        streaming.release()
        message = "x" * 64 * 1024
        while True:
            await ws.send(message)
            sent.append(len(message))

    shutdown_timeout = 1.0
    bound = 3 * shutdown_timeout + 1  # docs/deployment.md, Graceful shutdown
    clients: list[trio.SocketStream] = []
    cancelled = trio.Event()

    async def unblock_a_stuck_server() -> None:
        # Past the bound, the clients close: a server stuck writing to them can
        # then finish, and the test fails on the time it took instead of hanging.
        await cancelled.wait()
        await trio.sleep(bound + 2)
        for client in clients:
            await client.aclose()

    async with trio.open_nursery() as outer:
        outer.start_soon(unblock_a_stuck_server)
        async with trio.open_nursery() as nursery:
            serve = functools.partial(
                triows.serve, app, port=0, shutdown_timeout=shutdown_timeout, gc_freeze=False
            )
            port = await nursery.start(serve)
            for _ in range(3):
                client = await trio.open_tcp_stream("127.0.0.1", port)
                clients.append(client)
                await client.send_all(handshake("/stream"))
            with trio.fail_after(5):
                for _ in range(3):
                    await streaming.acquire()
            await trio.sleep(0.5)  # the clients' and the server's buffers fill up
            assert sum(sent) > 3 * 64 * 1024
            started = trio.current_time()
            cancelled.set()
            nursery.cancel_scope.cancel()
        took = trio.current_time() - started
        outer.cancel_scope.cancel()
    for client in clients:
        await client.aclose()
    assert took < bound + 0.5, f"shutdown took {took:.1f} s, bound {bound} s"


# -- backlog ---------------------------------------------------------------------------------


def _somaxconn() -> int:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except OSError:
        return 0


def _connections_completed_by_the_kernel(port: int, count: int, wait: float) -> int:
    """Start ``count`` connects and wait, *blocking*: nobody accepts meanwhile."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            sockets.append(sock)
        pending = list(sockets)
        connected = 0
        deadline = trio.current_time() + wait
        while pending and trio.current_time() < deadline:
            _, writable, _ = select.select([], pending, [], 0.05)
            for sock in writable:
                pending.remove(sock)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    connected += 1
        return connected
    finally:
        for sock in sockets:
            sock.close()


async def test_the_default_backlog_takes_a_burst_of_connections() -> None:
    # hypercorn listens with a backlog of 100: of 10,000 simultaneous handshakes,
    # 1,429 never completed in 30 s.  While the server does not accept (this
    # test blocks its event loop), the kernel completes only backlog + 1 of them
    # (the backlog being capped by the kernel's somaxconn).
    assert _somaxconn() > 100, "this kernel caps listen backlogs at 100: nothing to test"
    burst = min(600, _somaxconn())
    async with live_server(_echo_app()) as server:
        completed = _connections_completed_by_the_kernel(server.port, burst, wait=0.5)
        assert completed == burst
        await _echo_works(server.port)


def _listen_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port`` (``ss``: Send-Q of a LISTEN socket)."""
    output = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return int(output.split()[2])


async def test_backlog_option_of_serve_and_triows_run() -> None:
    from .test_cli import PYTHON_M, cli_server

    cap = _somaxconn()  # the kernel caps what listen() asks for
    async with live_server(_echo_app()) as server:
        assert _listen_backlog(server.port) == min(1024, cap)
    async with live_server(_echo_app(), backlog=2048) as server:
        assert _listen_backlog(server.port) == min(2048, cap)
    async with cli_server(PYTHON_M, "examples.echo:app", "--backlog", "2000") as cli:
        assert _listen_backlog(cli.port) == min(2000, cap)


# -- a request body has a time limit ----------------------------------------------------------


async def test_a_stalled_body_gets_408_and_the_connection_closes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # hypercorn times the wait for a request head, never for a body: a client
    # that sends Content-Length and stalls held its connection and the view.
    from triows._hypercorn import _http_stream

    monkeypatch.setattr(_http_stream, "BODY_TIMEOUT", 0.5)
    app = triows.App()
    ran: list[bytes] = []

    @app.route("/data", methods=["POST"])
    async def data(request: triows.Request) -> str:
        ran.append(request.body)
        return "ok"

    head = b"POST /data HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n"
    with trio.fail_after(5):
        async with live_server(app) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(head + b"only part of it")
                started = trio.current_time()
                answer = await _read_until_closed(stream)
            assert trio.current_time() - started < 2
            whole = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with whole:  # a body sent in time is served as before
                await whole.send_all(head + b"x" * 100)
                served = await whole.receive_some(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert served.startswith(b"HTTP/1.1 200"), served[:80]
    assert ran == [b"x" * 100]  # no view ran on the truncated body
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
