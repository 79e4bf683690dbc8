"""A view waiting in receive() on the native server parks in its ReadySockets.

``triows._native._ready``: over plain TCP the view's socket stays registered,
edge-triggered, in the server's one epoll set while the view reads it itself,
and the set's watcher reschedules the parked view (no ``epoll_ctl`` per
message).  What must hold: a parked receive is cancellable and loses nothing,
wakes for every message and for the departure, and wakes when the shutdown's
reaper closes its socket from outside (trio cannot wake it: trio does not know
the task waits on the socket).
"""

from __future__ import annotations

import contextlib
import functools
import socket
import struct

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, open_websocket_url

import triows
from triows.testing import LiveServer, live_server

from .raw_client import upgraded


async def test_a_parked_receive_is_cancelled_and_loses_nothing() -> None:
    app = triows.App()
    scopes: list[trio.CancelScope] = []
    outcome: list[str] = []

    @app.websocket_route("/echo")
    async def echo(ws: triows.WebSocket) -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            await ws.receive()
        outcome.append("cancelled" if scope.cancelled_caught else "received")
        for _ in range(3):
            await ws.send(await ws.receive())

    with trio.fail_after(10):
        async with (
            live_server(app, backend="native") as server,
            open_websocket_url(server.url("/echo")) as ws,
        ):
            await trio.testing.wait_all_tasks_blocked()  # the view is parked in receive()
            scopes[0].cancel()
            await trio.testing.wait_all_tasks_blocked()
            for text in ("a", "b", "c"):
                await ws.send_message(text)
                assert await ws.get_message() == text
    assert outcome == ["cancelled"]


async def test_every_message_and_the_departure_wake_a_parked_receive() -> None:
    app = triows.App()
    got: list[str] = []
    codes: list[int] = []

    @app.websocket_route("/collect")
    async def collect(ws: triows.WebSocket) -> None:
        try:
            while True:
                got.append(await ws.receive())
        except triows.WebSocketDisconnect as exc:
            codes.append(exc.code)

    with trio.fail_after(10):
        async with live_server(app, backend="native") as server:
            async with open_websocket_url(server.url("/collect")) as ws:
                for n in range(50):
                    await trio.testing.wait_all_tasks_blocked()  # parked each time
                    await ws.send_message(str(n))
                await ws.aclose(4001)
            while not codes:  # noqa: ASYNC110 (the view ends on its own)
                await trio.sleep(0.01)
    assert got == [str(n) for n in range(50)]
    assert codes == [4001]


async def test_a_shielded_view_parked_in_receive_wakes_when_the_reaper_closes_its_socket() -> None:
    app = triows.App()
    outcome: list[str] = []
    parked = trio.Event()

    @app.websocket_route("/stubborn")
    async def stubborn(ws: triows.WebSocket) -> None:
        # Shielded from the shutdown, bounded (a test that hangs tells nothing).
        with trio.CancelScope(shield=True, deadline=trio.current_time() + 5) as bound:
            parked.set()
            try:
                await ws.receive()
            except triows.WebSocketDisconnect:
                outcome.append("disconnect")
                raise
        if bound.cancelled_caught:
            outcome.append("still parked 5 s later")

    async def hold(port: int, task_status: trio.TaskStatus[None]) -> None:
        # Connected until the server ends the connection; sends nothing.
        async with open_websocket_url(f"ws://127.0.0.1:{port}/stubborn") as ws:
            task_status.started()
            with contextlib.suppress(ConnectionClosed):
                await ws.get_message()

    serve = functools.partial(triows.serve, app, port=0, shutdown_timeout=0.2, gc_freeze=False)
    with trio.fail_after(10):
        async with trio.open_nursery() as clients:
            async with trio.open_nursery() as servers:
                port = await servers.start(serve)
                await clients.start(hold, port)
                await parked.wait()
                await trio.testing.wait_all_tasks_blocked()
                # Shutdown: the view ignores cancellation, so the reaper closes its
                # socket; the parked receive must see that and end the view, and
                # serve() returns.
                servers.cancel_scope.cancel()
            clients.cancel_scope.cancel()
    assert outcome == ["disconnect"]


async def _part_of_a_frame_then(ending: str, server: LiveServer) -> None:
    """A frame's first bytes, then the end (a FIN, or a reset) right behind them."""
    async with upgraded(server, "/rest") as stream:
        assert isinstance(stream, trio.SocketStream)
        partial = bytes([0x82, 0x80 | 126]) + struct.pack("!H", 1000) + b"\0" * 14
        await stream.send_all(partial)
        if ending == "fin":
            await stream.send_eof()
            with trio.fail_after(5):
                while await stream.receive_some(4096):  # the server's close, then EOF
                    pass
        else:
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("ending", ["fin", "reset"])
async def test_an_end_right_behind_the_last_bytes_wakes_a_parked_receive(ending: str) -> None:
    # Edge-triggered: the kernel reports the bytes and the end (EOF, reset) once,
    # together.  The view reads the bytes (a short read) and must not then wait
    # for a report that never comes (it did: the connection lived on until a
    # keepalive ping failed, 20 s later).
    app = triows.App()
    ended = trio.Event()

    @app.websocket_route("/rest", caught_close_codes=all)
    async def rest(ws: triows.WebSocket) -> None:
        try:
            async for _ in ws:
                pass
        finally:
            ended.set()

    async with live_server(app, backend="native") as server:
        for _ in range(5):  # the end may arrive before or after the view first reads
            ended = trio.Event()
            await _part_of_a_frame_then(ending, server)
            with trio.fail_after(5):
                await ended.wait()
