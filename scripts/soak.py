"""Soak test (issue 4): connect/disconnect cycles and idle connections on loopback.

    .venv/bin/python scripts/soak.py [--cycles 10000] [--idle 2000] [--backend hypercorn|native]

The server runs in a child process (``--serve``) with a debug HTTP route that
reports its trio task count, open WebSockets and RSS.  The parent drives it:

1. warm-up, then a baseline reading;
2. ``--cycles`` connect/disconnect cycles, ``--concurrency`` at a time, mixing
   clean closes (message, echo, close 1000), abrupt TCP resets (SO_LINGER 0 after
   a message) and mid-message drops (half a frame, then a reset);
3. ``--idle`` concurrent idle connections (RLIMIT_NOFILE raised), all held open,
   then every one of them must still echo a message, then all close;
4. checks: no task leaked (the server's task count is back to the baseline), RSS
   back within ``--rss-tolerance`` (5 %) of the baseline, no open WebSocket left.

Prints the figures and exits 1 if a check fails.  Every loop is bounded.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time
from typing import Any

import trio

import triows

SCRIPT = os.path.abspath(__file__)

HANDSHAKE = (
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -- the server (child process) ------------------------------------------------------------


def count_tasks() -> int:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    count, pending = 0, [root]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


def serve(backend: str) -> None:
    import gc

    raise_nofile()
    app = triows.App()

    # Resets and drops end with 1006: expected here, not worth a traceback each.
    @app.websocket_route("/ws", receive_type="bytes", send_type="bytes", caught_close_codes=all)
    async def echo(ws: triows.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    try:
        import ctypes

        malloc_trim: Any = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        malloc_trim = None

    @app.route("/debug")
    async def debug(request: triows.Request) -> dict[str, Any]:
        gc.collect()
        if malloc_trim is not None:
            # Hand freed heap back to the OS so RSS shows what is still in use.
            malloc_trim(0)
        return {
            "tasks": count_tasks(),
            "websockets": len(app.websockets.live),
            "rss_kib": rss_kib(),
        }

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                lambda task_status: triows.serve(
                    app,
                    port=0,
                    backend=backend,  # type: ignore[arg-type]
                    task_status=task_status,
                )
            )
            print(port, flush=True)

    trio.run(main)


# -- the client (parent process) -----------------------------------------------------------


def frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame."""
    length = len(payload)
    head = bytes([0x80 | opcode])
    if length < 126:
        head += bytes([0x80 | length])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Client:
    """A raw WebSocket client on a trio socket (cheap enough for thousands)."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.buffer = b""

    @classmethod
    async def connect(cls, port: int) -> Client:
        sock = trio.socket.socket()
        await sock.connect(("127.0.0.1", port))
        client = cls(sock)
        key = base64.b64encode(os.urandom(16)).decode()
        await client.send(HANDSHAKE.format(key=key).encode())
        while b"\r\n\r\n" not in client.buffer:
            await client._read()
        head, _, client.buffer = client.buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"handshake refused: {head[:80]!r}")
        return client

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            sent = await self.sock.send(view)
            view = view[sent:]

    async def _read(self) -> None:
        data = await self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buffer += data

    async def receive(self) -> tuple[int, bytes]:
        """The next server frame: (opcode, payload)."""
        while True:
            if len(self.buffer) >= 2:
                length, offset = self.buffer[1] & 0x7F, 2
                if length == 126 and len(self.buffer) >= 4:
                    (length,) = struct.unpack("!H", self.buffer[2:4])
                    offset = 4
                if length < 126 and len(self.buffer) >= offset + length:
                    opcode = self.buffer[0] & 0x0F
                    payload = self.buffer[offset : offset + length]
                    self.buffer = self.buffer[offset + length :]
                    if opcode == 0x9:  # keepalive ping: answer, keep reading
                        await self.send(frame(0xA, payload))
                        continue
                    return opcode, payload
            await self._read()

    async def echo(self, payload: bytes) -> None:
        await self.send(frame(0x2, payload))
        opcode, echoed = await self.receive()
        if (opcode, echoed) != (0x2, payload):
            raise RuntimeError(f"bad echo: {opcode} {echoed[:40]!r}")

    async def close(self) -> None:
        await self.send(frame(0x8, struct.pack("!H", 1000)))
        with trio.move_on_after(2):
            while (await self.receive())[0] != 0x8:
                pass
        self.sock.close()

    def reset(self) -> None:
        """Abort: SO_LINGER 0 makes close() send a TCP RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


async def cycle(port: int, n: int) -> None:
    client = await Client.connect(port)
    payload = b"cycle %d " % n + os.urandom(32)
    kind = n % 3
    if kind == 0:
        await client.echo(payload)
        await client.close()
    elif kind == 1:
        await client.echo(payload)
        client.reset()
    else:
        # Mid-message drop: a frame header announcing 1000 bytes, 10 of them, reset.
        await client.send(bytes([0x82, 0x80 | 126]) + struct.pack("!H", 1000) + b"\0" * 14)
        client.reset()


async def debug(port: int) -> dict[str, Any]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            b"GET /debug HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return dict(json.loads(data.partition(b"\r\n\r\n")[2]))


async def settle(
    port: int, websockets: int, max_tasks: int | None = None, timeout: float = 30
) -> dict[str, Any]:
    """Wait (bounded) until the server holds ``websockets`` connections and its task
    count is steady (at most ``max_tasks`` if given); return its figures."""
    deadline = trio.current_time() + timeout
    previous = None
    while True:
        figures = await debug(port)
        if figures["websockets"] == websockets:
            if max_tasks is not None and figures["tasks"] <= max_tasks:
                return figures
            if max_tasks is None and previous is not None and figures["tasks"] == previous:
                return figures
            previous = figures["tasks"]
        if trio.current_time() > deadline:
            return figures
        await trio.sleep(0.3)


async def read_port(server: trio.Process) -> int:
    """The port the soak server prints once it listens (bounded: 30 s)."""
    assert server.stdout is not None
    with trio.fail_after(30):
        line = b""
        while not line.endswith(b"\n"):
            chunk = await server.stdout.receive_some(64)
            if not chunk:
                raise RuntimeError("the soak server exited before it started")
            line += chunk
    return int(line)


async def run_cycles(port: int, count: int, offset: int, concurrency: int) -> None:
    """``count`` connect/disconnect cycles numbered from ``offset``, ``concurrency`` at a time."""
    numbers = iter(range(offset, offset + count))

    async def worker() -> None:
        for n in numbers:
            with trio.fail_after(10):
                await cycle(port, n)

    async with trio.open_nursery() as workers:
        for _ in range(concurrency):
            workers.start_soon(worker)


async def open_idle(port: int, count: int, clients: list[Client]) -> None:
    """Open ``count`` connections, 100 at a time, appending each to ``clients``."""

    async def opened() -> None:
        clients.append(await Client.connect(port))

    for start in range(0, count, 100):
        async with trio.open_nursery() as batch:
            for _ in range(min(100, count - start)):
                batch.start_soon(opened)


async def echo_all(clients: list[Client]) -> int:
    """Have every client echo a message, 100 at a time; return how many did."""
    served = 0

    async def ping(client: Client) -> None:
        nonlocal served
        await client.echo(b"still there?")
        served += 1

    for start in range(0, len(clients), 100):
        async with trio.open_nursery() as batch:
            for client in clients[start : start + 100]:
                batch.start_soon(ping, client)
    return served


async def close_all(clients: list[Client]) -> None:
    for start in range(0, len(clients), 100):
        async with trio.open_nursery() as batch:
            for client in clients[start : start + 100]:
                if client.sock.fileno() != -1:
                    batch.start_soon(client.close)


async def hold_idle(port: int, count: int, figures: dict[str, Any]) -> None:
    """Hold ``count`` idle connections, check each still echoes, then close them all."""
    clients: list[Client] = []
    try:
        await open_idle(port, count, clients)
        held = await settle(port, count)
        figures["peak_rss_kib"] = max(figures.get("peak_rss_kib", 0), held["rss_kib"])
        figures["idle_held"] = held["websockets"]
        figures["idle_served"] = await echo_all(clients)
    finally:
        await close_all(clients)


async def measure(
    port: int, *, cycles: int, idle: int, backend: str, concurrency: int, log: Any
) -> dict[str, Any]:
    """Warm-up, baseline, the measured cycles and idle round, final figures."""
    figures: dict[str, Any] = {"backend": backend, "cycles": cycles, "idle": idle}
    started = time.monotonic()
    # Warm-up: one round of everything (allocator pools and arenas reach
    # their working size), then the baseline.  A leak shows as growth
    # over the second, measured round.
    await run_cycles(port, min(300, cycles), 0, concurrency)
    await hold_idle(port, idle, figures)
    baseline = await settle(port, 0)
    figures["baseline"] = baseline
    log(f"baseline: {baseline}")
    done = 0
    while done < cycles:
        batch_size = min(1000, cycles - done)
        await run_cycles(port, batch_size, done, concurrency)
        done += batch_size
        now = await debug(port)
        figures["peak_rss_kib"] = max(figures.get("peak_rss_kib", 0), now["rss_kib"])
        log(f"{done} cycles: {now}")
    await hold_idle(port, idle, figures)
    final = await settle(port, 0, max_tasks=baseline["tasks"])
    figures["final"] = final
    figures["seconds"] = round(time.monotonic() - started, 1)
    log(f"final: {final}")
    return figures


def check(figures: dict[str, Any], idle: int, rss_tolerance: float) -> list[str]:
    """The failed checks; adds ``leaked_tasks`` and ``rss_growth`` to ``figures``."""
    baseline, final = figures["baseline"], figures["final"]
    failures = []
    if final["websockets"] != 0:
        failures.append(f"{final['websockets']} WebSockets still open")
    leaked = final["tasks"] - baseline["tasks"]
    figures["leaked_tasks"] = leaked
    if leaked > 0:
        failures.append(f"{leaked} tasks leaked")
    growth = final["rss_kib"] / baseline["rss_kib"] - 1
    figures["rss_growth"] = round(growth, 4)
    if growth > rss_tolerance:
        failures.append(f"RSS grew by {growth:.1%} (tolerance {rss_tolerance:.0%})")
    if figures.get("idle_held") != idle or figures.get("idle_served") != idle:
        failures.append(
            f"idle: {figures.get('idle_held')} held, {figures.get('idle_served')} served of {idle}"
        )
    return failures


async def run(
    *,
    cycles: int,
    idle: int,
    backend: str = "hypercorn",
    concurrency: int = 20,
    rss_tolerance: float = 0.05,
    log: Any = print,
) -> dict[str, Any]:
    """Run the soak; return the figures and the list of failed checks (``failures``)."""
    raise_nofile()
    command = [sys.executable, SCRIPT, "--serve", "--backend", backend]
    async with trio.open_nursery() as nursery:
        server = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE)
        try:
            port = await read_port(server)
            figures = await measure(
                port, cycles=cycles, idle=idle, backend=backend, concurrency=concurrency, log=log
            )
        finally:
            server.terminate()
            with trio.move_on_after(10):
                await server.wait()
            nursery.cancel_scope.cancel()
    figures["failures"] = check(figures, idle, rss_tolerance)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=("hypercorn", "native"), default="hypercorn")
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--idle", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rss-tolerance", type=float, default=0.05)
    args = parser.parse_args()
    if args.serve:
        serve(args.backend)
        return 0
    figures = trio.run(
        lambda: run(
            cycles=args.cycles,
            idle=args.idle,
            backend=args.backend,
            concurrency=args.concurrency,
            rss_tolerance=args.rss_tolerance,
        )
    )
    print(json.dumps(figures, indent=2))
    return 1 if figures["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
