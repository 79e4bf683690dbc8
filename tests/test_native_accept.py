"""The native server's accept loop: plain sockets with both addresses, errors survived;
and a connection's first read."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any, cast

import pytest
import trio
import trio.testing

from triows._native._head import RequestReader
from triows._serving._listen import Address, accept_sockets_until_cancelled
from triows._serving._shutdown import close_socket


async def _connect_once(
    listeners: list[trio.SocketListener],
    port: int,
    handle: Callable[[trio.socket.SocketType, Address, Address], object],
) -> tuple[str, int]:
    """Accept one loopback connection through the loop; ``handle`` sees what its
    handler got.  Returns the client's own address."""
    done = trio.Event()

    async def handler(sock: trio.socket.SocketType, client: Address, server: Address) -> None:
        handle(sock, client, server)
        sock.close()
        done.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as connections:
            accepting = trio.CancelScope()
            connections.start_soon(
                accept_sockets_until_cancelled, handler, listeners, connections, accepting
            )
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await done.wait()
            accepting.cancel()
    local: tuple[str, int] = stream.socket.getsockname()
    await stream.aclose()
    return local


async def test_each_connection_gets_its_socket_and_both_addresses() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    got: list[tuple[Address, Address, bool]] = []

    def handle(sock: trio.socket.SocketType, client: Address, server: Address) -> None:
        got.append((client, server, isinstance(sock, trio.socket.SocketType)))

    local = await _connect_once(listeners, port, handle)
    assert got == [((local[0], local[1]), ("127.0.0.1", port), True)]
    assert listeners[0].socket.fileno() == -1  # stopped listening


async def test_a_wildcard_listener_leaves_the_server_address_to_the_socket() -> None:
    listeners = await trio.open_tcp_listeners(0, host="0.0.0.0")
    port = listeners[0].socket.getsockname()[1]
    servers: list[Address] = []
    await _connect_once(listeners, port, lambda sock, client, server: servers.append(server))
    assert servers == [None]


class _FailingSocket:
    """A listening socket whose accept() fails with the errors given, then blocks."""

    def __init__(self, errors: list[int]) -> None:
        self.errors = errors
        #: Set when accept() blocks: every error was survived.
        self.blocked = trio.Event()

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 1)

    async def accept(self) -> Any:
        if self.errors:
            code = self.errors.pop(0)
            raise OSError(code, "simulated")
        self.blocked.set()
        await trio.sleep_forever()

    def close(self) -> None:
        pass


class _Listener:
    def __init__(self, sock: _FailingSocket) -> None:
        self.socket = sock


async def test_accept_errors_are_survived_or_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(sock: trio.socket.SocketType, client: Address, server: Address) -> None:
        raise AssertionError("no connection was accepted")

    failing = _FailingSocket([errno.ECONNABORTED, errno.EMFILE, errno.EPROTO])
    listeners = cast(Any, [_Listener(failing)])
    with trio.fail_after(10):
        async with trio.open_nursery() as connections:
            accepting = trio.CancelScope()
            connections.start_soon(
                accept_sockets_until_cancelled, handler, listeners, connections, accepting
            )
            await failing.blocked.wait()  # past the three errors
            accepting.cancel()
    assert [r.getMessage() for r in caplog.records if r.name == "triows"] == [
        "accepting a connection failed (EMFILE): retrying in 0.1 s"
    ]
    fatal = _FailingSocket([errno.EINVAL])
    with trio.fail_after(10), pytest.RaisesGroup(OSError, flatten_subgroups=True):
        async with trio.open_nursery() as connections:
            await accept_sockets_until_cancelled(
                handler, cast(Any, [_Listener(fatal)]), connections, trio.CancelScope()
            )


async def test_a_head_being_read_ends_quietly_when_its_socket_is_closed() -> None:
    # The shutdown's reaper closes sockets from outside; a reader waiting for a
    # request head then sees the client gone (False), not an error.
    left, right = trio.socket.socketpair()
    reader = RequestReader(left, bytearray())
    results: list[bool] = []

    async def read() -> None:
        results.append(await reader.next_request())

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await right.send(b"GET / HTTP/1.1\r\n")  # part of a head
            await trio.testing.wait_all_tasks_blocked()
            close_socket(left)
    right.close()
    assert results == [False]
