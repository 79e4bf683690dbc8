import trio

import triows
from triows import WebSocket

hub = triows.Hub()
app = triows.App(hub=hub)  # runs the hub from startup to shutdown


@app.websocket_route("/room/{name}")
async def room(ws: WebSocket, name: str, hub: triows.Hub) -> None:
    # `hub` is a provider: the App's Hub, injected by name.
    async with hub.subscribe(name) as messages, trio.open_nursery() as nursery:
        nursery.start_soon(messages.forward, ws)  # hub -> this client
        async for text in ws:  # this client -> hub (and every subscriber)
            await hub.publish(name, text)
