"""The Redis tests' server (tests/redis_server.py) survives a lost port race.

Each test hands ``RedisServer.start`` a taken port first, as another process
would take it between ``free_port``'s probe and redis-server's bind.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from . import redis_server as module
from .ports import PORT_TRIES, free_port
from .redis_server import RedisServer, process_id


@pytest.fixture
def taken() -> Iterator[socket.socket]:
    """A listening loopback socket: its port is taken."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener


def _port(listener: socket.socket) -> int:
    return int(listener.getsockname()[1])


def _answers(server: RedisServer) -> bool:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(b"PING\r\n")
        return conn.recv(16).startswith(b"+PONG")


def test_a_taken_port_is_retried_on_a_new_one(
    taken: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = iter([_port(taken), free_port()])
    monkeypatch.setattr(module, "fresh_ports", lambda: ports)
    server = RedisServer()
    try:
        server.start()
        assert server.port != _port(taken)
        assert _answers(server)
    finally:
        server.stop()


def test_another_redis_on_the_port_is_not_taken_for_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The race in full: another redis-server answers on the port while ours is
    # starting (and about to exit, its bind refused).
    first, second = RedisServer(), RedisServer()
    try:
        first.start()
        ports = iter([first.port, free_port()])
        monkeypatch.setattr(module, "fresh_ports", lambda: ports)
        second.start()
        assert second.port != first.port
        assert second.process is not None
        assert process_id(second.port) == second.process.pid
    finally:
        second.stop()
        first.stop()


def test_every_port_taken_fails_with_redis_servers_words(
    taken: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(module, "fresh_ports", lambda: [_port(taken)] * PORT_TRIES)
    server = RedisServer()
    with pytest.raises(pytest.fail.Exception, match="Address already in use") as failed:
        server.start()
    assert f"taken {PORT_TRIES} times in a row" in str(failed.value)
    assert server.process is None


def test_a_restart_keeps_its_port_and_says_why_when_it_cannot() -> None:
    server = RedisServer()
    try:
        server.start()
        port = server.port
        server.stop()
        server.start()  # the outage tests' restart: the same port, the same URL
        assert server.port == port and _answers(server)
        server.stop()
        with (
            socket.create_server(("127.0.0.1", port)),  # taken during the outage
            pytest.raises(pytest.fail.Exception, match="Address already in use") as failed,
        ):
            server.start()
        assert f"could not restart on port {port}" in str(failed.value)
    finally:
        server.stop()
