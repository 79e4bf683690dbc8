"""The ``date`` header of every response, on both servers (RFC 9110, section 6.6.1).

hypercorn adds one to each response; the native server adds the same through
:func:`http_date`, formatted at most once a second however many responses go out.
"""

from __future__ import annotations

import email.utils
import time

__all__ = ["http_date"]


class _Clock:
    """The current second's IMF-fixdate, reformatted when the second changes."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self.second:
            self.text = email.utils.formatdate(second, usegmt=True)
            self.second = second
        return self.text


#: ``http_date()``: the value of a ``date`` header for a response sent now.
http_date = _Clock().now
