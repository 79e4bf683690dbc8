"""Shutdown within its bound, over real sockets: views that ignore cancellation,
clients that stop reading, and ``triows run`` forced by a second signal.

The bound for the whole shutdown is about ``2 * shutdown_timeout + 1`` seconds;
each test uses ``shutdown_timeout=1`` (3 s) and allows 3.5.
"""

from __future__ import annotations

import functools
import logging
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

import triows
from triows._lifespan import Lifespan

from .raw_client import handshake

#: 2 * shutdown_timeout + 1 for shutdown_timeout=1, and some slack.
BOUND = 3.5
#: Longer than BOUND: a view stuck this long must be abandoned.
STUCK = 5.0
SERVING = re.compile(rb"triows: serving \S+ on http://127\.0\.0\.1:(\d+) ")


def stuck_app(*, hub: bool) -> tuple[triows.App, list[str]]:
    """Views that ignore cancellation for STUCK seconds; the events of its lifespan."""
    app = triows.App(hub=triows.Hub()) if hub else triows.App()
    events: list[str] = []

    @app.websocket_route("/stuck")
    async def stuck(ws: triows.WebSocket) -> None:
        await ws.send("ready")
        with trio.CancelScope(shield=True):
            await trio.sleep(STUCK)

    @app.on_shutdown
    async def goodbye() -> None:
        events.append("on_shutdown")

    return app, events


async def stuck_client(
    url: str, codes: list[int | None], *, task_status: trio.TaskStatus[None]
) -> None:
    """Connect, report once served, then record the close code the server sends."""
    async with open_websocket_url(url) as ws:
        assert await ws.get_message() == "ready"
        task_status.started()
        try:
            await ws.get_message()
        except ConnectionClosed as exc:
            codes.append(None if exc.reason is None else exc.reason.code)


@pytest.mark.parametrize("hub", [True, False], ids=["hub", "no-hub"])
async def test_views_that_overrun_the_shutdown_are_abandoned_within_its_bound(
    hub: bool, caplog: pytest.LogCaptureFixture
) -> None:
    app, events = stuck_app(hub=hub)
    codes: list[int | None] = []
    with trio.fail_after(BOUND + 2):
        async with trio.open_nursery() as clients:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(
                    functools.partial(triows.serve, app, port=0, shutdown_timeout=1)
                )
                url = f"ws://127.0.0.1:{port}/stuck"
                for _ in range(2):
                    await clients.start(stuck_client, url, codes)
                started = trio.current_time()
                nursery.cancel_scope.cancel()
            # serve() returned, without an exception, and left no task in the nursery.
            assert trio.current_time() - started < BOUND
    # The clients got a close frame (1001) before their connection ended.
    assert codes == [1001, 1001]
    # The App's shutdown ran although two views never ended.
    assert events == ["on_shutdown"]
    overran = [r for r in caplog.records if "overran" in r.getMessage()]
    assert len(overran) == 2, [r.getMessage() for r in caplog.records]
    assert all(r.levelno == logging.WARNING and "/stuck" in r.getMessage() for r in overran)


async def test_a_cancelled_lifespan_unwinds_its_hub_and_nursery_in_order() -> None:
    # What a server does when it gives up on the App's shutdown: cancel it while
    # the App waits for lifespan.shutdown (no misnesting of the hub's nursery).
    app, _ = stuck_app(hub=True)
    assert app.hub is not None
    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            lifespan = Lifespan(app, {}, "the App")
            await lifespan.startup(nursery)
            assert lifespan.running and app.hub.running
            nursery.cancel_scope.cancel()
    assert not app.hub.running
    with pytest.raises(RuntimeError, match="only open while the App runs"):
        _ = app.nursery


def flooding_app() -> triows.App:
    app = triows.App()

    @app.websocket_route("/flood", send_type="bytes")
    async def flood(ws: triows.WebSocket) -> None:
        message = b"x" * 65536
        while True:
            await ws.send(message)

    return app


async def test_clients_that_stop_reading_do_not_hold_the_shutdown_open() -> None:
    app = flooding_app()
    sockets: list[trio.socket.SocketType] = []
    try:
        with trio.fail_after(BOUND + 2):
            async with trio.open_nursery() as nursery:
                port = await nursery.start(
                    functools.partial(triows.serve, app, port=0, shutdown_timeout=1)
                )
                for _ in range(3):
                    sock = trio.socket.socket()
                    sockets.append(sock)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    await sock.connect(("127.0.0.1", port))
                    await sock.send(handshake("/flood"))
                    assert (await sock.recv(12)).startswith(b"HTTP/1.1 101")
                # The server fills the clients' buffers, then waits on them.
                await trio.sleep(0.5)
                started = trio.current_time()
                nursery.cancel_scope.cancel()
            assert trio.current_time() - started < BOUND
        # The server closed each client's connection: reading it ends.
        with trio.fail_after(2):
            for sock in sockets:
                while True:
                    try:
                        if not await sock.recv(1 << 20):
                            break
                    except ConnectionResetError:
                        break
    finally:
        for sock in sockets:
            sock.close()


# -- triows run: a second signal forces the shutdown ------------------------------------

STUCK_MODULE = """\
import trio
import triows

app = triows.App(hub=triows.Hub())


@app.websocket_route("/stuck")
async def stuck(ws: triows.WebSocket) -> None:
    await ws.send("ready")
    with trio.CancelScope(shield=True):
        await trio.sleep(60)
"""


async def run_stuck_cli(tmp_path: Path, *options: str) -> tuple[trio.Process, int]:
    (tmp_path / "stuckapp.py").write_text(STUCK_MODULE)
    argv = [sys.executable, "-m", "triows", "run", "stuckapp:app", "--port", "0", *options]
    process = await trio.lowlevel.open_process(
        argv, cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    output = b""
    with trio.fail_after(30):
        while (found := SERVING.search(output)) is None:
            chunk = await process.stdout.receive_some()
            assert chunk, output
            output += chunk
    return process, int(found.group(1))


async def wait_for_exit(process: trio.Process) -> tuple[int, float]:
    """The exit code and how long it took."""
    started = trio.current_time()
    with trio.fail_after(15):
        code = await process.wait()
    return code, trio.current_time() - started


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_run_exits_within_the_bound_when_a_view_ignores_cancellation(
    tmp_path: Path,
) -> None:
    process, port = await run_stuck_cli(tmp_path, "--shutdown-timeout", "1")
    try:
        async with open_websocket_url(f"ws://127.0.0.1:{port}/stuck") as ws:
            assert await ws.get_message() == "ready"
            process.send_signal(signal.SIGTERM)
            code, took = await wait_for_exit(process)
        assert code == 0
        assert took < BOUND
    finally:
        if process.returncode is None:
            process.kill()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_run_a_second_signal_forces_the_shutdown(tmp_path: Path) -> None:
    process, port = await run_stuck_cli(tmp_path, "--shutdown-timeout", "10")
    try:
        async with open_websocket_url(f"ws://127.0.0.1:{port}/stuck") as ws:
            assert await ws.get_message() == "ready"
            process.send_signal(signal.SIGTERM)
            await trio.sleep(0.5)
            assert process.returncode is None  # the graceful shutdown waits for the view
            process.send_signal(signal.SIGTERM)
            code, took = await wait_for_exit(process)
            with pytest.raises(ConnectionClosed):
                with trio.fail_after(1):
                    await ws.get_message()
        assert took < 1.5
        assert code != 0
    finally:
        if process.returncode is None:
            process.kill()
