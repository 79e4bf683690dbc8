"""The logging policy shared by both servers: one line per event, for people.

* A view's own exception: one ERROR with its traceback, logged by the server
  that ran it (the native server here; hypercorn under an ASGI server).
* A client that ends its connection in a way the route does not expect (a
  close code it does not catch, a protocol violation, a ClientError): one
  WARNING line naming the client, the route, the code and how to catch it, no
  traceback.  These are caused by clients, so they are rate limited: past
  :data:`BURST` lines of one kind within :data:`WINDOW` seconds, the rest of
  that window is counted and reported in one line.
* Access: one INFO line per request on ``triows.access``, the same format on
  both backends: ``client "METHOD path" status`` (``GET`` and 101 for an
  accepted WebSocket handshake).  The hypercorn backend formats it with
  :data:`ACCESS_LOG_FORMAT`, the native server with :func:`access_line`.
"""

from __future__ import annotations

import logging
import time
from typing import Final

__all__ = ["ACCESS_LOG_FORMAT", "ClientWarnings", "access_line", "client_address", "logger"]

logger = logging.getLogger("triows")
access_logger = logging.getLogger("triows.access")

#: Client-caused warnings of one kind allowed per window before the rest are counted.
BURST: Final = 10
WINDOW: Final = 10.0


class _Window:
    __slots__ = ("count", "start", "suppressed")

    def __init__(self) -> None:
        self.start = -WINDOW
        self.count = 0
        self.suppressed = 0


class ClientWarnings:
    """Client-caused WARNING lines, rate limited per kind (one instance per App)."""

    __slots__ = ("_windows",)

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}

    def warn(self, kind: str, message: str, *args: object) -> None:
        """Log one WARNING of ``kind``, unless that kind is flooding the log."""
        if self.allows(kind):
            logger.warning(message, *args)

    def allows(self, kind: str) -> bool:
        """Count one WARNING of ``kind``: True to log it, False past the burst (it is
        counted for the window's summary line).  Call it before building the line's
        arguments, so that a suppressed line costs nothing more."""
        now = time.monotonic()
        window = self._windows.get(kind)
        if window is None:
            window = self._windows[kind] = _Window()
        if now - window.start >= WINDOW:
            if window.suppressed:
                logger.warning(
                    "%d more client warnings like the last (%s) within %.0f s were not logged",
                    window.suppressed,
                    kind,
                    WINDOW,
                )
            window.start, window.count, window.suppressed = now, 0, 0
        window.count += 1
        if window.count > BURST:
            window.suppressed += 1
            return False
        return True


def client_address(client: tuple[str, int] | None) -> str:
    """``host:port`` of a client, or ``-`` when the server does not know it."""
    return "-" if client is None else f"{client[0]}:{client[1]}"


#: hypercorn's access log atoms for the same line: client, method, path, status.
ACCESS_LOG_FORMAT: Final = '%(h)s "%(m)s %(U)s" %(s)s'


def access_line(client: tuple[str, int] | None, method: str, path: str, status: int) -> None:
    """The access log's one line for a request (``path`` decoded, without the query)."""
    if access_logger.isEnabledFor(logging.INFO):
        access_logger.info('%s "%s %s" %d', client_address(client), method, path, status)
