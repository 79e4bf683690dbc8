import triows
from triows import WebSocket

app = triows.App()


@app.websocket_route("/whoami")
async def whoami(ws: WebSocket) -> None:
    await ws.send_json(
        {
            "url": str(ws.url),
            "path": ws.url.path,
            "agent": ws.headers.get("User-Agent", "unknown"),
            "sort": ws.query_parameters.get("sort", "newest"),
            "tags": ws.query_parameters.getlist("tag"),
        }
    )
