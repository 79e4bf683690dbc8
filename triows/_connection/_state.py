"""One owner of a connection's state: its lifecycle, and what its end leads to.

Pure and synchronous, in the manner of h11: every public operation of
:class:`~triows.WebSocket` asks the :class:`Lifecycle` first, and it either moves
to the next state or raises an error naming the state, the call and the fix.
Transitions happen *before* the transport is called, so two tasks racing to
close a connection cannot both send a close frame.

Three things are tracked, each by one table or rule here and nowhere else:

* the handshake and the server's side (:data:`TRANSITIONS`)::

      CONNECTING --accept--> CONNECTED --close--> CLOSED
          |                      |
          +--reject/close--> REJECTED
          |                      |
          +------client left-----+--> DISCONNECTED

* the input: ``OPEN``, ``DEPARTED`` (the client left; what it sent before is
  still readable) and ``DRAINED`` (the view has read the departure itself);
* how the view ended (:class:`Ending`), and from that and the view's error the
  :class:`Outcome`: which close code or HTTP status the runner sends, what it
  logs, and whether the error goes on to the server (:func:`Lifecycle.outcome`).

The caught-codes rule (``caught_close_codes``, silenced under ``auto_accept``
or inside ``async with ws``) is :meth:`Lifecycle.catches`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Container
from typing import TYPE_CHECKING, Final

import attrs
import trio

from .._exceptions import ClientError, WebSocketDisconnect, disconnects_in, leaves_of
from .._limits import EXPIRED_CLOSE_CODE, EXPIRED_REASON

if TYPE_CHECKING:
    from .._metrics._counters import RouteCounters

__all__ = ["ConnectionState", "Ending", "Input", "Lifecycle", "Outcome"]


class ConnectionState(enum.Enum):
    """Where a connection is in its life."""

    #: The handshake is pending: neither accepted nor refused yet.
    CONNECTING = "CONNECTING"
    #: Accepted: messages flow both ways.
    CONNECTED = "CONNECTED"
    #: The server sent its close frame.
    CLOSED = "CLOSED"
    #: The server refused the handshake (HTTP 403 or another status).
    REJECTED = "REJECTED"
    #: The client closed the connection or it dropped.
    DISCONNECTED = "DISCONNECTED"

    __hash__ = object.__hash__  # members are singletons: the table's lookups skip Enum's


class Input(enum.Enum):
    """What the client's side of the connection can still give."""

    OPEN = "OPEN"
    #: The client left; messages it sent before leaving may still be read.
    DEPARTED = "DEPARTED"
    #: The view has read the departure (receive raised WebSocketDisconnect).
    DRAINED = "DRAINED"


class Ending(enum.Enum):
    """How the view stopped running."""

    RETURNED = "returned"
    RAISED = "raised"
    #: Cancelled because its client left while nobody was receiving.
    CLIENT_LEFT = "client left"
    #: Cancelled by the server's graceful shutdown.
    SHUTDOWN = "shutdown"
    #: Cancelled at the deadline set by ``ws.expire_at``.
    EXPIRED = "credentials expired"
    #: Cancelled by a drain (a restart): the client is told to reconnect (1012).
    RESTART = "restart"


CONNECTING: Final = ConnectionState.CONNECTING
CONNECTED: Final = ConnectionState.CONNECTED
CLOSED: Final = ConnectionState.CLOSED
REJECTED: Final = ConnectionState.REJECTED
DISCONNECTED: Final = ConnectionState.DISCONNECTED

#: (state, call) -> next state.  A pair that is missing is an error: see ERRORS.
TRANSITIONS: Final[dict[tuple[ConnectionState, str], ConnectionState]] = {
    (CONNECTING, "accept"): CONNECTED,
    (CONNECTING, "reject"): REJECTED,
    (CONNECTING, "close"): REJECTED,
    (CONNECTED, "close"): CLOSED,
    (CONNECTING, "client left"): DISCONNECTED,
    (CONNECTED, "client left"): DISCONNECTED,
}

#: (state, call) -> the error's text, for calls that are mistakes in that state.
ERRORS: Final[dict[tuple[ConnectionState, str], str]] = {
    (CONNECTED, "accept"): (
        "accept() called in state CONNECTED: the connection is already accepted "
        "(auto_accept=True accepts before the view runs; pass auto_accept=False "
        "to accept it yourself)"
    ),
    (CLOSED, "accept"): (
        "accept() called in state CLOSED: the connection is over and cannot be accepted again"
    ),
    (REJECTED, "accept"): (
        "accept() called in state REJECTED: the connection is over and cannot be accepted again"
    ),
    (REJECTED, "reject"): "reject() called twice: the handshake is already refused",
    (CONNECTED, "reject"): (
        "reject() called in state CONNECTED: a connection can only be rejected before it "
        "is accepted; pass auto_accept=False to websocket_route() and call reject() "
        "before accept()"
    ),
    (CLOSED, "reject"): (
        "reject() called in state CLOSED: a connection can only be rejected before it "
        "is accepted; pass auto_accept=False to websocket_route() and call reject() "
        "before accept()"
    ),
    (CLOSED, "close"): (
        "close() called in state CLOSED: the connection is already closed; "
        "use ensure_closed() when you are not sure"
    ),
    (REJECTED, "close"): (
        "close() called in state REJECTED: the connection is already closed; "
        "use ensure_closed() when you are not sure"
    ),
}

#: Why messages cannot flow in a state: "{call}" and "{verb}" are filled in.
NOT_OPEN: Final[dict[ConnectionState, str]] = {
    CONNECTING: (
        "{call} called in state CONNECTING: accept the connection first "
        "(await ws.accept(), async with ws, or auto_accept=True)"
    ),
    CLOSED: (
        "{call} called in state CLOSED: the server already closed this connection; "
        "nothing can be {verb} after close()"
    ),
    REJECTED: (
        "{call} called in state REJECTED: the server already closed this connection; "
        "nothing can be {verb} after close()"
    ),
}

#: Codes the server closes with when the client broke the protocol (bad frame,
#: invalid UTF-8, message too big): the client's fault, not a crash.
PROTOCOL_FAILURES: Final = frozenset({1002, 1007, 1009})
#: How long a view that is not receiving when its client leaves has to come back
#: to receive() before it is cancelled (see Lifecycle.client_left).
DEPARTURE_GRACE: Final = 0.05


@attrs.frozen
class Outcome:
    """What the runner does once the view has ended.

    ``close_code``/``close_reason``: the close frame to send (after accept).
    ``http_status``: the refusal to send (before accept), with ``detail`` as its
    JSON body.  ``log``: ``None``, ``"client-left"`` (a close code the route does
    not catch), ``"protocol"`` (the client broke the protocol) or
    ``"client-error"`` (a ClientError ended the view): one WARNING line each.
    ``"limit"`` (the server ended the connection for a limit: ``detail`` says
    which).  ``error``: the exception the outcome is about; ``reraise``: whether
    it goes on to the server (the view's own crash, logged there as one ERROR).
    """

    close_code: int | None = None
    close_reason: str = ""
    http_status: int | None = None
    detail: str = ""
    log: str | None = None
    error: BaseException | None = None
    reraise: bool = False


NOTHING: Final = Outcome()
#: Common outcomes, built once (a frozen attrs instance is slow to build).
CLIENT_LEFT: Final = Outcome(log="client-left")
PROTOCOL_FAILURE: Final = Outcome(log="protocol")
NORMAL_CLOSE: Final = Outcome(close_code=1000)


@attrs.define(slots=True, eq=False)
class Lifecycle:
    """One connection's state, from the handshake to the outcome of its view."""

    caught_codes: Container[int] = (1000, 1001)
    state: ConnectionState = CONNECTING
    input: Input = Input.OPEN
    ending: Ending | None = None
    #: The code the server closed with (``None`` until it closes).
    close_code: int | None = None
    #: The client's close code and reason, once it has gone.
    client_code: int | None = None
    client_reason: str = ""
    #: >0 while a departure is silenced: auto_accept, or inside ``async with ws``.
    catching: int = 0
    #: How many tasks are inside receive() now.
    receivers: int = 0
    #: Whether the departure was silenced when it happened.
    departure_caught: bool = False
    #: The view's cancel scope while it runs (set by the runner).
    view_scope: trio.CancelScope | None = None
    #: Whether the handshake was accepted (the state may have moved on since).
    accepted: bool = False
    #: The route's metrics counters (``App(metrics=True)``), told of the handshake's answer.
    meter: RouteCounters | None = None
    #: When the connection reached the App (trio clock; set only with metrics).
    opened_at: float = 0.0
    #: The deadline set by ``ws.expire_at`` (trio clock), else infinity.
    expires: float = math.inf
    #: Why the server ended the connection as a departure (a limit), else None.
    limit_reason: str | None = None
    #: The HTTP status the handshake was refused with, once refused.
    refusal_status: int | None = None

    # -- the table ---------------------------------------------------------------

    def move(self, call: str) -> ConnectionState:
        """Apply ``call`` (accept, reject, close) and return the new state, or raise."""
        target = TRANSITIONS.get((self.state, call))
        if target is not None:
            if self.state is CONNECTING:
                self.accepted = target is CONNECTED
                if self.meter is not None:
                    self.meter.answered(self, self.accepted)
            self.state = target
            return target
        if self.state is DISCONNECTED and call == "accept":
            raise self.disconnect_error()
        raise RuntimeError(ERRORS[(self.state, call)])

    def check_open(self, call: str, verb: str) -> None:
        """Raise unless messages may flow now (WebSocketDisconnect if the client left)."""
        state = self.state
        if state is CONNECTED:
            return
        if state is DISCONNECTED:
            raise self.disconnect_error()
        raise RuntimeError(NOT_OPEN[state].format(call=call, verb=verb))

    def disconnect_error(self) -> WebSocketDisconnect:
        code = 1006 if self.client_code is None else self.client_code
        return WebSocketDisconnect(code, self.client_reason)

    # -- the client's side -------------------------------------------------------

    def catches(self, code: int) -> bool:
        """The caught-codes rule: is a departure with ``code`` silenced right now?"""
        return self.catching > 0 and code in self.caught_codes

    def client_left(self, code: int, reason: str) -> bool:
        """Record the departure; True if it ended a live connection.

        A view that nobody is receiving for is cancelled after DEPARTURE_GRACE
        (a deadline, not a task: nothing to clean up if it comes back to
        receive() in time and reads the departure itself).
        """
        if self.client_code is None:
            self.client_code, self.client_reason = code, reason
        if self.input is Input.OPEN:
            self.input = Input.DEPARTED
        target = TRANSITIONS.get((self.state, "client left"))
        if target is None:
            return False
        self.state = target
        self.departure_caught = self.catches(code)
        scope = self.view_scope
        if self.receivers == 0 and scope is not None and self.ending is None:
            self.ending = Ending.CLIENT_LEFT
            scope.deadline = min(scope.deadline, trio.current_time() + DEPARTURE_GRACE)
        return True

    def input_drained(self) -> WebSocketDisconnect:
        """The view read the departure itself: no cancellation is pending."""
        self.input = Input.DRAINED
        if self.ending is Ending.CLIENT_LEFT and self.view_scope is not None:
            # Back within the grace: the view reads the departure itself.
            self.view_scope.deadline = self.expires
            self.ending = None
        return self.disconnect_error()

    def limit_exceeded(self, code: int, reason: str) -> bool:
        """The server ends a live connection for a limit (its client's message rate).

        The view sees a departure with ``code`` and ``reason``
        (WebSocketDisconnect, here and on every later call) and the outcome logs
        it once; the caller sends the close frame.  False if the connection was
        not live.
        """
        if self.state is not CONNECTED:
            return False
        self.state = DISCONNECTED
        self.input = Input.DEPARTED
        self.close_code = self.client_code = code
        self.client_reason = self.limit_reason = reason
        return True

    def expire_at(self, deadline: float) -> None:
        """Cancel the view at ``deadline`` (trio clock), replacing an earlier deadline.

        Raises RuntimeError outside the view (no cancel scope to set it on).
        """
        scope = self.view_scope
        if scope is None:
            raise RuntimeError(
                "expire_at() called while no view runs for this connection: call it "
                "from the view or one of its providers"
            )
        self.expires = deadline
        if self.ending is None:
            if deadline <= trio.current_time():
                scope.cancel()  # at once: a past deadline waits for the next scheduling pass
            scope.deadline = deadline
        elif self.ending is Ending.CLIENT_LEFT:
            scope.deadline = min(scope.deadline, deadline)

    def closed_by(self) -> tuple[int, str] | None:
        """(close code, "client" or "server") of a connection that was accepted:
        whoever closed first; None while it is open."""
        if self.state is CLOSED or (self.state is DISCONNECTED and self.limit_reason):
            return (self.close_code or 1000), "server"
        if self.state is DISCONNECTED:
            return (1006 if self.client_code is None else self.client_code), "client"
        return None

    def shutdown(self, ending: Ending = Ending.SHUTDOWN) -> None:
        """The server is shutting down (or, with ``Ending.RESTART``, draining for a
        restart): cancel the view (once)."""
        if self.view_scope is not None and self.ending is None:
            self.ending = ending
            self.view_scope.cancel()

    # -- the end -----------------------------------------------------------------

    def outcome(self, error: BaseException | None, cancelled: bool) -> Outcome:
        """What follows the view's end: ``error`` it raised, ``cancelled`` by us."""
        ending = self.ending if cancelled else None
        if cancelled and ending is None and self.expires != math.inf:
            ending = Ending.EXPIRED
        if self.limit_reason is not None and (error is None or disconnects_in(error)):
            return Outcome(log="limit", detail=self.limit_reason)
        if ending is Ending.CLIENT_LEFT:
            return self._departure_outcome(self.departure_caught)
        if ending is Ending.SHUTDOWN:
            return self._closing(1001, "server shutting down", 503, "server shutting down")
        if ending is Ending.EXPIRED:
            outcome = self._closing(EXPIRED_CLOSE_CODE, EXPIRED_REASON, 403, EXPIRED_REASON)
            return attrs.evolve(outcome, log="limit", detail=EXPIRED_REASON)
        if ending is Ending.RESTART:
            return self._closing(1012, "service restart", 503, "server restarting")
        if error is None:
            return self._closing(1000, "", 403, "")
        return self._error_outcome(error)

    def _departure_outcome(self, caught: bool) -> Outcome:
        code = self.client_code
        if caught or code is None:
            return NOTHING
        return PROTOCOL_FAILURE if code in PROTOCOL_FAILURES else CLIENT_LEFT

    def _closing(self, code: int, reason: str, status: int, detail: str) -> Outcome:
        if self.state is CONNECTED:
            if code == 1000 and not reason:
                return NORMAL_CLOSE
            return Outcome(close_code=code, close_reason=reason)
        if self.state is CONNECTING:
            return Outcome(http_status=status, detail=detail)
        return NOTHING

    def _error_outcome(self, error: BaseException) -> Outcome:
        if type(error) is WebSocketDisconnect:  # the usual end: no list, no generator
            self.client_code = error.code if self.client_code is None else self.client_code
            return self._departure_outcome(self.catches(error.code))
        disconnects = [error] if isinstance(error, WebSocketDisconnect) else disconnects_in(error)
        if disconnects is not None:
            caught = all(self.catches(d.code) for d in disconnects)
            if self.client_code is None:
                self.client_code = disconnects[0].code
            return self._departure_outcome(caught)
        client_errors = leaves_of(error, ClientError)
        if client_errors is not None:
            first = client_errors[0]
            reason = str(first).encode()[:120].decode(errors="ignore")
            outcome = self._closing(first.close_code, reason, 403, "")
            return attrs.evolve(outcome, log="client-error", error=first)
        outcome = self._closing(1011, "", 500, "internal server error")
        return attrs.evolve(outcome, error=error, reraise=True)
