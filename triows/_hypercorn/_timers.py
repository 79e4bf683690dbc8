"""One task per server, not per connection: keepalive pings and idle timeouts."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio
from hypercorn.protocol.events import StreamClosed
from wsproto.events import Ping

__all__ = ["IdleTimeouts", "IdleTimer", "Keepalive"]

logger = logging.getLogger("triows")


@attrs.define
class IdleTimeouts:
    """One task per server closes connections idle for ``keep_alive_timeout``.

    hypercorn gives every TCP connection an idle-timeout *task*, started when the
    connection opens (waiting for a request head: the slowloris guard) and
    cancelled once the head is in, so each WebSocket handshake costs a task
    start and a cancellation.  Here a connection's ``idle_task`` is an
    :class:`IdleTimer`, a deadline in :attr:`timers`, and :meth:`run` closes
    the connections past it, within a quarter of the timeout, and every idle
    one at once when the server stops (as hypercorn does).
    """

    timeout: float
    timers: set[IdleTimer] = attrs.field(factory=set)
    stopping: bool = False

    async def run(self, stop: trio.Event) -> None:
        """Run until ``stop`` is set (the server's shutdown), then close every idle connection."""
        step = min(max(self.timeout / 4, 0.01), 1.0)
        while not self.stopping:
            with trio.move_on_after(step):
                await stop.wait()
                self.stopping = True
            now = trio.current_time()
            for timer in list(self.timers):
                if self.stopping or now >= timer.deadline:
                    timer.expire()


class IdleTimer:
    """A TCPServer's ``idle_task`` under :class:`IdleTimeouts` (hypercorn's SingleTask API)."""

    __slots__ = ("deadline", "owner", "server")

    def __init__(self, owner: IdleTimeouts, server: Any) -> None:
        self.owner = owner
        self.server = server
        self.deadline = math.inf

    async def restart(self, task_group: Any, action: Any) -> None:
        owner = self.owner
        if owner.stopping:
            self.expire()  # hypercorn: an idle connection closes at once once terminated
            return
        self.deadline = trio.current_time() + owner.timeout
        owner.timers.add(self)

    async def stop(self) -> None:
        self.owner.timers.discard(self)

    def expire(self) -> None:
        self.owner.timers.discard(self)
        # The connection's task group is closing or gone, and so is it.
        with contextlib.suppress(AttributeError, RuntimeError):
            self.server._task_group.spawn(_close_idle, self.server)


async def _close_idle(server: Any) -> None:
    # As hypercorn's _idle_timeout, once its wait is over.
    with trio.CancelScope(shield=True):
        await server._initiate_server_close()


@attrs.define
class Keepalive:
    """One task per server pings every WebSocket and closes those that stop answering.

    A task per connection would cost each idle connection a few KiB for a job
    done every ``interval`` seconds.  Pings are sent from short-lived tasks in
    the connection's own task group, because a write to a peer that stopped
    reading blocks (hypercorn shields it); a peer whose pong is ``timeout``
    seconds late is closed (its view sees 1006 "ping timeout"), which also ends
    any write stuck on its socket.
    """

    interval: float
    timeout: float
    #: The watched streams.  A plain set (a WeakSet costs a weakref per connection
    #: and Python-level add/discard): a stream leaves it at its StreamClosed (see
    #: handle()), or at the next pass once closed, or when its task group is gone.
    streams: set[Any] = attrs.field(factory=set)

    def watch(self, stream: Any) -> None:
        stream._triows_ping_at = None
        stream._triows_next_ping = trio.current_time() + self.interval
        self.streams.add(stream)

    async def run(self) -> None:
        """Run for the server's lifetime."""
        step = max(min(self.interval, self.timeout) / 4, 0.01)
        while True:
            await trio.sleep(step)
            now = trio.current_time()
            for stream in list(self.streams):
                if stream.closed:
                    self.streams.discard(stream)
                    continue
                sent = stream._triows_ping_at
                if sent is None and now >= stream._triows_next_ping:
                    stream._triows_ping_at = now
                    self._spawn(stream, _send_ping)
                elif sent is not None and now - sent > self.timeout:
                    self.streams.discard(stream)
                    self._spawn(stream, _close_silent_peer)

    def _spawn(self, stream: Any, job: Callable[[Any], Awaitable[None]]) -> None:
        try:
            stream.task_group.spawn(job, stream)
        except (AttributeError, RuntimeError):
            self.streams.discard(stream)  # its connection is already being torn down


async def _send_ping(stream: Any) -> None:
    await stream._send_wsproto_event(Ping(b"triows"))


async def _close_silent_peer(stream: Any) -> None:
    logger.info("closing a WebSocket whose pong did not come in time")
    stream._triows_close = (1006, "ping timeout")
    # hypercorn's StreamClosed path reports the disconnect to the app and closes
    # the socket, which also ends a ping write stuck on it.
    await stream.send(StreamClosed(stream_id=stream.stream_id))
