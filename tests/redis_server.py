"""A real redis-server on a free loopback port, for the Redis hub tests.

The binary comes from Debian's ``redis-server`` package, installed by the README's
test command (scripts/test).  If it is missing or cannot start, the tests fail
loudly with redis-server's own output: they never skip.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import IO

import attrs
import pytest

from .ports import PORT_TRIES, fresh_ports

__all__ = ["RedisServer", "process_id", "redis_server"]

#: Seconds redis-server gets to answer after it starts (a guard against a hang:
#: it answers in milliseconds, even on a loaded machine).
START_TIMEOUT = 30.0
#: What redis-server prints before it exits when its port is taken.
ADDRESS_IN_USE = "Address already in use"
PROCESS_ID = re.compile(rb"\r\nprocess_id:(\d+)\r\n")


@attrs.define
class RedisServer:
    """One redis-server: :meth:`start`, :meth:`stop`, and :meth:`start` again
    (an outage) on the same port."""

    #: Picked by the first :meth:`start`, kept by the next ones.
    _port: int | None = attrs.field(default=None, init=False)
    process: subprocess.Popen[bytes] | None = None
    #: redis-server's stdout and stderr since its last start, for failure messages.
    output: IO[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("RedisServer.port before start(): start() picks the port")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start redis-server; return once it answers on :attr:`port` (it, not
        another process there: it checks the answering server's process id).

        The first start picks the port: when redis-server reports it taken (another
        process bound it between :func:`~tests.ports.free_port`'s probe and
        redis-server's bind), it tries a new one, up to ``PORT_TRIES`` times.  A
        restart after :meth:`stop` keeps the port on purpose: the hubs under test
        hold the URL, and the outage tests check that they come back to it; a new
        port would be a different test.  So a port taken during the outage fails
        the restart (with redis-server's output), with no retry.  Any other failure
        (exit, no answer within ``START_TIMEOUT``) fails the test with the output.
        """
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed: run the README's test command "
                "(bash scripts/test), which installs Debian's redis-server"
            )
        if self._port is not None:
            taken = self._start_on(binary, self._port)
            if taken is not None:
                pytest.fail(
                    f"redis-server could not restart on port {self.port}: another process "
                    "took it while the server was down (a restart keeps its port, the "
                    f"hubs under test hold its URL); redis-server said:\n{taken}"
                )
            return
        for port in fresh_ports():
            taken = self._start_on(binary, port)
            if taken is None:
                self._port = port
                return
        pytest.fail(
            f"redis-server found its port taken {PORT_TRIES} times in a row (each a new "
            f"free port); its last output:\n{taken}"
        )

    def _start_on(self, binary: str, port: int) -> str | None:
        """Start redis-server on ``port``: None once it answers, its output if the
        port was taken (it has exited then)."""
        self.output = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                status, said = self.process.returncode, self._said()
                self.stop()
                if ADDRESS_IN_USE in said:
                    return said
                pytest.fail(f"redis-server exited with {status} at start on port {port}:\n{said}")
            if process_id(port) == self.process.pid:
                return None
            time.sleep(0.02)  # polling: redis-server gives no other readiness signal
        said = self._said()
        self.stop()
        pytest.fail(f"redis-server did not answer on port {port} within {START_TIMEOUT} s:\n{said}")

    def _said(self) -> str:
        if self.output is None:
            return ""
        # pread: the file offset is shared with redis-server's writes.
        return os.pread(self.output.fileno(), 1 << 20, 0).decode(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
        if self.output is not None:
            self.output.close()
            self.output = None


def process_id(port: int) -> int | None:
    """The process id of the redis-server answering on ``port`` (None: none yet)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"INFO server\r\n")
            reply = b""
            while (found := PROCESS_ID.search(reply)) is None:
                chunk = conn.recv(4096)
                if not chunk or len(reply) > 65536:
                    return None  # not a redis-server, or not ready
                reply += chunk
            return int(found.group(1))
    except OSError:
        return None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
