"""Quart-trio's WebSocket routes under hypercorn's trio worker (what ``app.run_task`` uses)."""

from __future__ import annotations

from typing import Any, cast

from quart import websocket
from quart_trio import QuartTrio

from ._common import MESSAGE, parse_go, run, serve_on_hypercorn

app = QuartTrio(__name__)
subscribers: set[Any] = set()


async def echo() -> None:
    while True:
        await websocket.send(await websocket.receive())


async def sub() -> None:
    # The connection, not the proxy (kept in `subscribers` beyond this request):
    # werkzeug's LocalProxy API, documented despite its underscore.
    ws = cast(Any, websocket)._get_current_object()  # noqa: SLF001
    await ws.accept()
    subscribers.add(ws)
    try:
        await ws.send("subscribed")
        while True:
            await ws.receive()
    finally:
        subscribers.discard(ws)


async def pub() -> None:
    while True:
        count = parse_go(str(await websocket.receive()))
        for _ in range(count):
            for subscriber in list(subscribers):
                try:
                    await subscriber.send(MESSAGE)
                except Exception:
                    subscribers.discard(subscriber)
        await websocket.send(f"done {count}")


async def idle() -> None:
    await websocket.accept()
    while True:
        await websocket.receive()


# add_websocket rather than the decorator: the decorator is untyped when mypy runs
# without quart installed (only the test extra).
for view in (echo, sub, pub, idle):
    app.add_websocket(f"/{view.__name__}", view_func=view)

if __name__ == "__main__":
    run(serve_on_hypercorn, app)
