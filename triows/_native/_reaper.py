"""The end of the native server's connections at shutdown: cancelled, closed, named.

The server registers each connection it serves (``_NativeServer.open``: its
socket, and once known its WebSocket connection or its HTTP request reader;
one dict entry per connection, nothing per message).  Once its views had their
``shutdown_timeout`` seconds, :func:`reap` ends what is still registered, in
the stages of the :class:`~triows._serving._shutdown.Shutdown`:

1. the views' deadline: the connections' nursery is cancelled;
2. :data:`~triows._serving._shutdown.UNWIND` seconds later, every connection
   still registered is closed from the outside: an accepted plain-TCP
   WebSocket whose writer is idle gets a 1001 close frame (written without
   blocking), then its socket is closed, so that every task blocked on it wakes
   with an error: a connection whose task honours cancellation ends at once;
3. at the bound, a connection still registered is served by a view that
   shields itself from cancellation: one WARNING names its route.  ``serve()``
   waits for that view all the same (a trio task cannot be killed).
"""

from __future__ import annotations

from typing import TypeAlias

import trio
from websockets.protocol import OPEN

from .._endpoints import WebSocketEndpoints
from .._serving._shutdown import GOING_AWAY, SETTLE, UNWIND, Shutdown, close_socket
from ._connection import NativeConnection
from ._head import RequestReader

__all__ = ["Served", "reap"]

#: What a registered connection is, as far as the server knows: a WebSocket, an
#: HTTP connection (its request reader), or neither yet (its head is being read).
Served: TypeAlias = NativeConnection | RequestReader | None


async def reap(
    registry: dict[trio.socket.SocketType, Served],
    shutdown: Shutdown,
    connections: trio.Nursery,
    routes: WebSocketEndpoints,
) -> None:
    """End the connections in ``registry`` (run in ``connections``' parent, once the
    views had their time; cancel it once ``connections`` has closed).

    ``routes`` name the WebSocket views that overran the shutdown.
    """
    await shutdown.until(max(shutdown.deadline, trio.current_time() + 0.1))
    connections.cancel_scope.cancel()
    await shutdown.until(trio.current_time() + UNWIND)
    for sock, served in list(registry.items()):
        if isinstance(served, NativeConnection):
            _say_going_away(served, connections)
        close_socket(sock)
    await shutdown.until(shutdown.bound)
    if shutdown.forced:
        await trio.sleep(SETTLE)  # the tasks just cancelled unwind: they did not overrun
    for served in list(registry.values()):
        shutdown.overran(_describe(served, routes))


def _say_going_away(conn: NativeConnection, nursery: trio.Nursery) -> None:
    """A 1001 close frame, if none was sent, over plain TCP, and nothing is being written."""
    if conn.plain and conn.protocol.state is OPEN:
        # write_now() writes only between two frames (an idle writer); a tail
        # the kernel does not take goes nowhere: the socket closes next.
        conn.writer.write_now(GOING_AWAY, nursery)


def _describe(served: Served, routes: WebSocketEndpoints) -> str:
    if isinstance(served, NativeConnection):
        path = served.request.path
        found = routes.route_for(path)
        route = path if found is None else found[0].pattern.text
        return f"the WebSocket view of route {route!r} (client {served.client})"
    if isinstance(served, RequestReader):
        request = served.request
        return f"the HTTP view of {request.method.decode()} {request.target.decode()!r}"
    return "a connection whose request head was being read"
