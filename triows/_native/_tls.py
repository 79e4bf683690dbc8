"""TLS on the native server: an SSLStream behind the few socket methods it calls.

The native server reads and writes trio sockets (``recv``/``send``).  Over TLS
each accepted stream is wrapped in a server-side :class:`trio.SSLStream`, and
:class:`TLSSocket` gives it those methods, so the HTTP exchange and the
WebSocket connection run unchanged on top.  The raw-socket fast paths
(``os.read``/``os.write``, ``send_now``) are for plain TCP only.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Final

import trio

__all__ = ["TLSSocket", "server_context"]

#: How long closing a TLS connection may take to say goodbye (close_notify).
CLOSE_TIMEOUT: Final = 0.2


def server_context(certfile: str, keyfile: str | None) -> ssl.SSLContext:
    """The server's TLS context for ``certfile`` (with its key in ``keyfile`` or in it)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


class TLSSocket:
    """A server-side TLS stream with the socket methods the native server calls."""

    __slots__ = ("raw", "stream")

    def __init__(self, stream: trio.SocketStream, context: ssl.SSLContext) -> None:
        self.stream = trio.SSLStream(stream, context, server_side=True)
        #: The TCP socket underneath.
        self.raw = stream.socket

    async def recv(self, size: int) -> bytes:
        """Up to ``size`` decrypted bytes; ``b""`` at the end (or a failed TLS handshake)."""
        try:
            data = await self.stream.receive_some(size)
        except trio.BrokenResourceError:
            return b""
        return data if isinstance(data, bytes) else bytes(data)

    async def send(self, data: bytes | bytearray | memoryview) -> int:
        """Write all of ``data`` (an SSLStream writes whole buffers); its length."""
        await self.stream.send_all(data)
        return len(data)

    def fileno(self) -> int:
        return self.raw.fileno()

    def getpeername(self) -> object:
        return self.raw.getpeername()

    def getsockname(self) -> object:
        return self.raw.getsockname()

    def shutdown(self, how: int) -> None:
        """TLS has no half-close: the connection closes as a whole, later."""

    async def aclose(self) -> None:
        """Send close_notify (briefly, even when cancelled), then close the socket.

        Nothing is sent if the socket was shut down already (by the shutdown's
        reaper: ``triows._serving._shutdown.close_socket``) or the client is gone.
        """
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(CLOSE_TIMEOUT),
            contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError),
        ):
            await self.stream.aclose()
        self.raw.close()

    def close(self) -> None:
        self.raw.close()
