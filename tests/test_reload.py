"""``triows run --reload``, for real: a process serving an app from a temporary
directory, the file rewritten, the new code served, then Ctrl+C (SIGINT) stops the
supervisor and its child.  Every wait is bounded."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio
from trio_websocket import open_websocket_url

from triows._reload import child_arguments

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0
RESTARTING = b"changed, restarting"
SERVING = re.compile(rb"triows: serving app:app on http://127\.0\.0\.1:(\d+) ")

APP = """\
import triows

app = triows.App()


@app.websocket_route("/version")
async def version(ws: triows.WebSocket) -> None:
    await ws.send({text!r})
"""


@attrs.define
class Supervisor:
    process: trio.Process
    output: bytes = b""

    async def next_port(self, after: int) -> int:
        """The port of the serving line after the first ``after`` of them."""
        while len(found := SERVING.findall(self.output)) <= after:
            await self.read_more()
        return int(found[after])

    async def read_more(self) -> None:
        assert self.process.stdout is not None
        chunk = await self.process.stdout.receive_some(65536)
        assert chunk, f"the supervisor exited:\n{self.output.decode(errors='replace')}"
        self.output += chunk

    async def read_until(self, text: bytes) -> None:
        while text not in self.output:
            await self.read_more()

    async def rest(self) -> str:
        assert self.process.stdout is not None
        while chunk := await self.process.stdout.receive_some(65536):
            self.output += chunk
        return self.output.decode(errors="replace")


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _running(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


@asynccontextmanager
async def reloading(directory: Path, *options: str) -> AsyncIterator[Supervisor]:
    argv = [sys.executable, "-m", "triows", "run", "app:app", "--port", "0", "--reload"]
    argv += options
    process = await trio.lowlevel.open_process(
        argv, cwd=directory, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield Supervisor(process)
    finally:
        if process.returncode is None:
            for child in _children(process.pid):
                os.kill(child, signal.SIGKILL)
            process.kill()
            with trio.move_on_after(5):
                await process.wait()


async def served_text(port: int) -> str | bytes:
    with trio.fail_after(5):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/version") as ws:
            return await ws.get_message()


async def rewrite_until_restarted(supervisor: Supervisor, source: Path, text: str) -> int:
    """Write ``text`` to ``source`` until the supervisor says it restarts (again every
    2 s, in case the watcher was not watching yet; never once it restarted, since each
    write would restart it again); the port the new server then serves on."""
    restarts = supervisor.output.count(RESTARTING)
    served = len(SERVING.findall(supervisor.output))
    for _ in range(10):
        _write(source, text)
        with trio.move_on_after(2):
            while supervisor.output.count(RESTARTING) == restarts:
                await supervisor.read_more()
        if supervisor.output.count(RESTARTING) > restarts:
            return await supervisor.next_port(served)
    raise AssertionError(f"no restart after 10 writes:\n{supervisor.output.decode()}")


async def test_a_changed_file_is_served_after_the_restart(tmp_path: Path) -> None:
    source = tmp_path / "app.py"
    source.write_text(APP.format(text="version one"))
    with trio.fail_after(STARTUP_TIMEOUT * 2):
        async with reloading(tmp_path) as supervisor:
            first = await supervisor.next_port(0)
            assert await served_text(first) == "version one"
            children = _children(supervisor.process.pid)
            assert len(children) == 1, children

            # A different size too: Python's bytecode cache checks mtime (seconds) and size.
            changed = APP.format(text="version two, from the new code")
            second = await rewrite_until_restarted(supervisor, source, changed)
            assert await served_text(second) == "version two, from the new code"
            (child,) = _children(supervisor.process.pid)
            assert child not in children  # a new process imported the new code

            supervisor.process.send_signal(signal.SIGINT)
            assert await supervisor.process.wait() == 0
            output = await supervisor.rest()
    assert "triows: app.py changed, restarting" in output
    assert "SIGINT, shutting down" in output
    assert "Traceback" not in output
    assert not _running(child)  # the supervisor waited for its child


async def test_a_syntax_error_waits_for_the_next_change(tmp_path: Path) -> None:
    source = tmp_path / "app.py"
    source.write_text(APP.format(text="before"))
    with trio.fail_after(STARTUP_TIMEOUT * 3):
        async with reloading(tmp_path) as supervisor:
            await supervisor.next_port(0)
            source.write_text("this is not Python (\n")
            for _ in range(10):
                with trio.move_on_after(2):
                    await supervisor.read_until(b"restarting at the next change")
                    break
                source.write_text("this is not Python ( \n")  # the watcher was not ready
            else:
                pytest.fail(supervisor.output.decode(errors="replace"))
            fixed = APP.format(text="fixed, and served again")
            port = await rewrite_until_restarted(supervisor, source, fixed)
            assert await served_text(port) == "fixed, and served again"
            supervisor.process.send_signal(signal.SIGTERM)
            assert await supervisor.process.wait() == 0


STUCK = """\
import trio
import triows

app = triows.App()


@app.websocket_route("/version")
async def stuck(ws: triows.WebSocket) -> None:
    await ws.send("ready")
    with trio.CancelScope(shield=True):
        await trio.sleep(60)
"""


async def test_a_second_signal_reaches_the_child_and_forces_its_shutdown(tmp_path: Path) -> None:
    _write(tmp_path / "app.py", STUCK)
    # shutdown_timeout=10: the bound (21 s) is far; only forcing ends it in time.
    async with reloading(tmp_path, "--shutdown-timeout", "10") as supervisor:
        with trio.fail_after(STARTUP_TIMEOUT):
            port = await supervisor.next_port(0)
        with trio.fail_after(10):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/version") as ws:
                assert await ws.get_message() == "ready"
                supervisor.process.send_signal(signal.SIGTERM)
                await supervisor.read_until(b"SIGTERM, shutting down")
                assert supervisor.process.returncode is None  # the view holds the shutdown
                supervisor.process.send_signal(signal.SIGTERM)
                with trio.fail_after(3):
                    assert await supervisor.process.wait() == 1  # the child's forced exit
                output = await supervisor.rest()
    assert "ERROR triows: 1 view(s) overran the forced shutdown" in output, output


async def test_reload_without_watchfiles_names_the_extra() -> None:
    script = (
        "import sys\n"
        "sys.modules['watchfiles'] = None  # as if it were not installed\n"
        "from triows._cli import main\n"
        "main(['run', 'examples.echo:app', '--port', '0', '--reload'])\n"
    )
    with trio.fail_after(STARTUP_TIMEOUT):
        result = await trio.run_process(
            [sys.executable, "-c", script], cwd=ROOT, capture_stdout=True,
            capture_stderr=True, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "--reload needs watchfiles" in stderr and "pip install 'triows[reload]'" in stderr
    assert "Traceback" not in stderr
    assert b"serving" not in result.stdout


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "app:app", "--reload"], ["run", "app:app"]),
        (["run", "--reload", "app:app", "--port", "0"], ["run", "app:app", "--port", "0"]),
        (["run", "app:app", "--relo"], ["run", "app:app"]),  # argparse's abbreviation
        (["run", "app:app", "--host", "::1"], ["run", "app:app", "--host", "::1"]),
    ],
)
def test_the_child_gets_every_argument_but_reload(argv: list[str], expected: list[str]) -> None:
    assert child_arguments(argv) == expected
