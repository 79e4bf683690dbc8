"""The connection state machine (pure and synchronous)."""

from __future__ import annotations

import pytest

from triows import ConnectionState, WebSocketDisconnect
from triows._state import StateMachine

C = ConnectionState


def test_accept_then_close() -> None:
    m = StateMachine()
    assert m.state is C.CONNECTING
    m.accept()
    assert m.state is C.CONNECTED  # type: ignore[comparison-overlap]
    assert m.close(4000) is True
    assert (m.state, m.close_code) == (C.CLOSED, 4000)
    with pytest.raises(RuntimeError, match="ensure_closed"):
        m.close(1000)


def test_close_before_accept_is_a_rejection() -> None:
    m = StateMachine()
    assert m.close(1000) is True
    assert m.state is C.REJECTED
    with pytest.raises(RuntimeError):
        m.accept()


def test_reject_only_before_accept() -> None:
    m = StateMachine()
    assert m.reject() is True
    assert m.state is C.REJECTED
    with pytest.raises(RuntimeError, match="twice"):
        m.reject()
    accepted = StateMachine()
    accepted.accept()
    with pytest.raises(RuntimeError, match="auto_accept=False"):
        accepted.reject()


def test_accept_twice_mentions_auto_accept() -> None:
    m = StateMachine()
    m.accept()
    with pytest.raises(RuntimeError, match="auto_accept"):
        m.accept()


@pytest.mark.parametrize("call", ["send()", "receive()"])
def test_send_and_receive_need_connected(call: str) -> None:
    check = "check_send" if call == "send()" else "check_receive"
    m = StateMachine()
    with pytest.raises(RuntimeError, match="accept"):
        getattr(m, check)(call)
    m.accept()
    getattr(m, check)(call)
    m.close(1000)
    with pytest.raises(RuntimeError, match=r"close\(\)"):
        getattr(m, check)(call)


def test_client_left_while_connected() -> None:
    m = StateMachine()
    m.accept()
    assert m.client_left(4001, "bye") is True
    assert m.state is C.DISCONNECTED
    with pytest.raises(WebSocketDisconnect) as info:
        m.check_send("send()")
    assert (info.value.code, info.value.reason) == (4001, "bye")
    with pytest.raises(WebSocketDisconnect):
        m.check_receive("receive()")
    with pytest.raises(WebSocketDisconnect):
        m.accept()
    # Nobody to send a close frame to, and no error either.
    assert m.close(1000) is False
    assert m.reject() is False


def test_client_left_after_server_closed_keeps_state() -> None:
    m = StateMachine()
    m.accept()
    m.close(1000)
    assert m.client_left(1000, "") is False
    assert m.state is C.CLOSED


def test_client_left_before_accept() -> None:
    m = StateMachine()
    assert m.client_left(1006, "") is True
    with pytest.raises(WebSocketDisconnect) as info:
        m.accept()
    assert info.value.code == 1006


def test_disconnect_error_defaults_to_1006() -> None:
    error = StateMachine().disconnect_error()
    assert error.code == 1006
    assert "1006" in str(error)
