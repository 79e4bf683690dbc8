"""The views away from their connection's socket, and the task that gives them readers.

A native connection whose view reads the socket itself (in ``receive()``, or a
hub ``forward()`` in ``idle()``: :mod:`triows._native._reading`) is out of this
table; one whose view went elsewhere is in it, marked with the sweep it left
in, and gets a reader task once it has stayed away a whole sweep.
"""

from __future__ import annotations

from typing import Final

import trio

from ._idle import IdleReading, IdleSockets
from ._ready import ReadySockets

__all__ = ["AWAY_SWEEP", "AwayViews"]

#: How often the server looks for views away from ``receive()``: a view away for
#: between one and two sweeps gets a reader task.
AWAY_SWEEP: Final = 0.05


class AwayViews:
    """The connections whose view is away from ``receive()``, and since which sweep."""

    __slots__ = ("away", "idle", "ready", "sweep")

    def __init__(self) -> None:
        self.away: dict[IdleReading, int] = {}
        self.sweep = 0
        #: The sockets of parked hub forwarders (watched while run() runs).
        self.idle = IdleSockets()
        #: The sockets of views waiting in receive() (watched while run() runs).
        self.ready = ReadySockets()

    async def run(self) -> None:
        """Start a reader for each view away for a whole sweep, and watch the
        idle and ready sockets; forever (cancel it)."""
        away = self.away
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.idle.run)
            nursery.start_soon(self.ready.run)
            while True:
                await trio.sleep(AWAY_SWEEP)
                self.sweep += 1
                since = self.sweep - 1
                for conn in [c for c, mark in away.items() if mark < since]:
                    del away[conn]
                    conn.start_reader()
