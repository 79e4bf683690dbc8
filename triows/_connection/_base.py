"""A WebSocket's handshake, close and state: what every view's connection has.

:class:`WebSocketBase` holds the connection's :class:`~triows._connection._state.Lifecycle`
and answers the handshake (accept, reject), closes, and sets the deadline of
credentials that expire; :class:`~triows._connection._websocket.WebSocket` adds
the messages.  Every call asks the Lifecycle first, then talks to the
:class:`~triows._connection._transport.Transport`.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from types import TracebackType
from typing import NoReturn, Self

import trio

from .. import status
from .._exceptions import disconnects_in
from .._limits import TokenBucket, trio_deadline
from .._metrics._counters import RouteCounters
from ._options import DEFAULT_OPTIONS, WebSocketOptions, check_close_code, raw_headers
from ._request import RequestView
from ._state import CONNECTED, CONNECTING, DISCONNECTED, REJECTED, ConnectionState, Lifecycle
from ._transport import ClientGone, RawHeaders, Transport

__all__ = ["Rejected", "WebSocketBase"]


class Rejected(Exception):
    """Ends a view that enters ``async with ws`` after ``reject()``; swallowed by the runner."""


class WebSocketBase(RequestView):
    """A connection's handshake, close and state (see :class:`~triows.WebSocket`)."""

    __slots__ = (
        "_bucket",
        "_counters",
        "_decode",
        "_encode",
        "_pace",
        "_refusal",
        "lifecycle",
        "options",
    )

    def __init__(
        self,
        transport: Transport,
        options: WebSocketOptions = DEFAULT_OPTIONS,
        counters: RouteCounters | None = None,
    ) -> None:
        super().__init__(transport)
        #: The route's settings.
        self.options = options
        self._decode = options.decode
        self._encode = options.encode
        #: The connection's state (read by the runner; views use ``state``).
        self.lifecycle = Lifecycle(
            caught_codes=options.caught_close_codes, catching=1 if options.auto_accept else 0
        )
        #: send_event(): a websocket.http.response.start waiting for its body.
        self._refusal: tuple[int, RawHeaders] | None = None
        transport.on_departure(self.lifecycle.client_left)  # (its result is ignored there)
        #: The route's metrics counters and this connection's message allowance
        #: (None when off: the message path checks ``is None``, nothing more).
        self._counters = counters
        self._bucket = None if options.rate is None else TokenBucket(options.rate)
        if counters is not None:
            self.lifecycle.meter = counters
            self.lifecycle.opened_at = trio.current_time()
        #: The stamp the send and receive paths' forced yields go by (``_pacing``).
        self._pace = transport.pace

    @property
    def state(self) -> ConnectionState:
        """The connection's :class:`~triows.ConnectionState`."""
        return self.lifecycle.state

    @property
    def close_code(self) -> int | None:
        """The code the server closed with, or ``None`` if it has not closed."""
        return self.lifecycle.close_code

    @property
    def client_close_code(self) -> int | None:
        """The client's close code once it has gone (1006: dropped without one), else None."""
        return self.lifecycle.client_code

    @property
    def client_close_reason(self) -> str:
        """The client's close reason once it has gone ("" before, or if it gave none)."""
        return self.lifecycle.client_reason

    # -- handshake -------------------------------------------------------------------

    async def accept(
        self, subprotocol: str | None = None, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Accept the connection (complete the handshake).

        Raises RuntimeError if it was already accepted or is over, and
        WebSocketDisconnect if the client left before it could be accepted.
        """
        await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled view never accepts
        self.lifecycle.move("accept")
        try:
            await self._transport.accept(subprotocol, raw_headers(headers) if headers else ())
        except ClientGone as gone:
            self._gone(gone)

    async def reject(
        self,
        status: int = 403,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | str = b"",
    ) -> None:
        """Refuse the handshake: the client gets an HTTP error (403 by default).

        Must be called before ``accept()``: afterwards it raises RuntimeError (with
        ``auto_accept=True`` the connection is accepted before the view runs, so pass
        ``auto_accept=False``).  A status, headers or body other than the plain 403
        need a server that can send them (both of ``triows.serve``'s backends and
        hypercorn can); elsewhere the client gets a plain 403.  After ``reject()``,
        entering ``async with ws`` ends the view without running the block.
        """
        if self.lifecycle.state is DISCONNECTED:
            return
        self.lifecycle.move("reject")
        if isinstance(body, str):
            body = body.encode()
        await self._refuse(status, raw_headers(headers), body)

    async def close(self, code: int = status.WS_1000_NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason``.

        Before ``accept()`` this refuses the handshake (HTTP 403).  Calling it twice
        raises RuntimeError: use ``ensure_closed()`` when unsure.  If the client has
        already gone there is nothing to send and this returns at once.
        """
        check_close_code(code, reason)
        lifecycle = self.lifecycle
        if lifecycle.state is DISCONNECTED:
            await trio.lowlevel.checkpoint()
            return
        if lifecycle.move("close") is REJECTED:
            await self._refuse(403, (), b"")
        else:
            lifecycle.close_code = code
            await self._transport.close(code, reason)

    async def ensure_closed(
        self, code: int = status.WS_1000_NORMAL_CLOSURE, reason: str = ""
    ) -> None:
        """Close the connection unless it is already over.  Idempotent.

        An earlier close keeps its code.  Before ``accept()`` this refuses the
        handshake.  Never raises because of the connection's state.
        """
        if self.lifecycle.state in (CONNECTED, CONNECTING):
            await self.close(code, reason)

    async def __aenter__(self) -> Self:
        state = self.lifecycle.state
        if state is CONNECTING:
            await self.accept()
        elif state is REJECTED:
            raise Rejected
        elif state is not CONNECTED:
            self.lifecycle.check_open("async with ws", "sent")
        self.lifecycle.catching += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        lifecycle = self.lifecycle
        try:
            if exc is None:
                await self.ensure_closed()
                return False
            # The block's own nursery wraps the departure in an exception group.
            disconnects = disconnects_in(exc)
            return disconnects is not None and all(lifecycle.catches(d.code) for d in disconnects)
        finally:
            lifecycle.catching -= 1

    async def _refuse(self, status: int, headers: RawHeaders, body: bytes) -> None:
        """The HTTP refusal, its status kept for the connection's span."""
        self.lifecycle.refusal_status = status
        await self._transport.refuse(status, headers, body)

    def _gone(self, gone: ClientGone) -> NoReturn:
        self.lifecycle.client_left(gone.code, gone.reason)
        raise self.lifecycle.disconnect_error() from None

    # -- limits ----------------------------------------------------------------------

    def expire_at(self, deadline: datetime.datetime | float) -> None:
        """End the connection at ``deadline``: credentials that expire.

        ``deadline`` is a timezone-aware ``datetime`` or a trio clock time
        (``trio.current_time() + seconds``).  At the deadline the view is
        cancelled (its ``finally`` blocks run) and the connection is closed with
        1008 "credentials expired" (refused with 403 before ``accept()``).
        Calling it again replaces the deadline: later to extend it (a refreshed
        token), earlier to shorten it.  Call it from the view or a provider;
        elsewhere it raises RuntimeError.
        """
        self.lifecycle.expire_at(trio_deadline(deadline))
