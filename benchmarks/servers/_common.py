"""What every server module shares: the message, the ``PORT`` line, hypercorn setup,
and how a trio server runs (:func:`run`)."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import trio

if TYPE_CHECKING:
    from hypercorn.config import Config

__all__ = [
    "HOST",
    "MESSAGE",
    "SlowClock",
    "announce",
    "hypercorn_config",
    "parse_go",
    "run",
    "serve_on_hypercorn",
    "start_redis",
    "unavailable",
]

HOST = "127.0.0.1"
#: redis-server's words once it serves, and before it exits when its port is taken.
REDIS_READY = "Ready to accept connections"
ADDRESS_IN_USE = "Address already in use"
#: Free ports start_redis() tries (each can be taken before redis-server binds it).
REDIS_PORT_TRIES = 5
#: prctl(2): the signal a child gets when its parent dies.
PR_SET_PDEATHSIG = 1

#: What /pub broadcasts: 32 bytes of text, like the echo scenario's messages.
MESSAGE = "fan-out message 0123456789abcdef"
assert len(MESSAGE.encode()) == 32


def announce(port: int) -> None:
    """Tell the harness the server accepts connections on ``port``."""
    print(f"PORT {port}", flush=True)


def unavailable(reason: str) -> NoReturn:
    """Tell the harness this server cannot run here, and exit with status 3."""
    print(f"UNAVAILABLE {reason}", flush=True)
    sys.stderr.flush()
    os._exit(3)  # not SystemExit: it may be raised inside a trio nursery


def parse_go(command: str) -> int:
    """The N of a ``go N`` command sent to /pub."""
    verb, _, count = command.partition(" ")
    if verb != "go":
        raise ValueError(f"unknown /pub command {command!r}")
    return int(count)


def hypercorn_config() -> Config:
    """Hypercorn's defaults (as ``hypercorn -k trio``), bound to a free loopback port."""
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{HOST}:0"]
    config.accesslog = None
    return config


async def serve_on_hypercorn(app: Any) -> None:
    """Serve an ASGI app with hypercorn's trio worker, in this process.

    This is what ``hypercorn -k trio module:app`` runs with its default single
    worker (which serves in the main process), minus the command line.
    """
    from hypercorn.trio import serve

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(serve, app, hypercorn_config())
        announce(int(binds[0].rsplit(":", 1)[1]))


def die_with_parent() -> None:
    """In the child: SIGTERM when this server dies.  The harness kills servers with
    SIGKILL, which runs no atexit hook: without this, redis-server outlived them."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server on a free loopback port (Debian's binary), and its URL.

    A port probed free can be taken before redis-server binds it: redis-server
    then exits saying so, and another port is tried (``REDIS_PORT_TRIES``).  It is
    ready when its own output says so, not when the port accepts a connection
    (another process's listener would).  Failures carry its output.
    """
    said = ""
    for _ in range(REDIS_PORT_TRIES):
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        argv = ["redis-server", "--port", str(port), "--bind", HOST, "--save", ""]
        with tempfile.TemporaryFile() as output:  # the child keeps its own descriptor
            process = subprocess.Popen(
                [*argv, "--appendonly", "no"],
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
            deadline = time.monotonic() + 10
            while True:
                exited = process.poll() is not None
                # pread: the file offset is shared with redis-server's writes.
                said = os.pread(output.fileno(), 1 << 20, 0).decode(errors="replace")
                if exited or REDIS_READY in said:
                    break
                if time.monotonic() > deadline:
                    process.kill()
                    raise SystemExit(f"redis-server did not start within 10 s:\n{said}")
                time.sleep(0.05)
        if not exited:
            return process, f"redis://{HOST}:{port}/0"
        if ADDRESS_IN_USE not in said:
            raise SystemExit(f"redis-server exited with {process.returncode}:\n{said}")
    raise SystemExit(f"redis-server found its port taken {REDIS_PORT_TRIES} times:\n{said}")


#: ``BENCH_CLOCK_SLOWDOWN=N`` in a trio server's environment: :func:`run` gives trio a
#: clock N times slower (benchmarks.instructions, which runs servers under valgrind).
CLOCK_SLOWDOWN = "BENCH_CLOCK_SLOWDOWN"


class SlowClock(trio.abc.Clock):
    """trio's clock, ``slowdown`` times slower.  Under valgrind a server runs about 50
    times slower, so its timers (keepalives, the App's 50 ms ``Pumps`` looks, timeouts)
    would fire 50 times more often per operation than at full speed; on this clock
    they fire about as often as they would."""

    def __init__(self, slowdown: float) -> None:
        self.slowdown = slowdown
        self.start = time.perf_counter()

    def start_clock(self) -> None:
        self.start = time.perf_counter()

    def current_time(self) -> float:
        return (time.perf_counter() - self.start) / self.slowdown

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return max(0.0, (deadline - self.current_time()) * self.slowdown)


def run(main: Callable[..., Awaitable[object]], *args: object) -> None:
    """``trio.run(main, *args)``, on a :class:`SlowClock` if ``BENCH_CLOCK_SLOWDOWN`` says so."""
    slowdown = float(os.environ.get(CLOCK_SLOWDOWN) or 0)
    trio.run(main, *args, clock=SlowClock(slowdown) if slowdown else None)
