"""The fault harness's TCP proxy (scripts/faults.py): it cuts and stalls connections.

Every client of the harness connects through it.  :meth:`Proxy.drop` cuts a
share of the open connections without a close frame (a reset on both sides,
as when a network path dies); :meth:`Proxy.stall` stops forwarding the
server's bytes to a share of them for a while (a slow reader: the server's
writes back up behind a small receive buffer).
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import attrs
import trio

#: The receive buffer of the proxy's socket to the server: small, so that a
#: stalled connection backs up to the server quickly.
UPSTREAM_RCVBUF = 16384


@attrs.define(eq=False)
class Pipe:
    client: trio.SocketStream
    upstream: trio.SocketStream
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    #: While set, the server's bytes wait (a stall).
    gate: trio.Event | None = None
    dropped: bool = False


@attrs.define(eq=False)
class Proxy:
    port: int
    target: int
    pipes: set[Pipe] = attrs.field(factory=set)

    @classmethod
    @asynccontextmanager
    async def serving(cls, target: int) -> AsyncIterator[Proxy]:
        """A proxy on a free loopback port to 127.0.0.1:``target``, until the block ends."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        proxy = cls(listeners[0].socket.getsockname()[1], target)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, proxy.handle, listeners)
            try:
                yield proxy
            finally:
                nursery.cancel_scope.cancel()

    async def handle(self, client: trio.SocketStream) -> None:
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UPSTREAM_RCVBUF)
        try:
            await sock.connect(("127.0.0.1", self.target))
        except OSError:
            sock.close()
            await _reset(client)
            return
        pipe = Pipe(client, trio.SocketStream(sock))
        self.pipes.add(pipe)
        try:
            with pipe.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._copy, client, pipe.upstream, pipe, False)
                    nursery.start_soon(self._copy, pipe.upstream, client, pipe, True)
        finally:
            self.pipes.discard(pipe)
            if pipe.dropped:
                await _reset(client)
                await _reset(pipe.upstream)
            else:
                await trio.aclose_forcefully(client)
                await trio.aclose_forcefully(pipe.upstream)

    async def _copy(
        self, source: trio.SocketStream, sink: trio.SocketStream, pipe: Pipe, downstream: bool
    ) -> None:
        try:
            while True:
                if downstream and pipe.gate is not None:
                    await pipe.gate.wait()
                data = await source.receive_some(65536)
                if not data:
                    break
                await sink.send_all(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        pipe.scope.cancel()  # one side ended: so does the other

    def drop(self, share: float) -> int:
        """Cut ``share`` of the open connections (reset both sides); how many."""
        chosen = _sample(self.pipes, share)
        for pipe in chosen:
            pipe.dropped = True
            pipe.scope.cancel()
        return len(chosen)

    async def stall(self, share: float, seconds: float) -> int:
        """Hold the server's bytes to ``share`` of the connections for ``seconds``."""
        gate = trio.Event()
        chosen = _sample(self.pipes, share)
        for pipe in chosen:
            pipe.gate = gate
        await trio.sleep(seconds)
        for pipe in chosen:
            pipe.gate = None
        gate.set()
        return len(chosen)


def _sample(pipes: set[Pipe], share: float) -> list[Pipe]:
    live = list(pipes)
    return random.sample(live, max(1, round(len(live) * share))) if live else []


async def _reset(stream: trio.SocketStream) -> None:
    """Close with a reset (SO_LINGER 0): no FIN, no close frame."""
    with suppress(OSError):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await trio.aclose_forcefully(stream)
