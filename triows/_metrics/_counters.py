"""The counters the core keeps for metrics: plain ints, read at scrape time.

One :class:`RouteCounters` per WebSocket route (labelled by its pattern,
never by a raw path: bounded label cardinality) is shared by that route's
connections: a message received or sent is two integer additions on it,
and a shared message (a :class:`~triows.Broadcast`'s, a hub delivery's)
handed to subscriber after subscriber is one small-int addition each
(:attr:`RouteCounters.shared_sends`), folded into the totals once per message.
Per-connection events (a handshake answered, a connection ended) update the
same object and :class:`Counters`' close codes.  Nothing here calls
prometheus-client on the message path; the exporter reads these ints when
Prometheus scrapes (and, with several workers, every second).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs
import trio

if TYPE_CHECKING:
    from .._connection._frames import Prepared
    from .._connection._state import Lifecycle

__all__ = ["UNMATCHED", "Counters", "RouteCounters", "payload_size"]

#: The route label of handshakes that matched no WebSocket route.
UNMATCHED = "(unmatched)"


def payload_size(data: str | bytes) -> int:
    """A message's payload in bytes (UTF-8 for text; no encoding for ASCII text)."""
    if data.__class__ is bytes or data.isascii():
        return len(data)
    return len(data.encode())  # type: ignore[union-attr]


@attrs.define(slots=True, eq=False)
class RouteCounters:
    """One route's counters since the App started (``active``: open now).

    Read :attr:`sent` and :attr:`sent_bytes` (exact at any moment); the
    ``settled`` fields leave out the current run of :attr:`shared`.
    """

    route: str
    active: int = 0
    accepted: int = 0
    refused: int = 0
    received: int = 0
    received_bytes: int = 0
    #: Messages sent (and their payload bytes) before the current run of
    #: ``shared``: ``ws.send()`` adds to them in line, a batch once
    #: (:meth:`count_sent`); non-ASCII text's size is cached on its Prepared.
    sent_settled: int = 0
    sent_bytes_settled: int = 0
    #: The shared message (one Prepared for many connections) handed over last,
    #: and how many times since it took over: a hub or a Broadcast sending it
    #: to this route's connections adds 1 here, in line, while ``shared`` is
    #: the message (a small int for up to 256 connections: CPython allocates
    #: nothing for it), and calls :meth:`count_shared` otherwise.  The route
    #: keeps that one message alive until the next one takes over.
    shared: Prepared | None = attrs.field(default=None, repr=False)
    shared_sends: int = 0
    #: The App's counters (close codes, the handshake observer).
    app: Counters | None = attrs.field(default=None, repr=False)

    @property
    def sent(self) -> int:
        """Messages handed to the transport."""
        return self.sent_settled + self.shared_sends

    @property
    def sent_bytes(self) -> int:
        """Their payload bytes (UTF-8 for text)."""
        shared = self.shared
        run = 0 if shared is None else self.shared_sends * shared.size()
        return self.sent_bytes_settled + run

    def count_sent(self, batch: Sequence[Prepared]) -> None:
        """Messages handed to the transport: one addition to each total per batch."""
        size = 0
        for prepared in batch:
            data = prepared.data
            size += len(data) if data.__class__ is bytes or data.isascii() else prepared.size()
        self.sent_settled += len(batch)
        self.sent_bytes_settled += size

    def count_shared(self, prepared: Prepared) -> None:
        """One shared message handed over, when it is not the current run's: the
        run so far goes into the totals, ``prepared`` starts one."""
        shared = self.shared
        if shared is not None:
            sends = self.shared_sends
            self.sent_settled += sends
            self.sent_bytes_settled += sends * shared.size()
        self.shared = prepared
        self.shared_sends = 1

    def answered(self, lifecycle: Lifecycle, accepted: bool) -> None:
        """The handshake was answered: accepted (101) or refused (an HTTP status)."""
        if accepted:
            self.accepted += 1
            self.active += 1
        else:
            self.refused += 1
        app = self.app
        if app is not None and app.observe_handshake is not None:
            app.observe_handshake(self.route, trio.current_time() - lifecycle.opened_at)

    def ended(self, lifecycle: Lifecycle) -> None:
        """The connection is over: one fewer open, and who closed it with which code."""
        if not lifecycle.accepted:
            return
        self.active -= 1
        closed = lifecycle.closed_by()
        if closed is not None and self.app is not None:
            codes = self.app.close_codes
            codes[closed] = codes.get(closed, 0) + 1


@attrs.define(slots=True, eq=False)
class Counters:
    """Every route's counters, and what is counted per App."""

    routes: dict[str, RouteCounters] = attrs.field(factory=dict)
    #: (close code, "client" or "server") -> connections it ended.
    close_codes: dict[tuple[int, str], int] = attrs.field(factory=dict)
    #: Called with (route, seconds) once per answered handshake (the exporter's
    #: histogram: prometheus histograms take single observations).
    observe_handshake: Callable[[str, float], None] | None = None

    def route(self, pattern: str) -> RouteCounters:
        """The counters of the route ``pattern`` (created on first use)."""
        counters = self.routes.get(pattern)
        if counters is None:
            counters = self.routes[pattern] = RouteCounters(pattern, app=self)
        return counters
