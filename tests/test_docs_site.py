"""``bash scripts/docs`` serves the documentation site on loopback in one command."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import trio

from .raw_client import http_get

ROOT = Path(__file__).resolve().parent.parent
#: mkdocs builds the whole site (API reference included) before it serves.
STARTUP_TIMEOUT = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_scripts_docs_serves_the_site_on_loopback(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "docs.log"
    with log.open("wb") as output:
        process = await trio.lowlevel.open_process(
            ["bash", "scripts/docs", "-a", f"127.0.0.1:{port}"], cwd=ROOT,
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        response = b""
        with trio.move_on_after(STARTUP_TIMEOUT):
            while not _ok(response):
                await trio.sleep(0.5)  # polling a server that gives no readiness signal
                assert process.returncode is None, "scripts/docs exited"
                with trio.move_on_after(10):
                    try:
                        response = await http_get(port, "/")
                    except OSError:
                        continue  # not listening yet
        assert _ok(response), _read(log)
        assert b"<title>triows" in response
        assert b"Getting started" in response
        response = await http_get(port, "/guide/websockets/")
        assert _ok(response)
        process.send_signal(signal.SIGINT)
        with trio.fail_after(15):
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(5):
                await process.wait()
    assert f"Serving on http://127.0.0.1:{port}/" in _read(log)


def _ok(response: bytes) -> bool:
    return response.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))  # mkdocs: HTTP/1.0


def _read(path: Path) -> str:
    return path.read_text(errors="replace")
