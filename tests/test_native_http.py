"""The native server's HTTP rules over real loopback sockets, with exact bytes.

Request heads (size limit, line endings, Host), request bodies (timeout, a
client leaving mid-body, 100-continue, chunked, too large) and pipelining.
Each test is bounded in time.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import pytest
import trio

import triows
from triows._native._http import MAX_HEAD_SIZE
from triows.testing import LiveServer, live_server

from .raw_client import handshake

native_server = functools.partial(live_server, backend="native")


def _app() -> triows.App:
    app = triows.App()

    @app.websocket_route("/text")
    async def text(ws: triows.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @app.route("/page")
    async def page(request: triows.Request) -> str:
        return f"<p>{request.query_parameters.get('name', '')}</p>"

    @app.route("/data", methods=["POST"])
    async def data(request: triows.Request) -> dict[str, Any]:
        return {"length": len(request.body)}

    return app


async def _exchange(server: LiveServer, request: bytes) -> bytes:
    """Send ``request`` in one write; everything the server answers until it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(request)
        return await _read_to_eof(stream)


async def _read_to_eof(stream: trio.SocketStream) -> bytes:
    received = b""
    while chunk := await stream.receive_some(65536):
        received += chunk
    return received


async def _read_until(stream: trio.SocketStream, end: bytes, received: bytes = b"") -> bytes:
    while end not in received:
        chunk = await stream.receive_some(65536)
        assert chunk, f"the server closed before sending {end!r}: {received!r}"
        received += chunk
    return received


def _get(path: str = "/page", *extra: bytes) -> bytes:
    lines = [f"GET {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *extra]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _post(length: int, *extra: bytes) -> bytes:
    lines = [b"POST /data HTTP/1.1", b"Host: 127.0.0.1", b"Content-Length: %d" % length, *extra]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _sized(request: bytes, size: int) -> bytes:
    """``request`` with an X-Pad header that makes its head exactly ``size`` bytes."""
    pad = b"X-Pad: "
    missing = size - len(request) - len(pad) - 2
    assert missing >= 0
    return request[:-2] + pad + b"p" * missing + b"\r\n\r\n"


# -- 3b: the head size limit holds however the head arrives --------------------------------


@pytest.mark.parametrize("kind", ["http", "websocket"])
@pytest.mark.parametrize("delivery", ["one write", "trickled"])
async def test_a_head_over_the_limit_gets_431(kind: str, delivery: str) -> None:
    request = _sized(_get() if kind == "http" else handshake("/text"), MAX_HEAD_SIZE + 1)
    with trio.fail_after(5):
        async with native_server(_app()) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                if delivery == "one write":
                    await stream.send_all(request)
                else:
                    for start in range(0, len(request), 1000):
                        await stream.send_all(request[start : start + 1000])
                        await trio.sleep(0.001)
                answer = await _read_to_eof(stream)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


async def test_a_pipelined_head_over_the_limit_gets_431_after_the_first_answer() -> None:
    too_large = _sized(_get("/page?name=two"), MAX_HEAD_SIZE + 1)
    with trio.fail_after(5):
        async with native_server(_app()) as server:
            answer = await _exchange(server, _get("/page?name=one") + too_large)
    first, _, second = answer.partition(b"<p>one</p>")
    assert first.startswith(b"HTTP/1.1 200 "), answer[:100]
    assert second.startswith(b"HTTP/1.1 431 "), second[:100]


async def test_a_head_at_the_limit_is_served() -> None:
    with trio.fail_after(5):
        async with native_server(_app()) as server:
            answer = await _exchange(
                server, _sized(_get("/page?name=big", b"Connection: close"), MAX_HEAD_SIZE)
            )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    assert answer.endswith(b"<p>big</p>")


# -- 16: one set of header rules for HTTP routes and WebSocket handshakes -------------------


def _no_host(request: bytes) -> bytes:
    return request.replace(b"Host: 127.0.0.1\r\n", b"")


def _two_hosts(request: bytes) -> bytes:
    return request.replace(b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1\r\nHost: example.com\r\n")


def _bare_lf(request: bytes) -> bytes:
    return request.replace(b"\r\n", b"\n")


@pytest.mark.parametrize("kind", ["http", "websocket"])
@pytest.mark.parametrize("breaking", [_no_host, _two_hosts, _bare_lf])
async def test_bad_heads_get_400_at_once(kind: str, breaking: Any) -> None:
    request = _get() if kind == "http" else handshake("/text")
    assert b"Host: 127.0.0.1\r\n" in request
    # The handshake timeout is long: the answer must not wait for it.
    with trio.fail_after(3):
        async with native_server(_app(), handshake_timeout=30) as server:
            answer = await _exchange(server, breaking(request))
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]


async def test_a_bare_lf_in_one_header_line_gets_400() -> None:
    request = _get().replace(b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1\nX-A: b\r\n")
    with trio.fail_after(3):
        async with native_server(_app(), handshake_timeout=30) as server:
            answer = await _exchange(server, request)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]


async def test_content_length_and_transfer_encoding_together_get_400() -> None:
    # A request smuggling classic: the server and a proxy disagree on the body's end.
    request = _post(3, b"Transfer-Encoding: chunked") + b"0\r\n\r\nGET /page HTTP/1.1\r\n"
    with trio.fail_after(3):
        async with native_server(_app()) as server:
            answer = await _exchange(server, request)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
    assert answer.count(b"HTTP/1.1") == 1


async def test_expect_100_continue_is_answered_before_the_body() -> None:
    with trio.fail_after(5):
        async with native_server(_app()) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(_post(5, b"Expect: 100-continue", b"Connection: close"))
                interim = await _read_until(stream, b"\r\n\r\n")
                assert interim == b"HTTP/1.1 100 Continue\r\n\r\n", interim
                await stream.send_all(b"hello")
                answer = await _read_to_eof(stream)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    assert answer.endswith(b'{"length": 5}')


# -- 13: request bodies have a time limit ---------------------------------------------------


async def test_stalled_bodies_get_408_and_are_closed() -> None:
    async def stall(server: LiveServer, answers: list[bytes]) -> None:
        answers.append(await _exchange(server, _post(100) + b"only part of it"))

    answers: list[bytes] = []
    with trio.fail_after(5):
        async with (
            native_server(_app(), body_timeout=0.5) as server,
            trio.open_nursery() as nursery,
        ):
            for _ in range(20):
                nursery.start_soon(stall, server, answers)
    assert len(answers) == 20
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]


async def test_the_body_timeout_bounds_the_whole_body_not_each_gap() -> None:
    # A byte every 0.1 s never leaves a 0.5 s gap, but the body takes 10 s.
    with trio.fail_after(5):
        async with native_server(_app(), body_timeout=0.5) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(_post(100))
                started = trio.current_time()
                with pytest.raises(trio.BrokenResourceError):
                    for _ in range(100):
                        await stream.send_all(b"x")
                        await trio.sleep(0.1)
                answer = await _read_to_eof(stream)
                assert trio.current_time() - started < 2
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]


# -- 14: a client leaving mid-body is not a server error ---------------------------------------


async def test_clients_leaving_mid_body_log_no_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def leave(server: LiveServer) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(_post(100) + b"only part of it")
            await trio.sleep(0.05)

    with trio.fail_after(5):
        async with native_server(_app()) as server:
            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(leave, server)
            # The server still serves, and has seen every departure by now.
            answer = await _exchange(server, _get("/page?name=after", b"Connection: close"))
            assert answer.endswith(b"<p>after</p>")
            await trio.sleep(0.2)
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
    left = [r for r in caplog.records if r.name.startswith("triows") and "body" in r.getMessage()]
    assert len(left) <= 20


# -- bodies that work -------------------------------------------------------------------------


async def test_a_chunked_body_is_read() -> None:
    request = _post(0, b"Connection: close").replace(
        b"Content-Length: 0", b"Transfer-Encoding: chunked"
    )
    with trio.fail_after(5):
        async with native_server(_app()) as server:
            answer = await _exchange(server, request + b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    assert answer.endswith(b'{"length": 8}')


async def test_a_broken_chunked_body_gets_400_and_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = _post(0).replace(b"Content-Length: 0", b"Transfer-Encoding: chunked")
    with trio.fail_after(5):
        async with native_server(_app()) as server:
            answer = await _exchange(server, request + b"5\r\nhello\r\nzz\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_body_over_the_apps_limit_gets_413_and_a_clean_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    size = 2 * 1024 * 1024  # the App takes up to 1 MiB

    async def send_body(stream: trio.SocketStream) -> None:
        # The server stops reading at 1 MiB: the rest may not go through.
        with trio.move_on_after(2):
            try:
                for _ in range(size // 65536):
                    await stream.send_all(b"x" * 65536)
            except trio.BrokenResourceError:
                pass

    with trio.fail_after(10):
        async with native_server(_app()) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream, trio.open_nursery() as nursery:
                await stream.send_all(_post(size))
                nursery.start_soon(send_body, stream)
                # A clean close: the whole answer, then EOF (no reset).
                answer = await _read_to_eof(stream)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]
    assert b"\r\nconnection: close\r\n" in answer.lower()
    assert answer.endswith(b"request body too large")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- 19: pipelining ------------------------------------------------------------------------------


async def test_a_handshake_with_a_request_behind_it_gets_its_101() -> None:
    with trio.fail_after(5):
        async with native_server(_app()) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(handshake("/text") + _get())
                answer = await _read_until(stream, b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 101 "), answer[:100]


async def test_two_pipelined_gets_are_answered_in_order() -> None:
    with trio.fail_after(5):
        async with native_server(_app()) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(_get("/page?name=one") + _get("/page?name=two"))
                answer = await _read_until(stream, b"<p>two</p>")
                # Still kept alive: a third request on the same connection.
                await stream.send_all(_get("/page?name=three", b"Connection: close"))
                answer += await _read_to_eof(stream)
    assert answer.count(b"HTTP/1.1 200 ") == 3
    assert answer.index(b"<p>one</p>") < answer.index(b"<p>two</p>") < answer.index(b"three")
