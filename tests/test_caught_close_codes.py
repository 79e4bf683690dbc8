"""The full caught_close_codes matrix, in memory and over real sockets.

{auto_accept=True, auto_accept=False with ``async with``, auto_accept=False without}
x {client close code in caught_close_codes, not in it}
x {default (1000, 1001), ``all``, ``()``}
x {the view is receiving when the client leaves, the view is sleeping}.

A disconnect is silenced only with auto_accept=True or inside ``async with ws``,
and only if its code is caught; otherwise the App logs one WARNING line naming the
code, the route and how to catch it (no traceback, nothing raised to the server).
"""

from __future__ import annotations

import logging
from collections.abc import Container
from typing import Any

import pytest
import trio

import triows
from triows.testing import TestClient

from .conftest import Backend

MODES = ("auto_accept", "async_with", "manual")
CONFIGS: dict[str, Any] = {"default": None, "all": all, "none": ()}
CAUGHT: dict[str, Container[int]] = {
    "default": (1000, 1001),
    "all": range(0, 10_000),
    "none": (),
}
# Codes a client may send on the wire, plus 1006 (a dropped connection) in memory.
CODES = (1000, 1001, 4001)


def _silenced(mode: str, config: str, code: int) -> bool:
    return mode in ("auto_accept", "async_with") and code in CAUGHT[config]


def _cases(codes: tuple[int, ...]) -> list[Any]:
    cases = []
    for mode in MODES:
        for config in CONFIGS:
            for code in codes:
                for receiving in (True, False):
                    label = f"{mode}-{config}-{code}-{'receiving' if receiving else 'sleeping'}"
                    cases.append(pytest.param(mode, config, code, receiving, id=label))
    return cases


def _make_app(mode: str, config: str, receiving: bool) -> tuple[triows.App, dict[str, Any]]:
    app = triows.App()
    info: dict[str, Any] = {
        "ready": trio.Event(),
        "ended": trio.Event(),
        "finally": False,
        "after_block": False,
    }
    options: dict[str, Any] = {"auto_accept": mode == "auto_accept"}
    if CONFIGS[config] is not None:
        options["caught_close_codes"] = CONFIGS[config]

    async def wait_for_client(ws: triows.WebSocket) -> None:
        await ws.send("ready")
        info["ready"].set()
        if receiving:
            while True:
                await ws.receive()
        else:
            await trio.sleep_forever()

    @app.websocket_route("/m", **options)
    async def view(ws: triows.WebSocket) -> None:
        try:
            if mode == "auto_accept":
                await wait_for_client(ws)
            elif mode == "async_with":
                async with ws:
                    await wait_for_client(ws)
                info["after_block"] = True
            else:
                await ws.accept()
                await wait_for_client(ws)
        finally:
            info["finally"] = True
            info["ended"].set()

    return app, info


def _check_outcome(caplog: pytest.LogCaptureFixture, silenced: bool, code: int) -> None:
    warnings = [r for r in caplog.records if r.name == "triows" and r.levelno >= logging.WARNING]
    if silenced:
        assert warnings == [], f"expected the disconnect to be silenced, got {warnings!r}"
        return
    assert len(warnings) == 1, warnings
    (record,) = warnings
    assert record.levelno == logging.WARNING and record.exc_info is None
    message = record.getMessage()
    assert f"close code {code}" in message and "caught_close_codes" in message
    assert "'/m'" in message


@pytest.mark.parametrize(("mode", "config", "code", "receiving"), _cases((*CODES, 1006)))
async def test_matrix_in_memory(
    mode: str, config: str, code: int, receiving: bool, caplog: pytest.LogCaptureFixture
) -> None:
    app, info = _make_app(mode, config, receiving)
    with trio.fail_after(3):
        async with TestClient(app).websocket_connect("/m") as ws:
            assert await ws.receive_text() == "ready"
            await ws.close(code, "leaving")
    _check_outcome(caplog, _silenced(mode, config, code), code)
    assert info["finally"]
    # A silenced disconnect ends the `async with` block, not the view: code after it runs.
    if mode == "async_with" and receiving:
        assert info["after_block"] is _silenced(mode, config, code)


@pytest.mark.parametrize(("mode", "config", "code", "receiving"), _cases(CODES))
async def test_matrix_real_sockets(
    mode: str,
    config: str,
    code: int,
    receiving: bool,
    backend: Backend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, info = _make_app(mode, config, receiving)
    with trio.fail_after(5):
        async with backend.serve(app) as server, server.connect("/m") as ws:
            assert await ws.get_message() == "ready"
            await ws.aclose(code, "leaving")
            # The departure ends the view before the server shuts down (under
            # ASGI a view away from its connection learns of it within a tick).
            await info["ended"].wait()
    _check_outcome(caplog, _silenced(mode, config, code), code)
    assert info["finally"]
