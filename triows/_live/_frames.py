"""What a live topic task hands to ``Subscription.forward``: hub messages as live frames.

``Subscription.forward(target)`` writes each batch with ``target.send_many()``
and, while its task waits with nothing buffered, lets the publishing task hand
a message straight to ``target.try_send()`` (on the native server over plain
TCP: written at once, no task switch per subscriber).  :class:`MessageFrames`
is that target for a live connection: each hub message (a Broadcast carrying
its position) becomes the route's shared ``message`` frame, and a ``gap`` frame
goes first when a hub without history dropped messages for this client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._protocol import encode

if TYPE_CHECKING:
    from .._connection._frames import Broadcast
    from .._connection._websocket import WebSocket
    from ..hub import Subscription

__all__ = ["MessageFrames", "gap_frame"]

FrameOf = Callable[[str, "str | None", Any], "Broadcast"]


def gap_frame(topic: str, position: str | None, reason: str) -> str:
    """The ``gap`` frame: messages of ``topic`` were missed; live again after ``position``."""
    return encode({"type": "gap", "topic": topic, "position": position, "reason": reason})


class MessageFrames:
    """A live connection's side of ``Subscription.forward`` for one topic."""

    __slots__ = ("_dropped", "_frame", "_subscription", "_topic", "_ws")

    def __init__(
        self, ws: WebSocket, topic: str, frame: FrameOf, subscription: Subscription
    ) -> None:
        self._ws = ws
        self._topic = topic
        self._frame = frame
        self._subscription = subscription
        self._dropped = subscription.dropped

    def try_send(self, message: Broadcast) -> bool:
        """Write ``message``'s frame now if the server can take it (never waits)."""
        if self._subscription.dropped != self._dropped:
            return False  # buffered instead: send_many() says "gap" first
        return self._ws.try_send(self._frame(self._topic, message.position, message.message))

    async def send_many(self, messages: Iterable[Broadcast]) -> None:
        """Send the frames of ``messages`` in order, in one batch."""
        topic, frame = self._topic, self._frame
        frames: list[Any] = [frame(topic, m.position, m.message) for m in messages]
        dropped = self._subscription.dropped
        if dropped != self._dropped:
            self._dropped = dropped
            frames.insert(0, gap_frame(topic, None, "overflow"))
        await self._ws.send_many(frames)

    def idle(self) -> Awaitable[bool]:
        """The WebSocket's idle(): wait, reading the socket where the server lets it."""
        return self._ws.idle()

    def wake(self) -> None:
        """The WebSocket's wake()."""
        self._ws.wake()
