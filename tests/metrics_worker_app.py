"""The App test_metrics serves with ``triows run --workers 2``: metrics on, and
``/who`` sends the serving process's pid."""

from __future__ import annotations

import os

import triows

app = triows.App(metrics=True)


@app.websocket_route("/who")
async def who(ws: triows.WebSocket) -> None:
    await ws.send(str(os.getpid()))
