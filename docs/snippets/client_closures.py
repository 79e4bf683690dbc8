import triows
from triows import WebSocket, WebSocketDisconnect

app = triows.App()
log: list[str] = []


async def echo_all(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@app.websocket_route("/default")  # caught_close_codes=(1000, 1001)
async def default(ws: WebSocket) -> None:
    await echo_all(ws)


@app.websocket_route("/browsers", caught_close_codes=(1000, 1001, 1006))
async def browsers(ws: WebSocket) -> None:
    await echo_all(ws)


@app.websocket_route("/anything", caught_close_codes=all)
async def anything(ws: WebSocket) -> None:
    await echo_all(ws)


@app.websocket_route("/nothing", caught_close_codes=())
async def nothing(ws: WebSocket) -> None:
    await echo_all(ws)


@app.websocket_route("/by-hand", auto_accept=False)
async def by_hand(ws: WebSocket) -> None:
    await ws.accept()
    try:
        await echo_all(ws)
    except WebSocketDisconnect as exc:
        log.append(f"client left with {exc.code} {exc.reason!r}")
