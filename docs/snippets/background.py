import trio

import triows
from triows import WebSocket

app = triows.App()
stats = {"heartbeats": 0}


async def heartbeat() -> None:
    while True:
        stats["heartbeats"] += 1
        await trio.sleep(0.01)


@app.on_startup
async def start_heartbeat() -> None:
    # app.nursery lives from startup to shutdown, so this task stops with the app.
    app.nursery.start_soon(heartbeat)


@app.websocket_route("/stats")
async def get_stats(ws: WebSocket) -> None:
    await ws.send_json(stats)
