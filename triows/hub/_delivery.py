"""Handing one message to a topic's local subscribers, in chunks that let the loop run."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

import trio

from .._connection._frames import Broadcast
from ._stats import HubStats
from ._subscription import Subscription

__all__ = ["DELIVERY_CHUNK", "DELIVERY_SLICE", "Delivery"]

#: A delivery to more subscribers than this works in chunks of this many...
DELIVERY_CHUNK = 64
#: ...and checkpoints between two chunks once it has run this long (seconds).
DELIVERY_SLICE = 0.002


class Delivery:
    """A hub's fan-out: each message into every local subscription of its topic.

    Up to :data:`DELIVERY_CHUNK` subscribers, :meth:`fan_out` returns without
    yielding.  Beyond, it works through a snapshot of the subscribers (taken
    when it is called) in chunks, with a checkpoint between two chunks every
    :data:`DELIVERY_SLICE` seconds, so other tasks keep running.  Such a
    delivery is shielded from cancellation, and deliveries to one topic take
    turns in call order (a FIFO lock per topic, held only while one is under
    way), so every subscriber gets a topic's messages in one order.
    """

    def __init__(
        self,
        topics: dict[str, set[Subscription]],
        stats: HubStats,
        remove: Callable[[Subscription], None],
    ) -> None:
        self._topics = topics
        self._stats = stats
        self._remove = remove
        #: Topics with a chunked delivery under way: later ones wait their turn.
        self._busy: dict[str, trio.StrictFIFOLock] = {}

    async def fan_out(self, topic: str, shared: Broadcast) -> None:
        """Put ``shared`` in every subscription to ``topic``; see the class."""
        subscribers = self._topics.get(topic)
        if not subscribers:
            return
        if len(subscribers) <= DELIVERY_CHUNK and topic not in self._busy:
            self._put(subscribers, shared, subscribers)
            return
        # Who subscribed when the message was published: those who join later
        # start after it (a replay from the history has it), those who leave
        # meanwhile are skipped.
        snapshot = list(subscribers)
        with trio.CancelScope(shield=True):
            lock = self._busy.get(topic)
            if lock is None:
                lock = self._busy[topic] = trio.StrictFIFOLock()
            async with lock:  # an earlier delivery to this topic finishes first
                try:
                    await self._chunks(topic, snapshot, shared)
                finally:
                    if not lock.statistics().tasks_waiting:
                        del self._busy[topic]

    async def _chunks(self, topic: str, snapshot: list[Subscription], shared: Broadcast) -> None:
        resumed = time.perf_counter()
        for start in range(0, len(snapshot), DELIVERY_CHUNK):
            if time.perf_counter() - resumed >= DELIVERY_SLICE:
                await trio.lowlevel.checkpoint()
                resumed = time.perf_counter()
            current = self._topics.get(topic)
            if not current:
                return
            self._put(snapshot[start : start + DELIVERY_CHUNK], shared, current)

    def _put(
        self, chunk: Collection[Subscription], shared: Broadcast, current: set[Subscription]
    ) -> None:
        """Put ``shared`` in each subscription of ``chunk`` still in ``current``."""
        if chunk is current:
            overflowed = [s for s in chunk if not s.put(shared)]
            self._stats.delivered += len(chunk) - len(overflowed)
        else:
            overflowed = []
            delivered = 0
            for subscription in chunk:
                if subscription in current:
                    if subscription.put(shared):
                        delivered += 1
                    else:
                        overflowed.append(subscription)
            self._stats.delivered += delivered
        for subscription in overflowed:
            self._remove(subscription)
