"""A room app on a Redis hub, served by separate processes in the scale-out tests."""

from __future__ import annotations

import os

import trio

import triows

hub = triows.Hub(os.environ.get("TRIOWS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
app = triows.App(hub=hub)


@app.websocket_route("/room/{name}")
async def room(ws: triows.WebSocket, name: str, hub: triows.Hub) -> None:
    async with hub.subscribe(name) as messages, trio.open_nursery() as nursery:

        async def forward() -> None:
            async for message in messages:
                await ws.send(message)

        nursery.start_soon(forward)
        await ws.send("subscribed")
        async for text in ws:
            await hub.publish(name, text)
