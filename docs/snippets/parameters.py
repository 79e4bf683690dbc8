import enum

import triows
from triows import WebSocket

app = triows.App()


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@app.websocket_route("/chat/{channel}", value_type="json")
async def chat(ws: WebSocket, channel: str, anonymous: bool = False) -> None:
    user = "Anonymous" if anonymous else ws.headers.get("user", "guest")
    async for message in ws:
        await ws.send({"channel": channel, "user": user, "message": message})


@app.websocket_route("/boards/{board_id}")
async def board(ws: WebSocket, board_id: int, page: int, color: Color = Color.RED) -> None:
    # board_id comes from the path; page (required) and color from the query string.
    await ws.send(f"board {board_id}, page {page}, {color.value}")
