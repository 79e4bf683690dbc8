"""A view learns of its client's departure the same way on every transport.

Each behaviour runs in memory (the TestClient, through the ASGI adapter), under
plain hypercorn (``hypercorn.trio.serve`` with no triows code inside: what
``hypercorn -k trio module:app`` gives), and over real sockets on every
``triows.serve`` backend (native, native over TLS, hypercorn).  Only the close
code a view sees may differ: hypercorn 0.18 reports every client close as 1006.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import attrs
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from trio_websocket import WebSocketConnection, open_websocket_url

import triows
from triows.testing import TestClient, TestWebSocket

from .conftest import Backend


class _Client:
    """What a behaviour does with a client: the same on every transport."""

    async def send(self, text: str) -> None:
        raise NotImplementedError

    async def receive(self) -> str:
        raise NotImplementedError

    async def leave(self, code: int) -> None:
        raise NotImplementedError


@attrs.define
class _InMemory(_Client):
    ws: TestWebSocket

    async def send(self, text: str) -> None:
        await self.ws.send_text(text)

    async def receive(self) -> str:
        return await self.ws.receive_text()

    async def leave(self, code: int) -> None:
        await self.ws.close(code)


@attrs.define
class _OverSockets(_Client):
    ws: WebSocketConnection

    async def send(self, text: str) -> None:
        await self.ws.send_message(text)

    async def receive(self) -> str:
        message = await self.ws.get_message()
        assert isinstance(message, str)
        return message

    async def leave(self, code: int) -> None:
        await self.ws.aclose(code)


Connect = Callable[[str], AbstractAsyncContextManager[_Client]]


@attrs.define
class _Serving:
    """An App being served one way: clients for it, and how it reports close codes."""

    connect: Connect
    #: False where the server reports every client close as 1006 (plain hypercorn).
    reports_close_codes: bool

    def code(self, sent: int) -> int:
        """The close code a view sees when its client leaves with ``sent``."""
        return sent if self.reports_close_codes else 1006


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
            log.append(("sleep ended", ws.client_close_code))

    @app.websocket_route("/collect", caught_close_codes=())
    async def collect(ws: triows.WebSocket) -> None:
        await ws.send("ready")
        try:
            while True:
                log.append(await ws.receive())
        except triows.WebSocketDisconnect as exc:
            log.append(("left", exc.code, ws.client_close_code))
            with pytest.raises(triows.WebSocketDisconnect):
                await ws.send("too late")
            with pytest.raises(triows.WebSocketDisconnect):
                await ws.receive()
            log.append("done")

    return app


async def _until(log: list[object], last: object) -> None:
    """Wait for the view to log ``last`` (it runs on after the client has gone)."""
    while last not in log:  # noqa: ASYNC110 - polls the view's log; bounded by fail_after
        await trio.sleep(0.01)


# -- the behaviours ------------------------------------------------------------------


async def _echo(serving: _Serving, log: list[object]) -> None:
    async with serving.connect("/echo") as ws:
        for text in ["a", "b", "c"]:
            await ws.send(text)
            assert await ws.receive() == text


async def _leaving_cancels_a_sleeping_view(serving: _Serving, log: list[object]) -> None:
    async with serving.connect("/sleep") as ws:
        assert await ws.receive() == "ready"
        await ws.leave(4005)
    await _until(log, ("sleep ended", serving.code(4005)))
    assert log == [("sleep ended", serving.code(4005))]


async def _a_receiving_view_gets_earlier_messages_then_the_departure(
    serving: _Serving, log: list[object]
) -> None:
    async with serving.connect("/collect") as ws:
        assert await ws.receive() == "ready"
        for text in ["1", "2", "3"]:
            await ws.send(text)
        await ws.leave(4000)
    await _until(log, "done")
    code = serving.code(4000)
    assert log == ["1", "2", "3", ("left", code, code), "done"]


Behaviour = Callable[[_Serving, list[object]], Awaitable[None]]
BEHAVIOURS: list[Behaviour] = [
    _echo,
    _leaving_cancels_a_sleeping_view,
    _a_receiving_view_gets_earlier_messages_then_the_departure,
]
behaviours = pytest.mark.parametrize(
    "behaviour", BEHAVIOURS, ids=[b.__name__.lstrip("_") for b in BEHAVIOURS]
)


# -- the transports ------------------------------------------------------------------


@behaviours
async def test_in_memory(behaviour: Behaviour) -> None:
    log: list[object] = []
    async with TestClient(_app(log)) as client:

        @asynccontextmanager
        async def connect(path: str) -> AsyncIterator[_Client]:
            async with client.websocket_connect(path) as ws:
                yield _InMemory(ws)

        with trio.fail_after(5):
            await behaviour(_Serving(connect, reports_close_codes=True), log)


@asynccontextmanager
async def _plain_hypercorn(app: triows.App) -> AsyncIterator[int]:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(functools.partial(hypercorn_serve, app, config))  # type: ignore[arg-type]
        yield int(binds[0].rsplit(":", 1)[1])
        nursery.cancel_scope.cancel()


@behaviours
async def test_under_plain_hypercorn(behaviour: Behaviour) -> None:
    log: list[object] = []
    async with _plain_hypercorn(_app(log)) as port:

        @asynccontextmanager
        async def connect(path: str) -> AsyncIterator[_Client]:
            async with open_websocket_url(f"ws://127.0.0.1:{port}{path}") as ws:
                yield _OverSockets(ws)

        with trio.fail_after(5):
            await behaviour(_Serving(connect, reports_close_codes=False), log)


@behaviours
async def test_over_triows_serve(behaviour: Behaviour, backend: Backend) -> None:
    log: list[object] = []
    async with backend.serve(_app(log)) as served:

        @asynccontextmanager
        async def connect(path: str) -> AsyncIterator[_Client]:
            async with served.connect(path) as ws:
                yield _OverSockets(ws)

        # Every triows.serve backend passes the client's own close code on.
        serving = _Serving(connect, reports_close_codes=True)
        with trio.fail_after(5):
            await behaviour(serving, log)
