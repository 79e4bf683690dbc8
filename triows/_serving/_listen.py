"""Sockets shared by several processes on one port (``SO_REUSEPORT``).

With ``reuse_port`` every worker of ``triows run --workers N`` binds its own
listening socket to the same address: the kernel spreads new connections over
the sockets listening there, and a worker that stops listening (draining) gets
no new ones.  The supervisor reserves the port with the same kind of socket,
bound but never listening, so the port stays its own between workers.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import trio

__all__ = [
    "Address",
    "accept_sockets_until_cancelled",
    "accept_until_cancelled",
    "address",
    "open_listeners",
    "reuse_port_sockets",
    "set_stream_options",
]

#: A socket address as ASGI spells it: host and port (None where unknown).
Address = tuple[str, int] | None
#: What a socket handler gets: the socket, the client's address, the server's.
SocketHandler = Callable[[trio.socket.SocketType, Address, Address], Awaitable[object]]

#: accept() errors that mean "no room now" (too many open files, no memory): retry later.
_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
#: How long to wait before accepting again after one of those.
_CAPACITY_PAUSE: Final = 0.1
#: accept() errors about the one connection being accepted (accept(2) says: retry).
_CONNECTION_ERRNOS: Final = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "EPROTO",
        "EPERM",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
    )
    if hasattr(errno, name)  # some are Linux's only
)
_WILDCARDS: Final = frozenset({"0.0.0.0", "::"})

logger = logging.getLogger("triows")


def reuse_port_sockets(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` on ``port`` with ``SO_REUSEPORT``,
    not listening yet.  ``port=0`` picks a free port, the same on every address.

    Raises OSError when the address is taken by a socket without ``SO_REUSEPORT``
    (or another user's), and RuntimeError where ``SO_REUSEPORT`` does not exist.
    """
    option = getattr(socket, "SO_REUSEPORT", None)
    if option is None:
        raise RuntimeError(
            "reuse_port=True (triows run --workers) needs SO_REUSEPORT, which this "
            "platform lacks: run one process per port instead"
        )
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, option, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def open_listeners(
    host: str, port: int, backlog: int, reuse_port: bool
) -> list[trio.SocketListener]:
    """trio's listeners on ``host:port`` (with ``SO_REUSEPORT`` if ``reuse_port``)."""
    if not reuse_port:
        return await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    listeners = []
    for sock in reuse_port_sockets(host, port):
        sock.listen(backlog)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
    return listeners


async def accept_until_cancelled(
    handler: Callable[[Any], Awaitable[object]],
    listeners: Sequence[trio.abc.Listener[Any]],
    connections: trio.Nursery,
    accepting: trio.CancelScope,
) -> None:
    """Serve ``listeners`` (each connection in ``connections``) until ``accepting``
    is cancelled; then stop listening: the sockets close at once."""
    with accepting:
        try:
            await trio.serve_listeners(handler, list(listeners), handler_nursery=connections)
        finally:
            for listener in listeners:
                _close(listener)


def _close(listener: trio.abc.Listener[Any]) -> None:
    """Close a listener's socket now (no checkpoint: this runs in a cancelled scope)."""
    while isinstance(listener, trio.SSLListener):
        listener = listener.transport_listener
    if isinstance(listener, trio.SocketListener):
        listener.socket.close()


def set_stream_options(sock: trio.socket.SocketType) -> None:
    """The options trio's SocketStream sets on a TCP socket: no Nagle delay, and
    at most 16 KiB unsent in the kernel (a slow client's writes wait in triows)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, True)
    if hasattr(trio.socket, "TCP_NOTSENT_LOWAT"):
        with contextlib.suppress(OSError):
            sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NOTSENT_LOWAT, 2**14)


def address(raw: Any) -> Address:
    """An address from the socket module as ASGI spells it (host, port), or None."""
    if isinstance(raw, tuple) and len(raw) >= 2:
        return (str(raw[0]), int(raw[1]))
    return None


async def accept_sockets_until_cancelled(
    handler: SocketHandler,
    listeners: Sequence[trio.SocketListener],
    connections: trio.Nursery,
    accepting: trio.CancelScope,
) -> None:
    """Like :func:`accept_until_cancelled`, for a server that takes plain sockets.

    Each connection is one task in ``connections``: ``handler(sock, client,
    server)``, with the client's address as accept() gave it and the server's
    (the listener's own, unless it listens on every address): no stream object,
    no wrapper task, no getpeername or getsockname per connection.  The handler
    sets its socket's options and closes it.  Errors about one connection are
    skipped; running out of file descriptors or memory is logged and accepting
    pauses for 0.1 s; any other error ends the loop.
    """
    with accepting:
        try:
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(_accept_from, handler, listener.socket, connections)
        finally:
            for listener in listeners:
                _close(listener)


async def _accept_from(
    handler: SocketHandler, sock: trio.socket.SocketType, connections: trio.Nursery
) -> None:
    local = address(sock.getsockname())
    if local is not None and local[0] in _WILDCARDS:
        local = None  # known per connection only: the handler asks its socket
    accept = sock.accept
    start = connections.start_soon
    while True:
        try:
            client, peer = await accept()
        except OSError as exc:
            if exc.errno in _CONNECTION_ERRNOS:
                continue
            if exc.errno not in _CAPACITY_ERRNOS:
                raise
            logger.error(
                "accepting a connection failed (%s): retrying in %s s",
                errno.errorcode[exc.errno],
                _CAPACITY_PAUSE,
            )
            await trio.sleep(_CAPACITY_PAUSE)
            continue
        start(handler, client, address(peer), local)
