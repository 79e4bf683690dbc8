"""Handing one message to a topic's local subscribers, in chunks that let the loop run."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from itertools import islice

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

    :meth:`fan_out` delivers in chunks of :data:`DELIVERY_CHUNK` subscribers
    straight from the topic's set, without yielding, for one
    :data:`DELIVERY_SLICE`: most deliveries end there, with no lock, shield or
    copy.  One that takes longer snapshots the subscribers not reached yet and
    goes on with a checkpoint every slice, so other tasks keep running; that
    part is shielded from cancellation, skips those who left meanwhile, and
    deliveries to one topic take turns in call order (a FIFO lock per topic,
    held only while one is under way), so every subscriber gets a topic's
    messages in one order.
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
        lock = self._busy.get(topic)
        if lock is None:
            if len(subscribers) <= DELIVERY_CHUNK:
                self._put(subscribers, shared, subscribers)
                return
            # As far as one slice goes, without yielding (the common case: no
            # lock, no shield, no copy); the rest takes its turn, shielded.
            rest = self._first_slice(subscribers, shared)
            if not rest:
                return
            lock = self._busy[topic] = trio.StrictFIFOLock()
            lock.acquire_nowait()  # uncontended: nobody else delivers to this topic
            try:
                with trio.CancelScope(shield=True):
                    await self._chunks(topic, rest, shared, 0)
            finally:
                self._release(topic, lock)
            return
        # Who subscribed when the message was published: those who join later
        # start after it (a replay from the history has it), those who leave
        # meanwhile are skipped.
        snapshot = list(subscribers)
        with trio.CancelScope(shield=True):
            await lock.acquire()  # an earlier delivery to this topic finishes first
            try:
                await self._chunks(topic, snapshot, shared, 0)
            finally:
                self._release(topic, lock)

    def _release(self, topic: str, lock: trio.StrictFIFOLock) -> None:
        if not lock.statistics().tasks_waiting:
            del self._busy[topic]
        lock.release()

    def _first_slice(self, subscribers: set[Subscription], shared: Broadcast) -> list[Subscription]:
        """Deliver straight from the set for one slice; the subscribers left (a snapshot).

        Nothing yields or changes the set meanwhile (overflowed subscriptions are
        removed after the loop), so it iterates the set itself, chunk by chunk.
        """
        total = len(subscribers)
        remaining = iter(subscribers)
        overflowed: list[Subscription] = []
        began = time.perf_counter()
        rest: list[Subscription] = []
        done = 0
        while done < total:
            chunk = islice(remaining, DELIVERY_CHUNK)
            overflowed += [s for s in chunk if not s.put(shared)]
            done += DELIVERY_CHUNK
            if done < total and time.perf_counter() - began >= DELIVERY_SLICE:
                rest = list(remaining)
                break
        self._stats.delivered += total - len(rest) - len(overflowed)
        for subscription in overflowed:
            self._remove(subscription)
        return rest

    def _chunks_now(
        self,
        topic: str,
        snapshot: list[Subscription],
        shared: Broadcast,
        start: int,
    ) -> int:
        """Deliver chunks from ``start`` for one slice, without yielding; where it stopped.

        Skips the subscribers that left since the snapshot (it runs after a
        checkpoint).
        """
        began = time.perf_counter()
        current = self._topics.get(topic)
        while start < len(snapshot):
            if not current:
                return len(snapshot)
            chunk = snapshot[start : start + DELIVERY_CHUNK]
            self._put(chunk, shared, current)
            start += DELIVERY_CHUNK
            if time.perf_counter() - began >= DELIVERY_SLICE:
                break
        return start

    async def _chunks(
        self, topic: str, snapshot: list[Subscription], shared: Broadcast, start: int
    ) -> None:
        while start < len(snapshot):
            await trio.lowlevel.checkpoint()
            start = self._chunks_now(topic, snapshot, shared, start)

    def _put(
        self,
        chunk: Collection[Subscription],
        shared: Broadcast,
        current: set[Subscription],
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
