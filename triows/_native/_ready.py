"""A view waiting in ``receive()``: its socket stays in one edge-triggered epoll set.

trio's ``wait_readable`` registers a socket one-shot, so every wait re-arms it
with an ``epoll_ctl`` call: one system call per received message, a third of an
echo's.  On plain TCP a view that reads its own socket (``Reading.receive``)
instead registers it once in the server's :class:`ReadySockets`, edge-triggered,
for as long as it reads directly, and parks its task between messages
(``wait_task_rescheduled``); the set's one watcher task reschedules it when its
socket becomes readable (new bytes, the end of the stream, an error).  The
watcher's own wait on the set is one registration per batch of ready sockets,
not per message.

Edge-triggered: the kernel reports each arrival of new bytes once.  The view
reads after each report, and a read that returns less than it asked for emptied
the socket, so ``ready`` goes false there; bytes arriving after that read are a
new report.  A report the watcher hands over late (for bytes a read already
took) only costs one read that finds nothing (EAGAIN).
"""

from __future__ import annotations

import select
from typing import TYPE_CHECKING, Final

import trio

from ._epollset import EpollSet
from ._idle import IdleReading

if TYPE_CHECKING:
    from .._connection._pacing import Pace

__all__ = ["ReadyReading", "ReadySockets"]

#: The events a direct reader's socket is registered for (edge-triggered).
_EVENTS: Final = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
#: The reported events that say the socket is at its end: reported once, so a
#: read that leaves it (bytes before the end) must not wait for another report.
_ENDED: Final = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR


class ReadyReading(IdleReading):
    """:class:`~triows._native._reading.Reading`'s side of :class:`ReadySockets`."""

    # (Assigned by Reading.__init__, as IdleReading's.)
    __slots__ = ("_armed", "_parked", "ended", "ready")

    #: The fd registered in the server's ReadySockets (-1: none).
    _armed: int
    #: Whether the socket may have bytes (reported since the last short read).
    ready: bool
    #: Whether the watcher reported the socket's end (EOF, reset, error): its
    #: reads never block again, and no new report will come (edge-triggered).
    ended: bool
    #: The task parked in wait_ready().
    _parked: trio.lowlevel.Task | None

    async def wait_ready(self, sockets: ReadySockets, fd: int, pace: Pace) -> bool:
        """Wait until ``fd`` may be read: parked, its socket in ``sockets``.

        False at once, without a checkpoint, where ``sockets`` cannot watch it
        (its watcher is not running, a closed socket): wait the usual way.
        Cancel-safe (it reads nothing); returns early on the departure.  Moves
        ``pace`` (the run's stamp) forward when it parked: other tasks ran.
        """
        if self._armed != fd:
            if self._armed != -1 or not sockets.add(fd, self):
                return False
            self._armed = fd
        if self.ready:
            await trio.lowlevel.checkpoint_if_cancelled()
            return True
        self._parked = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort_parked)
        pace.yielded()
        return True

    def _abort_parked(self, _: object) -> trio.lowlevel.Abort:
        self._parked = None
        return trio.lowlevel.Abort.SUCCEEDED

    def readable(self, ended: bool = False) -> None:
        """The watcher saw the socket readable (``ended``: at its end, reset or in
        error): resume a parked receive()."""
        self.ready = True
        if ended:
            self.ended = True
        task, self._parked = self._parked, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    def disarm(self, sockets: ReadySockets) -> None:
        """Leave ``sockets`` (a reader task takes over, the view is done, the
        client left); a parked receive() is resumed and reads (or waits) its
        usual way."""
        fd, self._armed = self._armed, -1
        if fd != -1:
            sockets.remove(fd, self)
        self.readable()


class ReadySockets(EpollSet[ReadyReading]):
    """One edge-triggered epoll set for the sockets of views in receive(), and its watcher."""

    __slots__ = ()

    EVENTS = _EVENTS

    def ready(self, owner: ReadyReading, events: int) -> None:
        owner.readable(bool(events & _ENDED))

    def stopped(self, owner: ReadyReading) -> None:
        owner.disarm(self)  # it waits its usual way from now on
