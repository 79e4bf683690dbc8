"""benchmarks/raw_fanout.py: the fan-out load generator counts exactly.

A plain-socket server (a thread) sends the 101, the greeting and a stream of
broadcast frames cut at awkward places (inside the head, inside the greeting,
inside a message), with pauses so the reads really split; the subscribers
must count every message once, and report kernel arrival times inside the run.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from benchmarks.raw_fanout import BROADCAST, SUBSCRIBED, Group

RESPONSE = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"


def server_frame(payload: bytes) -> bytes:
    """An unmasked text frame, as a server sends it (payload under 126 bytes)."""
    return bytes((0x81, len(payload))) + payload


def chunks(data: bytes, sizes: tuple[int, ...]) -> Iterator[bytes]:
    at, turn = 0, 0
    while at < len(data):
        size = sizes[turn % len(sizes)]
        yield data[at : at + size]
        at, turn = at + size, turn + 1


def serve(
    listener: socket.socket,
    clients: int,
    messages: int,
    go: threading.Event,
    done: threading.Event,
) -> None:
    """Answer ``clients`` handshakes, then (after ``go``) stream ``messages`` broadcasts
    to each, in chunks that split the frames, the greeting and the head; close the
    connections once ``done`` is set (a close before the reader is done is an error
    for it)."""
    accepted = []
    hello = RESPONSE + server_frame(SUBSCRIBED)
    listener.settimeout(10)  # bounded: a client that never connects fails the test
    for _ in range(clients):
        conn, _ = listener.accept()
        conn.settimeout(10)
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        accepted.append(conn)
        for piece in chunks(hello, (5, 40, 3)):
            conn.sendall(piece)
            time.sleep(0.001)
    go.wait(10)
    stream = server_frame(BROADCAST) * messages
    for pieces in zip(*(chunks(stream, (7, 13, 50, 1, 34)) for _ in accepted), strict=True):
        for conn, piece in zip(accepted, pieces, strict=True):
            conn.sendall(piece)
        time.sleep(0.0002)
    done.wait(10)
    for conn in accepted:
        conn.close()


@pytest.mark.parametrize("pause", [0.0, 0.02])
def test_every_split_message_is_counted_once(pause: float) -> None:
    clients, messages = 3, 60
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        go, done = threading.Event(), threading.Event()
        thread = threading.Thread(
            target=serve, args=(listener, clients, messages, go, done), daemon=True
        )
        thread.start()
        group = Group("127.0.0.1", port, BROADCAST)
        try:
            group.open("/sub", clients, SUBSCRIBED, batch=2)
            group.timestamps()
            assert group.total == 0
            start = time.time()
            go.set()
            last = group.read_until(clients * messages, timeout=10, pause=pause)
            assert start < last <= time.time()
            assert group.total == clients * messages
            assert sorted(group.counts.values()) == [messages] * clients
        finally:
            go.set()
            done.set()
            thread.join(10)
            group.close()


def test_a_closed_subscriber_is_an_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        go, done = threading.Event(), threading.Event()
        done.set()  # the server closes the connection after its 2 messages
        thread = threading.Thread(target=serve, args=(listener, 1, 2, go, done), daemon=True)
        thread.start()
        group = Group("127.0.0.1", port, BROADCAST)
        try:
            group.open("/sub", 1, SUBSCRIBED, batch=1)
            go.set()
            with pytest.raises(ConnectionError, match="closed a connection mid-run"):
                group.read_until(3, timeout=10)
            assert group.total == 2
        finally:
            go.set()
            thread.join(10)
            group.close()
