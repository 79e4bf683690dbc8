"""The guide's echo endpoint: every message comes back as "You said: ...".

Run it with ``triows run examples.echo:app`` (from the repository root) and connect
a WebSocket client to ``ws://127.0.0.1:8000/echo``.
"""

from __future__ import annotations

import triows

app = triows.App()


@app.websocket_route("/echo")
async def echo(ws: triows.WebSocket) -> None:
    """Echo every text message until the client leaves (its close ends the loop quietly)."""
    async for message in ws:
        await ws.send(f"You said: {message}")
