"""Client publishes are published once, even when a client sends one twice.

A client that lost its connection before the ``ack`` of a publish cannot know
whether it was published, so it sends it again (same ``id``) once reconnected.
:class:`PublishLog` remembers, per client identity, the ids published recently
(for ``window`` seconds, at most ``max_entries`` in all, oldest forgotten first)
and the position each got: a resent id gets the first publish's position back,
with nothing published.  The log is per process: with several worker processes,
a publish resent to another worker within the window is published again
(docs/protocol.md says so).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs
import trio

__all__ = ["PublishIds", "PublishLog"]

#: Defaults: 10 minutes, 100,000 ids (a few MB at most).
DEFAULT_WINDOW = 600.0
DEFAULT_MAX_ENTRIES = 100_000


class PublishIds(Protocol):
    """Where a live route remembers publish ids: this process, or Redis."""

    async def publish_once(
        self, key: tuple[str, str], publish: Callable[[], Awaitable[str | None]]
    ) -> tuple[str | None, bool]: ...


@attrs.define
class _Entry:
    at: float
    #: Set once the first publish ended (published or failed).
    done: trio.Event = attrs.field(factory=trio.Event)
    published: bool = False
    position: str | None = None


class PublishLog:
    """Publish ids seen recently, each with the position its publish got."""

    def __init__(
        self, window: float = DEFAULT_WINDOW, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        if window <= 0 or max_entries < 1:
            raise ValueError(
                f"PublishLog(window={window}, max_entries={max_entries}): both must be positive"
            )
        self.window = window
        self.max_entries = max_entries
        # Insertion order is time order: the oldest entry is always first.
        self._entries: dict[tuple[str, str], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def publish_once(
        self, key: tuple[str, str], publish: Callable[[], Awaitable[str | None]]
    ) -> tuple[str | None, bool]:
        """Run ``publish`` unless ``key`` (identity, id) was published within the window.

        Returns ``(position, duplicate)``.  If the first publish of ``key`` is
        still running (its connection is being replaced), waits for it.  A
        publish that raised (or was cancelled) is forgotten, so the client's
        retry publishes.  Cancellation: if cancelled while waiting for another
        publish of the same id, nothing was published by this call.
        """
        now = trio.current_time()
        self._forget_old(now)
        entry = self._entries.get(key)
        while entry is not None:
            await entry.done.wait()
            if entry.published:
                return entry.position, True
            entry = self._entries.get(key)  # it failed: another retry may have begun
        entry = self._entries[key] = _Entry(now)
        try:
            entry.position = await publish()
            entry.published = True
        finally:
            if not entry.published and self._entries.get(key) is entry:
                del self._entries[key]
            entry.done.set()
        return entry.position, False

    def _forget_old(self, now: float) -> None:
        entries = self._entries
        horizon = now - self.window
        while entries:
            key = next(iter(entries))
            first = entries[key]
            if len(entries) < self.max_entries and first.at >= horizon:
                return
            del entries[key]
