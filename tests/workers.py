"""Running ``triows run --workers N`` in tests: the supervisor, its output, its workers' pids.

:func:`supervised` starts the supervisor from the repository root on 127.0.0.1
with ``--port 0``, reads its output in a task (every line, and the pid of each
worker that says it serves), and yields once it serves.  On the way out,
whatever happened, it kills the supervisor and every worker it saw, and waits
(bounded) until none of them exists any more.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import attrs
import pytest
import trio

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0
TIMEOUT = 10.0
SERVING = re.compile(r"^triows: serving (\S+) on http://127\.0\.0\.1:(\d+) \(Ctrl\+C to stop\)$")
#: Anywhere in a line: the workers' output is interleaved with the supervisor's.
WORKER = re.compile(r"triows: worker (\d+) serving ")


@attrs.define(eq=False)
class Supervised:
    """A running supervisor: its process, port, output lines and workers seen so far."""

    process: trio.Process
    port: int = 0
    lines: list[str] = attrs.field(factory=list)
    #: Every worker pid that announced it serves, in order.
    workers: list[int] = attrs.field(factory=list)
    changed: trio.Event = attrs.field(factory=trio.Event)
    ended: bool = False

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        """Wait until ``predicate()`` holds (checked after every line), bounded."""
        with trio.fail_after(timeout):
            while not predicate():
                if self.ended:
                    pytest.fail("the supervisor's output ended:\n" + self.output())
                self.changed = trio.Event()
                await self.changed.wait()

    async def wait_for_line(self, text: str, timeout: float = TIMEOUT, after: int = 0) -> int:
        """The index of the first line from ``after`` on containing ``text``."""
        found: list[int] = []

        def seen() -> bool:
            found[:] = [i for i, line in enumerate(self.lines[after:], after) if text in line]
            return bool(found)

        try:
            await self.wait_for(seen, timeout)
        except trio.TooSlowError:
            pytest.fail(f"no line with {text!r} in {timeout} s:\n" + self.output())
        return found[0]

    async def exit_status(self, timeout: float = TIMEOUT) -> int:
        with trio.fail_after(timeout):
            return await self.process.wait()

    def output(self) -> str:
        return "\n".join(self.lines)

    async def read_output(self, stream: trio.abc.ReceiveStream) -> None:
        """Read the supervisor's output until it ends (run as a task)."""
        buffer = b""
        while chunk := await stream.receive_some(65536):
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                line = raw.decode(errors="replace").rstrip("\r")
                self.lines.append(line)
                self.workers.extend(int(pid) for pid in WORKER.findall(line))
                serving = SERVING.match(line)
                if serving:
                    self.port = int(serving.group(2))
                self.changed.set()
        self.ended = True
        self.changed.set()


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


async def wait_gone(pids: list[int], timeout: float = TIMEOUT) -> list[int]:
    """Wait until none of ``pids`` runs; return those still running at the timeout."""
    with trio.move_on_after(timeout):
        # Polled: nothing tells this process when another one's child exits.
        while any(alive(pid) for pid in pids):  # noqa: ASYNC110
            await trio.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


@asynccontextmanager
async def supervised(target: str, *options: str) -> AsyncIterator[Supervised]:
    """``python -m triows run TARGET --host 127.0.0.1 --port 0 OPTIONS``, served."""
    argv = [sys.executable, "-m", "triows", "run", target, "--host", "127.0.0.1", "--port", "0"]
    process = await trio.lowlevel.open_process(
        [*argv, *options], cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = Supervised(process)
    try:
        async with trio.open_nursery() as nursery:
            assert process.stdout is not None
            nursery.start_soon(server.read_output, process.stdout)
            try:
                await server.wait_for(lambda: server.port != 0, STARTUP_TIMEOUT)
                yield server
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with suppress(ProcessLookupError):
            process.kill()
        for pid in server.workers:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with trio.move_on_after(TIMEOUT):
            await process.wait()
        with trio.CancelScope(shield=True):
            left = await wait_gone(server.workers)
        assert not left, f"workers still running after the test: {left}"
