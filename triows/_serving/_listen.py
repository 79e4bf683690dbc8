"""Sockets shared by several processes on one port (``SO_REUSEPORT``).

With ``reuse_port`` every worker of ``triows run --workers N`` binds its own
listening socket to the same address: the kernel spreads new connections over
the sockets listening there, and a worker that stops listening (draining) gets
no new ones.  The supervisor reserves the port with the same kind of socket,
bound but never listening, so the port stays its own between workers.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

__all__ = ["accept_until_cancelled", "open_listeners", "reuse_port_sockets"]


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
