"""What a transport offers the core beyond ASGI events: an out-of-band departure notice.

ASGI reports a client's departure as a ``websocket.disconnect`` event queued
*behind* the messages the app has not read yet.  When a view stops reading
while the client keeps sending, every queue fills up and the event is never
reached: the view would never learn that the client left.  A transport that
knows better puts a :class:`Departure` in ``scope["extensions"]["triows.departure"]``
and sets it when the client goes (it must still queue the ``websocket.disconnect``
event afterwards); the WebSocket then cancels a view that is not receiving at
once, and reads the transport directly with no receive-pump task.
``triows.serve`` and the TestClient provide it; under another ASGI server a
pump task reads ahead, and a departure behind unread messages is seen only
when the view reads again.

A transport whose ``receive`` is its only socket reader (the native backend)
sets ``pump=True``: the WebSocket still reads it from a pump task, so the
client's close is noticed while the view is busy, and the transport sets the
departure itself for what the pump cannot see: a ping deadline or a failed
write while the pump waits for the view behind a full read-ahead.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from ._types import Scope

__all__ = ["DEPARTURE_EXTENSION", "Departure", "departure_of"]

DEPARTURE_EXTENSION = "triows.departure"


class Departure:
    """Set once by the transport when the client has gone, with its close code.

    A plain slotted class whose trio.Event is created only when someone waits:
    most connections never wait on their departure, and each keeps one.
    """

    __slots__ = ("_event", "callback", "code", "is_set", "pump", "reason")

    def __init__(
        self,
        code: int = 1006,
        reason: str = "",
        callback: Callable[[int, str], None] | None = None,
        *,
        pump: bool = False,
    ) -> None:
        self.code = code
        self.reason = reason
        #: The transport's receive must still be read by a pump task (see above).
        self.pump = pump
        #: Called with (code, reason) when set: the connection's WebSocket registers here.
        self.callback = callback
        #: Whether the transport has reported the departure.
        self.is_set = False
        self._event: trio.Event | None = None

    def set(self, code: int, reason: str) -> None:
        if not self.is_set:
            self.code, self.reason = code, reason
            self.is_set = True
            if self._event is not None:
                self._event.set()
            if self.callback is not None:
                self.callback(code, reason)

    async def wait(self) -> None:
        if self.is_set:
            await trio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()

    def __repr__(self) -> str:
        return f"Departure(code={self.code!r}, reason={self.reason!r}, is_set={self.is_set})"


def departure_of(scope: Scope) -> Departure | None:
    """The scope's departure notice, if its transport provides one."""
    found = scope.get("extensions", {}).get(DEPARTURE_EXTENSION)
    return found if isinstance(found, Departure) else None
