"""Limits an operator sets: a message rate per connection, connections per process
and per client address, and deadlines for credentials that expire.

Each limit lives where the state it bounds already lives:

* :class:`TokenBucket`: one per connection of a route with
  ``max_messages_per_second``, asked by ``WebSocket.receive`` for each message
  (a connection without it has no bucket: the check is one ``is None``);
* :class:`ConnectionLimits`: one per App, asked by the App's WebSocket side
  before a view runs and released in the same ``finally`` that forgets the
  connection, however it ends;
* :func:`trio_deadline`: turns ``ws.expire_at``'s argument into the trio clock
  time the connection's ``Lifecycle`` sets on the view's cancel scope.
"""

from __future__ import annotations

import datetime
import math
import time

import attrs
import trio

__all__ = [
    "ConnectionLimits",
    "RateLimit",
    "TokenBucket",
    "check_rate",
    "route_rate",
    "trio_deadline",
]

#: The close code and reason for a client over its message rate (1008: policy violation).
RATE_CLOSE_CODE = 1008
RATE_REASON = "message rate exceeded"
#: The close code and reason when the credentials set by ``ws.expire_at`` expire.
EXPIRED_CLOSE_CODE = 1008
EXPIRED_REASON = "credentials expired"


@attrs.frozen
class RateLimit:
    """A route's message rate: ``per_second`` on average, ``burst`` at once."""

    per_second: float
    burst: int


def check_rate(per_second: float | None, burst: int | None) -> RateLimit | None:
    """The RateLimit for ``max_messages_per_second``/``max_burst``; None when off.

    ``max_burst`` defaults to one second's worth (at least 1).  Raises
    ValueError for a rate that is not positive, a burst below 1, or a burst
    without a rate.
    """
    if per_second is None or per_second == math.inf:
        if burst is not None and per_second is None:
            raise ValueError(
                "max_burst needs max_messages_per_second: pass both, e.g. "
                "max_messages_per_second=10, max_burst=20"
            )
        return None
    if not per_second > 0:
        raise ValueError(
            f"max_messages_per_second must be positive, got {per_second!r} "
            "(leave it out, or pass None, for no limit)"
        )
    if burst is None:
        burst = max(1, math.ceil(per_second))
    if burst < 1:
        raise ValueError(f"max_burst must be at least 1 message, got {burst!r}")
    return RateLimit(float(per_second), int(burst))


def route_rate(
    default: RateLimit | None, per_second: float | None, burst: int | None
) -> RateLimit | None:
    """A route's rate: its own ``max_messages_per_second``/``max_burst``, else the App's."""
    return default if per_second is None and burst is None else check_rate(per_second, burst)


class TokenBucket:
    """One connection's message allowance: ``burst`` tokens, refilled at the rate.

    :meth:`take` costs one clock read and a few float operations; nothing is
    scheduled between messages.
    """

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, limit: RateLimit) -> None:
        self._rate = limit.per_second
        self._burst = float(limit.burst)
        self._tokens = float(limit.burst)
        self._stamp = trio.current_time()

    def take(self) -> bool:
        """Spend one token for a message; False (nothing spent) when the bucket is empty."""
        now = trio.current_time()
        tokens = self._tokens + (now - self._stamp) * self._rate
        if tokens > self._burst:
            tokens = self._burst
        self._stamp = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


@attrs.define(eq=False)
class ConnectionLimits:
    """The App's bounds on open WebSockets: in all, and per client address.

    :meth:`admit` counts a connection in (or names the refusal), :meth:`release`
    counts it out; the App's WebSocket side calls release in a ``finally``, so a
    connection is released however it ends.  Only connections admitted here
    count: refused handshakes and HTTP requests never do.
    """

    max_connections: int | None = None
    max_per_ip: int | None = None
    #: Connections admitted and not yet released.
    open: int = 0
    #: The same, per client address (an address leaves the dict at zero).
    per_ip: dict[str, int] = attrs.field(factory=dict)

    @staticmethod
    def of(max_connections: int | None, max_per_ip: int | None) -> ConnectionLimits | None:
        """The limits for ``App(max_connections=, max_connections_per_ip=)``; None if unset."""
        for name, value in (
            ("max_connections", max_connections),
            ("max_connections_per_ip", max_per_ip),
        ):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value!r} (None: no limit)")
        if max_connections is None and max_per_ip is None:
            return None
        return ConnectionLimits(max_connections, max_per_ip)

    def admit(self, client: tuple[str, int] | None) -> tuple[int, str] | None:
        """Count a new connection in, or return (status, detail) to refuse it with.

        503 when ``max_connections`` are open, 429 when its address has
        ``max_connections_per_ip``.  A refused connection is not counted.
        """
        if self.max_connections is not None and self.open >= self.max_connections:
            return 503, f"too many connections (max_connections={self.max_connections})"
        host = "" if client is None else client[0]
        held = self.per_ip.get(host, 0)
        if self.max_per_ip is not None and held >= self.max_per_ip:
            return 429, (
                f"too many connections from {host or 'this client'} "
                f"(max_connections_per_ip={self.max_per_ip})"
            )
        self.open += 1
        self.per_ip[host] = held + 1
        return None

    def release(self, client: tuple[str, int] | None) -> None:
        """Count an admitted connection out."""
        host = "" if client is None else client[0]
        self.open -= 1
        held = self.per_ip[host] - 1
        if held:
            self.per_ip[host] = held
        else:
            del self.per_ip[host]


def trio_deadline(deadline: datetime.datetime | float) -> float:
    """``deadline`` as a trio clock time: a float is one already; a datetime is
    converted through the wall clock (it must be timezone-aware)."""
    if isinstance(deadline, datetime.datetime):
        if deadline.tzinfo is None:
            raise ValueError(
                "expire_at() got a naive datetime: pass a timezone-aware one, e.g. "
                "datetime.now(timezone.utc) + timedelta(minutes=5), or a trio clock "
                "time (trio.current_time() + 300)"
            )
        return trio.current_time() + (deadline.timestamp() - time.time())
    if isinstance(deadline, bool) or not isinstance(deadline, int | float):
        raise TypeError(
            f"expire_at() takes a datetime or a trio clock time (float), got {deadline!r}"
        )
    return float(deadline)
