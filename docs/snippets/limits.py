import triows
from triows import WebSocket

app = triows.App(
    max_connections=10_000,  # the 10,001st open WebSocket: HTTP 503
    max_connections_per_ip=50,  # the 51st from one address: HTTP 429
    max_messages_per_second=20,  # every route's default, per connection...
    max_burst=40,  # ...with up to 40 messages at once
)


@app.websocket_route("/chat")
async def chat(ws: WebSocket) -> None:
    # Over 20 messages per second (after a burst of 40), the client is closed
    # with 1008 "message rate exceeded": this loop gets WebSocketDisconnect(1008).
    async for message in ws:
        await ws.send(message)


@app.websocket_route("/typing", max_messages_per_second=2, max_burst=5)
async def typing(ws: WebSocket) -> None:
    # A route's own rate replaces the App's default.
    async for _ in ws:
        await ws.send("noted")
