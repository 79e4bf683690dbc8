"""Keepalive under triows.serve: pings go out, a peer that stops answering is closed.

On every backend of the ``backend`` fixture (native, native over TLS, hypercorn).
"""

from __future__ import annotations

import trio
from websockets.frames import Frame, Opcode

import triows

from .conftest import Backend, Served
from .raw_client import handshake, open_stream


def _app(ended: list[tuple[int | None, str]]) -> triows.App:
    app = triows.App()

    @app.websocket_route("/idle", caught_close_codes=all)
    async def idle(ws: triows.WebSocket) -> None:
        try:
            await ws.send("ready")
            await trio.sleep_forever()
        finally:
            ended.append((ws.client_close_code, ws.client_close_reason))

    return app


async def _raw_handshake(served: Served) -> trio.abc.Stream:
    """A raw stream (TLS when served so) that sent the handshake and read the status line."""
    stream = await open_stream(served)
    await stream.send_all(handshake("/idle"))
    status = b""
    while len(status) < 12:
        chunk = await stream.receive_some(12 - len(status))
        assert chunk, status
        status += chunk
    assert status == b"HTTP/1.1 101"
    return stream


async def test_a_peer_that_never_answers_pings_is_closed_and_its_view_cancelled(
    backend: Backend,
) -> None:
    ended: list[tuple[int | None, str]] = []
    async with backend.serve(_app(ended), ping_interval=0.1, ping_timeout=0.3) as served:
        stream = await _raw_handshake(served)
        async with stream:
            with trio.fail_after(5):
                # The raw client reads nothing and answers no ping.
                while not ended:  # noqa: ASYNC110 - polls the view's finally; bounded
                    await trio.sleep(0.02)
    assert ended == [(1006, "ping timeout")]


async def test_a_peer_that_answers_pings_stays_connected(backend: Backend) -> None:
    ended: list[tuple[int | None, str]] = []
    async with backend.serve(_app(ended), ping_interval=0.05, ping_timeout=0.2) as served:
        with trio.fail_after(5):
            async with served.connect("/idle") as client:
                assert await client.get_message() == "ready"
                # trio-websocket answers pings by itself: five timeouts' worth of pings.
                with trio.move_on_after(1):
                    await client.get_message()
                assert client.closed is None
                assert ended == []


async def test_keepalive_tasks_end_with_their_connection(backend: Backend) -> None:
    # The pinger sleeps 20 s between pings by default; it must not hold a closed
    # connection (or the server's shutdown) until it wakes.
    app = triows.App()

    @app.websocket_route("/echo")
    async def echo(ws: triows.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    with trio.fail_after(3):
        async with (
            backend.serve(app) as served,
            served.connect("/echo") as client,
        ):
            await client.send_message("x")
            assert await client.get_message() == "x"


async def _flood(stream: trio.abc.Stream) -> None:
    """Send frames until every buffer is full (the server stops reading), or until the
    server's keepalive deadline closes the connection under the flood (on a loaded
    machine filling the buffers can take longer than the deadline)."""
    frame = Frame(Opcode.TEXT, b"x" * 1000).serialize(mask=True)
    sent = 0
    with trio.fail_after(10):
        while True:  # bounded: the server's buffers fill up
            with trio.move_on_after(0.3) as blocked:
                try:
                    await stream.send_all(frame)
                except trio.BrokenResourceError:
                    break  # the server closed the connection
                sent += len(frame)
            if blocked.cancelled_caught:
                break
    assert sent > 20 * len(frame)


async def test_a_view_that_stops_reading_learns_of_a_flooding_client_by_the_deadline(
    backend: Backend,
) -> None:
    # The view never reads; the client sends until every buffer is full (the server
    # stops reading it: backpressure), then leaves.  Its close is behind unread
    # data, so only the keepalive deadline can tell the view: it must, with 1006.
    # The hypercorn backend is plain ASGI (no departure notice): its deadline
    # closes the socket, but the disconnect waits behind the unread messages, so
    # the view learns only when it reads again, or at shutdown (deployment.md).
    ended: list[tuple[int | None, str]] = []
    app = _app(ended)
    if backend.server == "hypercorn":
        # shutdown_timeout=1: the dropped connection stays in hypercorn's connection
        # set after its view ended, until the shutdown stops waiting for it (5 s by
        # default, within the bound, docs/deployment.md).
        options = {"ping_interval": 0.2, "ping_timeout": 0.3, "shutdown_timeout": 1}
        async with backend.serve(app, **options) as served:
            stream = await _raw_handshake(served)
            async with stream:
                await _flood(stream)
            await trio.sleep(2.0)
            assert ended == []
        assert ended == [(None, "")]  # cancelled by the shutdown
        return
    async with backend.serve(app, ping_interval=0.2, ping_timeout=0.3) as served:
        stream = await _raw_handshake(served)
        with trio.fail_after(10):
            async with stream:
                await _flood(stream)
            started = trio.current_time()
            while not ended:  # noqa: ASYNC110 - polls the view's finally; bounded
                await trio.sleep(0.02)
        waited = trio.current_time() - started
    assert ended[0][0] == 1006
    assert waited < 2.0, waited
