"""What a transport offers the core beyond ASGI events: an out-of-band departure notice.

ASGI reports a client's departure as a ``websocket.disconnect`` event queued
*behind* the messages the app has not read yet.  When a view stops reading
while the client keeps sending, every queue fills up and the event is never
reached: the view would never learn that the client left.  A transport that
knows better puts a :class:`Departure` in ``scope["extensions"]["triows.departure"]``
and sets it when the client goes; the receive pump watches it whenever the
view lags, so such a view is still cancelled promptly.  ``triows.serve`` (both
backends) provides it; under another ASGI server the departure is seen when
the view reads again, or not at all.
"""

from __future__ import annotations

import attrs
import trio

from ._types import Scope

__all__ = ["DEPARTURE_EXTENSION", "Departure", "departure_of"]

DEPARTURE_EXTENSION = "triows.departure"


@attrs.define
class Departure:
    """Set once by the transport when the client has gone, with its close code."""

    code: int = 1006
    reason: str = ""
    event: trio.Event = attrs.field(factory=trio.Event)

    def set(self, code: int, reason: str) -> None:
        if not self.event.is_set():
            self.code, self.reason = code, reason
            self.event.set()

    async def wait(self) -> None:
        await self.event.wait()


def departure_of(scope: Scope) -> Departure | None:
    """The scope's departure notice, if its transport provides one."""
    found = scope.get("extensions", {}).get(DEPARTURE_EXTENSION)
    return found if isinstance(found, Departure) else None
