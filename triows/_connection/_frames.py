"""One message for many connections: encoded once, framed once, written in batches.

A :class:`Prepared` is one outgoing message (``str`` for text, ``bytes`` for
binary) and, computed on first use, its unmasked server frame.  Transports
write :meth:`Prepared.frame` unchanged on a connection with no WebSocket
extension negotiated (server frames are not masked, so one frame serves every
client); with permessage-deflate they compress ``data`` per connection.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from .._codecs import Encoder
from .._metrics._counters import payload_size

__all__ = ["Broadcast", "Prepared", "encode_frame"]


#: RFC 6455 5.2's first byte: FIN and the opcode (text 0x1, binary 0x2).
_FIN_TEXT: Final = 0x81
_FIN_BINARY: Final = 0x82
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
        payload = data.encode()
        first = _FIN_TEXT
    else:
        payload = data if data.__class__ is bytes else bytes(data)  # type: ignore[arg-type]
        first = _FIN_BINARY
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

    __slots__ = ("_frame", "_size", "data")

    def __init__(self, data: str | bytes) -> None:
        #: The message: ``str`` for a text message, ``bytes`` for a binary one.
        self.data = data
        self._frame: bytes | None = None
        self._size = -1

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
