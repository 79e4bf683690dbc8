"""The fan-out scenarios' subscribers: raw sockets on one epoll, no event loop.

Used by :mod:`benchmarks.raw_load` for ``fanout`` and ``fanout-latency``.  The
load generator must cost far less per delivery than the fastest server, or the
saturating fan-out measures the load generator.  So, per read:

- one ``epoll.poll()`` returns every subscriber with data, and each is read
  with one ``recv`` of up to 64 KiB (no callback, future or task per read);
- every broadcast is the same text, so a read's messages are counted with
  ``bytes.count`` (in C, however many a read holds; the last bytes of a read
  are kept, so a message split across two reads is counted once, exactly);
- each read asks the kernel for its receive timestamp (``SO_TIMESTAMPNS``):
  a message's arrival is when the server's write put it in the subscriber's
  socket, whatever the load generator's own delay to read 500 sockets in turn;
- in the saturating ``fanout``, the loop sleeps ``BATCH_PAUSE`` after each
  pass, so each read collects the messages of that pause instead of one (a
  subscriber gets one message per 2.5 ms at 200,000 deliveries per second).
  The round lasts from sending ``go N`` to the kernel's arrival of the last
  message, so the pause adds nothing to the measured time.  The kernel buffers
  what arrives meanwhile (a round is 400 messages of 34 bytes per subscriber,
  far below a loopback socket's receive buffer), so the server never waits for
  the load generator;
- in the paced ``fanout-latency``, there is no pause: the delivery latency is
  the time from sending ``go 1`` to each message's kernel arrival.

Every wait is bounded; a subscriber closed by the server is an error.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator

__all__ = ["BROADCAST", "fanout", "fanout_latency"]

#: What every server's /pub broadcasts (benchmarks.servers._common.MESSAGE).
BROADCAST = b"fan-out message 0123456789abcdef"
SUBSCRIBED = b"subscribed"
DONE = b"done "
#: A masked close frame, code 1000 (mask key 0: the payload is unchanged).
CLOSE_FRAME = b"\x88\x82\x00\x00\x00\x00\x03\xe8"
HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
)
CONNECT_TIMEOUT = 30.0
ROUND_TIMEOUT = 120.0
#: One read's buffer: under glibc's mmap threshold (128 KiB), so no mmap per read.
READ_SIZE = 65536
#: The saturating fan-out's pause between passes over the ready subscribers.
BATCH_PAUSE = 0.02
#: The kernel's receive timestamp (SO_TIMESTAMPNS = SCM_TIMESTAMPNS on Linux).
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("@qq")


def text_frame(payload: bytes) -> bytes:
    """A masked text frame (payload under 126 bytes, mask key 0)."""
    return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class Group:
    """Raw WebSocket connections to one server, registered on one epoll.

    ``counts[fd]`` is how many ``needle`` a connection has received since it was
    ready (upgraded and greeted); ``total`` the sum over the group.
    """

    def __init__(self, host: str, port: int, needle: bytes) -> None:
        self.host, self.port, self.needle = host, port, needle
        self.keep = len(needle) - 1
        self.epoll = select.epoll()
        self.sockets: dict[int, socket.socket] = {}
        self.counts: dict[int, int] = {}
        self.tails: dict[int, bytes] = {}
        self.total = 0

    def close(self) -> None:
        """Send every connection a close frame, then close the sockets."""
        for sock in self.sockets.values():
            with contextlib.suppress(OSError):
                sock.send(CLOSE_FRAME)
        time.sleep(0.2)
        for sock in self.sockets.values():
            sock.close()
        self.epoll.close()

    def open(self, path: str, n: int, greeting: bytes | None, batch: int) -> None:
        """``n`` connections to ``path`` (``batch`` handshakes at a time), each ready
        on return: the 101 read and, if given, ``greeting`` found after it."""
        request = HANDSHAKE.format(path=path, host=self.host, port=self.port).encode()
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while len(self.sockets) < n:
            opening: dict[int, socket.socket] = {}
            for _ in range(min(batch, n - len(self.sockets))):
                sock = socket.create_connection((self.host, self.port), CONNECT_TIMEOUT)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(request)
                sock.setblocking(False)
                opening[sock.fileno()] = sock
            self._greet(opening, greeting, deadline)

    def _greet(
        self, opening: dict[int, socket.socket], greeting: bytes | None, deadline: float
    ) -> None:
        heads = dict.fromkeys(opening, b"")
        waiting = select.epoll()
        with waiting:
            for fd in opening:
                waiting.register(fd, select.EPOLLIN)
            while heads:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(heads)} connections not ready in time")
                for fd, _ in waiting.poll(remaining):
                    data = opening[fd].recv(READ_SIZE)
                    if not data:
                        raise ConnectionError("the server closed a connection while opening")
                    head = heads[fd] + data
                    end = head.find(b"\r\n\r\n")
                    if end < 0 or (greeting is not None and head.find(greeting, end) < 0):
                        heads[fd] = head
                        continue
                    if not head.startswith(b"HTTP/1.1 101"):
                        raise RuntimeError(f"no 101 from the server: {head[:100]!r}")
                    rest = head[end + 4 :]
                    if greeting is not None:
                        rest = rest[rest.find(greeting) + len(greeting) :]
                    del heads[fd]
                    waiting.unregister(fd)
                    self._add(opening[fd], rest)

    def _add(self, sock: socket.socket, rest: bytes) -> None:
        fd = sock.fileno()
        self.sockets[fd] = sock
        found = rest.count(self.needle)
        self.counts[fd] = found
        self.total += found
        self.tails[fd] = rest[-self.keep :] if self.keep else b""
        self.epoll.register(fd, select.EPOLLIN)

    def timestamps(self) -> None:
        """Ask the kernel for every connection's receive timestamps."""
        for sock in self.sockets.values():
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)

    def read_until(self, total: int, timeout: float, pause: float = 0.0) -> float:
        """Read every ready connection, counting, until ``self.total >= total``
        (``pause`` seconds between passes: batched reads); return the kernel arrival
        time of the last message (see :meth:`stamped`)."""
        deadline = time.monotonic() + timeout
        last = 0.0
        while self.total < total:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.total} of {total} messages in {timeout} s")
            self.epoll.poll(remaining, 1)  # wait for one, then read every ready one
            for _, _, arrived in self.stamped():
                last = max(last, arrived)
            if pause:
                time.sleep(pause)
        return last

    def stamped(self) -> Iterator[tuple[int, int, float]]:
        """Read every ready connection once (no wait): ``(fd, messages, arrival)``
        per read with messages, the arrival time from ``SO_TIMESTAMPNS`` when
        :meth:`timestamps` asked for it (the kernel's receive time of the read's
        last segment, on ``time.time()``'s clock), else ``time.time()`` after the
        read.  Counts are updated after each yield."""
        needle, keep, sockets, tails, counts = (
            self.needle,
            self.keep,
            self.sockets,
            self.tails,
            self.counts,
        )
        for fd, _ in self.epoll.poll(0):
            data, ancillary, _, _ = sockets[fd].recvmsg(READ_SIZE, 64)
            if not data:
                raise ConnectionError("the server closed a connection mid-run")
            arrived = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanoseconds = TIMESPEC.unpack(value[: TIMESPEC.size])
                    arrived = seconds + nanoseconds * 1e-9
            data = tails[fd] + data
            found = data.count(needle)
            tails[fd] = data[-keep:]
            if found:
                yield fd, found, arrived
                counts[fd] += found
                self.total += found


class Publisher:
    """The /pub connection: ``go N``, then ``done N``."""

    def __init__(self, host: str, port: int, concurrency: int) -> None:
        self.group = Group(host, port, DONE)
        self.group.open("/pub", 1, None, concurrency)
        ((self.fd, self.sock),) = self.group.sockets.items()

    def go(self, n: int) -> None:
        self.sock.send(text_frame(f"go {n}".encode()))

    def wait_done(self, replies: int) -> None:
        """Until ``replies`` ``done`` replies in all have come back."""
        self.group.read_until(replies, ROUND_TIMEOUT)


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("ws://").split(":")
    return host, int(port)


def fanout(url: str, connections: int, messages: int, concurrency: int) -> dict[str, float]:
    """Subscribers count ``messages`` broadcasts each, asked for at once (unpaced):
    deliveries per second until the last subscriber has them all."""
    host, port = _address(url)
    subs = Group(host, port, BROADCAST)
    publisher = None
    try:
        subs.open("/sub", connections, SUBSCRIBED, concurrency)
        subs.timestamps()
        publisher = Publisher(host, port, concurrency)
        result: dict[str, float] = {}
        rounds = ((max(1, messages // 20), False), (messages, True))
        for replies, (n, measured) in enumerate(rounds, 1):
            first = subs.total
            if measured:
                print("MARK start", flush=True)
            wall, cpu = time.time(), time.process_time()
            publisher.go(n)
            last = subs.read_until(first + n * connections, ROUND_TIMEOUT, BATCH_PAUSE)
            seconds, cpu = last - wall, time.process_time() - cpu
            elapsed = time.time() - wall  # the loop's wall time, for its CPU share
            if measured:
                print("MARK end", flush=True)
                result = {
                    "value": (subs.total - first) / seconds,
                    "count": subs.total - first,
                    "seconds": seconds,
                    "client_cpu_pct": 100.0 * cpu / elapsed,
                    "offered": n * connections,
                }
            publisher.wait_done(replies)
        _check_every_subscriber(subs, messages + max(1, messages // 20))
        return result
    finally:
        subs.close()
        if publisher is not None:
            publisher.group.close()


def _check_every_subscriber(subs: Group, expected: int) -> None:
    wrong = [count for count in subs.counts.values() if count != expected]
    if wrong:
        raise RuntimeError(f"{len(wrong)} subscribers did not count {expected}: {wrong[:5]}")


def paced(
    rate: float, seconds: float, send: Callable[[int], None], read: Callable[[float], None]
) -> int:
    """Call ``send(k)`` ``rate`` times a second for ``seconds`` (catching up after a
    late wake-up), calling ``read(timeout)`` in between; return how many were sent."""
    start = time.perf_counter()
    total = int(rate * seconds)
    k = 0
    while k < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while k < due:
            send(k)
            k += 1
        read(max(0.0, start + k / rate - time.perf_counter()))
    return k


def fanout_latency(
    url: str, connections: int, rate: float, warmup: float, duration: float, concurrency: int
) -> dict[str, float]:
    """``rate`` broadcasts (``go 1``) per second to ``connections`` subscribers: the
    time from sending each ``go 1`` to its kernel arrival at each subscriber."""
    host, port = _address(url)
    subs = Group(host, port, BROADCAST)
    publisher = None
    try:
        subs.open("/sub", connections, SUBSCRIBED, concurrency)
        subs.timestamps()
        publisher = Publisher(host, port, concurrency)
        sent_at: list[float] = []  # per broadcast: time.time() of its `go 1` (< 0: warm-up)
        latencies: list[float] = []
        window = [False]
        command = text_frame(b"go 1")
        send_go = publisher.sock.send

        def send(_: int) -> None:
            sent_at.append(time.time() * (1 if window[0] else -1))
            send_go(command)

        def read(timeout: float) -> None:
            subs.epoll.poll(timeout, 1)  # wait for the first ready one, then read them all
            for fd, found, arrived in subs.stamped():
                first = subs.counts[fd]
                for stamp in sent_at[first : first + found]:
                    if stamp > 0:
                        latencies.append(arrived - stamp)

        planned = int(rate * warmup) + int(rate * duration)
        paced(rate, warmup, send, read)
        window[0] = True
        print("MARK start", flush=True)
        wall, cpu = time.perf_counter(), time.process_time()
        sent = paced(rate, duration, send, read)
        seconds, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print("MARK end", flush=True)
        deadline = time.monotonic() + ROUND_TIMEOUT
        while subs.total < planned * connections:  # every subscriber has every one
            if time.monotonic() > deadline:
                raise TimeoutError(f"{subs.total} of {planned * connections} delivered")
            read(1.0)
        _check_every_subscriber(subs, planned)
        return latency_result(latencies, sent * connections, seconds, cpu)
    finally:
        subs.close()
        if publisher is not None:
            publisher.group.close()


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
