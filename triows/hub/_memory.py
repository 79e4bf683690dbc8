"""The in-memory backend: delivery inside this process, and a bounded history per topic.

Positions are ``"<epoch>:<n>"``: one counter for the whole hub (so with
``history=0`` the backend keeps nothing per topic), and an epoch drawn when the
Hub is created, so a position from another Hub instance (or an earlier run of
the process) is recognised as foreign: ``recovered=False``, never "nothing new".
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .._connection._frames import Broadcast
from ._positions import LAST_POSITION_LIFETIME, new_epoch, parse_position
from ._presence import PresenceChanges
from ._rooms import Rooms

if TYPE_CHECKING:
    from ._hub import Hub
    from ._subscription import Subscription

__all__ = ["MemoryBackend", "check_message"]


def check_message(message: Any) -> None:
    """TypeError unless ``message`` is str, bytes or JSON-able."""
    if not isinstance(message, str | bytes):
        try:
            json.dumps(message)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"hub messages are str, bytes or JSON-able values; got {type(message).__name__}"
            ) from exc


@attrs.define
class TopicLog:
    """One topic's recent messages, oldest first, as (counter, Broadcast)."""

    entries: deque[tuple[int, Broadcast]]
    #: Nothing is known of the topic's messages up to this counter: the newest
    #: evicted one, or the counter when the log was made (0: none yet).
    evicted: int = 0
    #: When the topic was last published to or subscribed (trio clock).
    touched: float = 0.0


class MemoryBackend:
    """Delivers inside this process: publish hands the message straight to subscribers."""

    def __init__(
        self, history: int = 0, presence_interval: float = 1.0, history_ttl: float = 86400.0
    ) -> None:
        self._hub: Hub | None = None
        self.rooms = Rooms(presence_interval)
        self.history = history
        self.history_ttl = history_ttl
        self.epoch = new_epoch()
        self._counter = 0
        #: The position of the last message ("<epoch>:0" before any): one string
        #: shared by every subscription that starts there.
        self._head = f"{self.epoch}:0"
        # Least recently touched first: expired logs leave from the front.
        self._logs: dict[str, TopicLog] = {}
        #: Topics whose messages expired: (touched, the counter of the topic's
        #: last message), kept LAST_POSITION_LIFETIME times longer, least
        #: recently touched first, so a resume at that position is still known
        #: to have missed nothing.
        self._lasts: dict[str, tuple[float, int]] = {}
        #: When the oldest record expires (inf: no record).
        self._lasts_due = math.inf

    async def run(self, hub: Hub, *, task_status: trio.TaskStatus[None]) -> None:
        self._hub = hub
        try:
            async with trio.open_nursery() as nursery:
                self.rooms.nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._hub = None
            self.rooms.nursery = None

    async def publish(self, topic: str, message: Any) -> str:
        check_message(message)
        await trio.lowlevel.checkpoint()
        hub = self._hub
        assert hub is not None
        counter = self._counter = self._counter + 1
        position = self._head = f"{self.epoch}:{counter}"
        if not self.history:
            await hub.deliver(topic, message, position)
            return position
        shared = Broadcast(message, position)
        log = self._touch(topic, counter - 1)
        entries = log.entries
        if len(entries) == self.history:
            log.evicted = entries[0][0]
        entries.append((counter, shared))
        await hub.fan_out(topic, shared)
        return position

    def _touch(self, topic: str, known_after: int) -> TopicLog:
        """``topic``'s log, marked as used now (made if it has none: nothing is
        known up to its last position if one is recorded, else up to
        ``known_after``); expires the logs and records unused too long."""
        now = trio.current_time()
        deadline = now - self.history_ttl
        logs = self._logs
        log = logs.pop(topic, None)
        if log is None or log.touched <= deadline:
            log = self._renew(topic, log, known_after)
        log.touched = now
        logs[topic] = log
        # (The newest is not expired: the front is checked without a loop.)
        if next(iter(logs.values())).touched <= deadline or now >= self._lasts_due:
            self._expire(now)
        return log

    def _renew(self, topic: str, expired: TopicLog | None, known_after: int) -> TopicLog:
        """A new log for ``topic``: nothing known up to its last position (from
        its ``expired`` log or its record), or up to ``known_after``."""
        if expired is not None:
            evicted = expired.entries[-1][0] if expired.entries else expired.evicted
        else:
            record = self._lasts.pop(topic, None)
            evicted = known_after if record is None else record[1]
        return TopicLog(deque(maxlen=self.history), evicted=evicted)

    def _expire(self, now: float) -> None:
        """Drop the messages of topics unused for history_ttl (keeping each one's
        last position, a tuple), and those positions once unused for
        LAST_POSITION_LIFETIME times history_ttl.  Both dicts are in touch order."""
        logs, lasts = self._logs, self._lasts
        deadline = now - self.history_ttl
        while logs:
            topic = next(iter(logs))
            log = logs[topic]
            if log.touched > deadline:
                break
            del logs[topic]
            entries = log.entries
            lasts[topic] = (log.touched, entries[-1][0] if entries else log.evicted)
        lifetime = self.history_ttl * LAST_POSITION_LIFETIME
        while lasts:
            topic = next(iter(lasts))
            touched = lasts[topic][0]
            if touched > now - lifetime:
                self._lasts_due = touched + lifetime
                return
            del lasts[topic]
        self._lasts_due = math.inf

    async def watch(self, topic: str) -> None:
        await trio.lowlevel.checkpoint()

    async def start(self, subscription: Subscription, since: str | None, last: int) -> None:
        """Give ``subscription`` its starting position and the history after
        ``since`` (or its ``last`` newest messages)."""
        head = self._head
        # History on: the topic's log, made (knowing nothing before now) if it
        # had none: a later resume from here finds it, unless it expired.
        log = self._touch(subscription.topic, self._counter) if self.history else None
        if since is None:
            if last and log is not None and log.entries:
                newest = list(log.entries)[-last:]
                # Just before the first one: a resume from there replays them.
                before = f"{self.epoch}:{newest[0][0] - 1}"
                subscription.begin(before, [shared for _, shared in newest], recovered=True)
                return
            subscription.begin(head, [], recovered=True)
            return
        epoch, after = parse_position(since)
        if epoch != self.epoch or after > self._counter:
            subscription.begin(head, [], recovered=False)
            return
        if after == self._counter:  # nothing published anywhere since
            subscription.begin(since, [], recovered=True)
            return
        if log is None or after < log.evicted:  # history off, or a message after
            # `since` was evicted or expired with the topic's log
            subscription.begin(head, [], recovered=False)
            return
        replay: list[Broadcast] = []
        for counter, shared in reversed(log.entries):
            if counter <= after:
                break
            replay.append(shared)
        replay.reverse()
        subscription.begin(since, replay, recovered=True)

    @asynccontextmanager
    async def presence(self, topic: str, key: str, info: Any) -> AsyncIterator[None]:
        holder = object()  # this block: one of the key's holders
        self.rooms.add(topic, holder, key, info)
        try:
            yield
        finally:
            self.rooms.remove(topic, holder, key)

    async def members(self, topic: str) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        return self.rooms.members(topic)

    @asynccontextmanager
    async def presence_changes(self, topic: str) -> AsyncIterator[PresenceChanges]:
        await trio.lowlevel.checkpoint()
        async with self.rooms.watch(topic) as changes:
            yield changes

    @property
    def connected(self) -> bool:
        return self._hub is not None
