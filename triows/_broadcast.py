"""One message for many connections: encoded once, framed once, written in batches.

A server that can write several messages at once, or already-framed bytes,
says so with ``scope["extensions"]["triows.send_batch"]``; it then accepts the
event ``{"type": "triows.websocket.send_batch", "messages": [Prepared, ...]}``,
writes the messages in order with one socket write, and raises OSError like
``websocket.send`` when the client has gone.  A server with no WebSocket
extension negotiated (no permessage-deflate) writes :meth:`Prepared.frame`
unchanged: server frames are not masked, so one frame serves every client.
``triows.serve`` (both backends) and the TestClient provide the extension;
under another ASGI server the messages go out one ``websocket.send`` at a time.

The extension's value may hold ``"send_now"``: a plain function
``send_now(send, messages) -> bool`` (``send`` being the connection's ASGI
send callable) that writes the batch *without yielding*, or does nothing and
returns False (the connection is busy writing, closing, or not one the server
can write to directly).  True means the server has taken every byte: written
now, or queued ahead of the connection's next write and flushed soon.  A
WebSocket sends through it first (one task switch per send instead of a lock's
and a write's), and a hub hands a message to an idle subscriber through it
without waking the subscriber's task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from websockets.frames import Frame, Opcode

from ._codecs import Encoder
from ._types import Message

__all__ = [
    "BATCH_EVENT",
    "BATCH_EXTENSION",
    "BATCH_OFFER",
    "Broadcast",
    "Prepared",
    "SendNow",
    "encode_frame",
]

BATCH_EXTENSION: Final = "triows.send_batch"
BATCH_EVENT: Final = "triows.websocket.send_batch"
#: The extension's value in a scope: it has no settings, so every connection shares
#: this one empty dict (one less object per connection).
BATCH_OFFER: Final[dict[str, object]] = {}
#: The extension's optional ``"send_now"`` (see above).
SendNow = Callable[[Any, "list[Prepared]"], bool]


def encode_frame(data: str | bytes) -> bytes:
    """One complete, unmasked server-to-client message frame (text for ``str``)."""
    if isinstance(data, str):
        return Frame(Opcode.TEXT, data.encode()).serialize(mask=False)
    return Frame(Opcode.BINARY, data).serialize(mask=False)


class Prepared:
    """A ``websocket.send`` event and, computed on first use, its wire frame.

    Shared by every connection that sends the same :class:`Broadcast` with the
    same message type: the frame is built once, however many clients get it.
    """

    __slots__ = ("_frame", "event")

    def __init__(self, event: Message) -> None:
        self.event = event
        self._frame: bytes | None = None

    def frame(self) -> bytes:
        """The message as one unmasked frame, for a connection with no extension."""
        frame = self._frame
        if frame is None:
            text = self.event.get("text")
            frame = self._frame = encode_frame(text if text is not None else self.event["bytes"])
        return frame


class Broadcast:
    """A message meant for many WebSockets, encoded and framed once for all of them.

    ``await ws.send(Broadcast(value))`` sends ``value`` as ``ws.send(value)``
    would (by the route's ``send_type``), but the encoding (JSON, UTF-8) and,
    on ``triows.serve``'s backends, the WebSocket frame are computed at most
    once per message type however many connections send it.  Build one per
    message and send the same object to every client::

        message = Broadcast({"user": name, "text": text})
        for client in clients:
            await client.send(message)

    Every :class:`~triows.Hub` delivery is a Broadcast already: subscribers of a
    topic in one process share its encoding.  Do not mutate ``message`` once
    the Broadcast has been sent.
    """

    __slots__ = ("_encode", "_prepared", "message")

    def __init__(self, message: Any) -> None:
        self.message = message
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
