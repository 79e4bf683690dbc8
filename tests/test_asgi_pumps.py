"""The ASGI adapter's pumps: only views away from their connection get one."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import trio
import trio.testing

import triows
from triows._asgi import Pumps
from triows._asgi._pumps import PUMP_TICK
from triows.testing import TestClient


def _pump_tasks(app: triows.App) -> list[str]:
    return [t.name for t in app.nursery.child_tasks if "_run_pump" in t.name]


async def _until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` (no event exists for it) for at most one second."""
    for _ in range(100):
        if predicate():
            return
        await trio.sleep(0.01)
    raise AssertionError(f"not within 1 s: {what}")


async def test_a_reading_view_has_no_pump_and_an_away_view_gets_one() -> None:
    app = triows.App()
    go_away = trio.Event()
    ended = trio.Event()

    @app.websocket_route("/v")
    async def view(ws: triows.WebSocket) -> None:
        try:
            await ws.send(await ws.receive_text())  # in receive(): no pump
            await go_away.wait()  # away from the connection: a pump within a tick
            await trio.sleep_forever()
        finally:
            ended.set()

    with trio.fail_after(5):
        async with TestClient(app) as client, client.websocket_connect("/v") as ws:
            await trio.sleep(0.2)  # four ticks of the App's Pumps task
            assert _pump_tasks(app) == []
            await ws.send_text("ping")
            assert await ws.receive_text() == "ping"
            go_away.set()
            await _until(lambda: bool(_pump_tasks(app)), "a pump for the away view")
            await ws.close(1000)
            await ended.wait()  # the pump saw the departure: the view was cancelled
            # finished() ends the pump with the connection.
            await _until(lambda: not _pump_tasks(app), "the pump's end")


async def test_echo_loop_stays_without_a_pump() -> None:
    app = triows.App()

    @app.websocket_route("/echo")
    async def echo(ws: triows.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    with trio.fail_after(5):
        async with TestClient(app) as client, client.websocket_connect("/echo") as ws:
            for i in range(200):
                await ws.send_text(str(i))
                assert await ws.receive_text() == str(i)
            assert _pump_tasks(app) == []


async def test_without_a_lifespan_every_connection_gets_its_pump() -> None:
    app = triows.App()
    away = trio.Event()
    ended = trio.Event()

    @app.websocket_route("/v")
    async def view(ws: triows.WebSocket) -> None:
        try:
            away.set()
            await trio.sleep_forever()
        finally:
            ended.set()

    sent: list[MutableMapping[str, Any]] = []
    to_app, from_client = trio.open_memory_channel[MutableMapping[str, Any]](8)

    async def send(event: MutableMapping[str, Any]) -> None:
        sent.append(event)

    scope: dict[str, Any] = {
        "type": "websocket",
        "path": "/v",
        "query_string": b"",
        "headers": [],
        "subprotocols": [],
        "asgi": {"version": "3.0"},
    }
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await to_app.send({"type": "websocket.connect"})
            nursery.start_soon(app, scope, from_client.receive, send)
            await away.wait()
            # No lifespan ran: the connection's own pump reads the departure.
            await to_app.send({"type": "websocket.disconnect", "code": 1000})
            await ended.wait()
    assert sent[0]["type"] == "websocket.accept"


class _Listed:
    """What Pumps reads of a connection (an ASGITransport's public fields)."""

    def __init__(self) -> None:
        self.busy = 0
        self.pumped = False
        self.away_since = 0
        self.listed: Pumps | None = None
        self.pumps_started = 0

    def start_pump(self, nursery: trio.Nursery) -> None:
        self.pumps_started += 1
        self.pumped = True


async def test_views_on_their_way_into_the_server_cost_no_tick() -> None:
    # A new connection whose view enters receive() at once (the usual handshake):
    # the Pumps task lets it get there and drops it, without a timer.
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            pumps = Pumps(nursery)
            nursery.start_soon(pumps.run)
            await trio.testing.wait_all_tasks_blocked()  # it waits for a first listing
            for _ in range(5):
                connection = _Listed()
                pumps.left(connection)  # type: ignore[arg-type]
                await trio.lowlevel.checkpoint()
                connection.busy = 1  # the view reached the server's receive()
                await _until(lambda: not pumps.away, "the busy connection dropped")
                await trio.sleep(PUMP_TICK * 2)  # a quiet spell between connections
                assert connection.listed is None
            assert pumps.generation == 0  # no tick at all
            assert connection.pumps_started == 0
            nursery.cancel_scope.cancel()


async def test_a_view_that_stays_away_gets_its_pump_within_two_ticks() -> None:
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            pumps = Pumps(nursery)
            nursery.start_soon(pumps.run)
            connection = _Listed()
            started = trio.current_time()
            pumps.left(connection)  # type: ignore[arg-type]
            await _until(lambda: connection.pumps_started == 1, "a pump for the away view")
            assert trio.current_time() - started < 3 * PUMP_TICK
            assert pumps.generation == 2 and not pumps.away
            nursery.cancel_scope.cancel()
