"""Server CPU per broadcast to permessage-deflate subscribers (issue #15's compression target).

    .venv/bin/python -m benchmarks.compression [--broadcasts 200] [--repeats 3]
        [--counts 10,1000] [--size 2048] [--pythonpath DIR --label NAME ...]

For each subscriber count (10 and 1,000 by default) and each kind of
subscriber (``deflate``: offers permessage-deflate as Chromium does;
``plain``: offers nothing), it starts a native triows server in its own process
(the ``serve`` mode of this module: a Hub, ``/sub`` forwarding one topic with
``Subscription.forward``, ``/pub`` publishing ``go N`` broadcasts of one JSON
message of ``--size`` bytes), opens the subscribers from this process (raw
asyncio sockets that count frames; nothing is inflated), publishes a few
broadcasts to warm up, then ``--broadcasts`` more, and reads the server
process's CPU time (``/proc/PID/task/*/schedstat``: every thread's time on a CPU) before the publish and
after the last subscriber received the last message.  It prints, per run:

- CPU per broadcast (ms) and, from it, the cost beyond the plain subscribers
  of the same count (the compression's share);
- the server's RSS per connection (KiB), from before the subscribers to after;
- compressions per broadcast, from the server's ``triows_deflate_messages_total``
  (``-`` for a tree without that metric).

``--pythonpath DIR --label NAME`` (repeatable, in pairs) runs the server on
another checkout's ``triows`` (``DIR`` first on ``PYTHONPATH``), to compare
trees in alternating runs: the repeats go A, B, A, B, ...  Each run is one
process per (count, kind); the summary gives every run and the medians.
Loopback only; the machine may be busy: CPU time per broadcast, not wall
time, is the measure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import time
import zlib

import attrs

#: The repository's root: the default tree the server imports triows from.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.sysconf("SC_PAGE_SIZE")
#: Chromium's offer.
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    "{extra}\r\n"
)
TIMEOUT = 120.0
WARMUP = 5


# -- the server (a child process) -------------------------------------------------------


def message(size: int) -> dict[str, object]:
    """A chat-like JSON message of about ``size`` bytes (compressible like real text)."""
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "triows",
        "broadcasts",
        "updates",
    ]
    text: list[str] = []
    n = 0
    while len(" ".join(text)) < size - 80:
        text.append(words[(n * 7) % len(words)] + str(n % 13))
        n += 1
    return {"type": "message", "user": "benchmark", "seq": 1, "text": " ".join(text)}


def serve(size: int) -> None:
    import trio

    import triows

    hub = triows.Hub()
    app = triows.App(hub=hub, metrics=True)
    payload = message(size)

    # The subscribers too leave without a close frame when the run ends.
    @app.websocket_route("/sub", send_type="json", caught_close_codes=all)
    async def sub(ws: triows.WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("bench", max_buffer=100_000) as messages:
            await ws.send("subscribed")
            await messages.forward(ws)

    # The publisher leaves without a close frame when the run ends.
    @app.websocket_route("/pub", caught_close_codes=all)
    async def pub(ws: triows.WebSocket, hub: triows.Hub) -> None:
        async for command in ws:
            count = int(command.split()[1])
            for _ in range(count):
                await hub.publish("bench", payload)
            await ws.send(f"done {count}")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            start = functools.partial(triows.serve, app, host="127.0.0.1", port=0)
            port = await nursery.start(start)
            print(f"PORT {port}", flush=True)

    trio.run(main)


# -- the subscribers (this process) -----------------------------------------------------


class Subscriber(asyncio.Protocol):
    """One raw connection counting the data frames it receives (pings answered)."""

    def __init__(self, opened: asyncio.Future[str]) -> None:
        self.opened = opened
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.count = 0
        self.waiter: asyncio.Future[None] | None = None
        self.target = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.upgraded:
            head, sep, buffer = buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = head
                return
            self.upgraded = True
            self.opened.set_result(head.decode("latin-1"))
        self.buffer = self._frames(buffer)
        if self.waiter is not None and self.count >= self.target and not self.waiter.done():
            self.waiter.set_result(None)

    def _frames(self, buffer: bytes) -> bytes:
        while len(buffer) >= 2:
            opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    break
                (length,), start = struct.unpack_from("!H", buffer, 2), 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                (length,), start = struct.unpack_from("!Q", buffer, 2), 10
            if len(buffer) < start + length:
                break
            payload = buffer[start : start + length]
            buffer = buffer[start + length :]
            if opcode in (0x0, 0x1, 0x2):
                self.count += 1
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
        return buffer

    def expect(self, total: int) -> asyncio.Future[None]:
        self.target = total
        self.waiter = asyncio.get_running_loop().create_future()
        if self.count >= total:
            self.waiter.set_result(None)
        return self.waiter


async def connect(port: int, path: str, offer: str | None) -> tuple[Subscriber, str]:
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[str] = loop.create_future()
    transport, client = await loop.create_connection(lambda: Subscriber(opened), "127.0.0.1", port)
    extra = "" if offer is None else f"Sec-WebSocket-Extensions: {offer}\r\n"
    key = base64.b64encode(os.urandom(16)).decode()
    transport.write(HANDSHAKE.format(path=path, port=port, key=key, extra=extra).encode())
    head = await asyncio.wait_for(opened, TIMEOUT)
    if not head.startswith("HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head!r}")
    return client, head


def masked_text(text: str) -> bytes:
    payload = text.encode()
    return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload


# -- one run ----------------------------------------------------------------------------


@attrs.frozen
class Result:
    label: str
    kind: str
    count: int
    cpu_ms: float  # server CPU per broadcast
    rss_kib: float  # server RSS per subscriber
    compressions: float | None  # per broadcast (None: the tree has no such metric)
    negotiated: str  # the first subscriber's Sec-WebSocket-Extensions answer


def cpu_seconds(pid: int) -> float:
    """The process's time on a CPU so far, every thread, in nanoseconds' resolution
    (``/proc/PID/task/*/schedstat``; ``/proc/PID/stat`` counts in 10 ms ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def compressions_total(port: int) -> float | None:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    found = re.search(r"^triows_deflate_messages_total (\S+)$", text, re.MULTILINE)
    return None if found is None else float(found.group(1))


async def drive(pid: int, port: int, count: int, offer: str | None, broadcasts: int) -> Result:
    rss_before = rss_bytes(pid)
    subscribers = []
    for _ in range(count):
        subscribers.append(await connect(port, "/sub", offer))
    negotiated = ""
    for line in subscribers[0][1].split("\r\n"):
        if line.lower().startswith("sec-websocket-extensions:"):
            negotiated = line.split(":", 1)[1].strip()
    clients = [client for client, _ in subscribers]
    await asyncio.wait_for(asyncio.gather(*(c.expect(1) for c in clients)), TIMEOUT)  # subscribed
    publisher, _ = await connect(port, "/pub", None)
    total = 1 + WARMUP
    publisher.transport.write(masked_text(f"go {WARMUP}"))  # type: ignore[union-attr]
    await asyncio.wait_for(asyncio.gather(*(c.expect(total) for c in clients)), TIMEOUT)
    rss_after = rss_bytes(pid)
    before = await asyncio.to_thread(compressions_total, port)
    cpu = cpu_seconds(pid)
    total += broadcasts
    publisher.transport.write(masked_text(f"go {broadcasts}"))  # type: ignore[union-attr]
    await asyncio.wait_for(asyncio.gather(*(c.expect(total) for c in clients)), TIMEOUT)
    cpu = cpu_seconds(pid) - cpu
    after = await asyncio.to_thread(compressions_total, port)
    for client in [*clients, publisher]:
        client.transport.close()  # type: ignore[union-attr]
    per = None if before is None or after is None else (after - before) / broadcasts
    kind = "plain" if offer is None else "deflate"
    return Result(
        "",
        kind,
        count,
        cpu / broadcasts * 1000,
        (rss_after - rss_before) / count / 1024,
        per,
        negotiated,
    )


def run_once(
    label: str, pythonpath: str | None, count: int, kind: str, broadcasts: int, size: int
) -> Result:
    env = dict(os.environ)
    tree = ROOT if pythonpath is None else os.path.abspath(pythonpath)
    env["PYTHONPATH"] = tree  # the tree's triows (a script, not -m: no cwd on sys.path)
    server = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "serve", "--size", str(size)],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("PORT"):
            raise RuntimeError(f"the server did not start: {line!r}")
        port = int(line.split()[1])
        offer = DEFLATE_OFFER if kind == "deflate" else None
        result = asyncio.run(drive(server.pid, port, count, offer, broadcasts))
        return attrs.evolve(result, label=label)
    finally:
        server.kill()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=("bench", "serve"))
    parser.add_argument("--broadcasts", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--counts", default="10,1000")
    parser.add_argument("--size", type=int, default=2048, help="the JSON message's bytes")
    parser.add_argument("--pythonpath", action="append", default=[])
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("--json", help="also write every result to this file")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.size)
        return
    trees: list[tuple[str, str | None]] = list(zip(args.label, args.pythonpath, strict=True))
    if not trees:
        trees = [("this tree", None)]
    counts = [int(c) for c in args.counts.split(",")]
    results: list[Result] = []
    for repeat in range(args.repeats):
        for label, path in trees:
            for count in counts:
                # Which kind runs first alternates with the repeats (no order bias).
                for kind in ("deflate", "plain")[:: 1 if repeat % 2 == 0 else -1]:
                    result = run_once(label, path, count, kind, args.broadcasts, args.size)
                    results.append(result)
                    print(f"repeat {repeat + 1}: {describe(result)}", flush=True)
    print()
    summarize(results, trees, counts, args.size)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([attrs.asdict(r) for r in results], f, indent=1)


def describe(r: Result) -> str:
    per = "-" if r.compressions is None else f"{r.compressions:.2f}"
    return (
        f"{r.label}: {r.count} {r.kind}: {r.cpu_ms:.3f} ms CPU per broadcast, "
        f"{r.rss_kib:.1f} KiB RSS per connection, {per} compressions per broadcast "
        f"(negotiated: {r.negotiated or 'nothing'})"
    )


def deflate_cost_us(size: int) -> float:
    """One compression of the benchmark's message as the native server does it
    (12-bit window, memLevel 5, one reused compressor, a full flush), in µs of
    this process's CPU."""
    payload = json.dumps(message(size), separators=(",", ":")).encode()
    compressor = zlib.compressobj(wbits=-12, memLevel=5)
    rounds = 2000
    started = time.process_time()
    for _ in range(rounds):
        compressor.compress(payload)
        compressor.flush(zlib.Z_FULL_FLUSH)
    return (time.process_time() - started) / rounds * 1e6


def summarize(
    results: list[Result], trees: list[tuple[str, str | None]], counts: list[int], size: int
) -> None:
    def median(label: str, count: int, kind: str, field: str) -> float | None:
        values = [
            getattr(r, field)
            for r in results
            if r.label == label and r.count == count and r.kind == kind
        ]
        known: list[float] = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    def cpu(label: str, count: int, kind: str) -> float:
        value = median(label, count, kind, "cpu_ms")
        assert value is not None
        return value

    low, high = min(counts), max(counts)
    cost = deflate_cost_us(size)
    for label, _ in trees:
        print(f"== {label} (medians of {len(results) // len(trees) // len(counts) // 2} runs)")
        print("| subscribers | kind | CPU per broadcast (ms) | RSS per connection (KiB) |")
        print("| --- | --- | --- | --- |")
        for count in counts:
            for kind in ("deflate", "plain"):
                rss = median(label, count, kind, "rss_kib")
                print(f"| {count} | {kind} | {cpu(label, count, kind):.3f} | {rss:.1f} |")
        ratio = cpu(label, high, "deflate") / cpu(label, low, "deflate")
        print(f"CPU per broadcast, {high} deflate / {low} deflate: {ratio:.2f}x")
        extra = [cpu(label, n, "deflate") - cpu(label, n, "plain") for n in (low, high)]
        print(
            f"deflate minus plain, CPU per broadcast: {extra[0]:.3f} ms at {low}, "
            f"{extra[1]:.3f} ms at {high}"
        )
        plain = cpu(label, high, "plain")
        print(f"{high} deflate / {high} plain: {cpu(label, high, 'deflate') / plain:.2f}x")
        per = [median(label, n, "deflate", "compressions") for n in (low, high)]
        if per[0] is None or per[1] is None:
            print("compressions per broadcast: not counted by this tree")
        else:
            print(
                f"compression CPU per broadcast ({cost:.1f} us per compression, measured here): "
                f"{per[0]:.2f} x at {low} = {per[0] * cost:.1f} us, {per[1]:.2f} x at {high} = "
                f"{per[1] * cost:.1f} us: {per[1] / per[0]:.2f}x"
            )
        print()


if __name__ == "__main__":
    main()
