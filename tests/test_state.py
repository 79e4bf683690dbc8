"""The connection's Lifecycle: its transition table and its outcome table (pure, synchronous)."""

from __future__ import annotations

import pytest

from triows import ClientError, ConnectionState, WebSocketDisconnect
from triows._connection._state import Ending, Input, Lifecycle, Outcome

C = ConnectionState


def at(state: ConnectionState, *, catching: int = 1) -> Lifecycle:
    lifecycle = Lifecycle(catching=catching)
    lifecycle.state = state
    return lifecycle


# (state, call) -> the new state, or the error's type and a fragment of its message.
TRANSITIONS = [
    (C.CONNECTING, "accept", C.CONNECTED),
    (C.CONNECTING, "reject", C.REJECTED),
    (C.CONNECTING, "close", C.REJECTED),
    (C.CONNECTED, "close", C.CLOSED),
    (C.CONNECTED, "accept", (RuntimeError, "auto_accept")),
    (C.CONNECTED, "reject", (RuntimeError, "auto_accept=False")),
    (C.CLOSED, "close", (RuntimeError, "ensure_closed")),
    (C.REJECTED, "close", (RuntimeError, "ensure_closed")),
    (C.REJECTED, "reject", (RuntimeError, "twice")),
    (C.REJECTED, "accept", (RuntimeError, "cannot be accepted again")),
    (C.CLOSED, "accept", (RuntimeError, "cannot be accepted again")),
    (C.DISCONNECTED, "accept", (WebSocketDisconnect, "4001")),
]


@pytest.mark.parametrize(("state", "call", "expected"), TRANSITIONS)
def test_transition_table(
    state: ConnectionState, call: str, expected: ConnectionState | tuple[type[Exception], str]
) -> None:
    lifecycle = at(state)
    lifecycle.client_code = 4001
    if isinstance(expected, ConnectionState):
        assert lifecycle.move(call) is expected
        assert lifecycle.state is expected
    else:
        kind, fragment = expected
        with pytest.raises(kind, match=fragment):
            lifecycle.move(call)
        assert lifecycle.state is state  # an error moves nothing


@pytest.mark.parametrize(
    ("state", "fragment"),
    [(C.CONNECTING, "accept the connection first"), (C.CLOSED, r"after close\(\)")],
)
def test_messages_need_an_open_connection(state: ConnectionState, fragment: str) -> None:
    with pytest.raises(RuntimeError, match=fragment) as info:
        at(state).check_open("send()", "sent")
    assert f"state {state.value}" in str(info.value)


def test_client_left_while_connected() -> None:
    lifecycle = at(C.CONNECTED)
    assert lifecycle.client_left(4001, "bye") is True
    assert (lifecycle.state, lifecycle.input) == (C.DISCONNECTED, Input.DEPARTED)
    with pytest.raises(WebSocketDisconnect) as info:
        lifecycle.check_open("send()", "sent")
    assert (info.value.code, info.value.reason) == (4001, "bye")
    assert lifecycle.input_drained().code == 4001
    assert lifecycle.input is Input.DRAINED


def test_client_left_after_server_closed_keeps_state() -> None:
    lifecycle = at(C.CLOSED)
    assert lifecycle.client_left(1000, "") is False
    assert lifecycle.state is C.CLOSED
    assert lifecycle.client_code == 1000


def test_disconnect_error_defaults_to_1006() -> None:
    assert Lifecycle().disconnect_error().code == 1006


@pytest.mark.parametrize(
    ("catching", "code", "caught"),
    [(1, 1000, True), (1, 1001, True), (1, 4000, False), (0, 1000, False)],
)
def test_the_caught_codes_rule(catching: int, code: int, caught: bool) -> None:
    assert Lifecycle(catching=catching).catches(code) is caught


class Boom(ClientError):
    close_code = 4400


# (state, ending, error) -> Outcome.  `cancelled` is True exactly when an ending is given.
OUTCOMES = [
    (C.CONNECTED, None, None, Outcome(close_code=1000)),
    (C.CONNECTING, None, None, Outcome(http_status=403)),
    (C.CLOSED, None, None, Outcome()),
    (
        C.CONNECTED,
        Ending.SHUTDOWN,
        None,
        Outcome(close_code=1001, close_reason="server shutting down"),
    ),
    (C.CONNECTING, Ending.SHUTDOWN, None, Outcome(http_status=503, detail="server shutting down")),
    (C.DISCONNECTED, None, WebSocketDisconnect(1000), Outcome()),
    (C.DISCONNECTED, None, WebSocketDisconnect(4000), Outcome(log="client-left")),
    (C.DISCONNECTED, None, WebSocketDisconnect(1009), Outcome(log="protocol")),
]


@pytest.mark.parametrize(("state", "ending", "error", "expected"), OUTCOMES)
def test_outcome_table(
    state: ConnectionState, ending: Ending | None, error: Exception | None, expected: Outcome
) -> None:
    lifecycle = at(state)
    lifecycle.ending = ending
    assert lifecycle.outcome(error, cancelled=ending is not None) == expected


def test_a_crash_closes_1011_and_goes_to_the_server() -> None:
    crash = ValueError("bug")
    assert at(C.CONNECTED).outcome(crash, cancelled=False) == Outcome(
        close_code=1011, error=crash, reraise=True
    )
    assert at(C.CONNECTING).outcome(crash, cancelled=False) == Outcome(
        http_status=500, detail="internal server error", error=crash, reraise=True
    )


def test_a_client_error_closes_with_its_code_and_is_only_logged() -> None:
    error = Boom("too chatty")
    outcome = at(C.CONNECTED).outcome(error, cancelled=False)
    assert (outcome.close_code, outcome.close_reason) == (4400, "too chatty")
    assert (outcome.log, outcome.reraise) == ("client-error", False)


def test_a_departure_while_nobody_received_uses_the_rule_at_that_moment() -> None:
    silenced = at(C.CONNECTED)
    silenced.client_left(1001, "")
    silenced.ending = Ending.CLIENT_LEFT
    assert silenced.outcome(None, cancelled=True) == Outcome()
    loud = at(C.CONNECTED, catching=0)
    loud.client_left(1001, "")
    loud.ending = Ending.CLIENT_LEFT
    assert loud.outcome(None, cancelled=True) == Outcome(log="client-left")
