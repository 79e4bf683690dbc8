import triows
from triows import WebSocket, status

app = triows.App()

BOOM = 4003  # application codes live in 4000-4999


@app.websocket_route("/dangerous")
async def dangerous(ws: WebSocket) -> None:
    for _ in range(100):
        message = await ws.receive()
        if message == "boom":
            await ws.close(BOOM, "you asked for it")
            return
        await ws.send("OK")
    # auto_accept would close with 1000 anyway; closing yourself is also fine.
    await ws.close(status.WS_1000_NORMAL_CLOSURE)


@app.websocket_route("/strict")
async def strict(ws: WebSocket) -> None:
    message = await ws.receive()
    if message != "hello":
        await ws.close(status.CloseCode.POLICY_VIOLATION, "say hello first")  # 1008
        return
    await ws.send("hello to you")


class UnknownCommand(triows.ClientError):
    close_code = 4004  # uncaught, it closes the connection with this code


@app.websocket_route("/admin")
async def admin(ws: WebSocket) -> None:
    async for command in ws:
        if command not in ("status", "uptime"):
            raise UnknownCommand(f"unknown command {command!r}")  # becomes the reason
        await ws.send(f"{command}: fine")
