"""Soak test (issue 4): connect/disconnect cycles and idle connections on loopback.

    .venv/bin/python scripts/soak.py [--cycles 10000] [--idle 2000] [--backend hypercorn|native]
                                     [--attacks SECONDS]

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

With ``--attacks SECONDS`` an attack round follows the idle round (and runs
once in the warm-up): well-behaved echo clients, whose every message must come
back in order, next to deflate bombs (1009 where permessage-deflate is
negotiated, 1002 on hypercorn, which does not negotiate it), slow readers that
flood and never read, half-open and silent sockets, and bursts of 300
handshakes.  Also checked then: the server is alive and still serves, and its
log has no ERROR line.

Prints the figures and exits 1 if a check fails.  Every loop is bounded.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time
import zlib
from typing import Any

import trio

import triows

SCRIPT = os.path.abspath(__file__)

HANDSHAKE = (
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
)
DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate\r\n"


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
    import logging

    # Level names on every line: the parent fails the soak on any ERROR line.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
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
        self.head = b""

    @classmethod
    async def connect(cls, port: int, extra: str = "") -> Client:
        sock = trio.socket.socket()
        await sock.connect(("127.0.0.1", port))
        client = cls(sock)
        key = base64.b64encode(os.urandom(16)).decode()
        await client.send(HANDSHAKE.format(key=key, extra=extra).encode())
        while b"\r\n\r\n" not in client.buffer:
            await client._read()
        head, _, client.buffer = client.buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"handshake refused: {head[:80]!r}")
        client.head = head
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


async def collect_output(server: trio.Process, lines: list[str]) -> None:
    """The server's stderr (its log), line by line, until it exits."""
    assert server.stderr is not None
    pending = b""
    async for chunk in server.stderr:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        lines.extend(line.decode(errors="replace") for line in complete)


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


# -- attacks next to well-behaved clients (--attacks) -----------------------------------------


def raw_frame(payload: bytes, first: int = 0x82) -> bytes:
    """One client frame with a zero masking key (valid, and no cost to mask megabytes)."""
    return bytes([first, 0x80 | 127]) + struct.pack("!Q", len(payload)) + b"\0\0\0\0" + payload


@functools.cache
def deflate_bomb(compressed: int) -> bytes:
    """A raw-deflate payload of about ``compressed`` bytes: zeros, ~1000 times larger inflated.

    16 MiB of zeros compressed up to a full flush (byte-aligned, no back-reference
    across it), repeated: a valid stream, built in milliseconds."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(16 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * max(1, compressed // len(block))


class Attack:
    """One attack round: what it held open, what it saw; bounded by ``until``."""

    def __init__(self, port: int, until: float, bomb: bytes) -> None:
        self.port, self.until, self.bomb = port, until, bomb
        self.held: list[trio.socket.SocketType] = []
        self.figures: dict[str, Any] = {
            "good_sent": 0,
            "good_received": 0,
            "good_errors": [],
            "bomb_codes": {},
            "slow_readers": 0,
            "slow_bytes_sent": 0,
            "slow_dropped": 0,
            "half_open": 0,
            "silent": 0,
            "burst_ok": 0,
            "burst_failed": [],
        }

    async def good(self, index: int) -> None:
        """Echo numbered messages, 8 in flight, until the round ends; each must come back in order."""
        figures = self.figures
        try:
            client = await Client.connect(self.port)
            sequence = 0
            while trio.current_time() < self.until:
                batch = [b"good %d %d " % (index, sequence + i) + b"x" * 100 for i in range(8)]
                await client.send(b"".join(frame(0x2, message) for message in batch))
                figures["good_sent"] += len(batch)
                sequence += len(batch)
                for message in batch:
                    with trio.fail_after(10):
                        opcode, echoed = await client.receive()
                    if (opcode, echoed) != (0x2, message):
                        raise RuntimeError(
                            f"expected {message[:20]!r}, got {opcode} {echoed[:40]!r}"
                        )
                    figures["good_received"] += 1
            await client.close()
        except (OSError, EOFError, RuntimeError, trio.TooSlowError) as error:
            figures["good_errors"].append(f"client {index}: {error!r}")

    async def bombs(self, count: int) -> None:
        """Deflate bombs one after the other: 1009 where deflate is negotiated, else 1002."""
        for _ in range(count):
            if trio.current_time() >= self.until:
                return
            with trio.move_on_after(10):
                code = await self.one_bomb()
                codes = self.figures["bomb_codes"]
                codes[code] = codes.get(code, 0) + 1
            await trio.sleep(0.2)

    async def one_bomb(self) -> str:
        client = await Client.connect(self.port, extra=DEFLATE)
        negotiated = b"permessage-deflate" in client.head.lower()
        code = "no close frame"

        async def read_close() -> None:
            nonlocal code
            with contextlib.suppress(OSError, EOFError):
                while True:
                    opcode, payload = await client.receive()
                    if opcode == 0x8:
                        code = str(struct.unpack("!H", payload[:2])[0])
                        return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_close)
            with contextlib.suppress(OSError):  # the server may close before it has all
                await client.send(raw_frame(self.bomb, first=0xC2))  # FIN, RSV1, binary
        client.reset()
        return ("deflate " if negotiated else "no deflate ") + code

    async def slow_reader(self) -> None:
        """Echo-flood without ever reading, until the socket buffers are full; then hold."""
        client = await Client.connect(self.port)
        self.held.append(client.sock)
        self.figures["slow_readers"] += 1
        message = raw_frame(os.urandom(60_000))
        try:
            while trio.current_time() < self.until:
                with trio.move_on_after(0.5) as blocked:
                    await client.send(message)
                    self.figures["slow_bytes_sent"] += len(message)
                if blocked.cancelled_caught:
                    break
        except OSError:  # the server gave up on this client: fair
            self.figures["slow_dropped"] += 1

    async def half_open(self) -> None:
        """Half a handshake, then silence."""
        sock = trio.socket.socket()
        self.held.append(sock)
        await sock.connect(("127.0.0.1", self.port))
        await sock.send(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        self.figures["half_open"] += 1

    async def silent(self) -> None:
        """A full handshake, then nothing at all: no reads, no pong, no close."""
        client = await Client.connect(self.port)
        self.held.append(client.sock)
        self.figures["silent"] += 1

    async def burst(self, size: int) -> None:
        """``size`` handshakes at once, each echoes a message and closes."""

        async def one(n: int) -> None:
            try:
                with trio.fail_after(15):
                    await cycle(self.port, 3 * n)  # clean close
                self.figures["burst_ok"] += 1
            except (OSError, EOFError, RuntimeError, trio.TooSlowError) as error:
                self.figures["burst_failed"].append(repr(error))

        async with trio.open_nursery() as nursery:
            for n in range(size):
                nursery.start_soon(one, n)

    async def bursts(self, size: int, count: int) -> None:
        """``count`` bursts a second apart, every one of them even past the round's
        end (a burst slowed down by a busy machine must not skip the next: the
        checks expect ``count * size`` handshakes)."""
        for index in range(count):
            if index:
                await trio.sleep(1)
            await self.burst(size)

    async def watch(self) -> None:
        """The server's figures with everything held, just before the round ends."""
        await trio.sleep_until(self.until - 0.5)
        self.figures["under_attack"] = await debug(self.port)

    def release(self) -> None:
        for sock in self.held:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        self.held.clear()


async def attack_round(port: int, seconds: float, scale: dict[str, int]) -> dict[str, Any]:
    """Well-behaved echo clients for ``seconds`` while the attacks run next to them."""
    attack = Attack(port, trio.current_time() + seconds, deflate_bomb(scale["bomb_bytes"]))
    try:
        with trio.fail_after(seconds + 60):
            async with trio.open_nursery() as nursery:
                for index in range(scale["good"]):
                    nursery.start_soon(attack.good, index)
                for _ in range(scale["slow"]):
                    nursery.start_soon(attack.slow_reader)
                for _ in range(scale["half_open"]):
                    nursery.start_soon(attack.half_open)
                    nursery.start_soon(attack.silent)
                nursery.start_soon(attack.bombs, scale["bombs"])
                nursery.start_soon(attack.bursts, scale["burst"], scale["bursts"])
                nursery.start_soon(attack.watch)
    finally:
        attack.release()
    return attack.figures


def check_attacks(attacks: dict[str, Any], backend: str) -> list[str]:
    failures = []
    if attacks["good_errors"] or attacks["good_sent"] != attacks["good_received"]:
        failures.append(
            f"well-behaved: {attacks['good_received']} of {attacks['good_sent']} echoed, "
            f"errors {attacks['good_errors'][:3]}"
        )
    if attacks["good_sent"] == 0:
        failures.append("well-behaved: no message sent")
    expected = "deflate 1009" if backend == "native" else "no deflate 1002"
    if not attacks["bomb_codes"] or set(attacks["bomb_codes"]) != {expected}:
        failures.append(f"deflate bombs: {attacks['bomb_codes']}, expected all {expected!r}")
    if attacks["burst_failed"]:
        failures.append(
            f"bursts: {len(attacks['burst_failed'])} failed {attacks['burst_failed'][:3]}"
        )
    return failures


ATTACK_SCALE = {
    "good": 20,  # well-behaved echo clients
    "slow": 20,  # slow readers
    "half_open": 50,  # half handshakes, and as many silent handshaken connections
    "bombs": 20,  # deflate bombs, one after the other
    "bomb_bytes": 1_000_000,  # compressed size of each (inflates ~1000 times larger)
    "burst": 300,  # handshakes at once
    "bursts": 5,
}


async def measure(
    port: int,
    *,
    cycles: int,
    idle: int,
    backend: str,
    concurrency: int,
    log: Any,
    attack_seconds: float = 0,
    attack_scale: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Warm-up, baseline, the measured cycles, idle and attack rounds, final figures."""
    figures: dict[str, Any] = {"backend": backend, "cycles": cycles, "idle": idle}
    scale = {**ATTACK_SCALE, **(attack_scale or {})}
    started = time.monotonic()
    # Warm-up: one round of everything (allocator pools and arenas reach
    # their working size), then the baseline.  A leak shows as growth
    # over the second, measured round.
    await run_cycles(port, min(300, cycles), 0, concurrency)
    await hold_idle(port, idle, figures)
    if attack_seconds:
        await attack_round(port, attack_seconds, scale)
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
    if attack_seconds:
        attacked = time.monotonic()
        figures["attacks"] = await attack_round(port, attack_seconds, scale)
        figures["attacks"]["seconds"] = round(time.monotonic() - attacked, 1)
        log(f"attacks: {figures['attacks']}")
        client = await Client.connect(port)
        await client.echo(b"still serving?")
        await client.close()
        figures["served_after_attacks"] = True
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
    errors = [line for line in figures["server_output"] if "ERROR" in line or "Traceback" in line]
    if errors:
        failures.append(f"server output: {errors[:5]}")
    if not figures["server_alive"]:
        failures.append("the server process died")
    if "attacks" in figures:
        failures.extend(check_attacks(figures["attacks"], figures["backend"]))
    return failures


async def run(
    *,
    cycles: int,
    idle: int,
    backend: str = "hypercorn",
    concurrency: int = 20,
    rss_tolerance: float = 0.05,
    log: Any = print,
    attack_seconds: float = 0,
    attack_scale: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Run the soak; return the figures and the list of failed checks (``failures``)."""
    raise_nofile()
    command = [sys.executable, SCRIPT, "--serve", "--backend", backend]
    output: list[str] = []
    async with trio.open_nursery() as nursery:
        server = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            port = await read_port(server)
            nursery.start_soon(collect_output, server, output)
            figures = await measure(
                port,
                cycles=cycles,
                idle=idle,
                backend=backend,
                concurrency=concurrency,
                log=log,
                attack_seconds=attack_seconds,
                attack_scale=attack_scale,
            )
            figures["server_alive"] = server.returncode is None
        finally:
            server.terminate()
            with trio.move_on_after(10):
                await server.wait()
            nursery.cancel_scope.cancel()
    figures["server_output"] = output
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
    parser.add_argument(
        "--attacks",
        type=float,
        default=0,
        metavar="SECONDS",
        help="also run the attack round for SECONDS (0: none)",
    )
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
            attack_seconds=args.attacks,
        )
    )
    print(json.dumps(figures, indent=2))
    return 1 if figures["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
