"""The two ways a WebSocket learns of its client's departure behave the same.

Direct mode: the transport sets an out-of-band departure (triows.serve, the
TestClient).  Pump mode: any other ASGI server, where a receive pump reads the
transport.  Each behaviour runs in both modes, in memory, and pump mode runs
once more under plain hypercorn over real sockets.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from trio_websocket import open_websocket_url

import triows
from triows._transport import DEPARTURE_EXTENSION
from triows._types import ASGIApp, Receive, Scope, Send
from triows.testing import TestClient


def _without_departure(app: ASGIApp) -> ASGIApp:
    async def pump_mode(scope: Scope, receive: Receive, send: Send) -> None:
        scope.get("extensions", {}).pop(DEPARTURE_EXTENSION, None)
        await app(scope, receive, send)

    return pump_mode


@pytest.fixture(params=["direct", "pump"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _client(app: triows.App, mode: str) -> TestClient:
    return TestClient(app if mode == "direct" else _without_departure(app))


def _app(log: list[object]) -> triows.App:
    app = triows.App()

    @app.websocket_route("/echo")
    async def echo(ws: triows.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @app.websocket_route("/sleep", caught_close_codes=all)
    async def sleep(ws: triows.WebSocket) -> None:
        try:
            await ws.send("ready")
            await trio.sleep_forever()
        finally:
            log.append(("sleep ended", ws._machine.disconnect_code))

    @app.websocket_route("/collect", caught_close_codes=())
    async def collect(ws: triows.WebSocket) -> None:
        await ws.send("ready")
        try:
            while True:
                log.append(await ws.receive())
        except triows.WebSocketDisconnect as exc:
            log.append(("left", exc.code))
            with pytest.raises(triows.WebSocketDisconnect):
                await ws.send("too late")
            with pytest.raises(triows.WebSocketDisconnect):
                await ws.receive()

    return app


async def test_echo(mode: str) -> None:
    async with _client(_app([]), mode).websocket_connect("/echo") as ws:
        for text in ["a", "b", "c"]:
            await ws.send_text(text)
            assert await ws.receive_text() == text


async def test_leaving_cancels_a_sleeping_view(mode: str) -> None:
    log: list[object] = []
    async with _client(_app(log), mode).websocket_connect("/sleep") as ws:
        assert await ws.receive_text() == "ready"
        await ws.close(4005)
    assert log == [("sleep ended", 4005)]


async def test_a_receiving_view_gets_earlier_messages_then_the_departure(mode: str) -> None:
    log: list[object] = []
    async with _client(_app(log), mode).websocket_connect("/collect") as ws:
        assert await ws.receive_text() == "ready"
        for text in ["1", "2", "3"]:
            await ws.send_text(text)
        await ws.close(1000)
    assert log == ["1", "2", "3", ("left", 1000)]


@asynccontextmanager
async def _plain_hypercorn(app: triows.App) -> AsyncIterator[int]:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(functools.partial(hypercorn_serve, app, config))  # type: ignore[arg-type]
        yield int(binds[0].rsplit(":", 1)[1])
        nursery.cancel_scope.cancel()


async def test_plain_hypercorn_runs_in_pump_mode() -> None:
    log: list[object] = []
    async with _plain_hypercorn(_app(log)) as port:
        with trio.fail_after(5):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/echo") as ws:
                await ws.send_message("hi")
                assert await ws.get_message() == "hi"
            async with open_websocket_url(f"ws://127.0.0.1:{port}/sleep") as ws:
                assert await ws.get_message() == "ready"
            while not log:  # noqa: ASYNC110 - polls the view's finally; bounded
                await trio.sleep(0.01)
    # Plain hypercorn reports every client close as 1006 (triows.serve fixes that).
    assert log == [("sleep ended", 1006)]
