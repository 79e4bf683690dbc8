"""One logging policy on every server: the same access line, one line per event."""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio_websocket

import triows

from .conftest import Backend
from .raw_client import http_get


def _app() -> triows.App:
    app = triows.App()

    @app.websocket_route("/echo")
    async def echo(ws: triows.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @app.websocket_route("/crash")
    async def crash(ws: triows.WebSocket) -> None:
        raise RuntimeError("a bug in the view")

    @app.route("/page")
    async def page(request: triows.Request) -> str:
        return "hello"

    return app


async def test_one_access_line_format_on_every_backend(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="triows.access")
    with trio.fail_after(10):
        async with backend.serve(_app(), access_log=True) as served:
            async with served.connect("/echo") as ws:
                await ws.send_message("hi")
                assert await ws.get_message() == "hi"
            assert (await http_get(served, "/page")).startswith(b"HTTP/1.1 200")
            await trio.sleep(0.1)  # the access line of a response follows its last byte
    lines = [r.getMessage() for r in caplog.records if r.name == "triows.access"]
    assert len(lines) == 2, lines
    assert re.fullmatch(r'127\.0\.0\.1:\d+ "GET /echo" 101', lines[0]), lines
    assert re.fullmatch(r'127\.0\.0\.1:\d+ "GET /page" 200', lines[1]), lines


async def test_a_view_crash_is_one_error_with_its_traceback(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(10):
        async with backend.serve(_app()) as served, served.connect("/crash") as ws:
            with pytest.raises(Exception, match="1011"):
                await ws.get_message()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].exc_info is not None
    assert "a bug in the view" in str(errors[0].exc_info[1])


#: A module ``triows run`` serves in the next test: one view that crashes.
CRASHING_APP = """\
import triows

app = triows.App()


@app.websocket_route("/crash")
async def crash(ws: triows.WebSocket) -> None:
    raise RuntimeError("a bug in the view")
"""


async def test_triows_run_prints_a_crash_once(backend: Backend, tmp_path: Path) -> None:
    # triows run configures logging; hypercorn must not add a second handler of
    # its own, or every line it logs is printed twice.
    (tmp_path / "crashing.py").write_text(CRASHING_APP)
    argv = [sys.executable, "-m", "triows", "run", "crashing:app", "--port", "0"]
    argv += backend.cli_options()
    process = await trio.lowlevel.open_process(
        argv, cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        output = b""
        with trio.fail_after(15):
            while (found := re.search(rb"https?://127\.0\.0\.1:(\d+)", output)) is None:
                chunk = await process.stdout.receive_some(65536)
                assert chunk, output.decode(errors="replace")
                output += chunk
            async with backend.served(int(found.group(1))).connect("/crash") as ws:
                with pytest.raises(trio_websocket.ConnectionClosed):
                    await ws.get_message()
            process.send_signal(signal.SIGINT)
            while chunk := await process.stdout.receive_some(65536):
                output += chunk
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(5):
                await process.wait()
    text = output.decode(errors="replace")
    assert text.count("Traceback (most recent call last)") == 1, text
    assert text.count("RuntimeError: a bug in the view") == 1, text
