"""A client's departure wrapped in an exception group by the view's own nursery."""

from __future__ import annotations

import pytest
import trio

import triows
from triows.testing import TestClient


def _app(caught: tuple[int, ...]) -> triows.App:
    app = triows.App()

    @app.websocket_route("/pair", auto_accept=False, caught_close_codes=caught)
    async def pair(ws: triows.WebSocket) -> None:
        async with ws, trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            async for message in ws:
                await ws.send(message)

    return app


async def test_async_with_silences_a_caught_code_inside_a_group() -> None:
    async with TestClient(_app((1000,))).websocket_connect("/pair") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "hi"
        await ws.close(1000)


async def test_async_with_logs_an_uncaught_code_inside_a_group(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with TestClient(_app(())).websocket_connect("/pair") as ws:
        await ws.close(1000)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "close code 1000" in warnings[0]
