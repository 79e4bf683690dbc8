from dataclasses import dataclass

import triows
from triows import WebSocket


@dataclass
class Move:
    x: int
    y: int


app = triows.App()


@app.websocket_route("/strict", value_type=Move)
async def strict(ws: WebSocket) -> None:
    # An invalid message ends the connection: close 1007, the reason names the field.
    async for move in ws:
        await ws.send(Move(x=move.y, y=move.x))


@app.websocket_route("/forgiving", value_type=Move)
async def forgiving(ws: WebSocket) -> None:
    while True:
        try:
            move = await ws.receive()
        except triows.MessageValidationError as exc:
            # Valid JSON of the wrong shape: answer and carry on.
            await ws.send({"error": exc.problem, "field": exc.path})
            continue
        await ws.send(move)  # an instance or a plain JSON value
