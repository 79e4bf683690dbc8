import trio

import triows
from triows import WebSocket

app = triows.App()
clients: set[WebSocket] = set()


@app.websocket_route("/feed", send_type="json")
async def feed(ws: WebSocket) -> None:
    await ws.send_many([{"event": "hello"}, {"event": "clients", "count": len(clients) + 1}])
    clients.add(ws)
    try:
        async for _ in ws:
            pass
    finally:
        clients.discard(ws)


async def announce(data: object) -> int:
    """Send ``data`` to every connected client; return how many got it."""
    message = triows.Broadcast(data)  # encoded once for all of them (framed once on native)
    await trio.lowlevel.checkpoint()  # cancelled here, nothing is sent
    delivered = 0
    for client in list(clients):
        try:
            # No pass of trio's scheduler per client when the server takes it at once.
            if not client.try_send(message):
                await client.send(message)
            delivered += 1
        except triows.WebSocketDisconnect:
            clients.discard(client)
    return delivered
