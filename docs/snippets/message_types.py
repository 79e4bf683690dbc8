import triows
from triows import WebSocket

app = triows.App()


@app.websocket_route("/sum", value_type="json")
async def total(ws: WebSocket) -> None:
    numbers = await ws.receive()  # parsed JSON
    await ws.send({"sum": sum(numbers)})  # JSON, sent as a text frame


@app.websocket_route("/shout", receive_type="bytes", send_type="text")
async def shout(ws: WebSocket) -> None:
    data = await ws.receive()  # bytes
    await ws.send(data.decode().upper())  # str


@app.websocket_route("/mixed")
async def mixed(ws: WebSocket) -> None:
    # The typed methods work whatever the route's types are.
    name = await ws.receive_text()
    settings = await ws.receive_json()
    blob = await ws.receive_bytes()
    await ws.send_json({"name": name, "settings": settings, "size": len(blob)})
    await ws.send_bytes(blob[::-1])
