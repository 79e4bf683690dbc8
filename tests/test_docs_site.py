"""``bash scripts/docs`` serves the documentation site on loopback in one command."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import trio

from .ports import PORT_TRIES, fresh_ports
from .raw_client import http_get

ROOT = Path(__file__).resolve().parent.parent
#: mkdocs builds the whole site (API reference included) before it serves.
STARTUP_TIMEOUT = 120.0


async def test_scripts_docs_serves_the_site_on_loopback(tmp_path: Path) -> None:
    log = tmp_path / "docs.log"
    for port in fresh_ports():  # one can be taken before mkdocs binds it: try another
        with log.open("wb") as output:
            process = await trio.lowlevel.open_process(
                ["bash", "scripts/docs", "-a", f"127.0.0.1:{port}"], cwd=ROOT,
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            response = await _first_page(process, port)
            if response is None and "Address already in use" in _read(log):
                continue
            assert response is not None and _ok(response), _read(log)
            assert b"<title>triows" in response
            assert b"Getting started" in response
            with trio.fail_after(10):
                assert _ok(await http_get(port, "/guide/websockets/")), _read(log)
            process.send_signal(signal.SIGINT)
            # mkdocs finishes a rebuild in progress before it exits (its watcher
            # may have started one): 15 s was not always enough in a full CI run.
            with trio.fail_after(60):
                await process.wait()
            break
        finally:
            if process.returncode is None:
                process.kill()
                with trio.move_on_after(5):
                    await process.wait()
    else:
        pytest.fail(f"mkdocs found its port taken {PORT_TRIES} times in a row:\n{_read(log)}")
    assert f"Serving on http://127.0.0.1:{port}/" in _read(log)


async def _first_page(process: trio.Process, port: int) -> bytes | None:
    """GET / once the server answers (None if it exited first, or after the timeout)."""
    with trio.move_on_after(STARTUP_TIMEOUT):
        while process.returncode is None:
            await trio.sleep(0.5)  # polling a server that gives no readiness signal
            with trio.move_on_after(10):
                try:
                    response = await http_get(port, "/")
                except OSError:
                    continue  # not listening yet
                if _ok(response):
                    return response
    return None


def _ok(response: bytes) -> bool:
    return response.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))  # mkdocs: HTTP/1.0


def _read(path: Path) -> str:
    return path.read_text(errors="replace")
