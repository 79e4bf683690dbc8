"""Presence: who is in a topic, and batched changes of it, the same for every backend.

A :class:`Room` holds one topic's *holders* (``key -> {holder: info}``): in
memory a holder is one ``hub.presence()`` block; with Redis it is one process
holding the key (the process counts its own blocks).  A key is a member while it
has a holder, so several connections of one user count once.

Watchers (``hub.presence_changes()``) get :class:`PresenceChange` batches
computed once per room and shared: the room compares its members with the
snapshot it last reported, but only for the keys changed since (``dirty``), so
a flush costs what changed, not the room's size.  A key that left is reported
only once it has stayed away for a whole ``interval`` (a page reload shows
nothing), and a room flushes at most once per ``interval``.  A watcher that is
behind merges the batches it has not read into one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import trio

__all__ = ["PresenceChange", "PresenceChanges", "Room", "latest"]


@attrs.frozen
class PresenceChange:
    """One batch of presence changes in a topic.

    ``joined``: keys that became present, or whose ``info`` changed, with their
    info; ``left``: keys that are gone, with the info they had.  A key never
    appears in both.
    """

    joined: dict[str, Any]
    left: dict[str, Any]

    def merged(self, later: PresenceChange) -> PresenceChange:
        """This batch followed by ``later``, as one batch relative to the same start."""
        joined = {k: v for k, v in self.joined.items() if k not in later.left}
        left = {k: v for k, v in self.left.items() if k not in later.joined}
        for key, info in later.left.items():
            if key not in self.joined:  # joined then left within the two: nothing
                left[key] = info
        for key, info in later.joined.items():
            if self.left.get(key, _MISSING) != info:
                joined[key] = info
        return PresenceChange(joined, left)


_MISSING = object()


class PresenceChanges:
    """What ``async with hub.presence_changes(topic) as changes`` gives.

    ``changes.members`` is the membership the batches follow (the room as last
    reported when the block started): apply each batch to it to stay current.
    ``async for change in changes`` waits for the next batch; a watcher that
    falls behind gets the batches it missed merged into one, so it holds at most
    one batch however fast members churn.  Cancel-safe.
    """

    def __init__(self, topic: str, members: dict[str, Any]) -> None:
        self.topic = topic
        #: The membership the batches apply to: ``{key: info}``.
        self.members = members
        self._pending: PresenceChange | None = None
        self._event = trio.Event()

    def push(self, change: PresenceChange) -> None:
        """Queue ``change`` (merged with an unread one).  For the room."""
        pending = self._pending
        if pending is not None:
            change = pending.merged(change)
        # Joined and left again before being read: nothing to tell.
        self._pending = change if change.joined or change.left else None
        self._event.set()

    async def receive(self) -> PresenceChange:
        """Wait for the next batch."""
        while True:
            await self._event.wait()
            change, self._pending = self._pending, None
            self._event = trio.Event()
            if change is not None:
                return change

    def __aiter__(self) -> PresenceChanges:
        return self

    async def __anext__(self) -> PresenceChange:
        return await self.receive()


class Room:
    """One topic's presence in this process (see the module docstring)."""

    def __init__(self, topic: str, pick: Callable[[dict[Any, Any]], Any] | None = None) -> None:
        self.topic = topic
        #: Which holder's info a key shows: the most recent one by default.
        self.pick = latest if pick is None else pick
        self.holders: dict[str, dict[object, Any]] = {}
        #: The members as last reported to watchers.
        self.snapshot: dict[str, Any] = {}
        #: Keys changed since the last flush -> when they last changed.
        self.dirty: dict[str, float] = {}
        self.watchers: set[PresenceChanges] = set()
        self.last_flush = -math.inf
        #: When the next flush is due (inf: none scheduled).
        self.due = math.inf

    @property
    def idle(self) -> bool:
        return not self.holders and not self.watchers and not self.dirty

    def members(self) -> dict[str, Any]:
        """``{key: info}``: each key with its most recent holder's info."""
        return {key: self.pick(holders) for key, holders in self.holders.items()}

    def add(self, holder: object, key: str, info: Any, interval: float) -> bool:
        """``holder`` holds ``key``; True if a flush must be scheduled."""
        self.holders.setdefault(key, {})[holder] = info
        return self._changed(key, trio.current_time(), interval)

    def remove(self, holder: object, key: str, interval: float) -> bool:
        """``holder`` lets ``key`` go; True if a flush must be scheduled."""
        holders = self.holders.get(key)
        if holders is None or holder not in holders:
            return False
        del holders[holder]
        if not holders:
            del self.holders[key]
        return self._changed(key, trio.current_time(), interval)

    def _changed(self, key: str, now: float, interval: float) -> bool:
        if not self.watchers:  # nobody to tell: the snapshot follows at once
            self._settle(key)
            return False
        self.dirty[key] = now
        earliest = now if key in self.holders else now + interval
        due = max(earliest, self.last_flush + interval)
        if due < self.due:
            scheduled = self.due != math.inf
            self.due = due
            return not scheduled
        return False

    def _settle(self, key: str) -> None:
        holders = self.holders.get(key)
        if holders:
            self.snapshot[key] = self.pick(holders)
        else:
            self.snapshot.pop(key, None)

    def watch(self) -> PresenceChanges:
        changes = PresenceChanges(self.topic, dict(self.snapshot))
        self.watchers.add(changes)
        return changes

    def unwatch(self, changes: PresenceChanges) -> None:
        self.watchers.discard(changes)
        if not self.watchers:
            for key in list(self.dirty):
                self._settle(key)
            self.dirty.clear()
            self.due = math.inf

    def flush(self, interval: float) -> None:
        """Report what changed to every watcher, as one shared batch."""
        now = trio.current_time()
        self.last_flush = now
        joined: dict[str, Any] = {}
        left: dict[str, Any] = {}
        later = math.inf
        for key, changed_at in list(self.dirty.items()):
            holders = self.holders.get(key)
            if holders:
                info = self.pick(holders)
                if self.snapshot.get(key, _MISSING) != info:
                    joined[key] = self.snapshot[key] = info
            elif key in self.snapshot:
                if changed_at + interval > now:  # may come back (a reload): wait
                    later = min(later, changed_at + interval)
                    continue
                left[key] = self.snapshot.pop(key)
            del self.dirty[key]
        self.due = max(later, now + interval) if later != math.inf else math.inf
        if joined or left:
            change = PresenceChange(joined, left)
            for watcher in self.watchers:
                watcher.push(change)


def latest(holders: dict[Any, Any]) -> Any:
    """The info of the most recent holder."""
    return next(reversed(holders.values()))
