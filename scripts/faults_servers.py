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
#: redis-server's first start tries this many free ports (each can be taken by
#: another process between the probe and redis-server's bind).
PORT_TRIES = 5
#: What redis-server logs once it serves (its append-only file loaded), and
#: before it exits when its port is taken.
REDIS_READY = "Ready to accept connections"
ADDRESS_IN_USE = "Address already in use"


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
    async def started(cls, directory: Path, port: int = 0) -> AsyncIterator[RedisProcess]:
        """A started redis-server, stopped on the way out (``port`` 0: a free one)."""
        redis = cls(directory, port) if port else cls(directory)
        try:
            await redis.start()
            yield redis
        finally:
            if redis.process is not None:
                await _stop(redis.process)

    @property
    def log(self) -> Path:
        """redis-server's output (every start appends to it)."""
        return self.directory / "redis-server.log"

    async def start(self) -> None:
        """Start redis-server; return once it logs that it serves.

        Readiness is read from its own log, not from a connection to the port
        (another process could answer there).  The first start tries a new free
        port when redis-server reports its port taken, ``PORT_TRIES`` times; a
        restart keeps the port (the hub and its clients hold the URL), so a port
        taken meanwhile is an error.  Errors carry redis-server's output.
        """
        tries = 1 if self.restarts else PORT_TRIES
        for attempt in range(tries):
            if attempt:
                self.port = _free_port()
            said = await self._start_on_port()
            if said is None:
                return
        why = "a restart keeps its port" if self.restarts else f"{tries} free ports in a row"
        raise RuntimeError(f"redis-server found port {self.port} taken ({why}):\n{said}")

    async def _start_on_port(self) -> str | None:
        """None once redis-server serves; its output if its port was taken."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("faults: redis-server is not installed (see scripts/test)")
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always"]
        start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(  # noqa: ASYNC220 (main thread: PDEATHSIG; fast)
                argv, stdout=output, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )
        with trio.fail_after(BOUND):
            while True:
                said = self.log.read_bytes()[start:].decode(errors="replace")
                if REDIS_READY in said:
                    return None
                if self.process.poll() is not None:
                    self.process = None
                    if ADDRESS_IN_USE in said:
                        return said
                    raise RuntimeError(f"redis-server exited at start:\n{said}")
                await trio.sleep(0.05)  # polling its log: no other readiness signal

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
