"""Pumps: the App's one task that starts receive pumps for views away from their connection.

A view reading (or sending) calls the server itself; one that has been away from
its connection for a whole tick (seen away at two looks 50 ms apart: it waits on
a hub subscription, a timer, a database) gets a receive pump
(:meth:`~triows._asgi._adapter.ASGITransport.start_pump`), in the App's nursery,
so a departure is seen while the view is busy elsewhere.

A connection is listed when it arrives and whenever its view leaves the server.
Most listed views are on their way into the server's ``receive()`` (a new
connection accepting, an echo loop between its send and its next receive), so
after a quiet spell the task first lets the other tasks run a few times
(:data:`SETTLE_PASSES` scheduling passes, no timer) and drops the connections that
reached their server: when every one did, it waits for the next listing without
ticking.  Only a view still away after those passes starts the ticks.  At most
:data:`SETTLES_PER_TICK` such settlings happen per tick; a busier App ticks, which
then costs less than a wakeup per connection.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from ._adapter import ASGITransport

__all__ = ["PUMP_TICK", "Pumps"]

#: How often :class:`Pumps` looks for views away from their connection: a view
#: seen away at one look and still away at the next gets a pump (so 50-100 ms
#: after it left).  A view that is only between two calls at a look (its
#: handshake, an echo loop's send) is back by the next one and gets none.
PUMP_TICK: Final = 0.05
#: Scheduling passes the task lets the other tasks run, after a quiet spell,
#: before it starts ticking for the views still away.
SETTLE_PASSES: Final = 3
#: Settlings at most per tick; past them the task ticks (a settling costs about a
#: tenth of a tick: four and a tick cost less than two ticks).
SETTLES_PER_TICK: Final = 4


class Pumps:
    """Starts receive pumps for views away from their connection: one task per App.

    ``run`` in the App's nursery; pumps start in that nursery too, and each
    ends with its connection (``ASGITransport.finished``).
    """

    __slots__ = ("_wakeup", "away", "generation", "nursery")

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        #: Connections without a pump whose view was last seen leaving them.
        self.away: set[ASGITransport] = set()
        #: Ticks so far: a connection records the one it was left in.
        self.generation = 0
        self._wakeup = trio.Event()

    def left(self, transport: ASGITransport) -> None:
        """``transport``'s view stopped reading and sending, and it is not listed yet.

        A listed connection stays listed while its view comes and goes (it only
        records when it last left, per call: no set operation per message) until a
        look finds it busy, pumped or away long enough.
        """
        transport.away_since = self.generation
        transport.listed = self
        away = self.away
        if not away:
            self._wakeup.set()
        away.add(transport)

    async def run(self) -> None:
        """Start a pump for each view away for a whole tick, until cancelled."""
        window, settles = -math.inf, 0
        while True:
            if not self.away:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
                now = trio.current_time()
                if now - window >= PUMP_TICK:
                    window, settles = now, 0
                settles += 1
                if settles <= SETTLES_PER_TICK and await self._settle():
                    continue  # every listed view reached its server: no tick
            await trio.sleep(PUMP_TICK)
            self.generation += 1
            # Left before the last tick (recorded in an earlier generation) and
            # not back since: away for a whole tick.
            threshold = self.generation - 2
            for transport in list(self.away):
                if transport.busy or transport.pumped:
                    self._drop(transport)  # back (it lists itself when it next leaves)
                elif transport.away_since <= threshold:
                    self._drop(transport)
                    transport.start_pump(self.nursery)

    async def _settle(self) -> bool:
        """Drop the listed connections that are back in their server, letting the other
        tasks run between looks.  True once none is left (the views were only on
        their way)."""
        for passes in range(SETTLE_PASSES + 1):
            if passes:
                await trio.lowlevel.cancel_shielded_checkpoint()
            for transport in list(self.away):
                if transport.busy or transport.pumped:
                    self._drop(transport)
            if not self.away:
                return True
        return False

    def _drop(self, transport: ASGITransport) -> None:
        self.away.discard(transport)
        transport.listed = None
