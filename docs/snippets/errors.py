import triows
from triows import WebSocket

app = triows.App()


@app.websocket_route("/divide", value_type="json")
async def divide(ws: WebSocket) -> None:
    async for numbers in ws:
        # {"a": 1, "b": 0} raises ZeroDivisionError: the client gets 1011,
        # and the exception goes on to the server, which logs it and keeps serving.
        await ws.send(numbers["a"] / numbers["b"])


@app.websocket_route("/not-ready", auto_accept=False)
async def not_ready(ws: WebSocket) -> None:
    # Raised before accept(): the client gets an HTTP 500 instead of a WebSocket.
    raise RuntimeError("the database is down")


@app.websocket_route("/forgiving", value_type="json")
async def forgiving(ws: WebSocket) -> None:
    while True:
        try:
            message = await ws.receive()
        except triows.BadMessage as exc:
            # Not JSON: tell the client and keep the connection open.
            await ws.send({"error": str(exc)})
            continue
        await ws.send({"ok": message})
