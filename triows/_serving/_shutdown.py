"""The shutdown of a server, within its bound: stages, forcing, and what overran it.

Cancelling ``serve()`` starts a graceful shutdown in stages, each with its own
deadline, the whole within ``2 * shutdown_timeout + 1`` seconds (the
documented bound of the native server): views get ``shutdown_timeout`` seconds
to end (their clients get 1001); the connections still open are then
cancelled, and :data:`UNWIND` seconds later the server closes their sockets
from the outside, so that every task blocked on one wakes with an error; the
App's lifespan shutdown gets ``shutdown_timeout`` seconds, within the bound.

Every task stays a child of its server: none outlives its connection, and
``serve()`` returns only once all have ended.  A trio task cannot be killed,
so a view that shields itself from cancellation holds ``serve()`` open until
it returns: its client has its close (its socket is closed) and the server
logs one WARNING naming it at the bound (:meth:`Shutdown.overran`).  ``triows
run`` does not wait for such a view: at the bound it exits with status 1.

``triows run`` also forces a shutdown under way on a second signal:
:data:`FORCE` holds an event the servers watch (a context variable, so that
the CLI reaches the ``serve()`` it started and no other); once it is set every
stage ends at once.  :data:`OVERRUNS` collects, for it, what overran.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import trio
from websockets.frames import Close, Frame, Opcode

from ._logs import logger

__all__ = ["FORCE", "GOING_AWAY", "OVERRUNS", "SETTLE", "UNWIND", "Shutdown", "close_socket"]

#: Set by ``triows run``: setting the event forces the shutdown under way.
FORCE: contextvars.ContextVar[trio.Event | None] = contextvars.ContextVar(
    "triows_force_shutdown", default=None
)

#: Set by ``triows run``: a server appends a description of each view that overran.
OVERRUNS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "triows_shutdown_overruns", default=None
)

#: Seconds cancelled connections get to unwind before their sockets are closed.
UNWIND: Final = 0.5

#: Seconds a forced shutdown gives the tasks it cancelled before it names what overran.
SETTLE: Final = 0.1

#: The close frame (1001) a server writes on a connection it closes from the outside.
GOING_AWAY: Final = Frame(Opcode.CLOSE, Close(1001, "server shutting down").serialize()).serialize(
    mask=False
)


class Shutdown:
    """One server's shutdown: its stages' deadlines within the bound, forcing, overruns."""

    def __init__(self, timeout: float) -> None:
        #: ``shutdown_timeout``: the budget of the views, and of the lifespan shutdown.
        self.timeout = timeout
        #: When the shutdown began (``inf``: not yet).
        self.began = math.inf
        #: Whether it was forced: every stage ends at once.
        self.forced = False
        #: What overran the shutdown (``triows run``'s list, when it runs the server).
        self.overruns: list[str] = []
        report = OVERRUNS.get()
        if report is not None:
            self.overruns = report
        self._stages: set[trio.CancelScope] = set()

    def begin(self) -> None:
        """The shutdown starts now (once; a later call changes nothing)."""
        if self.began == math.inf:
            self.began = trio.current_time()

    @property
    def deadline(self) -> float:
        """The end of the views' budget: ``shutdown_timeout`` after the beginning."""
        return self.began + self.timeout

    @property
    def bound(self) -> float:
        """When the whole shutdown is over, unless a task ignores cancellation."""
        return self.began + 2 * self.timeout + 1

    @contextmanager
    def stage(self, deadline: float) -> Iterator[trio.CancelScope]:
        """A stage of the shutdown: moves on at ``deadline``, or at once if forced."""
        with trio.move_on_at(deadline) as scope:
            if self.forced:
                scope.cancel()
            self._stages.add(scope)
            try:
                yield scope
            finally:
                self._stages.discard(scope)

    async def until(self, deadline: float) -> None:
        """Wait for ``deadline``, or until the shutdown is forced."""
        with self.stage(deadline):
            await trio.sleep_forever()

    def force(self) -> None:
        """End the stage under way, and every later one, at once."""
        self.forced = True
        for scope in list(self._stages):
            scope.cancel()

    async def watch(self, force: trio.Event) -> None:
        """Force the shutdown once ``force`` is set (run it as a task)."""
        await force.wait()
        self.force()

    def overran(self, what: str) -> None:
        """``what`` (a view, by its route) is still running at the bound: say so, once."""
        self.overruns.append(what)
        logger.warning(
            "%s overran the shutdown: its connection is closed, and serve() returns"
            " only once the view does (a trio task cannot be killed)",
            what,
        )


def close_socket(sock: trio.socket.SocketType) -> None:
    """Close ``sock`` from outside the tasks using it: each one blocked on it wakes
    with an error.  A FIN goes after what was written; unread input is dropped first
    (closing with unread input sends a reset, which can destroy a close frame)."""
    with contextlib.suppress(OSError):
        for _ in range(16):
            if not os.read(sock.fileno(), 65536):
                break
    with contextlib.suppress(OSError):
        sock.shutdown(trio.socket.SHUT_RDWR)
    if sock.fileno() != -1:
        trio.lowlevel.notify_closing(sock)  # what trio's close() does too: explicit here
        sock.close()
