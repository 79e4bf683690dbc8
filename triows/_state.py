"""The WebSocket connection state machine.

Pure and synchronous, in the style of h11 and wsproto: every public operation of
:class:`~triows.WebSocket` asks this machine first, and the machine either moves to
the next state or raises an error that names the state, the call, and the fix.
Transitions happen *before* the corresponding event is sent, so two tasks racing
to close a connection cannot both send a close frame.

::

    CONNECTING --accept--> CONNECTED --close--> CLOSED
        |                      |
        +--reject/close--> REJECTED
        |                      |
        +------client left-----+--> DISCONNECTED
"""

from __future__ import annotations

import enum

import attrs

from ._exceptions import WebSocketDisconnect

__all__ = ["ConnectionState", "StateMachine"]


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


CONNECTING = ConnectionState.CONNECTING
CONNECTED = ConnectionState.CONNECTED
CLOSED = ConnectionState.CLOSED
REJECTED = ConnectionState.REJECTED
DISCONNECTED = ConnectionState.DISCONNECTED


@attrs.define
class StateMachine:
    """Tracks one connection's state and validates each call against it."""

    state: ConnectionState = CONNECTING
    #: The code the server closed with (``None`` until it closes).
    close_code: int | None = None
    #: The client's close code and reason once it has gone.
    disconnect_code: int | None = None
    disconnect_reason: str = ""

    def disconnect_error(self) -> WebSocketDisconnect:
        return WebSocketDisconnect(
            1006 if self.disconnect_code is None else self.disconnect_code, self.disconnect_reason
        )

    def accept(self) -> None:
        if self.state is CONNECTING:
            self.state = CONNECTED
        elif self.state is DISCONNECTED:
            raise self.disconnect_error()
        elif self.state is CONNECTED:
            raise RuntimeError(
                "accept() called in state CONNECTED: the connection is already accepted "
                "(auto_accept=True accepts before the view runs; pass auto_accept=False "
                "to accept it yourself)"
            )
        else:
            raise RuntimeError(
                f"accept() called in state {self.state.value}: the connection is over "
                "and cannot be accepted again"
            )

    def check_send(self, call: str) -> None:
        """Raise unless messages may be sent now (WebSocketDisconnect if the client left)."""
        self._check_open(call, "sent")

    def check_receive(self, call: str) -> None:
        """Raise unless messages may be received now (WebSocketDisconnect if the client left)."""
        self._check_open(call, "received")

    def _check_open(self, call: str, verb: str) -> None:
        if self.state is CONNECTED:
            return
        if self.state is DISCONNECTED:
            raise self.disconnect_error()
        if self.state is CONNECTING:
            raise RuntimeError(
                f"{call} called in state CONNECTING: accept the connection first "
                "(await ws.accept(), async with ws, or auto_accept=True)"
            )
        raise RuntimeError(
            f"{call} called in state {self.state.value}: the server already closed this "
            f"connection; nothing can be {verb} after close()"
        )

    def close(self, code: int) -> bool:
        """Move to CLOSED (or REJECTED before accept); True if a close must be sent."""
        if self.state is CONNECTED:
            self.state = CLOSED
            self.close_code = code
            return True
        if self.state is CONNECTING:
            self.state = REJECTED
            return True
        if self.state is DISCONNECTED:
            # The client is gone: there is nobody to send a close frame to.
            return False
        raise RuntimeError(
            f"close() called in state {self.state.value}: the connection is already closed; "
            "use ensure_closed() when you are not sure"
        )

    def reject(self) -> bool:
        """Move to REJECTED; True if a refusal must be sent."""
        if self.state is CONNECTING:
            self.state = REJECTED
            return True
        if self.state is DISCONNECTED:
            return False
        if self.state is REJECTED:
            raise RuntimeError("reject() called twice: the handshake is already refused")
        raise RuntimeError(
            f"reject() called in state {self.state.value}: a connection can only be "
            "rejected before it is accepted; pass auto_accept=False to websocket_route() "
            "and call reject() before accept()"
        )

    def client_left(self, code: int, reason: str) -> bool:
        """Record the client's departure; True if it ended a live connection."""
        self.disconnect_code = code
        self.disconnect_reason = reason
        if self.state in (CONNECTING, CONNECTED):
            self.state = DISCONNECTED
            return True
        return False
