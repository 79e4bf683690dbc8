"""A TCP proxy on loopback that can cut every connection through it: a network drop.

The tests put it between a client and a real server: ``drop()`` closes both
sides of every connection at once (the client sees the connection die with no
close frame: 1006), ``mute_replies`` swallows what the server sends (its
replies are lost in the network) while requests still go through, and
``unreachable()`` stops listening for a while (connections are refused).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["TCPProxy", "tcp_proxy"]


class TCPProxy:
    def __init__(self, upstream_port: int, nursery: trio.Nursery) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        #: While True, bytes from the server are read and dropped.
        self.mute_replies = False
        self.connections = 0
        self._nursery = nursery
        self._listening: trio.CancelScope | None = None
        self._scopes: set[trio.CancelScope] = set()

    async def listen(self) -> None:
        """Accept connections (again) on ``port`` (a free port the first time)."""
        self._listening = await self._nursery.start(self._serve)

    async def _serve(self, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started(scope)
            await trio.serve_listeners(self.handle, listeners)

    async def unreachable(self) -> None:
        """Stop listening and cut every connection: the server is unreachable."""
        assert self._listening is not None
        self._listening.cancel()
        self.drop()
        await trio.testing.wait_all_tasks_blocked()

    def drop(self) -> int:
        """Cut every connection now; return how many were cut."""
        scopes = list(self._scopes)
        for scope in scopes:
            scope.cancel()
        return len(scopes)

    async def handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                server = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
                async with client, server, trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, server, False, nursery)
                    nursery.start_soon(self._pump, server, client, True, nursery)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self._scopes.discard(scope)
        await trio.aclose_forcefully(client)

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        replies: bool,
        nursery: trio.Nursery,
    ) -> None:
        try:
            while data := await source.receive_some(65536):
                if not (replies and self.mute_replies):
                    await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def tcp_proxy(upstream_port: int) -> AsyncIterator[TCPProxy]:
    """A proxy to 127.0.0.1:``upstream_port`` on a free loopback port, for the block."""
    async with trio.open_nursery() as nursery:
        proxy = TCPProxy(upstream_port, nursery)
        await proxy.listen()
        yield proxy
        nursery.cancel_scope.cancel()
