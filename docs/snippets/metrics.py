import triows
from triows import WebSocket

# GET /metrics serves Prometheus metrics (pip install 'triows[metrics]').
app = triows.App(metrics=True)


@app.websocket_route("/rooms/{room}")
async def room(ws: WebSocket, room: str) -> None:
    async for message in ws:
        await ws.send(f"{room}: {message}")
