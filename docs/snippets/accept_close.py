import triows
from triows import WebSocket, status

app = triows.App()
log: list[str] = []


@app.websocket_route("/hello", auto_accept=False)
async def hello(ws: WebSocket) -> None:
    log.append("accepting")
    await ws.accept()
    await ws.send("hello")
    await ws.close()
    log.append("closed")


@app.websocket_route("/hello-with", auto_accept=False)
async def hello_with(ws: WebSocket) -> None:
    async with ws:  # accept() on entry, close() on a normal exit
        await ws.send("hello")
    log.append("closed normally")


@app.websocket_route("/maintenance", auto_accept=False)
async def maintenance(ws: WebSocket) -> None:
    async with ws:
        await ws.close(status.WS_1013_TRY_AGAIN_LATER, "come back later")
        try:
            await ws.close()
        except RuntimeError:
            log.append("a second close() is an error")
        await ws.ensure_closed()  # never an error, and the client still sees 1013
