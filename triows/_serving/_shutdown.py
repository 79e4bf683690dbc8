"""The shutdown of a server, within its bound: stages, forcing, abandoned tasks.

Cancelling ``serve()`` starts a graceful shutdown in stages, each with its own
deadline, the whole within ``2 * shutdown_timeout + 1`` seconds (the
documented bound): views get ``shutdown_timeout`` seconds to end (their clients
get 1001), connections still open are then cancelled and get :data:`UNWIND`
seconds to unwind, the App's lifespan shutdown gets ``shutdown_timeout``
seconds, and its task :data:`UNWIND` seconds more.

A trio task cannot be killed: one that ignores cancellation (a view in a
shielded scope) would hold its nursery open, and ``serve()`` with it.  So the
tasks a server cannot wait for (its connections, the App's lifespan) run in a
:class:`Detached` nursery, hosted by a system task: at the bound the server
stops waiting for them and *abandons* what is left (the native server closes
an abandoned connection's socket first, so its client sees the end).  An
abandoned task still runs until it ends; ``trio.run`` waits for it, and
``triows run`` exits without waiting (:func:`abandoned_tasks`).

``triows run`` forces a shutdown under way on a second signal: :data:`FORCE`
holds an event the servers watch (a context variable, so that the CLI reaches
the ``serve()`` it started and no other); once it is set every stage ends at
once and everything still open is abandoned.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import CodeType
from typing import TYPE_CHECKING, Any, Final

import trio
from websockets.protocol import OPEN

from ._logs import logger

if TYPE_CHECKING:
    from .._endpoints import WebSocketEndpoints
    from .._native._connection import NativeConnection

__all__ = [
    "FORCE",
    "UNWIND",
    "Detached",
    "Shutdown",
    "abandon_native_connections",
    "abandoned_tasks",
]

#: Set by ``triows run``: setting the event forces the shutdown under way.
FORCE: contextvars.ContextVar[trio.Event | None] = contextvars.ContextVar(
    "triows_force_shutdown", default=None
)

#: Seconds a cancelled stage's tasks get to unwind before they are abandoned.
UNWIND: Final = 0.5

#: Detached nurseries whose owner stopped waiting while tasks still ran in them.
_abandoned: set[Detached] = set()


def abandoned_tasks() -> int:
    """How many abandoned tasks still run in this process (``trio.run`` waits for them)."""
    return sum(len(detached.tasks) for detached in _abandoned)


class Shutdown:
    """One server's shutdown: its stages' deadlines within the bound, and forcing."""

    def __init__(self, timeout: float) -> None:
        #: ``shutdown_timeout``: the budget of the views, and of the lifespan shutdown.
        self.timeout = timeout
        #: When the shutdown began (``inf``: not yet).
        self.began = math.inf
        #: Whether it was forced: every stage ends at once.
        self.forced = False
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
        """When the whole shutdown is over, whatever still runs."""
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

    def force(self) -> None:
        """End the stage under way, and every later one, at once."""
        self.forced = True
        for scope in list(self._stages):
            scope.cancel()

    async def watch(self, force: trio.Event) -> None:
        """Force the shutdown once ``force`` is set (run it as a task)."""
        await force.wait()
        self.force()


class Detached:
    """A nursery hosted by a system task, so that its owner can stop waiting for it.

    ``await open()`` gives the nursery; ``await close(...)`` cancels it and
    waits for its tasks, until a deadline: tasks still running then are
    abandoned (they run on; :func:`abandoned_tasks` counts them).  Tasks run in a
    copy of the opener's context.  An exception from a task (not a
    cancellation) calls ``on_error`` at once (the server then shuts down) and is
    raised by ``close()``, or logged if the nursery was abandoned.
    """

    def __init__(self, name: str, on_error: trio.Event | None = None) -> None:
        self.name = name
        self._on_error = on_error
        self._nursery: trio.Nursery | None = None
        self._opened = trio.Event()
        self._released = trio.Event()
        #: Set once the nursery has closed: every task in it has ended.
        self.done = trio.Event()
        self._error: BaseException | None = None

    @property
    def nursery(self) -> trio.Nursery:
        assert self._nursery is not None, "open() the Detached nursery first"
        return self._nursery

    @property
    def tasks(self) -> frozenset[trio.lowlevel.Task]:
        """The tasks running in the nursery."""
        nursery = self._nursery
        return frozenset() if nursery is None or self.done.is_set() else nursery.child_tasks

    async def open(self) -> trio.Nursery:
        trio.lowlevel.spawn_system_task(
            self._host, name=f"triows: {self.name}", context=contextvars.copy_context()
        )
        await self._opened.wait()
        return self.nursery

    async def _host(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._opened.set()
                # Open until the owner is done with it (tasks may come until then).
                await self._released.wait()
        except BaseException as exc:
            # A system task must not raise: hand the error over (cancellations
            # are the owner's doing, or trio.run ending: nothing to report).
            if not _only_cancelled(exc):
                self._error = exc
                if self._on_error is not None:
                    self._on_error.set()
        finally:
            self.done.set()
            self._opened.set()
            if self in _abandoned:
                _abandoned.discard(self)
                if self._error is not None:
                    logger.error(
                        "error in %s, after the shutdown abandoned it",
                        self.name,
                        exc_info=self._error,
                    )
                    self._error = None

    async def close(self, shutdown: Shutdown, cancel_at: float, give_up_at: float) -> bool:
        """Cancel the nursery at ``cancel_at``; wait for its tasks until ``give_up_at``.

        True if every task ended; False if some were abandoned.  Raises what a
        task raised.  A forced ``shutdown`` cancels and gives up at once.
        """
        nursery = self.nursery
        if shutdown.forced:
            nursery.cancel_scope.cancel()
        else:
            nursery.cancel_scope.deadline = cancel_at
        self._released.set()
        with shutdown.stage(give_up_at):
            await self.done.wait()
        if not self.done.is_set():
            nursery.cancel_scope.cancel()
            _abandoned.add(self)
            return False
        error, self._error = self._error, None
        if error is not None:
            try:
                raise error
            finally:
                error = None
        return True


def _only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancelled(inner) for inner in exc.exceptions)
    return isinstance(exc, trio.Cancelled)


# -- the native server's abandoned connections ----------------------------------------


def abandon_native_connections(
    tasks: Iterable[trio.lowlevel.Task],
    handler: CodeType,
    routes: WebSocketEndpoints,
) -> None:
    """Close the connections of the native server's handler tasks that overran the shutdown.

    Each task is one connection, served by ``handler`` (``_NativeServer.handle``,
    inside ``trio.serve_listeners``'s wrapper), whose locals name its stream
    and, once known, its WebSocket ``conn`` or its HTTP reader: reading them
    here keeps the per-connection path free of any bookkeeping for this rare
    case.  A WebSocket client whose writer is free
    gets a 1001 close frame first; every socket is then closed, so its client
    sees the end, and one WARNING names what overran (its route, from ``routes``).
    """
    for task in tasks:
        names = _locals_of(task, handler)
        if names is None:
            continue  # a short helper task (a ping): cancelled, it ends by itself
        stream = names.get("stream")
        if not isinstance(stream, trio.SocketStream):
            continue
        conn: NativeConnection | None = names.get("conn")
        http = names.get("http")
        if conn is not None:
            found = routes.route_for(conn.request.path)
            route = conn.request.path if found is None else found[0].pattern.text
            what = f"the WebSocket view of route {route!r} (client {conn.client})"
            _say_going_away(conn, stream.socket)
        elif http is not None and getattr(http, "request", None) is not None:
            request = http.request
            what = f"the HTTP view of {request.method.decode()} {request.target.decode()!r}"
        else:
            what = "a connection"
        _close_abruptly(stream.socket)
        logger.warning("%s overran the shutdown: abandoned it and closed its connection", what)


def _locals_of(task: trio.lowlevel.Task, code: CodeType) -> dict[str, Any] | None:
    """The locals of the call of ``code`` that ``task`` is in (it awaits inside it)."""
    coro: Any = task.coro
    for _ in range(8):  # trio.serve_listeners runs the handler inside a wrapper
        frame = getattr(coro, "cr_frame", None)
        if frame is None:
            return None
        if frame.f_code is code:
            return dict(frame.f_locals)
        coro = getattr(coro, "cr_await", None)
    return None


def _say_going_away(conn: NativeConnection, sock: trio.socket.SocketType) -> None:
    """A 1001 close frame, if the connection is open and nothing is being written."""
    if not conn.plain or conn.protocol.state is not OPEN or not conn.writer.idle:
        return
    conn.writer.dead = True  # nothing more goes out, whatever the view does next
    conn.protocol.send_close(1001, "server shutting down")
    with contextlib.suppress(OSError):
        os.write(sock.fileno(), b"".join(conn.protocol.data_to_send()))


def _close_abruptly(sock: trio.socket.SocketType) -> None:
    """Close ``sock`` at once: a FIN after what was written, unread input dropped first
    (closing with unread input sends a reset, which can destroy our close frame)."""
    with contextlib.suppress(OSError):
        for _ in range(16):
            if not os.read(sock.fileno(), 65536):
                break
    with contextlib.suppress(OSError):
        sock.shutdown(trio.socket.SHUT_RDWR)
    sock.close()  # wakes the tasks waiting on it (trio notifies them)
