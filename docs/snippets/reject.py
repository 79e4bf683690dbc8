import triows
from triows import WebSocket

app = triows.App()


@app.websocket_route("/private", auto_accept=False)
async def private(ws: WebSocket) -> None:
    if ws.headers.get("api-key") != "s3kr3t":
        await ws.reject()  # HTTP 403; the `async with` below then ends the view
    async with ws:
        await ws.send("welcome")


@app.websocket_route("/members", auto_accept=False)
async def members(ws: WebSocket) -> None:
    if ws.headers.get("authorization") != "Bearer let-me-in":
        await ws.reject(401, body="log in first")
        return
    async with ws:
        await ws.send("hello, member")
