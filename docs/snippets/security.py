import triows
from triows import WebSocket

# Pages from the App's own origin may always connect; list any other site's pages.
app = triows.App(allowed_origins=["https://chat.example.com"])


@app.websocket_route("/feed")
async def feed(ws: WebSocket) -> None:
    await ws.send("welcome")
