"""Positions: where a message sits in its topic's history, as an opaque string.

A position is ``"<epoch>:<offset>"``.  The epoch (16 hex digits) names one
lifetime of the history: a Hub instance in memory, the Redis data set with
Redis (stored in Redis itself, so a Redis restart without persistence gives a
new epoch).  The offset orders the topic's messages: a counter shared by every topic of
the history (in Redis, an INCR'd key; a topic's Stream entries take it as id
``<n>-0``), so it is ordered within a topic, not dense.  Applications store positions and
hand them back; they never need to look inside.
"""

from __future__ import annotations

import re
import secrets

__all__ = [
    "LAST_POSITION_LIFETIME",
    "UNKNOWN_EPOCH",
    "check_last",
    "new_epoch",
    "offset_key",
    "parse_position",
]

_POSITION = re.compile(r"([0-9a-f]{16}):([0-9]{1,19})")
#: The epoch of a position made while the epoch was unknown (Redis unreachable
#: since the hub started): it never matches a real history.
UNKNOWN_EPOCH = "0" * 16
#: A topic's last position outlives its messages: it is kept this many times
#: ``history_ttl`` after the topic's last publish or subscription start, so a
#: subscriber of a topic that stayed silent longer than ``history_ttl`` resumes
#: from that position with ``recovered=True`` (it missed nothing), while a resume
#: from an older position into the expired messages stays ``recovered=False``.
LAST_POSITION_LIFETIME = 7


def new_epoch() -> str:
    """A fresh random epoch: 16 hex digits."""
    epoch = secrets.token_hex(8)
    return new_epoch() if epoch == UNKNOWN_EPOCH else epoch


def parse_position(position: object) -> tuple[str, int]:
    """``(epoch, offset)`` of a position; ValueError naming what is wrong."""
    if not isinstance(position, str):
        raise ValueError(
            f"since={position!r}: a position is a str returned by hub.publish() "
            "or read from subscription.position"
        )
    match = _POSITION.fullmatch(position)
    if match is None:
        raise ValueError(
            f"since={position!r} is not a hub position (expected '<16 hex digits>:<offset>' "
            "as returned by hub.publish() or read from subscription.position)"
        )
    epoch, offset = match.groups()
    return epoch, int(offset)


def check_last(since: object, last: object) -> None:
    """ValueError unless ``last`` is a count of messages (an int >= 0) given
    without ``since``, naming what is wrong."""
    if isinstance(last, bool) or not isinstance(last, int) or last < 0:
        raise ValueError(
            f"last={last!r}: give how many of the topic's newest messages to return "
            "first (an int >= 0)"
        )
    if since is not None and last:
        raise ValueError(
            f"since={since!r} and last={last!r}: give since (resume after a position) "
            "or last (a new subscriber's recent messages), not both"
        )


def offset_key(position: str | None) -> int:
    """The order of a position produced by a hub (no validation: for the hub's own)."""
    if position is None:
        return -1
    return int(position.partition(":")[2])
