"""Many idle WebSocket clients in one process, for the scale benchmarks.

Run by :mod:`benchmarks.scale` and :mod:`benchmarks.publish_stall`::

    python -m benchmarks.idle_clients --port PORT --count N [--sources 2,3,4] [--path /sub]

Opens ``N`` raw WebSocket connections to ``127.0.0.1:PORT`` (at most
``--concurrency`` handshakes at a time), their sockets bound to the source
addresses ``127.0.0.<s>`` in turn (each source address has its own range of
ephemeral ports), then holds them idle: it answers pings and records when each
connection receives its first data message (with ``--greeting``, a connection
counts as open once a first message, the server's greeting, arrived, and the
next one is the one recorded).  It talks to its parent with lines:

- it prints ``OPEN <opened> <failed> <seconds>`` once every handshake finished;
- on ``report <timeout>`` it waits (at most ``timeout`` seconds) until every open
  connection received a message since the last report, then prints
  ``RECEIVED <received> <open> <first> <last>`` (``time.monotonic()`` of the
  first and last arrivals: the clock is shared by every process on the machine);
- on ``close`` it closes every connection with a close frame (1000), waits for the
  server's close frames (bounded) and prints ``CLOSED <closed cleanly> <seconds>``,
  then exits.

A raw asyncio protocol (on uvloop when it is installed): a few hundred bytes per
connection on this side, so the client process never limits the server.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
import struct
import subprocess
import sys
import time

import attrs

__all__ = ["main", "spawn", "stop", "tell"]

#: The repository's root: the child runs ``-m benchmarks.idle_clients`` from there.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spawn(
    port: int,
    count: int,
    sources: str,
    *,
    concurrency: int | None = None,
    greeting: bool = False,
) -> subprocess.Popen[str]:
    """Start this module as a child process driven through its stdin and stdout."""
    argv = [sys.executable, "-m", "benchmarks.idle_clients", "--port", str(port)]
    argv += ["--count", str(count), "--sources", sources]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    if greeting:
        argv.append("--greeting")
    return subprocess.Popen(
        argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def tell(process: subprocess.Popen[str], command: str) -> None:
    """Send one command line to a child started by :func:`spawn`."""
    assert process.stdin is not None
    process.stdin.write(command + "\n")
    process.stdin.flush()


def stop(process: subprocess.Popen[str]) -> None:
    """Kill the child if it still runs, and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait(10)


HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
#: A masked close frame with code 1000 (mask 0: the payload is unchanged).
CLOSE_FRAME = b"\x88\x82\x00\x00\x00\x00\x03\xe8"
HANDSHAKE_TIMEOUT = 60.0
CLOSE_TIMEOUT = 30.0


class Client(asyncio.Protocol):
    """One idle connection: the handshake, then frames (pings answered)."""

    __slots__ = ("arrived", "buffer", "closed", "greeting", "opened", "transport", "upgraded")

    def __init__(self, opened: asyncio.Future[bool], greeting: bool) -> None:
        self.opened = opened
        #: Opened only once a first message (the server's greeting) arrived.
        self.greeting = greeting
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.arrived: float | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.upgraded:
            head, sep, rest = buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = buffer
                return
            self.upgraded = head.startswith(b"HTTP/1.1 101")
            if not self.opened.done() and not (self.upgraded and self.greeting):
                self.opened.set_result(self.upgraded)
            if not self.upgraded:
                self.buffer = b""
                return
            buffer = rest
        self.buffer = self._frames(buffer)

    def _frames(self, buffer: bytes) -> bytes:
        """Handle every complete (unmasked, server-sent) frame; return the rest."""
        while len(buffer) >= 2:
            opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, 2)
                start = 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, 2)
                start = 10
            if len(buffer) < start + length:
                break
            payload = buffer[start : start + length]
            buffer = buffer[start + length :]
            if opcode in (0x1, 0x2, 0x0):
                if not self.opened.done():  # the greeting
                    self.opened.set_result(True)
                elif self.arrived is None:
                    self.arrived = time.monotonic()
            elif opcode == 0x9 and self.transport is not None:  # ping: pong, masked
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
            elif opcode == 0x8 and not self.closed.done():
                self.closed.set_result(True)
        return buffer

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_result(False)
        if not self.closed.done():
            self.closed.set_result(False)


@attrs.frozen
class Target:
    port: int
    path: str
    greeting: bool


async def open_one(
    loop: asyncio.AbstractEventLoop, target: Target, source: str, limit: asyncio.Semaphore
) -> Client | None:
    async with limit:
        opened: asyncio.Future[bool] = loop.create_future()
        try:
            transport, client = await asyncio.wait_for(
                loop.create_connection(
                    lambda: Client(opened, target.greeting),
                    "127.0.0.1",
                    target.port,
                    local_addr=(source, 0),
                ),
                HANDSHAKE_TIMEOUT,
            )
            key = base64.b64encode(os.urandom(16)).decode()
            head = HANDSHAKE.format(path=target.path, port=target.port, key=key)
            transport.write(head.encode())
            if await asyncio.wait_for(opened, HANDSHAKE_TIMEOUT):
                return client
            transport.close()
        except (OSError, TimeoutError) as exc:
            print(f"connection from {source} failed: {exc!r}", file=sys.stderr)
        return None


async def command() -> list[str]:
    line: str = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        return ["close"]  # the parent went away
    return line.split()


async def report(clients: list[Client], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(c.arrived is not None for c in clients):
            break
        await asyncio.sleep(0.005)
    times = [c.arrived for c in clients if c.arrived is not None]
    first, last = (min(times), max(times)) if times else (0.0, 0.0)
    print(f"RECEIVED {len(times)} {len(clients)} {first:.6f} {last:.6f}", flush=True)
    for client in clients:
        client.arrived = None


async def close_all(clients: list[Client]) -> None:
    started = time.monotonic()
    for client in clients:
        if client.transport is not None and not client.transport.is_closing():
            client.transport.write(CLOSE_FRAME)
    if clients:
        await asyncio.wait([c.closed for c in clients], timeout=CLOSE_TIMEOUT)
    clean = sum(1 for c in clients if c.closed.done() and c.closed.result())
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    print(f"CLOSED {clean} {time.monotonic() - started:.3f}", flush=True)


async def run(target: Target, count: int, sources: list[str], concurrency: int) -> None:
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(concurrency)
    started = time.monotonic()
    results = await asyncio.gather(
        *(open_one(loop, target, sources[i % len(sources)], limit) for i in range(count))
    )
    clients = [c for c in results if c is not None]
    elapsed = time.monotonic() - started
    print(f"OPEN {len(clients)} {count - len(clients)} {elapsed:.3f}", flush=True)
    while True:
        words = await command()
        if words[0] == "report":
            await report(clients, float(words[1]))
        elif words[0] == "close":
            await close_all(clients)
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--path", default="/sub")
    parser.add_argument("--sources", default="1", help="last bytes of 127.0.0.x, comma-separated")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument(
        "--greeting", action="store_true", help="a connection is open once a first message came"
    )
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sources = [f"127.0.0.{int(s)}" for s in args.sources.split(",")]
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    target = Target(args.port, args.path, args.greeting)
    runner(run(target, args.count, sources, args.concurrency))


if __name__ == "__main__":
    main()
