"""One epoll set per server that one task watches, for sockets whose tasks park.

The native server keeps two (``_idle``: parked hub forwarders, one-shot;
``_ready``: views waiting in ``receive()``, edge-triggered).  Each registers a
socket once with its owner, parks the owner's task with
``wait_task_rescheduled``, and lets the set's one watcher task reschedule it:
no trio I/O registration and no cancel scope per socket.
"""

from __future__ import annotations

import contextlib
import select
from typing import ClassVar, Generic, TypeVar

import trio

__all__ = ["EpollSet"]

Owner = TypeVar("Owner")


class EpollSet(Generic[Owner]):
    """Sockets watched for their owners while :meth:`run` runs.

    A subclass sets :attr:`EVENTS` and says what a report (:meth:`ready`) and
    the watcher's end (:meth:`stopped`) do to an owner.
    """

    __slots__ = ("_epoll", "_owners")

    #: The epoll events each socket is registered for.
    EVENTS: ClassVar[int]

    def __init__(self) -> None:
        self._epoll: select.epoll | None = None
        self._owners: dict[int, Owner] = {}

    @property
    def running(self) -> bool:
        """Whether sockets can be watched (the watcher runs)."""
        return self._epoll is not None

    def add(self, fd: int, owner: Owner) -> bool:
        """Watch ``fd`` for ``owner`` until :meth:`remove`.

        False if it cannot be watched (the watcher is not running, a closed
        socket): the owner waits its usual way.
        """
        epoll = self._epoll
        if epoll is None:
            return False
        try:
            epoll.register(fd, self.EVENTS)
        except OSError:
            return False
        self._owners[fd] = owner
        return True

    def remove(self, fd: int, owner: Owner) -> None:
        """Stop watching ``fd`` for ``owner`` (nothing if another owner has it now)."""
        if self._owners.get(fd) is owner:
            del self._owners[fd]
            if self._epoll is not None:
                with contextlib.suppress(OSError):  # closed: the kernel dropped it
                    self._epoll.unregister(fd)

    def ready(self, owner: Owner, events: int) -> None:
        """``owner``'s socket was reported (``events``: readable, or gone)."""
        raise NotImplementedError

    def stopped(self, owner: Owner) -> None:
        """The watcher stops: ``owner`` must wait its usual way from now on."""
        raise NotImplementedError

    async def run(self) -> None:
        """Report each socket the kernel reports to its owner; forever (cancel it)."""
        owners = self._owners
        with select.epoll() as epoll:
            self._epoll = epoll
            try:
                while True:
                    await trio.lowlevel.wait_readable(epoll.fileno())
                    for fd, events in epoll.poll(0):
                        owner = owners.get(fd)
                        if owner is not None:
                            self.ready(owner, events)
            finally:
                self._epoll = None
                for owner in list(owners.values()):
                    self.stopped(owner)
                owners.clear()
