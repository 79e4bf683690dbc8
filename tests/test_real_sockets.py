"""Over real sockets: triows.serve on every backend and the trio-websocket client.

Every test runs on each backend of the ``backend`` fixture (tests/conftest.py):
the native server, the native server over TLS, and hypercorn's trio worker,
because all promise the same semantics and close codes.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, ConnectionRejected

import triows

from .conftest import Backend, Served
from .raw_client import upgraded

# The make_recorder fixture (conftest.py): wraps an App, records its errors.
Recorder = Callable[[triows.App], Any]


async def _closed_code(ws: trio_websocket.WebSocketConnection) -> tuple[int, str | None]:
    """Read until the server closes; return its close code and reason."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await ws.get_message()
    reason = closed.value.reason
    assert reason is not None
    return reason.code, reason.reason


async def test_echo_and_route_conversion(backend: Backend) -> None:
    app = triows.App()

    @app.websocket_route("/echo/{n}")
    async def echo(ws: triows.WebSocket, n: int, shout: bool = False) -> None:
        async for message in ws:
            text = f"{message} x{n}"
            await ws.send(text.upper() if shout else text)

    with trio.fail_after(5):
        async with (
            backend.serve(app) as served,
            served.connect("/echo/3?shout=YES") as ws,
        ):
            await ws.send_message("hi")
            assert await ws.get_message() == "HI X3"
            await ws.send_message("again")
            assert await ws.get_message() == "AGAIN X3"


async def test_url_over_real_socket(backend: Backend) -> None:
    app = triows.App()

    @app.websocket_route("/u/{x}", send_type="json")
    async def view(ws: triows.WebSocket, x: str) -> None:
        url = ws.url
        await ws.send([str(url), url.scheme, url.path, url.query, url.port, ws.headers["X-Custom"]])

    with trio.fail_after(5):
        async with backend.serve(app) as served:
            url = served.url("/u/a?k=v")
            async with served.connect("/u/a?k=v", extra_headers=[(b"X-Custom", b"yes")]) as ws:
                got = json.loads(await ws.get_message())
    scheme = "ws" if served.ssl_context is None else "wss"
    assert got == [url, scheme, "/u/a", "k=v", served.port, "yes"]


async def test_json_is_sent_as_text_frames(backend: Backend) -> None:
    app = triows.App()

    @app.websocket_route("/j", value_type="json")
    async def view(ws: triows.WebSocket) -> None:
        await ws.send({"echo": await ws.receive()})

    with trio.fail_after(5):
        async with backend.serve(app) as served, served.connect("/j") as ws:
            await ws.send_message('{"a": 1}')
            frame = await ws.get_message()
    assert isinstance(frame, str)
    assert json.loads(frame) == {"echo": {"a": 1}}


@pytest.mark.parametrize(
    ("path", "parameter"),
    [("/p/abc", "n"), ("/p/1", "page"), ("/p/1?page=x", "page"), ("/p/1?page=1&on=maybe", "on")],
)
async def test_bad_or_missing_parameter_refuses_with_400_json(
    path: str, parameter: str, backend: Backend
) -> None:
    app = triows.App()
    called: list[bool] = []

    @app.websocket_route("/p/{n}")
    async def view(ws: triows.WebSocket, n: int, page: int, on: bool = False) -> None:
        called.append(True)

    with trio.fail_after(5):
        async with backend.serve(app) as served:
            with pytest.raises(ConnectionRejected) as info:
                async with served.connect(path):
                    pass
    assert info.value.status_code == 400
    assert info.value.body is not None
    body = json.loads(info.value.body)
    assert body["parameter"] == parameter
    assert (b"content-type", b"application/json") in info.value.headers
    assert called == []


async def test_no_route_and_http_only_route_refuse_with_403(backend: Backend) -> None:
    app = triows.App()

    @app.route("/page")
    async def page(request: triows.Request) -> str:
        return "hello"

    with trio.fail_after(5):
        async with backend.serve(app) as served:
            for path in ("/nowhere", "/page"):
                with pytest.raises(ConnectionRejected) as info:
                    async with served.connect(path):
                        pass
                assert info.value.status_code == 403


async def test_reject_gives_403(backend: Backend) -> None:
    app = triows.App()

    @app.websocket_route("/hello", auto_accept=False)
    async def hello(ws: triows.WebSocket) -> None:
        if ws.headers.get("api-key") != "s3kr3t":
            await ws.reject()
        async with ws:
            await ws.send("welcome")

    with trio.fail_after(5):
        async with backend.serve(app) as served:
            with pytest.raises(ConnectionRejected) as info:
                async with served.connect("/hello"):
                    pass
            assert info.value.status_code == 403
            headers = [(b"api-key", b"s3kr3t")]
            async with served.connect("/hello", extra_headers=headers) as ws:
                assert await ws.get_message() == "welcome"


@pytest.mark.parametrize(("code", "reason"), [(4003, ""), (4999, "app error"), (1008, "policy")])
async def test_server_close_code_and_reason_reach_the_client(
    code: int, reason: str, backend: Backend
) -> None:
    app = triows.App()

    @app.websocket_route("/c")
    async def view(ws: triows.WebSocket) -> None:
        await ws.receive()
        await ws.close(code, reason)

    with trio.fail_after(5):
        async with backend.serve(app) as served, served.connect("/c") as ws:
            await ws.send_message("go")
            got_code, got_reason = await _closed_code(ws)
    assert got_code == code
    assert (got_reason or "") == reason


async def test_auto_accept_closes_with_1000(backend: Backend) -> None:
    app = triows.App()

    @app.websocket_route("/c")
    async def view(ws: triows.WebSocket) -> None:
        await ws.send("bye")

    with trio.fail_after(5):
        async with backend.serve(app) as served, served.connect("/c") as ws:
            assert await ws.get_message() == "bye"
            assert (await _closed_code(ws))[0] == 1000


class Boom(Exception):
    pass


async def test_error_after_accept_gives_1011_and_server_keeps_serving(
    make_recorder: Recorder,
    backend: Backend,
) -> None:
    app = triows.App()

    @app.websocket_route("/v/{fail}")
    async def view(ws: triows.WebSocket, fail: bool) -> None:
        await ws.receive()
        if fail:
            raise Boom("kaput")
        await ws.send("fine")

    recorder = make_recorder(app)
    with trio.fail_after(5):
        async with backend.serve(recorder) as served:
            async with served.connect("/v/yes") as ws:
                await ws.send_message("x")
                assert (await _closed_code(ws))[0] == 1011
            outcome = await recorder.next_outcome()
            assert isinstance(outcome, Boom)
            async with served.connect("/v/no") as ws:
                await ws.send_message("x")
                assert await ws.get_message() == "fine"
            assert await recorder.next_outcome() is None


async def test_error_before_accept_gives_http_500(
    make_recorder: Recorder, backend: Backend
) -> None:
    app = triows.App()

    @app.websocket_route("/v", auto_accept=False)
    async def view(ws: triows.WebSocket) -> None:
        raise Boom

    recorder = make_recorder(app)
    with trio.fail_after(5):
        async with backend.serve(recorder) as served:
            with pytest.raises(ConnectionRejected) as info:
                async with served.connect("/v"):
                    pass
            assert isinstance(await recorder.next_outcome(), Boom)
    assert info.value.status_code == 500


@pytest.mark.parametrize(
    ("route_type", "frame", "code"),
    [("text", b"\x00binary", 1003), ("bytes", "text", 1003), ("json", "{bad json", 1007)],
)
async def test_bad_messages_close_with_precise_code(
    route_type: Any, frame: str | bytes, code: int, make_recorder: Recorder, backend: Backend
) -> None:
    app = triows.App()

    @app.websocket_route("/m", receive_type=route_type)
    async def view(ws: triows.WebSocket) -> None:
        await ws.receive()

    recorder = make_recorder(app)
    with trio.fail_after(5):
        async with backend.serve(recorder) as served:
            async with served.connect("/m") as ws:
                await ws.send_message(frame)
                assert (await _closed_code(ws))[0] == code
            # A client's bad message is not a server error.
            assert await recorder.next_outcome() is None


@pytest.mark.parametrize("code", [1000, 1001, 3000, 4001, 4999])
async def test_view_sees_the_clients_exact_close_code(code: int, backend: Backend) -> None:
    app = triows.App()
    seen: list[tuple[int, str]] = []
    done = trio.Event()

    @app.websocket_route("/d", auto_accept=False)
    async def view(ws: triows.WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive()
        except triows.WebSocketDisconnect as exc:
            seen.append((exc.code, exc.reason))
        finally:
            done.set()

    with trio.fail_after(5):
        async with backend.serve(app) as served:
            async with served.connect("/d") as ws:
                await ws.aclose(code, "reason here")
            await done.wait()
    assert seen == [(code, "reason here")]


async def test_send_after_client_left_raises_websocket_disconnect(backend: Backend) -> None:
    app = triows.App()
    outcome: list[Any] = []
    done = trio.Event()

    @app.websocket_route("/d", auto_accept=False)
    async def view(ws: triows.WebSocket) -> None:
        await ws.accept()
        try:
            with contextlib.suppress(triows.WebSocketDisconnect):
                await ws.receive()
            try:
                await ws.send("anyone?")
            except triows.WebSocketDisconnect as exc:
                outcome.append(exc.code)
        finally:
            done.set()

    with trio.fail_after(5):
        async with backend.serve(app) as served:
            async with served.connect("/d") as ws:
                await ws.aclose(4002)
            await done.wait()
    assert outcome == [4002]


# -- structured concurrency: the client leaves while the view is not receiving --------


@pytest.fixture
async def not_receiving_app() -> AsyncIterator[tuple[triows.App, dict[str, Any]]]:
    app = triows.App()
    info: dict[str, Any] = {"started": trio.Event(), "finally": trio.Event(), "child": None}
    channel_send, channel_receive = trio.open_memory_channel[str](0)
    info["keep"] = channel_send

    async def child() -> None:
        try:
            await trio.sleep_forever()
        finally:
            info["child"] = "cancelled"

    @app.websocket_route("/sleep")
    async def sleeping(ws: triows.WebSocket) -> None:
        try:
            info["started"].set()
            await trio.sleep(60)
        finally:
            info["finally"].set()

    @app.websocket_route("/channel")
    async def channel(ws: triows.WebSocket) -> None:
        try:
            info["started"].set()
            await channel_receive.receive()
        finally:
            info["finally"].set()

    @app.websocket_route("/sending")
    async def sending(ws: triows.WebSocket) -> None:
        try:
            info["started"].set()
            while True:
                await ws.send("tick")
                await trio.sleep(0.001)
        finally:
            info["finally"].set()

    @app.websocket_route("/nursery")
    async def with_nursery(ws: triows.WebSocket) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(child)
                info["started"].set()
                await trio.sleep_forever()
        finally:
            info["finally"].set()

    yield app, info


@pytest.mark.parametrize("path", ["/sleep", "/channel", "/sending", "/nursery"])
@pytest.mark.parametrize("code", [1000, 4001])
async def test_client_leaving_cancels_a_view_that_is_not_receiving(
    path: str,
    code: int,
    not_receiving_app: tuple[triows.App, dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
    backend: Backend,
) -> None:
    app, info = not_receiving_app
    with trio.fail_after(5):
        async with backend.serve(app) as served:
            async with served.connect(path) as ws:
                await info["started"].wait()
                await ws.aclose(code)
            # Promptly: well under a second after the client left.
            with trio.fail_after(0.5):
                await info["finally"].wait()
    warnings = [r.getMessage() for r in caplog.records if r.name == "triows"]
    seen = code  # serve(backend="hypercorn") passes the client's code on too
    if seen in (1000, 1001):
        assert warnings == []
    else:
        assert len(warnings) == 1 and f"close code {seen}" in warnings[0]
    if path == "/nursery":
        assert info["child"] == "cancelled"


async def test_tight_send_loop_sees_the_client_leave(backend: Backend) -> None:
    # After the client's close frame and before the stream closes, hypercorn would
    # drop sends silently without yielding; triows' fix raises ClientGone instead.
    app = triows.App()
    started = trio.Event()
    outcome: list[str] = []

    @app.websocket_route("/flood")
    async def flood(ws: triows.WebSocket) -> None:
        started.set()
        try:
            # Bounded, so that a send that never checkpoints cannot hang the suite.
            for _ in range(20_000):
                await ws.send("x" * 100)
        except triows.WebSocketDisconnect:
            outcome.append("disconnect")
            raise
        except trio.Cancelled:
            outcome.append("cancelled")
            raise
        outcome.append("every send silently dropped")

    with trio.fail_after(5):
        async with backend.serve(app) as served:
            async with served.connect("/flood") as ws:
                await started.wait()
                await ws.aclose(1000)
            with trio.fail_after(1):
                while not outcome:  # noqa: ASYNC110 (the view may never checkpoint)
                    await trio.sleep(0.01)
    assert outcome in (["disconnect"], ["cancelled"])


async def test_dropped_tcp_connection_cancels_the_view(
    make_recorder: Recorder, backend: Backend
) -> None:
    app = triows.App()
    started, ended = trio.Event(), trio.Event()

    @app.websocket_route("/sleep", caught_close_codes=(1000, 1001, 1006))
    async def view(ws: triows.WebSocket) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            ended.set()

    recorder = make_recorder(app)
    with trio.fail_after(5):
        async with backend.serve(recorder) as served:
            async with upgraded(served, "/sleep"):
                await started.wait()
            # No close frame: the connection just dropped.
            with trio.fail_after(1):
                await ended.wait()
            assert await recorder.next_outcome() is None


async def test_no_task_outlives_its_connection(backend: Backend) -> None:
    app = triows.App()
    inside = trio.Event()

    @app.websocket_route("/busy")
    async def view(ws: triows.WebSocket) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(trio.sleep_forever)
            inside.set()
            await trio.sleep_forever()

    def count_tasks() -> int:
        def walk(task: trio.lowlevel.Task) -> int:
            return 1 + sum(
                walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks
            )

        root = trio.lowlevel.current_root_task()
        assert root is not None
        return walk(root)

    with trio.fail_after(5):
        async with backend.serve(app) as served:
            # Warm up once so the server's own long-lived tasks exist.
            async with served.connect("/busy") as ws:
                await inside.wait()
            inside = trio.Event()
            await trio.sleep(0.05)
            baseline = count_tasks()
            for _ in range(3):
                async with served.connect("/busy") as ws:
                    await inside.wait()
                    assert count_tasks() > baseline
                    inside = trio.Event()
                    await ws.aclose()
            with trio.fail_after(1):
                while count_tasks() > baseline:  # noqa: ASYNC110 (polling trio's task tree)
                    await trio.sleep(0.01)


# -- shutdown --------------------------------------------------------------------------


async def test_leaving_live_server_closes_clients_with_1001_and_tears_down_providers(
    backend: Backend,
) -> None:
    app = triows.App()
    events: list[str] = []
    view_started = trio.Event()

    @app.provider(scope="app")
    async def registry() -> AsyncIterator[list[str]]:
        events.append("app setup")
        yield events
        events.append("app teardown")

    @app.websocket_route("/long")
    async def view(ws: triows.WebSocket, registry: list[str]) -> None:
        try:
            view_started.set()
            await trio.sleep_forever()
        finally:
            registry.append("view finally")

    codes: list[int] = []

    async def client(served: Served, task_status: trio.TaskStatus[None]) -> None:
        async with served.connect("/long") as ws:
            task_status.started()
            codes.append((await _closed_code(ws))[0])

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, backend.serve(app) as served:
            await nursery.start(client, served)
            await nursery.start(client, served)
            await view_started.wait()
    assert codes == [1001, 1001]
    assert events == ["app setup", "view finally", "view finally", "app teardown"]


async def test_cancelling_serve_closes_clients_with_1001(backend: Backend) -> None:
    app = triows.App()
    torn_down: list[str] = []
    started = trio.Event()

    @app.provider(scope="app")
    async def resource() -> AsyncIterator[str]:
        yield "r"
        torn_down.append("resource")

    @app.websocket_route("/long")
    async def view(ws: triows.WebSocket, resource: str) -> None:
        await ws.send(resource)
        started.set()
        await trio.sleep_forever()

    codes: list[int] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as outer:
            with trio.CancelScope() as server_scope:
                async with trio.open_nursery() as nursery:
                    serve = functools.partial(triows.serve, app, host="127.0.0.1", port=0)
                    port = await nursery.start(functools.partial(serve, **backend.options()))
                    assert isinstance(port, int)
                    served = backend.served(port)

                    async def client(task_status: trio.TaskStatus[None]) -> None:
                        async with served.connect("/long") as ws:
                            assert await ws.get_message() == "r"
                            task_status.started()
                            codes.append((await _closed_code(ws))[0])

                    await outer.start(client)
                    await started.wait()
                    server_scope.cancel()
    assert codes == [1001]
    assert torn_down == ["resource"]


async def test_new_connections_are_refused_while_shutting_down(backend: Backend) -> None:
    app = triows.App()
    started = trio.Event()

    @app.websocket_route("/long")
    async def view(ws: triows.WebSocket) -> None:
        started.set()
        with trio.CancelScope(shield=True):
            await trio.sleep(0.3)  # slow to stop: the server is shutting down meanwhile

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, backend.serve(app) as served:

            async def hold(task_status: trio.TaskStatus[None]) -> None:
                async with served.connect("/long") as ws:
                    task_status.started()
                    await _closed_code(ws)

            await nursery.start(hold)
            await started.wait()
            nursery.start_soon(app.close_connections)
            await trio.sleep(0.05)
            with pytest.raises((ConnectionRejected, trio_websocket.HandshakeError, OSError)):
                async with served.connect("/long"):
                    pass


@pytest.mark.parametrize("gc_freeze", [True, False])
async def test_serve_freezes_the_startup_heap_while_serving(
    gc_freeze: bool, backend: Backend
) -> None:
    # deployment.md: serve() freezes the heap once the App has started, and
    # unfreezes it on the way out; gc_freeze=False leaves the collector alone.
    app = triows.App()
    seen: list[int] = []

    @app.websocket_route("/count")
    async def count(ws: triows.WebSocket) -> None:
        seen.append(gc.get_freeze_count())
        await ws.send("ok")

    assert gc.get_freeze_count() == 0
    with trio.fail_after(10):
        async with (
            backend.serve(app, gc_freeze=gc_freeze) as served,
            served.connect("/count") as ws,
        ):
            assert await ws.get_message() == "ok"
    assert (seen[0] > 1000) is gc_freeze, seen
    assert gc.get_freeze_count() == 0
