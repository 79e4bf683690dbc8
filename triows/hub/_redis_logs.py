"""The Redis backend's log helpers: malformed messages, rate-limited; error summaries."""

from __future__ import annotations

import logging
import math

import trio

__all__ = ["BAD_MESSAGE_LOG_INTERVAL", "MalformedLog", "summary"]

logger = logging.getLogger("triows.hub")

#: At most one warning per channel per this many seconds about malformed messages.
BAD_MESSAGE_LOG_INTERVAL = 10.0


class MalformedLog:
    """Warns about messages that are not the hub's, rate-limited per channel.

    One line per channel per BAD_MESSAGE_LOG_INTERVAL; the next line after a quiet
    period says how many were skipped without a line.
    """

    def __init__(self) -> None:
        # channel -> (when its last line was logged, messages skipped since silently)
        self._channels: dict[bytes, tuple[float, int]] = {}

    def report(self, channel: bytes, payload: bytes, error: Exception) -> None:
        now = trio.current_time()
        logged_at, silent = self._channels.get(channel, (-math.inf, 0))
        if now - logged_at < BAD_MESSAGE_LOG_INTERVAL:
            self._channels[channel] = (logged_at, silent + 1)
            return
        self._channels[channel] = (now, 0)
        more = f"; {silent} more skipped on this channel since the last warning" if silent else ""
        logger.warning(
            "hub: skipped a malformed message on Redis channel %r (%d bytes, starting %r): %s%s",
            channel,
            len(payload),
            payload[:32],
            summary(error),
            more,
        )


def summary(exc: BaseException) -> str:
    """``Type: message`` of ``exc`` (the first of a group)."""
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return summary(exc.exceptions[0])
    return f"{type(exc).__name__}: {exc}"
