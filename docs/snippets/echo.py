import triows
from triows import WebSocket

app = triows.App()


@app.websocket_route("/echo")
async def echo(ws: WebSocket) -> None:
    message = await ws.receive()
    await ws.send(f"You said: {message}")
