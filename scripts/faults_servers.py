"""The fault harness's processes (scripts/faults.py): redis-server and ``triows run --workers``.

Both start from this (the main) thread with ``PR_SET_PDEATHSIG``, so neither
outlives the harness, and both are stopped on the way out whatever happened.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import attrs
import trio

from triows._worker import die_with_parent

SERVING = re.compile(rb"^triows: serving \S+ on http://127\.0\.0\.1:(\d+) ")
#: Seconds a process gets to start, and to stop.
BOUND = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _stop(process: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> None:
    """Signal ``process``, wait for it (bounded), kill it past the bound."""
    with suppress(ProcessLookupError):
        process.send_signal(signum)
    with trio.move_on_after(BOUND):
        await trio.to_thread.run_sync(process.wait, abandon_on_cancel=True)
    if process.poll() is None:
        process.kill()
        await trio.to_thread.run_sync(process.wait)


@attrs.define(eq=False)
class RedisProcess:
    """A redis-server with an append-only file in ``directory``: a restart keeps the history."""

    directory: Path
    port: int = attrs.field(factory=_free_port)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    @asynccontextmanager
    async def started(cls, directory: Path) -> AsyncIterator[RedisProcess]:
        redis = cls(directory)
        try:
            await redis.start()
            yield redis
        finally:
            if redis.process is not None:
                await _stop(redis.process)

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("faults: redis-server is not installed (see scripts/test)")
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always"]
        self.process = subprocess.Popen(  # noqa: ASYNC220 (main thread: PDEATHSIG; fast)
            argv, stdout=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        with trio.fail_after(BOUND):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", self.port)
                except OSError:
                    await trio.sleep(0.05)
                    continue
                await stream.aclose()
                return

    async def restart(self) -> None:
        """Stop redis-server (SIGTERM: it writes its append-only file) and start it again."""
        assert self.process is not None
        await _stop(self.process)
        self.restarts += 1
        await self.start()


@attrs.define(eq=False)
class ServerProcess:
    """``triows run scripts.faults_app:app --workers N``, its port and its output."""

    process: subprocess.Popen[bytes]
    port: int = 0
    lines: list[str] = attrs.field(factory=list)
    rolled: int = 0
    changed: trio.Event = attrs.field(factory=trio.Event)

    @classmethod
    @asynccontextmanager
    async def started(
        cls,
        root: Path,
        workers: int,
        drain_seconds: float,
        env: dict[str, str],
    ) -> AsyncIterator[ServerProcess]:
        argv = [sys.executable, "-m", "triows", "run", "scripts.faults_app:app"]
        argv += ["--host", "127.0.0.1", "--port", "0", "--workers", str(workers)]
        argv += ["--drain-seconds", str(drain_seconds), "--shutdown-timeout", "2"]
        environment = {**os.environ, **env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(root)}
        process = subprocess.Popen(  # noqa: ASYNC220 (main thread: PDEATHSIG; fast)
            argv, cwd=root, env=environment, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )  # fmt: skip
        server = cls(process)
        try:
            async with trio.open_nursery() as nursery:
                assert process.stdout is not None
                nursery.start_soon(
                    server.read, trio.lowlevel.FdStream(os.dup(process.stdout.fileno()))
                )
                with trio.fail_after(BOUND):
                    while not server.port:
                        await server.next_line()
                try:
                    yield server
                finally:
                    await _stop(process)
                    nursery.cancel_scope.cancel()
        finally:
            if process.poll() is None:
                process.kill()

    async def read(self, stream: trio.lowlevel.FdStream) -> None:
        buffer = b""
        async with stream:
            while chunk := await stream.receive_some(65536):
                buffer += chunk
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    found = SERVING.match(raw)
                    if found:
                        self.port = int(found.group(1))
                    if b"rolling restart done" in raw:
                        self.rolled += 1
                    self.lines.append(raw.decode(errors="replace"))
                    self.changed.set()
        self.changed.set()
        self.lines.append("(the server's output ended)")

    async def next_line(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError("the server exited:\n" + "\n".join(self.lines[-50:]))
        self.changed = trio.Event()
        await self.changed.wait()

    async def roll(self) -> None:
        """SIGHUP: a rolling restart of every worker; return once it is done."""
        done = self.rolled + 1
        self.process.send_signal(signal.SIGHUP)
        with trio.fail_after(BOUND * 2):
            while self.rolled < done:
                await self.next_line()
