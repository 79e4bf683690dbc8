"""A raw WebSocket client for tests that must break the rules or never read.

Builds handshakes and client frames by hand (so a test can get every detail
wrong on purpose) and opens upgraded streams to a live server, and sends plain
HTTP requests the same way.  Given a server of the ``backend`` fixture
(:class:`~tests.conftest.Served`) that serves over TLS, the stream is wrapped in
TLS (``trio.SSLStream``) with its ``ssl_context``: the bytes above are the same.
"""

from __future__ import annotations

import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from triows.testing import LiveServer

from .conftest import Served

__all__ = ["KEY", "frame", "handshake", "http_get", "open_stream", "upgraded"]

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def handshake(path: str = "/text", **replace: bytes | None) -> bytes:
    """A valid client handshake; ``replace`` swaps (bytes) or drops (None) headers."""
    headers: dict[str, bytes] = {
        "Host": b"127.0.0.1",
        "Upgrade": b"websocket",
        "Connection": b"Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": b"13",
    }
    for name, value in replace.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    lines = [f"GET {path} HTTP/1.1".encode()]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True
) -> bytes:
    """One client frame, crafted by hand so that it can break every rule."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def open_stream(server: LiveServer | Served) -> trio.abc.Stream:
    """A raw stream to ``server``: TCP, in TLS when the server serves over TLS.

    The TLS handshake is done before it returns.  ``https_compatible``: a server
    that closes without a TLS close_notify ends the stream (``b""``) like TCP's FIN.
    """
    tcp = await trio.open_tcp_stream("127.0.0.1", server.port)
    context = server.ssl_context if isinstance(server, Served) else None
    if context is None:
        return tcp
    tls = trio.SSLStream(tcp, context, server_hostname="127.0.0.1", https_compatible=True)
    try:
        await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return tls


@asynccontextmanager
async def upgraded(
    server: LiveServer | Served, path: str = "/text"
) -> AsyncIterator[trio.abc.Stream]:
    """A raw stream (TCP, or TLS for a server that has it) that completed the handshake."""
    stream = await open_stream(server)
    async with stream:
        await stream.send_all(handshake(path))
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = await stream.receive_some(4096)
            assert chunk, f"the server hung up during the handshake: {response!r}"
            response += chunk
        assert response.startswith(b"HTTP/1.1 101"), response
        yield stream


async def http_get(server: int | Served, path: str) -> bytes:
    """GET ``path`` with ``Connection: close`` on 127.0.0.1 (a port, or a served backend:
    over TLS when it has it); the whole raw response."""
    if isinstance(server, int):
        stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", server)
    else:
        stream = await open_stream(server)
    async with stream:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        await stream.send_all(request.encode())
        response = b""
        while chunk := await stream.receive_some(65536):
            response += chunk
    return response
