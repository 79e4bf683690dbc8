"""Shutdown within its bound, over real sockets: views that ignore cancellation,
clients that stop reading, and ``triows run`` at the bound or forced by a second signal.

The bound for the whole shutdown is ``2 * shutdown_timeout + 1`` seconds on the
native server (``3 * shutdown_timeout + 1`` on hypercorn, docs/deployment.md); each
test uses ``shutdown_timeout=1`` (3 s) and allows 3.5 (4.5 on hypercorn).  A view
that shields itself from cancellation keeps its task: on the native server its
connection is closed at ``shutdown_timeout + 0.5`` seconds, and ``serve()`` returns
once the view does.

Servers come from the ``backend`` fixture.  The staged shutdown (the close at
``shutdown_timeout + 0.5``, the WARNING naming a view that overran the bound, the
forcing second signal of ``triows run``) is the native server's, so those tests run
on its two backends (native, native-tls) only; hypercorn's shutdown closes such a
view's socket at ``2 * shutdown_timeout`` (1006 to its client) and logs nothing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

import triows
from triows._lifespan import Lifespan
from triows.testing import TestClient

from .conftest import Backend
from .raw_client import handshake, open_stream

#: 2 * shutdown_timeout + 1 for shutdown_timeout=1, and some slack.
BOUND = 3.5
#: When a shielded view's client sees its connection end: shutdown_timeout + 0.5, and slack.
CLOSED_BY = 2.5
#: Longer than the bound: a view shielded this long overruns the shutdown.
STUCK = 4.0
#: The backend fixture's native servers: the staged shutdown is theirs (see above).
NATIVE = pytest.mark.parametrize("backend", ["native", "native-tls"], indirect=True)
SERVING = re.compile(rb"triows: serving \S+ on http://127\.0\.0\.1:(\d+) ")


def stuck_app(*, hub: bool) -> tuple[triows.App, list[str], list[float]]:
    """Views that ignore cancellation for STUCK seconds; the events of its lifespan;
    when each view ended."""
    app = triows.App(hub=triows.Hub()) if hub else triows.App()
    events: list[str] = []
    ended: list[float] = []

    @app.websocket_route("/stuck")
    async def stuck(ws: triows.WebSocket) -> None:
        await ws.send("ready")
        try:
            with trio.CancelScope(shield=True):
                await trio.sleep(STUCK)
        finally:
            ended.append(trio.current_time())

    @app.on_shutdown
    async def goodbye() -> None:
        events.append("on_shutdown")

    return app, events, ended


async def stuck_client(
    url: str,
    closes: list[tuple[int | None, float]],
    *,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[None],
) -> None:
    """Connect, report once served, then record the close code the server sends, and when."""
    async with open_websocket_url(url, ssl_context=ssl_context) as ws:
        assert await ws.get_message() == "ready"
        task_status.started()
        try:
            await ws.get_message()
        except ConnectionClosed as exc:
            code = None if exc.reason is None else exc.reason.code
            closes.append((code, trio.current_time()))


def serving(app: triows.App, backend: Backend) -> Any:
    """``triows.serve`` for ``nursery.start``: ``app`` on ``backend``, shutdown_timeout=1."""
    return functools.partial(triows.serve, app, port=0, **backend.options(shutdown_timeout=1))


@NATIVE
@pytest.mark.parametrize("hub", [True, False], ids=["hub", "no-hub"])
async def test_a_view_that_ignores_cancellation_has_its_connection_closed_and_is_waited_for(
    hub: bool, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    app, events, ended = stuck_app(hub=hub)
    closes: list[tuple[int | None, float]] = []
    with trio.fail_after(STUCK + 3):
        async with trio.open_nursery() as clients:
            async with trio.open_nursery() as nursery:
                served = backend.served(await nursery.start(serving(app, backend)))
                client = functools.partial(stuck_client, ssl_context=served.ssl_context)
                for _ in range(2):
                    await clients.start(client, served.url("/stuck"), closes)
                started = trio.current_time()
                nursery.cancel_scope.cancel()
            # serve() returned, without an exception (no misnested nursery either),
            # once the views had ended: it waits for tasks it cannot kill.
            returned = trio.current_time()
    # Each client saw its connection end at shutdown_timeout + 0.5 s, its socket
    # closed under the view that ignores cancellation: with a close frame (1001) over
    # TCP; over TLS none (the server writes no record from the outside), and the
    # server's own close of the TLS stream, once the view returns, finds its socket
    # closed without an error.
    expected = 1001 if served.ssl_context is None else 1006
    assert [code for code, _ in closes] == [expected, expected]
    assert all(at - started < CLOSED_BY for _, at in closes), [at - started for _, at in closes]
    assert len(ended) == 2 and returned >= max(ended)
    assert returned - max(ended) < 0.5
    # The App's lifespan unwound (its hooks ran) although it had no time left.
    assert events == ["on_shutdown"]
    # One WARNING per view, at the bound, naming its route.
    overran = [r for r in caplog.records if "overran" in r.getMessage()]
    assert len(overran) == 2, [r.getMessage() for r in caplog.records]
    assert all(r.levelno == logging.WARNING and "'/stuck'" in r.getMessage() for r in overran)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@NATIVE
async def test_an_http_view_that_ignores_cancellation_is_named_at_the_bound(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    app = triows.App()

    @app.route("/slow")
    async def slow(request: triows.Request) -> str:
        with trio.CancelScope(shield=True):
            await trio.sleep(STUCK)
        return "late"

    with trio.fail_after(STUCK + 3):
        async with trio.open_nursery() as nursery:
            served = backend.served(await nursery.start(serving(app, backend)))
            stream = await open_stream(served)
            async with stream:
                await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                await trio.sleep(0.2)
                started = trio.current_time()
                nursery.cancel_scope.cancel()
                # Shielded: the nursery's scope is cancelled (serve() is shutting down).
                shielded = trio.CancelScope(shield=True)
                gone = contextlib.suppress(trio.BrokenResourceError)
                with shielded, trio.fail_after(CLOSED_BY), gone:
                    assert await stream.receive_some(1024) == b""  # closed, no response
                assert trio.current_time() - started < CLOSED_BY
    overran = [r for r in caplog.records if "overran" in r.getMessage()]
    assert len(overran) == 1, [r.getMessage() for r in caplog.records]
    assert "the HTTP view of GET '/slow'" in overran[0].getMessage()


async def test_a_cancelled_lifespan_unwinds_its_hub_and_nursery_in_order() -> None:
    # What a server does when it gives up on the App's shutdown: cancel it while
    # the App waits for lifespan.shutdown (no misnesting of the hub's nursery).
    app, _, _ = stuck_app(hub=True)
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


async def _stalled_flood_client(port: int, ssl_context: ssl.SSLContext | None) -> trio.abc.Stream:
    """A client of ``/flood`` with a small receive buffer (TLS when given a context)
    that reads the start of the 101 response and then nothing more."""
    sock = trio.socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    stream: trio.abc.Stream = trio.SocketStream(sock)
    if ssl_context is not None:
        stream = trio.SSLStream(
            stream, ssl_context, server_hostname="127.0.0.1", https_compatible=True
        )
    await stream.send_all(handshake("/flood"))
    status = b""
    while len(status) < 12:
        chunk = await stream.receive_some(12 - len(status))
        assert chunk, status
        status += chunk
    assert status == b"HTTP/1.1 101"
    return stream


async def test_clients_that_stop_reading_do_not_hold_the_shutdown_open(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    # The bound of the whole shutdown: 2 * shutdown_timeout + 1 on the native server,
    # 3 * shutdown_timeout + 1 on hypercorn (docs/deployment.md), and some slack.
    bound = BOUND if backend.server == "native" else BOUND + 1
    app = flooding_app()
    streams: list[trio.abc.Stream] = []
    try:
        with trio.fail_after(bound + 2):
            async with trio.open_nursery() as nursery:
                served = backend.served(await nursery.start(serving(app, backend)))
                for _ in range(3):
                    streams.append(await _stalled_flood_client(served.port, served.ssl_context))
                # The server fills the clients' buffers, then waits on them.
                await trio.sleep(0.5)
                started = trio.current_time()
                nursery.cancel_scope.cancel()
            assert trio.current_time() - started < bound
        # Their views honour cancellation: none overran the shutdown.
        assert not [r for r in caplog.records if "overran" in r.getMessage()]
        # The server closed each client's connection: reading it ends.
        with trio.fail_after(2):
            for stream in streams:
                with contextlib.suppress(trio.BrokenResourceError):
                    while await stream.receive_some(1 << 20):
                        pass
    finally:
        for stream in streams:
            await trio.aclose_forcefully(stream)


# -- triows run: at the bound, or forced by a second signal -----------------------------

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


async def run_stuck_cli(tmp_path: Path, *options: str) -> tuple[trio.Process, int, bytearray]:
    """A ``triows run`` process serving STUCK_MODULE, its port, and its output so far."""
    (tmp_path / "stuckapp.py").write_text(STUCK_MODULE)
    argv = [sys.executable, "-m", "triows", "run", "stuckapp:app", "--port", "0", *options]
    process = await trio.lowlevel.open_process(
        argv, cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    output = bytearray()
    with trio.fail_after(30):
        while (found := SERVING.search(output)) is None:
            chunk = await process.stdout.receive_some()
            assert chunk, output
            output += chunk
    return process, int(found.group(1)), output


async def wait_for_exit(process: trio.Process, output: bytearray) -> tuple[int, float]:
    """The exit code and how long it took; the rest of its output goes into ``output``."""
    assert process.stdout is not None
    started = trio.current_time()
    with trio.fail_after(15):
        while chunk := await process.stdout.receive_some():
            output += chunk
        code = await process.wait()
    return code, trio.current_time() - started


async def test_run_exits_with_1_at_the_bound_when_a_view_ignores_cancellation(
    tmp_path: Path,
) -> None:
    process, port, output = await run_stuck_cli(tmp_path, "--shutdown-timeout", "1")
    try:
        async with open_websocket_url(f"ws://127.0.0.1:{port}/stuck") as ws:
            assert await ws.get_message() == "ready"
            process.send_signal(signal.SIGTERM)
            started = trio.current_time()
            with pytest.raises(ConnectionClosed) as closed:
                with trio.fail_after(CLOSED_BY):
                    await ws.get_message()
            reason = closed.value.reason
            assert reason is not None and reason.code == 1001
            code, _ = await wait_for_exit(process, output)
        took = trio.current_time() - started  # from the signal
        assert code == 1
        assert 3.0 <= took < 4.0, took  # the bound is 3 s
        text = output.decode()
        assert text.count("ERROR triows:") == 1, text
        assert "ERROR triows: 1 view(s) overran the shutdown" in text, text
        assert text.count("WARNING triows: the WebSocket view of route '/stuck'") == 1, text
    finally:
        if process.returncode is None:
            process.kill()


async def test_run_a_second_signal_forces_the_shutdown(tmp_path: Path) -> None:
    # shutdown_timeout=10: the bound (21 s) is far; only forcing ends it in time.
    process, port, output = await run_stuck_cli(tmp_path, "--shutdown-timeout", "10")
    try:
        async with open_websocket_url(f"ws://127.0.0.1:{port}/stuck") as ws:
            assert await ws.get_message() == "ready"
            process.send_signal(signal.SIGTERM)
            await trio.sleep(0.5)
            assert process.returncode is None  # the graceful shutdown waits for the view
            process.send_signal(signal.SIGTERM)
            code, took = await wait_for_exit(process, output)
            with pytest.raises(ConnectionClosed):
                with trio.fail_after(1):
                    await ws.get_message()
        assert took < 1.0
        assert code == 1
        text = output.decode()
        assert "ERROR triows: 1 view(s) overran the forced shutdown" in text, text
    finally:
        if process.returncode is None:
            process.kill()


async def test_an_app_serves_again_after_its_lifespan_shut_down() -> None:
    # Shutdown refuses new handshakes (503) only while it runs: afterwards the
    # same App serves again, with or without a new lifespan.
    app = triows.App()

    @app.websocket_route("/ws")
    async def view(ws: triows.WebSocket) -> None:
        await ws.send_text("hi")
        await ws.close()

    with trio.fail_after(10):
        async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
            assert await ws.receive_text() == "hi"
        async with TestClient(app).websocket_connect("/ws") as ws:
            assert await ws.receive_text() == "hi"
        async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
            assert await ws.receive_text() == "hi"
