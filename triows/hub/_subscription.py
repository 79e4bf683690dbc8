"""One subscriber's bounded buffer, and what happens when it fills up."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import trio

from .._connection._frames import Broadcast
from .._exceptions import ClientError
from ._positions import offset_key
from ._stats import HubStats

if TYPE_CHECKING:
    from .._connection._websocket import WebSocket

__all__ = ["Lagged", "OverflowPolicy", "SlowConsumer", "Subscribing", "Subscription"]

OverflowPolicy = Literal["drop_oldest", "disconnect"]
OVERFLOW_POLICIES: tuple[OverflowPolicy, ...] = ("drop_oldest", "disconnect")


class SlowConsumer(ClientError):
    """A subscription with ``on_overflow="disconnect"`` fell ``max_buffer`` messages behind.

    Raised by the subscription's next receive.  Uncaught in a WebSocket view, the
    connection is closed with 1008 (Policy Violation) and a warning is logged.
    """

    close_code = 1008


class Lagged(SlowConsumer):
    """A subscription to a hub with history fell ``max_buffer`` messages behind.

    With history on, ``on_overflow="drop_oldest"`` never skips a message
    silently: the subscription stops taking new messages, returns the ones it
    holds, then its next receive raises Lagged.  Nothing is lost: subscribe
    again with ``since=subscription.position`` (also in :attr:`position`) to get
    the rest from the history.  A :class:`SlowConsumer`: uncaught in a WebSocket
    view, the connection is closed with 1008.
    """

    def __init__(self, message: str, position: str) -> None:
        super().__init__(message)
        #: Where to resume: the position of the last message returned.
        self.position = position


class Subscription:
    """Messages of one topic for one subscriber, in publish order.

    Publishing never waits for a subscriber: each message is appended to this
    subscription's buffer of at most ``max_buffer`` messages.  When the buffer is
    full, ``on_overflow`` decides: ``"drop_oldest"`` discards the oldest message
    (counted in :attr:`dropped`), ``"disconnect"`` ends the subscription, whose
    next receive raises :class:`SlowConsumer`.

    With history on (``Hub(history=N)``), ``"drop_oldest"`` becomes "stop and
    say so": the subscription keeps what it holds and then raises
    :class:`Lagged`, so the subscriber resumes from :attr:`position` instead of
    missing messages unknowingly.

    Only one task may receive from a subscription at a time.
    """

    __slots__ = (
        "_buffer",
        "_overflowed",
        "_reading",
        "_replay",
        "_resumable",
        "_stats",
        "_target",
        "_waiter",
        "dropped",
        "max_buffer",
        "on_overflow",
        "position",
        "recovered",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        max_buffer: int,
        on_overflow: OverflowPolicy,
        stats: HubStats | None = None,
        *,
        resumable: bool = False,
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
        # Created when a message must wait, dropped once forward() empties it:
        # an idle subscription holds no deque (760 bytes each).
        self._buffer: deque[Broadcast] | None = None
        # False; True once overflowed; a str: interrupted by the backend, why.
        self._overflowed: bool | str = False
        self._waiter: trio.lowlevel.Task | None = None
        #: Whether forward() waits in its WebSocket's idle() (woken by wake()).
        self._reading = False
        #: The WebSocket that forward() is sending to.
        self._target: WebSocket | None = None
        #: The hub's counters, where overflows are counted.
        self._stats = HubStats() if stats is None else stats
        #: The position of the last message returned (before the first one: where
        #: the subscription started).  Store it to resume with ``since=``.
        self.position = ""
        #: With ``since=``: whether every message after it is delivered (False:
        #: the history no longer covers it, the subscription started live).
        #: Without ``since``: True.
        self.recovered = True
        # Messages from the history, returned before the buffer's (None: none).
        self._replay: deque[Broadcast] | None = None
        self._resumable = resumable

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
            and (self._waiter is not None or self._reading)
            and not buffer
            and self._target.try_send(message)
        ):
            self.position = message.position or self.position
            return True
        if buffer is None:
            buffer = self._buffer = deque()
        elif len(buffer) >= self.max_buffer:
            if self._overflowed:  # a Lagged subscription: removed already
                return False
            if self._resumable and self.on_overflow == "drop_oldest":
                # History on: stop here, keep what is buffered; receive raises
                # Lagged once it is returned, and the subscriber resumes.
                self._overflowed = True
                self._stats.lagged += 1
                self._wake()
                return False
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
        if self._waiter is not None or self._reading:
            self._wake()
        return True

    def begin(self, position: str, replay: list[Broadcast], recovered: bool) -> None:
        """Start at ``position`` with ``replay`` (the history after it) first.

        For backends, once, before the ``subscribe()`` block starts: messages
        buffered meanwhile that are not after the replay (or ``position``) are
        dropped, so none is returned twice.
        """
        self.position = position
        self.recovered = recovered
        cutoff = offset_key(replay[-1].position if replay else position)
        buffer = self._buffer
        # (A message delivered without a position is not the history's: kept.)
        while buffer and buffer[0].position and offset_key(buffer[0].position) <= cutoff:
            buffer.popleft()
        if not buffer:
            self._buffer = None
        if replay:
            self._replay = deque(replay)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            trio.lowlevel.reschedule(waiter)
        elif self._reading and self._target is not None:
            self._target.wake()

    async def receive(self) -> Any:
        """Wait for the next message.

        Raises SlowConsumer if the subscription overflowed under the
        ``"disconnect"`` policy.  Cancel-safe: a cancelled receive loses nothing.
        It yields to the scheduler only when it has to wait.
        """
        await self._wait()
        replay = self._replay
        if replay:
            item = replay.popleft()
        else:
            buffer = self._buffer
            assert buffer  # (_wait returns once there is one)
            item = buffer.popleft()
            if not buffer:
                self._buffer = None
        self.position = item.position or self.position
        return item.message

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
        Meanwhile the task waits in :meth:`WebSocket.idle <triows.WebSocket.idle>`:
        on the native server over plain TCP it reads the socket itself (pings
        answered, the client's messages kept for a later ``receive()``), so a
        subscriber costs no reader task, and a departure ends the wait at once.

        Never returns: raises WebSocketDisconnect when the client leaves,
        SlowConsumer on overflow under ``"disconnect"``.  If cancelled, the batch
        being written may be partly sent; nothing later is lost.  :attr:`position`
        moves past a batch once it is written, so a resume from it after a
        cancelled write may repeat part of that batch, never skip one.
        """
        if self._target is not None:
            raise trio.BusyResourceError("this subscription is already being forwarded")
        self._target = websocket
        try:
            while True:
                # Nothing to send: wait in the WebSocket's idle() (which reads the
                # socket meanwhile where the server lets it; wake() ends it) for
                # as long as it can; else, and for what is left, _wait() (inlined:
                # one coroutine frame less per idle subscriber).
                while not (self._buffer or self._replay or self._overflowed):
                    if self._waiter is not None or self._reading:
                        break  # another task receives: _wait() raises
                    self._reading = True
                    try:
                        if not await websocket.idle():
                            break
                    finally:
                        self._reading = False
                await self._wait()
                replay = self._replay
                if replay:
                    batch = list(replay)
                    self._replay = None
                else:
                    batch = list(self._buffer or ())
                    self._buffer = None
                await websocket.send_many(batch)
                self.position = batch[-1].position or self.position
        finally:
            self._target = None

    async def _wait(self) -> None:
        """Return once a message is buffered; raise SlowConsumer on overflow.

        The task parks until put() (or an overflow) reschedules it.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._buffer and not self._replay:
            if self._overflowed:
                self._raise_overflow()
            if self._waiter is not None or self._reading:
                raise trio.BusyResourceError(
                    "another task is already receiving on this subscription"
                )
            self._waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED

    def interrupt(self, reason: str) -> None:
        """Stop taking messages: return the buffered ones, then raise Lagged.

        For backends that may have missed messages for this subscription (the
        Redis listener back from an outage, with history on): the subscriber
        resumes from :attr:`position`.  The backend removes it from the hub.
        """
        if not self._overflowed:
            self._overflowed = reason
            self._stats.lagged += 1
            self._wake()

    def _raise_overflow(self) -> NoReturn:
        resume = f"resume with hub.subscribe({self.topic!r}, since=subscription.position)"
        if isinstance(self._overflowed, str):
            raise Lagged(
                f"subscriber to {self.topic!r}: {self._overflowed}; {resume}", self.position
            )
        behind = f"subscriber to {self.topic!r} fell {self.max_buffer} messages behind"
        if self._resumable and self.on_overflow == "drop_oldest":
            raise Lagged(f"{behind}; {resume}", self.position)
        raise SlowConsumer(behind)

    def __aiter__(self) -> Subscription:
        return self

    #: An alias, not a wrapper: no extra coroutine frame per message.
    __anext__ = receive

    def __len__(self) -> int:
        """How many messages are waiting in the buffer."""
        return len(self._buffer or ()) + len(self._replay or ())

    def __repr__(self) -> str:
        return (
            f"<Subscription {self.topic!r} {len(self._buffer or ())}/{self.max_buffer} "
            f"{self.on_overflow} dropped={self.dropped} position={self.position!r}>"
        )


class Subscribing:
    """What ``hub.subscribe()`` returns: ``async with`` it to hold the subscription.

    Entering joins the hub (``join``: registers the subscription, then asks the
    backend where it starts: after ``since``, or with the ``last`` newest messages) and gives the :class:`Subscription`; leaving, by
    any exit, removes it (``leave``), also when joining failed or was cancelled.
    """

    __slots__ = ("_join", "_last", "_leave", "_since", "_subscription")

    def __init__(
        self,
        subscription: Subscription,
        since: str | None,
        last: int,
        join: Callable[[Subscription, str | None, int], Awaitable[None]],
        leave: Callable[[Subscription], None],
    ) -> None:
        self._subscription = subscription
        self._since = since
        self._last = last
        self._join = join
        self._leave = leave

    async def __aenter__(self) -> Subscription:
        subscription = self._subscription
        try:
            await self._join(subscription, self._since, self._last)
        except BaseException:
            self._leave(subscription)
            raise
        return subscription

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._leave(self._subscription)
