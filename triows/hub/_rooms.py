"""This process's presence rooms: membership by topic, and the flushes of their changes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._presence import PresenceChanges, Room

__all__ = ["Rooms"]


class Rooms:
    """Every :class:`Room` of a hub in this process, and one flush task per busy room.

    A room exists while it has holders, watchers or unreported changes.  A room
    whose members change while someone watches gets one task that sleeps until
    the room's flush is due, flushes, and ends when nothing is left to report:
    no task per change, none for a quiet room.
    """

    def __init__(
        self, interval: float, pick: Callable[[dict[Any, Any]], Any] | None = None
    ) -> None:
        self.interval = interval
        self._pick = pick
        self.nursery: trio.Nursery | None = None
        self._rooms: dict[str, Room] = {}

    def room(self, topic: str) -> Room:
        room = self._rooms.get(topic)
        if room is None:
            room = self._rooms[topic] = Room(topic, self._pick)
        return room

    def get(self, topic: str) -> Room | None:
        return self._rooms.get(topic)

    def add(self, topic: str, holder: object, key: str, info: Any) -> None:
        room = self.room(topic)
        if room.add(holder, key, info, self.interval):
            self._schedule(room)

    def remove(self, topic: str, holder: object, key: str) -> None:
        room = self._rooms.get(topic)
        if room is None:
            return
        if room.remove(holder, key, self.interval):
            self._schedule(room)
        self._discard_if_idle(room)

    def members(self, topic: str) -> dict[str, Any]:
        room = self._rooms.get(topic)
        return {} if room is None else room.members()

    @asynccontextmanager
    async def watch(self, topic: str) -> AsyncIterator[PresenceChanges]:
        room = self.room(topic)
        changes = room.watch()
        try:
            yield changes
        finally:
            room.unwatch(changes)
            self._discard_if_idle(room)

    def forget(self, topic: str) -> None:
        """Drop ``topic``'s room once nobody watches it (a mirror no longer needed)."""
        room = self._rooms.get(topic)
        if room is not None and not room.watchers:
            del self._rooms[topic]

    def _schedule(self, room: Room) -> None:
        if self.nursery is not None:  # None: the hub has stopped, nobody to tell
            self.nursery.start_soon(self._flush_when_due, room)

    async def _flush_when_due(self, room: Room) -> None:
        while room.watchers and room.due != float("inf"):
            await trio.sleep_until(room.due)
            if trio.current_time() >= room.due:
                room.flush(self.interval)
        self._discard_if_idle(room)

    def _discard_if_idle(self, room: Room) -> None:
        if room.idle and self._rooms.get(room.topic) is room:
            del self._rooms[room.topic]
