"""Keepalive, written once for both servers: one task per server pings every WebSocket.

A server makes one :class:`Keepalive` and runs :meth:`Keepalive.run` in a task
of its own (one task and no timer per connection).  Each of its connections is
a :class:`Pinged`: it carries a :class:`PingState` and knows how to write a
ping and how to drop its client; it tells the scheduler when it opened
(:meth:`~Keepalive.opened`), ended (:meth:`~Keepalive.forget`), and each pong
it received (:meth:`~Keepalive.pong`).

The rule, the same on both servers and on the wire:

* a connection is pinged ``interval`` seconds after its accept or its last
  answered ping, with a fresh random payload;
* only a pong carrying that payload answers it (RFC 6455 5.5.3): an
  unsolicited pong, or the answer to an older ping, keeps nothing alive;
* a connection whose answer is ``timeout`` seconds late (or that never
  finishes a closing handshake) is dropped: its client gets the close frame
  :data:`TIMEOUT_CLOSE` (1011 "ping timeout"), at best effort, within
  :data:`CLOSE_BUDGET` seconds and not at all if the connection's writer is
  stuck, then the connection ends; its view sees :data:`TIMEOUT_DEPARTURE`
  (1006 "ping timeout").
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Awaitable, Callable
from typing import Final, NoReturn, Protocol

import attrs
import trio

__all__ = [
    "CLOSE_BUDGET",
    "TIMEOUT_CLOSE",
    "TIMEOUT_DEPARTURE",
    "Keepalive",
    "PingState",
    "Pinged",
]

logger = logging.getLogger("triows")

#: The close frame a client whose pong is late gets.
TIMEOUT_CLOSE: Final = (1011, "ping timeout")
#: What the view of a client whose pong is late sees (the client did not close).
TIMEOUT_DEPARTURE: Final = (1006, "ping timeout")
#: How long a connection dropped for a late pong tries to write its close frame.
CLOSE_BUDGET: Final = 1.0
#: The size of a ping's random payload.
PAYLOAD_SIZE: Final = 4


@attrs.define(slots=True, eq=False)
class PingState:
    """One connection's keepalive bookkeeping, read and written by :class:`Keepalive` only."""

    #: When the connection is pinged next (no ping outstanding).
    next_ping: float = math.inf
    #: When the outstanding ping's answer is due, or None.
    deadline: float | None = None
    #: The outstanding ping's payload: the only pong that answers it.
    payload: bytes | None = None


class Pinged(Protocol):
    """What the scheduler pings: one open WebSocket connection, on either server."""

    @property
    def ping_state(self) -> PingState:
        """Its bookkeeping (one per connection, kept by the connection)."""
        ...

    async def ping(self, payload: bytes) -> None:
        """Write a ping with ``payload``, if the connection is still open (may block)."""
        ...

    async def drop_silent_client(self) -> None:
        """End the connection of a client whose pong is late.

        Tell the view :data:`TIMEOUT_DEPARTURE`, send :data:`TIMEOUT_CLOSE`
        within :data:`CLOSE_BUDGET` unless the writer is stuck, close the socket.
        """
        ...


class Keepalive:
    """One server's keepalive: the connections it pings, and the one task pinging them."""

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self._live: set[Pinged] = set()

    @property
    def pinged(self) -> int:
        """How many connections it pings."""
        return len(self._live)

    def opened(self, conn: Pinged) -> None:
        """An accepted connection: pinged from ``interval`` seconds on."""
        state = conn.ping_state
        state.next_ping = trio.current_time() + self.interval
        state.deadline = state.payload = None
        self._live.add(conn)

    def forget(self, conn: Pinged) -> None:
        """A connection that ended: never pinged again."""
        self._live.discard(conn)

    def pong(self, conn: Pinged, payload: bytes) -> bool:
        """A pong from ``conn``'s client: True if it answers the outstanding ping."""
        state = conn.ping_state
        if state.payload is None or payload != state.payload:
            return False
        state.payload = state.deadline = None
        state.next_ping = trio.current_time() + self.interval
        return True

    async def run(self, nursery: trio.Nursery) -> NoReturn:
        """Ping and drop, forever; pings and drops run as short tasks in ``nursery``.

        A write to a client that stopped reading blocks: no deadline waits for
        one.  The precision is a quarter of the shorter of the two periods.
        """
        tick = min(self.interval, self.timeout) / 4
        while True:
            await trio.sleep(tick)
            now = trio.current_time()
            for conn in list(self._live):
                state = conn.ping_state
                if state.deadline is not None:
                    if now >= state.deadline:
                        self._live.discard(conn)
                        nursery.start_soon(_contained, conn.drop_silent_client)
                elif now >= state.next_ping:
                    state.deadline = now + self.timeout
                    state.payload = payload = os.urandom(PAYLOAD_SIZE)
                    nursery.start_soon(_contained, conn.ping, payload)


async def _contained(action: Callable[..., Awaitable[None]], *args: object) -> None:
    """A ping or a drop: its failure ends that connection's keepalive, never the server."""
    try:
        await action(*args)
    except Exception:
        logger.exception("keepalive: %s failed", getattr(action, "__name__", action))
