"""One message for many connections: encoded once, framed once, written in batches.

A :class:`Prepared` is one outgoing message (``str`` for text, ``bytes`` for
binary) and, computed on first use, its unmasked server frame.  Transports
write :meth:`Prepared.frame` unchanged on a connection with no WebSocket
extension negotiated (server frames are not masked, so one frame serves every
client); with permessage-deflate they compress ``data`` per connection.
"""

from __future__ import annotations

from typing import Any

from websockets.frames import Frame, Opcode

from .._codecs import Encoder
from .._metrics._counters import payload_size

__all__ = ["Broadcast", "Prepared", "encode_frame"]


def encode_frame(data: str | bytes) -> bytes:
    """One complete, unmasked server-to-client message frame (text for ``str``)."""
    if isinstance(data, str):
        return Frame(Opcode.TEXT, data.encode()).serialize(mask=False)
    return Frame(Opcode.BINARY, data).serialize(mask=False)


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
