"""The native server's HTTP rules over real loopback sockets, with exact bytes.

Request heads (size limit, line endings, Host) and pipelining.
Each test is bounded in time.
"""

from __future__ import annotations

import functools
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
