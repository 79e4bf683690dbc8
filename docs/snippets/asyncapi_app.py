"""A typed chat API and a JSON-RPC method, with the AsyncAPI document and a page to read it."""

from __future__ import annotations

import msgspec

import triows


class Join(msgspec.Struct, tag_field="type", tag="join"):
    """Take a name in the room."""

    name: str


class Say(msgspec.Struct, tag_field="type", tag="say"):
    """Say something to the room."""

    text: str


class Said(msgspec.Struct, tag_field="type", tag="said"):
    """Someone said something."""

    name: str
    text: str


app = triows.App(title="Chat API", version="1.0.0", asyncapi_path="/asyncapi.json")


@app.websocket_route("/rooms/{room}", receive_type=Join | Say, send_type=Said)
async def chat_room(ws: triows.WebSocket, room: str, history: int = 20) -> None:
    """A chat room: send `join`, then `say`; what you say comes back as `said`."""
    name = "anonymous"
    async for message in ws:
        if isinstance(message, Join):
            name = message.name
        else:
            await ws.send(Said(name=name, text=message.text))


rpc = triows.JSONRPC()


@rpc.method
async def rename(old: str, new: str) -> bool:
    """Rename a room; false if the new name is taken."""
    return new != "lobby"


app.jsonrpc_route("/rpc", rpc)

API_PAGE = """<!doctype html>
<html>
  <head>
    <meta charset="utf-8">
    <title>Chat API</title>
    <script defer
      src="https://unpkg.com/@asyncapi/web-component@2.6.5/lib/asyncapi-web-component.js">
    </script>
  </head>
  <body>
    <asyncapi-component
      schemaUrl="/asyncapi.json"
      cssImportPath="https://unpkg.com/@asyncapi/react-component@2.6.5/styles/default.min.css">
    </asyncapi-component>
  </body>
</html>
"""


@app.route("/api")
async def api_page(request: triows.Request) -> str:
    """The API's documentation, rendered in the browser by AsyncAPI's web component."""
    return API_PAGE
