"""One subscriber's bounded buffer, and what happens when it fills up."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import trio

from .._connection._frames import Broadcast
from .._exceptions import ClientError
from ._stats import HubStats

if TYPE_CHECKING:
    from .._connection._websocket import WebSocket

__all__ = ["OverflowPolicy", "SlowConsumer", "Subscription"]

OverflowPolicy = Literal["drop_oldest", "disconnect"]
OVERFLOW_POLICIES: tuple[OverflowPolicy, ...] = ("drop_oldest", "disconnect")


class SlowConsumer(ClientError):
    """A subscription with ``on_overflow="disconnect"`` fell ``max_buffer`` messages behind.

    Raised by the subscription's next receive.  Uncaught in a WebSocket view, the
    connection is closed with 1008 (Policy Violation) and a warning is logged.
    """

    close_code = 1008


class Subscription:
    """Messages of one topic for one subscriber, in publish order.

    Publishing never waits for a subscriber: each message is appended to this
    subscription's buffer of at most ``max_buffer`` messages.  When the buffer is
    full, ``on_overflow`` decides: ``"drop_oldest"`` discards the oldest message
    (counted in :attr:`dropped`), ``"disconnect"`` ends the subscription, whose
    next receive raises :class:`SlowConsumer`.

    Only one task may receive from a subscription at a time.
    """

    __slots__ = (
        "_buffer",
        "_overflowed",
        "_stats",
        "_target",
        "_waiter",
        "dropped",
        "max_buffer",
        "on_overflow",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        max_buffer: int,
        on_overflow: OverflowPolicy,
        stats: HubStats | None = None,
    ) -> None:
        if max_buffer < 1:
            raise ValueError(f"max_buffer={max_buffer}: a subscription needs room for one message")
        if on_overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"on_overflow={on_overflow!r}; choose 'drop_oldest' or 'disconnect'")
        self.topic = topic
        self.max_buffer = max_buffer
        self.on_overflow: OverflowPolicy = on_overflow
        #: How many messages ``drop_oldest`` discarded so far.
        self.dropped = 0
        self._buffer: deque[Broadcast] = deque()
        self._overflowed = False
        self._waiter: trio.lowlevel.Task | None = None
        #: The WebSocket that forward() is sending to.
        self._target: WebSocket | None = None
        #: The hub's counters, where overflows are counted.
        self._stats = HubStats() if stats is None else stats

    def put(self, message: Broadcast) -> bool:
        """Buffer ``message``; False if the subscription overflowed and must be removed.

        Called by the hub (:meth:`Hub.deliver <triows.Hub.deliver>`), once per
        message: never waits.  Applications publish with ``Hub.publish()``.
        """
        buffer = self._buffer
        # forward() is idle and nothing is queued ahead: let the server write
        # the message from the delivering task, sparing the subscriber a wake-up.
        if (
            self._target is not None
            and self._waiter is not None
            and not buffer
            and self._target.try_send(message)
        ):
            return True
        if len(buffer) >= self.max_buffer:
            if self.on_overflow == "disconnect":
                self._overflowed = True
                self._stats.disconnected += 1
                self._stats.dropped_disconnect += len(buffer) + 1
                buffer.clear()
                self._wake()
                return False
            buffer.popleft()
            self.dropped += 1
            self._stats.dropped_oldest += 1
        buffer.append(message)
        if self._waiter is not None:
            self._wake()
        return True

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            trio.lowlevel.reschedule(waiter)

    async def receive(self) -> Any:
        """Wait for the next message.

        Raises SlowConsumer if the subscription overflowed under the
        ``"disconnect"`` policy.  Cancel-safe: a cancelled receive loses nothing.
        It yields to the scheduler only when it has to wait.
        """
        await self._wait()
        return self._buffer.popleft().message

    async def forward(self, websocket: WebSocket) -> NoReturn:
        """Send every message of this subscription to ``websocket``, until it fails.

        Each message goes out as ``await websocket.send(message)`` would send it,
        but whatever is buffered when this task wakes is sent as one batch
        (:meth:`WebSocket.send_many <triows.WebSocket.send_many>`: one socket
        write on ``triows.serve``'s backends), and the encoding and frame of each
        message are shared by every subscriber of this process.  A subscriber
        that lags therefore catches up in fewer, larger writes.  While this
        task waits with nothing buffered, a server that can write without
        blocking (the native server over plain TCP) takes a
        published message straight from the publishing task: no task switch
        per subscriber.  Messages still reach the client in publish order.

        Never returns: raises WebSocketDisconnect when the client leaves,
        SlowConsumer on overflow under ``"disconnect"``.  If cancelled, the batch
        being written may be partly sent; nothing later is lost.
        """
        if self._target is not None:
            raise trio.BusyResourceError("this subscription is already being forwarded")
        buffer = self._buffer
        self._target = websocket
        try:
            while True:
                await self._wait()
                batch = list(buffer)
                buffer.clear()
                await websocket.send_many(batch)
        finally:
            self._target = None

    async def _wait(self) -> None:
        """Return once a message is buffered; raise SlowConsumer on overflow."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._buffer:
            if self._overflowed:
                raise SlowConsumer(
                    f"subscriber to {self.topic!r} fell {self.max_buffer} messages behind"
                )
            if self._waiter is not None:
                raise trio.BusyResourceError(
                    "another task is already receiving on this subscription"
                )
            self._waiter = trio.lowlevel.current_task()

            def abort(_: Any) -> trio.lowlevel.Abort:
                self._waiter = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)

    def __aiter__(self) -> Subscription:
        return self

    #: An alias, not a wrapper: no extra coroutine frame per message.
    __anext__ = receive

    def __len__(self) -> int:
        """How many messages are waiting in the buffer."""
        return len(self._buffer)

    def __repr__(self) -> str:
        return (
            f"<Subscription {self.topic!r} {len(self._buffer)}/{self.max_buffer} "
            f"{self.on_overflow} dropped={self.dropped}>"
        )
