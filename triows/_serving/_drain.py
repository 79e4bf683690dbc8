"""Draining: closing a server's clients for a restart without a reconnect storm.

A draining server refuses new WebSocket handshakes with 503 and a
``Retry-After`` header, and closes its open WebSockets with 1012 (Service
Restart) in batches spread over ``seconds``: the connections are shuffled and
split into batches about :data:`TICK` seconds apart, and each batch goes at a
random moment within its own slot, so the clients' reconnections are spread
over the whole period rather than arriving at once, and no two batches
overlap.  Written once for both servers: it acts on the connections' lifecycles
(``WebSocketEndpoints.drain``), not on sockets.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Final, TypeVar

import trio

__all__ = ["RETRY_AFTER", "TICK", "close_in_batches"]

#: Seconds between two batches (at most one batch per tick).
TICK: Final = 0.05
#: The ``Retry-After`` (seconds) of a handshake refused while draining: another
#: worker, or the restarted server, is expected to take the client by then.
RETRY_AFTER: Final = 1

T = TypeVar("T")


async def close_in_batches(
    connections: Iterable[T], seconds: float, close: Callable[[T], None]
) -> int:
    """Call ``close`` on every connection, in jittered batches over ``seconds``.

    Returns how many batches it used.  Each batch's moment is drawn at random
    within its slot of ``seconds / batches``; the last one comes before
    ``seconds`` have passed.  ``seconds <= 0`` closes everything at once.
    Cancellation stops it between batches (the connections not yet closed stay
    open).
    """
    targets = list(connections)
    if not targets:
        return 0
    random.shuffle(targets)
    batches = 1 if seconds <= 0 else min(len(targets), max(1, math.floor(seconds / TICK)))
    start = trio.current_time()
    slot = max(seconds, 0.0) / batches
    for index in range(batches):
        await trio.sleep_until(start + slot * (index + random.random()))
        for target in targets[index::batches]:
            close(target)
    return batches
