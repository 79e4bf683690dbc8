"""The load generator's raw-socket scenarios: fan-out counted in C, and paced latency.

Used by :mod:`benchmarks.loadgen` whatever its ``--client``: these scenarios
need no WebSocket client library.  Every message the servers send here is the
same text (the echo payload, or the broadcast), so a subscriber counts
messages with ``bytes.count`` over each read (in C, however many messages a
read holds; the tail of a read is kept for a message split across two reads)
instead of parsing frames in Python.  That keeps the load generator's CPU per
delivery far below any server's, so the saturating fan-out measures the
server, not the load generator.

- ``fanout``: the publisher asks for ``messages`` broadcasts at once (unpaced:
  the offered rate is whatever the server can send); deliveries per second
  until every subscriber has them all.
- ``echo-latency``: ``rate`` messages per second in total, spread over the
  connections, at the same rate for every server; the round trip of each
  message sent in the measured window; p99 in ms.
- ``fanout-latency``: ``rate`` broadcasts per second (``go 1`` each) to the
  subscribers; the time from sending ``go 1`` to each subscriber's arrival;
  p99 in ms.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loadgen import Params

__all__ = ["echo_latency", "fanout", "fanout_latency"]

#: What every server's /pub broadcasts (benchmarks.servers._common.MESSAGE).
BROADCAST = b"fan-out message 0123456789abcdef"
SUBSCRIBED = b"subscribed"
#: A masked close frame, code 1000 (mask key 0: the payload is unchanged).
CLOSE_FRAME = b"\x88\x82\x00\x00\x00\x00\x03\xe8"
HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
)
CONNECT_TIMEOUT = 30.0
ROUND_TIMEOUT = 120.0


def text_frame(payload: bytes) -> bytes:
    """A masked text frame (payload under 126 bytes, mask key 0)."""
    return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload


#: Called with a connection and how many messages it just counted.
OnCount = Callable[["Counted", int], None]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class Counted(asyncio.Protocol):
    """One connection: after the 101 (and, for subscribers, ``subscribed``),
    it counts occurrences of ``needle`` and hands them to ``on_count``."""

    def __init__(self, needle: bytes, greeting: bytes | None, on_count: OnCount) -> None:
        self.needle = needle
        self.greeting = greeting
        self.on_count = on_count
        self.ready = asyncio.get_running_loop().create_future()
        self.tail = b""
        self.upgraded = False
        self.count = 0  # messages counted on this connection
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        if not self.upgraded:
            head, sep, data = data.partition(b"\r\n\r\n")
            if not sep:
                self.tail = head
                return
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"no 101 from the server: {head[:100]!r}")
            self.upgraded = True
            if self.greeting is None:
                self.ready.set_result(None)
        if not self.ready.done():
            assert self.greeting is not None
            at = data.find(self.greeting)
            if at < 0:
                self.tail = data[-len(self.greeting) :]
                return
            data = data[at + len(self.greeting) :]
            self.ready.set_result(None)
        found = data.count(self.needle)
        self.tail = data[-(len(self.needle) - 1) :]
        if found:
            self.on_count(self, found)


class Counts:
    """Counts deliveries over many connections; a future per expected total."""

    def __init__(self) -> None:
        self.received = 0
        self.target = 0
        self.done: asyncio.Future[None] | None = None

    def expect(self, n: int) -> asyncio.Future[None]:
        self.received, self.target = 0, n
        self.done = asyncio.get_running_loop().create_future()
        return self.done

    def __call__(self, connection: Counted, found: int) -> None:
        connection.count += found
        self.received += found
        if self.done is not None and self.received >= self.target and not self.done.done():
            self.done.set_result(None)


async def connect(
    url: str, path: str, n: int, p: Params, needle: bytes, greeting: bytes | None, counts: OnCount
) -> list[Counted]:
    """``n`` connections to ``path``, each ready (upgraded, greeted) on return."""
    host, port = url.removeprefix("ws://").split(":")
    request = HANDSHAKE.format(path=path, host=host, port=port).encode()
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(p.concurrency)

    async def one() -> Counted:
        async with limit:
            _, protocol = await loop.create_connection(
                lambda: Counted(needle, greeting, counts), host, int(port)
            )
            assert protocol.transport is not None
            protocol.transport.write(request)
            await protocol.ready
            return protocol

    return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), CONNECT_TIMEOUT)


async def close_all(connections: list[Counted]) -> None:
    for connection in connections:
        if connection.transport is not None:
            connection.transport.write(CLOSE_FRAME)
    await asyncio.sleep(0.2)
    for connection in connections:
        if connection.transport is not None:
            connection.transport.close()


class Publisher:
    """The /pub connection: ``go N``, then wait for ``done N``."""

    def __init__(self, url: str, p: Params) -> None:
        self.url, self.p = url, p
        self.replies = Counts()
        self.connection: Counted | None = None

    async def open(self) -> None:
        (self.connection,) = await connect(
            self.url, "/pub", 1, self.p, b"done ", None, self.replies
        )

    def go(self, n: int) -> asyncio.Future[None]:
        assert self.connection is not None and self.connection.transport is not None
        done = self.replies.expect(1)
        self.connection.transport.write(text_frame(f"go {n}".encode()))
        return done


async def fanout(url: str, p: Params) -> dict[str, float]:
    counts = Counts()
    subs = await connect(url, "/sub", p.connections, p, BROADCAST, SUBSCRIBED, counts)
    publisher = Publisher(url, p)
    await publisher.open()
    result: dict[str, float] = {}
    for n, measured in ((max(1, p.messages // 20), False), (p.messages, True)):
        round_done = counts.expect(n * p.connections)
        wall, cpu = time.perf_counter(), time.process_time()
        if measured:
            print("MARK start", flush=True)
        replied = publisher.go(n)
        await asyncio.wait_for(round_done, ROUND_TIMEOUT)
        if measured:
            print("MARK end", flush=True)
            seconds = time.perf_counter() - wall
            result = {
                "value": counts.received / seconds,
                "count": counts.received,
                "seconds": seconds,
                "client_cpu_pct": 100.0 * (time.process_time() - cpu) / seconds,
                "offered": n * p.connections,
            }
        await asyncio.wait_for(replied, ROUND_TIMEOUT)
    await close_all([*subs, *([publisher.connection] if publisher.connection else [])])
    return result


def latency_result(
    latencies: list[float], sent: int, seconds: float, cpu: float
) -> dict[str, float]:
    """A paced run's result: p99 in ms (``value``), p50, max, the offered rate."""
    if not latencies:
        raise RuntimeError("nothing came back in the measured window")
    return {
        "value": 1000 * percentile(latencies, 0.99),
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "max_ms": 1000 * max(latencies),
        "count": len(latencies),
        "offered_per_s": sent / seconds,
        "seconds": seconds,
        "client_cpu_pct": 100.0 * cpu / seconds,
    }


async def paced(rate: float, seconds: float, send: Callable[[int], None]) -> int:
    """Call ``send(k)`` ``rate`` times a second for ``seconds`` (catching up after a
    late wake-up); return how many were sent."""
    start = time.perf_counter()
    k = 0
    total = int(rate * seconds)
    while k < total:
        due = int((time.perf_counter() - start) * rate) + 1
        while k < min(due, total):
            send(k)
            k += 1
        await asyncio.sleep(max(0.0, start + k / rate - time.perf_counter()))
    return k


async def echo_latency(url: str, p: Params) -> dict[str, float]:
    """``p.rate`` echo messages per second over ``p.connections``; round-trip p99."""
    frame = text_frame(p.payload.encode())
    window = {"open": False}
    latencies: list[float] = []
    pending: dict[Counted, list[float]] = {}
    counts = Counts()

    def on_count(connection: Counted, found: int) -> None:
        now = time.perf_counter()
        sent = pending[connection]
        for stamp in sent[:found]:
            if stamp > 0:
                latencies.append(now - stamp)
        del sent[:found]
        counts(connection, found)

    connections = await connect(url, p.path, p.connections, p, p.payload.encode(), None, counts)
    for connection in connections:
        connection.on_count = on_count
        pending[connection] = []

    def send(k: int) -> None:
        connection = connections[k % len(connections)]
        # A negative stamp: sent during the warm-up, not measured.
        pending[connection].append(time.perf_counter() * (1 if window["open"] else -1))
        assert connection.transport is not None
        connection.transport.write(frame)

    all_back = counts.expect(int(p.rate * p.warmup) + int(p.rate * p.duration))
    await paced(p.rate, p.warmup, send)
    window["open"] = True
    print("MARK start", flush=True)
    wall, cpu = time.perf_counter(), time.process_time()
    sent = await paced(p.rate, p.duration, send)
    seconds, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print("MARK end", flush=True)
    await asyncio.wait_for(all_back, ROUND_TIMEOUT)  # every echo came back
    await close_all(connections)
    return latency_result(latencies, sent, seconds, cpu)


async def fanout_latency(url: str, p: Params) -> dict[str, float]:
    """``p.rate`` broadcasts (``go 1``) per second to ``p.connections``; delivery p99."""
    sent_at: list[float] = []  # per broadcast: when `go 1` was sent (negative: warm-up)
    latencies: list[float] = []
    counts = Counts()

    def on_count(connection: Counted, found: int) -> None:
        now = time.perf_counter()
        for index in range(connection.count, connection.count + found):
            stamp = sent_at[index]
            if stamp > 0:
                latencies.append(now - stamp)
        counts(connection, found)

    subs = await connect(url, "/sub", p.connections, p, BROADCAST, SUBSCRIBED, counts)
    for sub in subs:
        sub.on_count = on_count
    publisher = Publisher(url, p)
    await publisher.open()
    window = {"open": False}
    command = text_frame(b"go 1")
    assert publisher.connection is not None and publisher.connection.transport is not None
    transport = publisher.connection.transport

    def send(k: int) -> None:
        sent_at.append(time.perf_counter() * (1 if window["open"] else -1))
        transport.write(command)

    planned = int(p.rate * p.warmup) + int(p.rate * p.duration)
    all_delivered = counts.expect(planned * p.connections)
    await paced(p.rate, p.warmup, send)
    window["open"] = True
    print("MARK start", flush=True)
    wall, cpu = time.perf_counter(), time.process_time()
    sent = await paced(p.rate, p.duration, send)
    seconds, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print("MARK end", flush=True)
    await asyncio.wait_for(all_delivered, ROUND_TIMEOUT)  # every subscriber has every one
    await close_all([*subs, publisher.connection])
    return latency_result(latencies, sent * p.connections, seconds, cpu)
