"""A hub forwarder's reading: its task parks, one epoll set per server watches.

A hub ``forward()`` with nothing to send waits in ``ws.idle()``, which on the
native server over plain TCP is :meth:`IdleReading.read_idle`: it reads what
the client sends as ``receive()`` would, without taking messages.  Between
reads the task parks (``wait_task_rescheduled``: a task of ours to reschedule,
not one trio's I/O manager owns) with its socket in the server's one
:class:`IdleSockets` epoll set, which one task watches; its socket's input, a
message to forward (``wake()``), a ``receive()`` taking the reading over, or
the departure reschedules it.  No cancel scope and no registration in trio's
I/O manager per subscriber: about 1.5 KB less than waiting in
``trio.lowlevel.wait_readable`` inside a cancel scope that ``wake()`` cancels.
"""

from __future__ import annotations

import os
import select
from typing import TYPE_CHECKING, Final

import trio

from ._epollset import EpollSet
from ._writer import RECV_SIZE, WRITE_HIGH_WATER

if TYPE_CHECKING:
    from .._connection._transport import ClientGone
    from .._serving._inbox import Inbox
    from ._server import _NativeServer
    from ._writer import _Writer

__all__ = ["IDLE_OFF", "IdleReading", "IdleSockets"]

#: read_idle()'s states: not running, reading, told to stop (wake(), receive()).
IDLE_OFF: Final = 0
IDLE_ON: Final = 1
IDLE_STOP: Final = 2


class IdleReading:
    """:class:`~triows._native._reading.Reading`'s ``read_idle()`` side."""

    # (Reading's state that read_idle() changes is declared here: slots of the
    # base class, assigned by Reading.__init__.)
    __slots__ = ("_drained", "_early", "_idle_readable", "_idle_state", "_idle_task")

    #: What the client sent after its request head, not parsed yet.
    _early: bytes
    #: Whether the last read returned less than asked: the socket is empty.
    _drained: bool
    _idle_state: int
    #: The task parked in read_idle() (IdleSockets or resume_idle() wakes it).
    _idle_task: trio.lowlevel.Task | None
    _idle_readable: bool

    if TYPE_CHECKING:  # what it reads of Reading
        server: _NativeServer
        sock: trio.socket.SocketType
        writer: _Writer
        _inbox: Inbox[str | bytes]
        _direct: bool
        _receiving: int
        _gone: ClientGone | None
        _eof: bool

        def consume(self, data: bytes) -> None: ...

        def _left(self, code: int, reason: str) -> None: ...

        def start_reader(self) -> None: ...

    async def read_idle(self) -> bool:
        """The Transport's read_idle(): receive()'s reading, without taking messages.

        Reads only while it may read directly (plain TCP, no reader task, nobody
        in receive()) and the inbox has room; between reads the task parks with
        its socket in the server's IdleSockets (no cancel scope, no trio I/O
        registration).  wake(), a receive() or the departure ends it.
        """
        inbox = self._inbox
        if not self._direct or self._receiving or self._idle_state != IDLE_OFF:
            return False
        idle = self.server.away_views.idle
        if inbox.full or self._gone is not None or self._eof or not idle.running:
            return False
        away = self.server.away_views
        away.away.pop(self, None)
        self._idle_state = IDLE_ON
        fd = self.sock.fileno()
        try:
            if self._early:
                early, self._early = self._early, b""
                self.consume(early)
            while self._gone is None and not self._eof and not inbox.full:
                if self._idle_state == IDLE_STOP:
                    break  # woken, or receive() reads now: leave the bytes to it
                if self._drained:
                    if not idle.add(fd, self):
                        break  # the watcher stopped, or the socket closed
                    self._idle_task = trio.lowlevel.current_task()
                    self._idle_readable = False
                    try:
                        await trio.lowlevel.wait_task_rescheduled(self._abort_idle)
                    finally:
                        idle.remove(fd, self)  # (the fd it watched, even if closed since)
                    if not self._idle_readable or self._idle_state == IDLE_STOP:
                        break  # (readable, but rescheduled before a wake() came)
                try:
                    data = os.read(fd, RECV_SIZE)
                except BlockingIOError:
                    self._drained = True
                    continue
                except OSError:
                    data = b""
                self._drained = len(data) < RECV_SIZE
                self.consume(data)
                if self.writer.pending_bytes > WRITE_HIGH_WATER:
                    await self.writer.drain()  # as in receive()
            if self._eof and self._gone is None:
                self._left(1006, "")
        finally:
            self._idle_state = IDLE_OFF
            if self._receiving == 0 and self._direct:
                away.away[self] = away.sweep
        return True

    def resume_idle(self, readable: bool) -> None:
        """Reschedule the task parked in read_idle(): its socket is readable, or not."""
        task, self._idle_task = self._idle_task, None
        if task is not None:
            self._idle_readable = readable
            trio.lowlevel.reschedule(task)

    def _abort_idle(self, _: object) -> trio.lowlevel.Abort:
        self._idle_task = None
        return trio.lowlevel.Abort.SUCCEEDED

    def wake(self) -> None:
        """End a pending read_idle() (it reads nothing more)."""
        if self._idle_state != IDLE_OFF:
            self._idle_state = IDLE_STOP
            self.resume_idle(False)


class IdleSockets(EpollSet[IdleReading]):
    """One epoll set for the sockets of parked hub forwarders, and its watcher.

    One-shot: one report, then the socket stays quiet until its task removes it.
    """

    __slots__ = ()

    EVENTS = select.EPOLLIN | select.EPOLLONESHOT

    def ready(self, owner: IdleReading, events: int) -> None:
        owner.resume_idle(True)

    def stopped(self, owner: IdleReading) -> None:
        owner.resume_idle(False)  # it waits its other way now
