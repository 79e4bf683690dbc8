"""What every server module shares: the message, the ``PORT`` line, hypercorn setup."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

import trio

if TYPE_CHECKING:
    from hypercorn.config import Config

__all__ = [
    "HOST",
    "MESSAGE",
    "announce",
    "hypercorn_config",
    "parse_go",
    "serve_on_hypercorn",
    "start_redis",
    "unavailable",
]

HOST = "127.0.0.1"
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
    """A private redis-server on a free loopback port (Debian's binary), and its URL."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return process, f"redis://{HOST}:{port}/0"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("redis-server did not start")
