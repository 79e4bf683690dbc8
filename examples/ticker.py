"""A background task publishes a tick every second; every client receives them.

Run: ``triows run examples.ticker:app`` and connect to ``ws://127.0.0.1:8000/ticker``.

A client that falls more than ``MAX_BEHIND`` ticks behind is disconnected with
1008 (the hub's "disconnect" overflow policy), so one slow client never slows
the ticker or costs unbounded memory.
"""

from __future__ import annotations

import itertools

import trio

import triows

#: Seconds between ticks (tests shorten it).
INTERVAL = 1.0
#: How many unsent ticks a client may have before it is dropped.
MAX_BEHIND = 8

hub = triows.Hub()
app = triows.App(hub=hub)


async def tick_forever() -> None:
    for n in itertools.count():
        await hub.publish("ticks", {"tick": n, "time": trio.current_time()})
        await trio.sleep(INTERVAL)


@app.on_startup
async def start_ticker() -> None:
    # app.nursery lives from startup to shutdown: the ticker is cancelled at shutdown.
    app.nursery.start_soon(tick_forever)


@app.websocket_route("/ticker", send_type="json")
async def ticker(ws: triows.WebSocket, hub: triows.Hub) -> None:
    async with hub.subscribe("ticks", max_buffer=MAX_BEHIND, on_overflow="disconnect") as ticks:
        async for tick in ticks:
            await ws.send(tick)
