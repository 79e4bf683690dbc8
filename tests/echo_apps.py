"""An echo App with one route per message type, shared by the bad-input and fuzz tests."""

from __future__ import annotations

from typing import Any

import triows


def echo_app(**options: Any) -> triows.App:
    app = triows.App(**options)

    @app.websocket_route("/text")
    async def text(ws: triows.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @app.websocket_route("/bytes", value_type="bytes")
    async def binary(ws: triows.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @app.websocket_route("/json", value_type="json")
    async def as_json(ws: triows.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    return app
