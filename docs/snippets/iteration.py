import triows
from triows import WebSocket

app = triows.App()


@app.websocket_route("/echo")
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(f"You said: {message}")


@app.websocket_route("/echo-longhand")
async def echo_longhand(ws: WebSocket) -> None:
    while True:  # what `async for` does
        message = await ws.receive()
        await ws.send(f"You said: {message}")
