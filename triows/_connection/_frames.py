"""One message for many connections: encoded once, framed once, written in batches.

A :class:`Prepared` is one outgoing message (``str`` for text, ``bytes`` for
binary) and, computed on first use, its unmasked server frame.  Transports
write :meth:`Prepared.frame` unchanged on a connection with no WebSocket
extension negotiated (server frames are not masked, so one frame serves every
client), and :meth:`Prepared.deflated` on a permessage-deflate connection: the
server has no context takeover (``triows._connection._deflate``), so that frame
too is computed once per message (and window size) for every client.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from .._codecs import Encoder
from .._metrics._counters import payload_size
from ._deflate import DEFAULT_WINDOW_BITS, deflate

__all__ = ["Broadcast", "Prepared", "encode_frame"]


#: RFC 6455 5.2's first byte: FIN and the opcode (text 0x1, binary 0x2).
_FIN_TEXT: Final = 0x81
_FIN_BINARY: Final = 0x82
#: RSV1: the message is compressed (RFC 7692 6).
_RSV1: Final = 0x40
#: The header by payload length: 7 bits, 126 then 16 bits, 127 then 64 bits.
_SHORT: Final = struct.Struct("!BB")
_MEDIUM: Final = struct.Struct("!BBH")
_LONG: Final = struct.Struct("!BBQ")


def encode_frame(data: str | bytes) -> bytes:
    """One complete, unmasked server-to-client message frame (text for ``str``).

    The header is packed directly (one ``struct`` call, no Frame object): the
    same bytes as websockets' ``Frame.serialize(mask=False)``.
    """
    if data.__class__ is str:
        return _frame(_FIN_TEXT, data.encode())
    return _frame(_FIN_BINARY, data if data.__class__ is bytes else bytes(data))  # type: ignore[arg-type]


def _frame(first: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return _SHORT.pack(first, size) + payload
    if size < 65536:
        return _MEDIUM.pack(first, 126, size) + payload
    return _LONG.pack(first, 127, size) + payload


class Prepared:
    """One outgoing message and, computed on first use, its wire frame.

    Shared by every connection that sends the same :class:`Broadcast` with the
    same message type: the frame is built once, however many clients get it.
    """

    __slots__ = ("_deflated", "_deflated_other", "_frame", "_size", "data")

    def __init__(self, data: str | bytes) -> None:
        #: The message: ``str`` for a text message, ``bytes`` for a binary one.
        self.data = data
        self._frame: bytes | None = None
        self._size = -1
        #: The frame for permessage-deflate clients with the default server window.
        self._deflated: bytes | None = None
        #: The same for clients that asked for a smaller window: bits -> frame.
        self._deflated_other: dict[int, bytes] | None = None

    def size(self) -> int:
        """The payload's length in bytes (UTF-8 for text), computed once (for metrics)."""
        size = self._size
        if size < 0:
            size = self._size = payload_size(self.data)
        return size

    def frame(self) -> bytes:
        """The message as one unmasked frame, for a connection with no extension."""
        frame = self._frame
        if frame is None:
            frame = self._frame = encode_frame(self.data)
        return frame

    def deflated(self, bits: int) -> bytes:
        """The message as one compressed frame (RSV1 set) for a permessage-deflate
        connection whose server window is ``bits``, computed once per window size.

        Compressed with no context takeover, so the same bytes serve every such
        connection (``triows._connection._deflate``).
        """
        if bits == DEFAULT_WINDOW_BITS:
            frame = self._deflated
            if frame is None:
                frame = self._deflated = self._deflate(bits)
            return frame
        other = self._deflated_other
        if other is None:
            other = self._deflated_other = {}
        frame = other.get(bits)
        if frame is None:
            frame = other[bits] = self._deflate(bits)
        return frame

    def _deflate(self, bits: int) -> bytes:
        data = self.data
        if data.__class__ is str:
            return _frame(_FIN_TEXT | _RSV1, deflate(data.encode(), bits))
        return _frame(_FIN_BINARY | _RSV1, deflate(data, bits))  # type: ignore[arg-type]


class Broadcast:
    """A message meant for many WebSockets, encoded and framed once for all of them.

    ``await ws.send(Broadcast(value))`` sends ``value`` as ``ws.send(value)``
    would (by the route's ``send_type``), but the encoding (JSON, UTF-8) and,
    on the native server, the WebSocket frame are computed at most
    once per message type however many connections send it.  Build one per
    message and send the same object to every client::

        message = Broadcast({"user": name, "text": text})
        for client in clients:
            await client.send(message)

    Every :class:`~triows.Hub` delivery is a Broadcast already: subscribers of a
    topic in one process share its encoding.  Do not mutate ``message`` once
    the Broadcast has been sent.
    """

    __slots__ = ("_encode", "_prepared", "message", "position")

    def __init__(self, message: Any, position: str | None = None) -> None:
        self.message = message
        #: The message's position in its hub topic (see ``Hub.publish()``); None
        #: for a Broadcast that no hub delivered.
        self.position = position
        self._encode: Encoder | None = None
        self._prepared: Prepared | None = None

    def prepare(self, encode: Encoder) -> Prepared:
        """The message encoded by ``encode``: computed on the first call per encoder."""
        if encode is self._encode:
            return self._prepared  # type: ignore[return-value]
        # Raises TypeError (from the encoder) before anything is cached.
        prepared = Prepared(encode(self.message))
        self._encode, self._prepared = encode, prepared
        return prepared

    def __repr__(self) -> str:
        return f"Broadcast({self.message!r})"
