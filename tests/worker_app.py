"""The App the worker tests serve with ``triows run --workers N``.

``/who`` sends the serving process's pid, then echoes; HTTP ``/pid`` answers it
(and the metrics directory); the startup fails while a given file exists.
"""

from __future__ import annotations

import os

import trio

import triows

app = triows.App()


@app.websocket_route("/who")
async def who(ws: triows.WebSocket) -> None:
    await ws.send(str(os.getpid()))
    async for message in ws:
        await ws.send(message)


@app.route("/pid")
async def pid(request: triows.Request) -> triows.Response:
    """This worker's pid and its PROMETHEUS_MULTIPROC_DIR (empty if unset)."""
    return triows.Response(f"{os.getpid()} {os.environ.get('PROMETHEUS_MULTIPROC_DIR', '')}")


@app.on_startup
async def fail_if_asked() -> None:
    """Refuse to start while the file named by TRIOWS_TEST_FAIL_FILE exists (a crash loop)."""
    flag = os.environ.get("TRIOWS_TEST_FAIL_FILE")
    if flag and await trio.Path(flag).exists():
        raise RuntimeError(f"{flag} exists: this worker refuses to start")
