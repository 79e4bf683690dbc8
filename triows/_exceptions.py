"""The exceptions triows raises to views and to the server."""

from __future__ import annotations

from typing import TypeVar

import trio

from . import status

E = TypeVar("E", bound=BaseException)

__all__ = [
    "BadMessage",
    "ClientError",
    "MessageDecodeError",
    "MessageTypeError",
    "MessageValidationError",
    "WebSocketDisconnect",
    "disconnects_in",
    "leaves_of",
]


class WebSocketDisconnect(Exception):
    """The client closed the connection, or it was lost.

    Raised by ``receive()`` (and ``send()``) once the client has gone.  ``code`` is the
    close code the client sent (1006 when the connection dropped without a close
    frame); ``reason`` its close reason.
    """

    def __init__(self, code: int = status.WS_1000_NORMAL_CLOSURE, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        text = f"client disconnected with code {self.code}"
        return f"{text} ({self.reason})" if self.reason else text


class ClientError(Exception):
    """The client broke a rule; the connection should end with ``close_code``.

    Uncaught in a view, the runner closes the connection with ``close_code`` and
    logs a warning: a client error, not a server crash (never 1011).
    """

    close_code: int = status.WS_1008_POLICY_VIOLATION


class BadMessage(ClientError, ValueError):
    """A message from the client could not be turned into the requested type.

    The view may catch it and carry on.  Uncaught, the connection is closed with
    ``close_code`` and the error is logged as a client error, not a server crash.
    """

    close_code: int = status.WS_1003_UNSUPPORTED_DATA


class MessageTypeError(BadMessage):
    """A text frame arrived where bytes were expected, or the reverse (closes with 1003)."""

    close_code = status.WS_1003_UNSUPPORTED_DATA


class MessageDecodeError(BadMessage):
    """The payload is not valid JSON (closes with 1007)."""

    close_code = status.WS_1007_INVALID_FRAME_PAYLOAD_DATA


class MessageValidationError(BadMessage):
    """The payload is JSON, but not of the route's type (closes with 1007).

    ``path`` is where the problem is, as a JSON path (``"$"`` for the whole
    message, ``"$.user.age"``, ``"$.items[2]"``); ``problem`` says what is wrong
    (``"Expected `int`, got `str`"``).  The message names both, path first, so
    the close reason (at most 123 bytes) keeps the field's name.
    """

    close_code = status.WS_1007_INVALID_FRAME_PAYLOAD_DATA

    def __init__(self, problem: str, path: str = "$") -> None:
        where = "" if path == "$" else f" at {path}"
        super().__init__(f"invalid message{where}: {problem}")
        self.problem = problem
        self.path = path


def leaves_of(error: BaseException, kind: type[E]) -> list[E] | None:
    """The ``kind`` exceptions that make up ``error``, or None if it holds anything else.

    Looks inside exception groups (a view with a nursery raises its errors
    wrapped in one); Cancelled leaves are ignored.
    """
    if isinstance(error, kind):
        return [error]
    if isinstance(error, BaseExceptionGroup):
        found: list[E] = []
        for inner in error.exceptions:
            if isinstance(inner, trio.Cancelled):
                continue
            leaves = leaves_of(inner, kind)
            if leaves is None:
                return None
            found.extend(leaves)
        return found or None
    return None


def disconnects_in(error: BaseException) -> list[WebSocketDisconnect] | None:
    """The WebSocketDisconnects that make up ``error`` (see :func:`leaves_of`)."""
    return leaves_of(error, WebSocketDisconnect)
