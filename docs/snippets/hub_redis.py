import os

import triows
from triows import WebSocket

# One URL for every process that should share topics: workers and hosts alike.
hub = triows.Hub(os.environ.get("HUB_URL", "redis://127.0.0.1:6379/0"))
app = triows.App(hub=hub)


@app.websocket_route("/announce")
async def announce(ws: WebSocket, hub: triows.Hub) -> None:
    async for text in ws:
        try:
            await hub.publish("announcements", text)
        except triows.HubUnavailable:
            # Redis is down: nothing was sent; the hub reconnects by itself.
            await ws.send("not delivered, try again shortly")
        else:
            await ws.send("sent")
