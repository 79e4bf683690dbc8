import trio

import triows
from triows import WebSocket

app = triows.App()
log: list[str] = []


@app.websocket_route("/report")
async def report(ws: WebSocket) -> None:
    try:
        await ws.send("working on it")
        await trio.sleep(3600)  # not receiving: a long job, another channel...
        await ws.send("done")
    finally:
        # Runs when the client leaves, and at shutdown (the client then gets 1001).
        log.append("report cleaned up")


async def save_progress() -> None:
    await trio.sleep(0.01)  # e.g. a database write
    log.append("progress saved")


@app.websocket_route("/job")
async def job(ws: WebSocket) -> None:
    try:
        await trio.sleep(3600)
    finally:
        # The view's scope is cancelled here: any await would raise Cancelled at
        # once.  Shield the cleanup, and bound it so it cannot hang shutdown.
        with trio.move_on_after(2) as cleanup:
            cleanup.shield = True
            await save_progress()


async def tick(ws: WebSocket, interval: float) -> None:
    count = 0
    while True:
        count += 1
        await ws.send(f"tick {count}")
        await trio.sleep(interval)


@app.websocket_route("/clock")
async def clock(ws: WebSocket, interval: float = 1.0) -> None:
    # A nursery inside the view: its tasks cannot outlive the connection.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick, ws, interval)
        async for command in ws:
            if command == "stop":
                break
        nursery.cancel_scope.cancel()
