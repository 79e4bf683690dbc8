import msgspec

import triows
from triows import WebSocket


# A tagged union: the JSON object's "type" field picks the class.
class Join(msgspec.Struct, tag_field="type", tag="join"):
    name: str


class Say(msgspec.Struct, tag_field="type", tag="say"):
    text: str


class Said(msgspec.Struct, tag_field="type", tag="said"):
    name: str
    text: str


app = triows.App()


@app.websocket_route("/chat", receive_type=Join | Say, send_type=Said)
async def chat(ws: WebSocket) -> None:
    name = "anonymous"
    async for message in ws:  # each one a validated Join or Say
        if isinstance(message, Join):
            name = message.name
        else:
            await ws.send(Said(name=name, text=message.text))
