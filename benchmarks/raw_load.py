"""The load generator's raw-socket scenarios: fan-out counted in C, and paced latency.

Used by :mod:`benchmarks.loadgen` whatever its ``--client``: these scenarios
need no WebSocket client library.  Every message the servers send here is the
same text (the echo payload, or the broadcast), so a connection counts
messages with ``bytes.count`` over each read (in C, however many messages a
read holds; the tail of a read is kept for a message split across two reads)
instead of parsing frames in Python.  The two fan-out scenarios run without
an event loop (:mod:`benchmarks.raw_fanout`: one epoll, batched reads, kernel
receive timestamps), so the load generator's CPU per delivery stays far below
any server's and the saturating fan-out measures the server.

- ``fanout``: the publisher asks for ``messages`` broadcasts at once (unpaced:
  the offered rate is whatever the server can send); deliveries per second
  until every subscriber has them all.
- ``echo-latency``: ``rate`` messages per second in total, spread over the
  connections, at the same rate for every server; the round trip of each
  message sent in the measured window; p99 in ms.
- ``fanout-latency``: ``rate`` broadcasts per second (``go 1`` each) to the
  subscribers; the time from sending ``go 1`` to each message's kernel arrival;
  p99 in ms.
- ``handshakes`` with a ``head`` (``plain``, ``chromium``, ``firefox``): the
  handshake churn with that request head, written as bytes (the browser heads
  are what Chromium and Firefox send: permessage-deflate offered, Firefox's
  ``Connection: keep-alive, Upgrade``); each handshake reads the 101, sends a
  close frame and waits for the server to close the connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import raw_fanout

if TYPE_CHECKING:
    from .loadgen import Params

__all__ = ["HEADS", "echo_latency", "fanout", "fanout_latency", "handshakes"]

from .raw_fanout import CLOSE_FRAME, HANDSHAKE, latency_result, text_frame

CONNECT_TIMEOUT = 30.0
ROUND_TIMEOUT = 120.0

#: The handshake scenario's request heads by kind (``{host}``: host:port): the
#: benchmark's plain head, and the headers Chromium 131 and Firefox 133 send for
#: ``new WebSocket("ws://host/idle")`` from a page of the same origin.
HEADS = {
    "plain": HANDSHAKE.replace("{host}:{port}", "{host}"),
    "chromium": (
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n"
        "Pragma: no-cache\r\nCache-Control: no-cache\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36\r\nUpgrade: websocket\r\n"
        "Origin: http://{host}\r\nSec-WebSocket-Version: 13\r\n"
        "Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    ),
    "firefox": (
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\r\n"
        "Accept: */*\r\nAccept-Language: en-US,en;q=0.5\r\n"
        "Accept-Encoding: gzip, deflate, br, zstd\r\nSec-WebSocket-Version: 13\r\n"
        "Origin: http://{host}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: keep-alive, Upgrade\r\n"
        "Sec-Fetch-Dest: empty\r\nSec-Fetch-Mode: websocket\r\nSec-Fetch-Site: same-origin\r\n"
        "Pragma: no-cache\r\nCache-Control: no-cache\r\nUpgrade: websocket\r\n\r\n"
    ),
}


#: Called with a connection and how many messages it just counted.
OnCount = Callable[["Counted", int], None]


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


class _Handshake(asyncio.Protocol):
    """One handshake of the churn: the head, the 101, a close frame, the server's close."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = b""
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.received is None:
            return  # the server's close frame: the server then closes the connection
        self.received += data
        if b"\r\n\r\n" not in self.received:
            return
        if not self.received.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"no 101 from the server: {self.received[:100]!r}")
        self.received = None  # type: ignore[assignment]
        assert self.transport is not None
        self.transport.write(CLOSE_FRAME)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(self.received is None)


async def handshakes(url: str, p: Params) -> dict[str, float]:
    """The handshake churn with the request head ``p.head`` (see :data:`HEADS`)."""
    from .loadgen import churn

    host, port = url.removeprefix("ws://").split(":")
    request = HEADS[p.head].format(path="/idle", host=f"{host}:{port}").encode()
    loop = asyncio.get_running_loop()

    async def handshake() -> None:
        _, protocol = await loop.create_connection(lambda: _Handshake(request), host, int(port))
        if not await asyncio.wait_for(protocol.closed, CONNECT_TIMEOUT):
            raise RuntimeError("the server closed the connection before its 101")

    return await churn(handshake, p)


async def fanout(url: str, p: Params) -> dict[str, float]:
    """The saturating fan-out: :func:`benchmarks.raw_fanout.fanout` (no event loop)."""
    return raw_fanout.fanout(url, p.connections, p.messages, p.concurrency)


async def fanout_latency(url: str, p: Params) -> dict[str, float]:
    """The paced fan-out: :func:`benchmarks.raw_fanout.fanout_latency` (no event loop)."""
    return raw_fanout.fanout_latency(
        url, p.connections, p.rate, p.warmup, p.duration, p.concurrency
    )
