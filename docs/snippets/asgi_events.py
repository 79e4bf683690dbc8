import triows
from triows import WebSocket

app = triows.App()


@app.websocket_route("/echo")
async def echo(ws: WebSocket) -> None:
    event = await ws.receive_event()
    await ws.send_event({"type": "websocket.send", "text": f"You said: {event['text']}"})


@app.websocket_route("/raw", auto_accept=False)
async def raw(ws: WebSocket) -> None:
    await ws.send_event({"type": "websocket.accept"})
    while True:
        event = await ws.receive_event()
        if event["type"] == "websocket.disconnect":
            break  # the client left: event["code"] says how
        size = len(event.get("bytes") or event.get("text") or "")
        await ws.send_event({"type": "websocket.send", "text": f"{size} received"})
