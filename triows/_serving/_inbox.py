"""A bounded, cancel-safe queue from one reader task to the connection's receivers.

Used by both transports: the ASGI adapter's receive pump and the native
connection's reader task put messages here, ``receive()`` takes them.  A lean
memory channel: a list and directly rescheduled tasks, a few hundred bytes less
per connection than ``trio.open_memory_channel``, and a ``put`` that does not
yield when there is room (the reader's next read does).  ``get()`` is a full
checkpoint and cancel-safe, like the channel's; after ``close()`` it returns
what is left, then raises EndOfChannel.
"""

from __future__ import annotations

from typing import Any, Final, Generic, TypeVar

import trio

__all__ = ["READ_AHEAD", "Inbox"]

#: How many messages a reader may read ahead of the view by default.  Small,
#: because the server already buffers, and a view that stops reading must push back.
READ_AHEAD: Final = 4

T = TypeVar("T")


class Inbox(Generic[T]):
    """The queue (one putter, any number of getters)."""

    __slots__ = ("_capacity", "_closed", "_items", "_putter", "_waiting")

    def __init__(self, capacity: int = READ_AHEAD) -> None:
        self._capacity = capacity
        self._items: list[T] = []
        self._waiting: list[trio.lowlevel.Task] = []
        self._putter: trio.lowlevel.Task | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        """Whether the next ``put`` would wait for a getter."""
        return len(self._items) >= self._capacity

    async def put(self, item: T) -> None:
        """Queue ``item``; wait while the inbox is full.  Cancel-safe."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while len(self._items) >= self._capacity:
            self._putter = trio.lowlevel.current_task()

            def abort(_: Any) -> trio.lowlevel.Abort:
                self._putter = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        self.put_nowait(item)

    def put_nowait(self, item: T) -> None:
        """Queue ``item`` even past the capacity (for a reader's last few items)."""
        self._items.append(item)
        if self._waiting:
            trio.lowlevel.reschedule(self._waiting.pop(0))

    async def get(self) -> T:
        """The next item; EndOfChannel once closed and empty.  Cancel-safe."""
        await trio.lowlevel.checkpoint_if_cancelled()
        items = self._items
        if items:
            item = items.pop(0)
            self._wake_putter()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return item
        while not items:
            if self._closed:
                raise trio.EndOfChannel
            task = trio.lowlevel.current_task()
            self._waiting.append(task)

            def abort(_: Any, task: trio.lowlevel.Task = task) -> trio.lowlevel.Abort:
                self._waiting.remove(task)
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        item = items.pop(0)
        self._wake_putter()
        return item

    def get_nowait(self) -> T:
        """The next item, without a checkpoint (the caller just made one); IndexError if empty."""
        item = self._items.pop(0)
        self._wake_putter()
        return item

    def _wake_putter(self) -> None:
        putter, self._putter = self._putter, None
        if putter is not None:
            trio.lowlevel.reschedule(putter)

    def close(self) -> None:
        """No more items: getters get what is left, then EndOfChannel."""
        self._closed = True
        waiting, self._waiting = self._waiting, []
        for task in waiting:
            trio.lowlevel.reschedule(task)
