"""When a send or receive that did not wait yields anyway: bounded unfairness, per trio run.

A trio checkpoint is two things: a cancel point (Cancelled can be raised
there) and a schedule point (other tasks run there, after one pass of the
scheduler and its ``epoll_wait``).  The schedule point costs about as much as a
small socket write, so the send path (``WebSocket._write``) is always a cancel
point but a schedule point only when the transport had to wait (its wait
yields), or once :data:`SEND_SLICE_NS` has passed since the run's stamp last
moved (:attr:`Pace.due`: see below).  ``WebSocket.receive`` follows the same rule
(the native transport takes a message already buffered without yielding), and
its forced yields share the stamp.  A task that only sends, or only receives
from a client that floods it, therefore lets the others run at least about once
a millisecond: unfair for a bounded time, never starved.
(The hub's chunked delivery has the same kind of bound, ``DELIVERY_SLICE``, per
delivery.)

The stamp is per trio run (a ``RunVar``, read once per WebSocket, not per send):
two runs in two threads never suppress each other's yields.  It is shared by
every connection of the run, and moved forward by a forced yield and by a
transport's wait (the native server's ``receive()`` parked until its socket was
readable: the scheduler ran every other task meanwhile), so a view that waits
for its client forces no yield of its own.  A stale stamp (other tasks yielded
since, in their own ways) only makes the next forced yield come sooner: the
bound errs on the side of yielding.

A transport whose every ``receive()`` and ``send()`` is a schedule point (the
ASGI adapter: the server's own awaitables yield, hypercorn's and the
TestClient's always do) gives its connections :data:`NEVER_DUE` instead: a
forced yield there would only add a pass of the scheduler to every message's
path, and latency to the message.
"""

from __future__ import annotations

import time
from typing import Final

import trio
from trio.lowlevel import RunVar

__all__ = ["NEVER_DUE", "SEND_SLICE_NS", "Pace", "current_pace"]

#: How long the send path may run without yielding, counted from the end of the
#: last yield it forced (nanoseconds of ``time.perf_counter_ns``): 1 ms.
SEND_SLICE_NS: Final = 1_000_000


class Pace:
    """One trio run's send-path stamp: when its next forced yield is due."""

    __slots__ = ("due",)

    def __init__(self, due: int | None = None) -> None:
        #: ``time.perf_counter_ns()`` past which a send that did not wait yields.
        self.due = time.perf_counter_ns() + SEND_SLICE_NS if due is None else due

    def yielded(self) -> None:
        """A forced yield just returned: the next one is due a slice from now."""
        self.due = time.perf_counter_ns() + SEND_SLICE_NS

    async def yield_now(self) -> None:
        """The forced yield (call it once ``perf_counter_ns() >= due``).

        Never raises Cancelled (what the caller did stays done: a message written
        or taken); the caller's next cancel point raises it.
        """
        await trio.lowlevel.cancel_shielded_checkpoint()
        self.due = time.perf_counter_ns() + SEND_SLICE_NS


#: The stamp of a transport that always yields: never due (no forced yield), and
#: never moved (its :meth:`Pace.yield_now` is never called).
NEVER_DUE: Final = Pace(due=2**63)

_PACE: RunVar[Pace] = RunVar("triows.pace")


def current_pace() -> Pace:
    """This trio run's :class:`Pace` (made on first use).  Call inside ``trio.run``."""
    try:
        return _PACE.get()
    except LookupError:
        pace = Pace()
        _PACE.set(pace)
        return pace
