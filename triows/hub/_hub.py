"""The Hub: topics, subscriptions, and fan-out through a pluggable backend."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

import trio

from .._connection._frames import Broadcast
from ._backend import Backend, HubUnavailable
from ._delivery import Delivery
from ._memory import MemoryBackend, check_message
from ._positions import check_last, parse_position
from ._presence import PresenceChanges
from ._stats import HubStats
from ._subscription import OverflowPolicy, Subscribing, Subscription
from ._traces import delivery_span, publish_span

__all__ = ["Backend", "Hub", "HubUnavailable"]

#: Default buffer of a subscription, in messages.
DEFAULT_MAX_BUFFER = 100


class Hub:
    """Publish/subscribe by topic, with a bounded buffer per subscriber.

    ``Hub()`` works inside one process.  ``Hub("redis://host:6379/0")`` shares
    topics between processes and hosts through Redis pub/sub.  Run it with
    ``App(hub=hub)`` (for the App's lifetime; views get it as the provider ``hub``)
    or standalone with ``async with hub:``.

    With ``history=0`` (the default) delivery is at-most-once: a message
    published while a subscriber's buffer is full may be dropped
    (``drop_oldest``), and with Redis, messages published while a process is
    disconnected from Redis are not delivered to it.  With ``history=N``, each
    topic keeps its last ``N`` messages (a Redis Stream with Redis), for
    ``history_ttl`` seconds (default a day) after its last publish or
    subscription start, and its last position seven times longer (a resume
    from it after a longer silence is still recovered): every ``publish()``
    returns a position, ``subscribe(since=position)`` resumes with no duplicate
    and no gap (or says ``recovered=False``), and a subscriber that would miss
    a message gets :class:`Lagged` instead.  Messages of one topic reach each
    subscriber in publish order (per publisher).  In memory, every
    subscriber receives the *same* object: do not mutate it.

    ``presence()``, ``members()`` and ``presence_changes()`` say who is in a
    topic (across processes with Redis); ``presence_interval`` bounds how often
    watchers get a batch, ``presence_ttl`` how long a dead process's members
    stay listed (Redis).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        on_overflow: OverflowPolicy = "drop_oldest",
        history: int = 0,
        history_ttl: float = 86400.0,
        presence_ttl: float = 15.0,
        presence_interval: float = 1.0,
    ) -> None:
        if history < 0:
            raise ValueError(f"Hub(history={history}): give 0 (no history) or more messages")
        if not history_ttl > 0:
            raise ValueError(f"Hub(history_ttl={history_ttl}): give a number of seconds > 0")
        if not presence_interval > 0 or not presence_ttl > presence_interval:
            raise ValueError(
                f"Hub(presence_ttl={presence_ttl}, presence_interval={presence_interval}): "
                "give presence_interval > 0 and presence_ttl > presence_interval"
            )
        #: How long a dead process's members stay listed (Redis), in seconds.
        self.presence_ttl = presence_ttl
        #: At most one presence batch per watcher per this many seconds.
        self.presence_interval = presence_interval
        self.url = url
        self.max_buffer = max_buffer
        self.on_overflow: OverflowPolicy = on_overflow
        #: How many recent messages each topic keeps for resuming (0: none).
        self.history = history
        #: A topic's messages are dropped this many seconds after its last
        #: publish or subscription start (then a resume into them is not
        #: recovered); its last position is kept 7 times longer.
        self.history_ttl = history_ttl
        self._topics: dict[str, set[Subscription]] = {}
        self._backend: Backend
        if url is None:
            self._backend = MemoryBackend(history, presence_interval, history_ttl)
        elif url.startswith(("redis://", "rediss://", "unix://")):
            try:
                from ._redis import RedisBackend
            except ModuleNotFoundError as exc:  # coredis is the extra triows[redis]
                if (exc.name or "").partition(".")[0] != "coredis":
                    raise
                raise ImportError(
                    f"Hub({url!r}) needs the Redis client coredis, which is not installed: "
                    "pip install 'triows[redis]' (in a checkout: pip install -e '.[redis]')"
                ) from None
            self._backend = RedisBackend(url, history, presence_ttl, presence_interval, history_ttl)
        else:
            raise ValueError(f"Hub({url!r}): use no URL (in memory) or a redis:// URL")
        self._nursery_manager: Any = None
        self._nursery: trio.Nursery | None = None
        self._running = False
        #: Counters of what this hub did in this process (see :class:`HubStats`).
        self.stats = HubStats()
        self._delivery = Delivery(self._topics, self.stats, self._remove)

    @property
    def running(self) -> bool:
        """Whether the hub is running (inside ``App(hub=...)`` or ``async with hub:``)."""
        return self._running

    @property
    def connected(self) -> bool:
        """Whether ``publish()`` can reach the hub's engine now.

        In memory: whenever the hub is running.  With Redis: while its listener
        is connected to Redis and subscribed to every topic with local
        subscribers (False while it starts, during an outage and once stopped).
        """
        return self._running and self._backend.connected

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the hub until cancelled (``nursery.start(hub.run)``)."""
        if self._running:
            raise RuntimeError("this Hub is already running; run it once")
        self._running = True
        try:
            await self._backend.run(self, task_status=task_status)
        finally:
            self._running = False

    async def __aenter__(self) -> Hub:
        self._nursery_manager = trio.open_nursery()
        nursery = self._nursery = await self._nursery_manager.__aenter__()
        try:
            await nursery.start(self.run)
        except BaseException:
            await self._nursery_manager.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        manager, self._nursery_manager = self._nursery_manager, None
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        self._nursery = None
        return await manager.__aexit__(exc_type, exc, tb)  # type: ignore[no-any-return]

    async def publish(self, topic: str, message: str | bytes | Any) -> str:
        """Publish ``message`` (str, bytes, or a JSON-able value) to ``topic``.

        Returns the message's position: an opaque, JSON-friendly ``str``, ordered
        within the topic, that ``subscribe(topic, since=position)`` resumes
        after.  Never waits for subscribers.  Raises RuntimeError if the hub is
        not running, HubUnavailable if its engine cannot be reached (a Redis
        outage).  After HubUnavailable the message may or may not have been
        published (the connection can fail after Redis ran the publish): a
        publisher that retries must tolerate a second copy, or deduplicate by an
        id of its own, as the live route does with each client publish's ``id``.
        """
        if not self._running:
            raise RuntimeError(
                "the Hub is not running: pass it to App(hub=...) or use `async with hub:`"
            )
        span = publish_span(topic)
        if span is None:
            position = await self._backend.publish(topic, message)
        else:
            with span as current:
                position = await self._backend.publish(topic, message)
                current.set_attribute("messaging.message.id", position)
        self.stats.published += 1
        return position

    def subscribe(
        self,
        topic: str,
        *,
        since: str | None = None,
        last: int = 0,
        max_buffer: int | None = None,
        on_overflow: OverflowPolicy | None = None,
    ) -> AbstractAsyncContextManager[Subscription]:
        """Subscribe to ``topic`` for the duration of the block.

        ``max_buffer`` (default 100 messages) and ``on_overflow`` (default
        ``"drop_oldest"``) default to the hub's settings.  With Redis, the
        subscription is confirmed by Redis before the block starts (unless Redis
        is down: then it starts receiving when Redis returns).  Leaving the block,
        normally or by cancellation, unsubscribes.

        ``since`` (a position from :meth:`publish` or
        :attr:`Subscription.position`): the subscription first returns every
        message published after it that the history still holds, in order, then
        live messages, with no duplicate and no gap; ``subscription.recovered``
        says whether the history covered everything after ``since`` (False: too
        old, or from another epoch, e.g. Redis restarted without persistence;
        the subscription then starts live).  A malformed ``since`` raises
        ValueError before anything is subscribed.

        ``last=N`` (a new page, as opposed to a resume): the subscription first
        returns the topic's newest messages, at most ``N`` and at most what the
        history holds (``history``; none with ``history=0`` or once they
        expired), oldest first, then live ones, with no duplicate and no gap at
        the switch.  ``subscription.position`` starts just before the first
        replayed message (resuming from it replays them again) and
        ``recovered`` is True.  Give ``since`` or ``last``, not both
        (ValueError).
        """
        if last:
            check_last(since, last)
        subscription = Subscription(
            topic,
            self.max_buffer if max_buffer is None else max_buffer,
            self.on_overflow if on_overflow is None else on_overflow,
            self.stats,
            resumable=self.history > 0,
        )
        # (A plain object, not an @asynccontextmanager: no async generator and
        # frame per subscriber, about 400 bytes.)
        return Subscribing(subscription, since, last, self._join, self._remove)

    async def _join(self, subscription: Subscription, since: str | None, last: int) -> None:
        """Subscribing's entry: register ``subscription``, then where it starts."""
        if not self._running:
            raise RuntimeError(
                "the Hub is not running: pass it to App(hub=...) or use `async with hub:`"
            )
        if since is not None:
            parse_position(since)
        topic = subscription.topic
        subscribers = self._topics.get(topic)
        if subscribers is None:
            subscribers = self._topics[topic] = set()
            subscribers.add(subscription)
            await self._backend.watch(topic)
        else:
            subscribers.add(subscription)
        await self._backend.start(subscription, since, last)

    def presence(self, topic: str, key: str, info: Any = None) -> AbstractAsyncContextManager[None]:
        """Be present in ``topic`` as ``key`` (e.g. a user id) for the block.

        ``info`` is any JSON-able value (a name, an avatar...), returned by
        :meth:`members` and in changes.  One key held by several blocks (a user
        with two tabs, on one process or several) is one member, with the info
        of its most recent holder, and leaves when its last block ends.  Leaving
        the block, normally or by cancellation, lets the key go; with Redis, a
        process that dies without leaving has its members expire within
        ``presence_ttl`` seconds.
        """
        self._check_running()
        if not isinstance(key, str):
            raise TypeError(f"presence key {key!r}: use a str (e.g. a user id)")
        check_message(info)
        return self._backend.presence(topic, key, info)

    async def members(self, topic: str) -> dict[str, Any]:
        """The members of ``topic`` now, ``{key: info}``, across every process."""
        self._check_running()
        return await self._backend.members(topic)

    def presence_changes(self, topic: str) -> AbstractAsyncContextManager[PresenceChanges]:
        """Watch ``topic``'s members for the block: ``async for change in changes``.

        Each change is a :class:`PresenceChange` with ``joined`` and ``left``
        ``{key: info}`` dicts, batched: at most one batch per
        ``presence_interval`` however fast members churn, and a key that leaves
        and comes back within ``presence_interval`` (a page reload) shows no
        change.  ``changes.members`` is the membership the batches apply to.
        """
        self._check_running()
        return self._backend.presence_changes(topic)

    def _check_running(self) -> None:
        if not self._running:
            raise RuntimeError(
                "the Hub is not running: pass it to App(hub=...) or use `async with hub:`"
            )

    def interrupt(self, reason: str) -> None:
        """Stop every subscription of this process with :class:`Lagged` (``reason``).

        For backends that may have missed messages (the Redis listener back from
        an outage, with history on): each subscriber returns what it holds, then
        resumes from its position, from the history.
        """
        for subscribers in list(self._topics.values()):
            for subscription in subscribers:
                subscription.interrupt(reason)
        self._topics.clear()

    def _remove(self, subscription: Subscription) -> None:
        subscribers = self._topics.get(subscription.topic)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._topics[subscription.topic]

    def has_subscribers(self, topic: str) -> bool:
        """Whether this process has a subscriber to ``topic``."""
        return topic in self._topics

    def subscriber_count(self, topic: str) -> int:
        """How many subscriptions to ``topic`` this process holds (0 if none).

        Local to this process: with Redis, other processes' subscribers are not
        counted.  A subscription counts from the start of its ``subscribe()``
        block until it is left (or overflows under ``"disconnect"``).
        """
        subscribers = self._topics.get(topic)
        return 0 if subscribers is None else len(subscribers)

    def topics(self) -> list[str]:
        """The topics with at least one subscriber in this process (a snapshot).

        For backends: the Redis listener subscribes to these on (re)connection.
        """
        return list(self._topics)

    async def deliver(
        self, topic: str, message: Any, position: str | None = None, trace: str | None = None
    ) -> None:
        """Hand ``message`` at ``position`` to this process's subscribers of ``topic``.

        Never waits for a subscriber.  For backends, not applications (publish
        with :meth:`publish`): a backend calls it (or :meth:`fan_out`) once per
        message that reaches this process, and the message is in every
        subscriber's buffer (or on its socket) when it returns.  Subscriptions
        that overflow under ``"disconnect"`` (or stop, with history) are removed
        from the topic.

        It delivers in chunks of 64 subscribers and returns without yielding
        if it is done within 2 ms; a longer one checkpoints between two chunks
        every 2 ms, so a publish to many subscribers does not hold the event
        loop (other tasks run at least every few milliseconds).  That part is
        shielded from cancellation (nobody misses a message because its
        publisher was cancelled) and deliveries to one topic take turns, so
        each subscriber still gets them in order.

        ``trace``: the publish's W3C ``traceparent`` when the message came from
        another process (the delivery's span joins the publish's trace).
        """
        subscribers = self._topics.get(topic)
        if subscribers:
            # One Broadcast per delivery: every subscriber shares its encoding and frame.
            await self.fan_out(topic, Broadcast(message, position), trace)

    async def fan_out(self, topic: str, shared: Broadcast, trace: str | None = None) -> None:
        """:meth:`deliver` for a backend that built the Broadcast (to keep it too)."""
        span = delivery_span(topic, self.subscriber_count(topic), trace)
        if span is None:
            await self._delivery.fan_out(topic, shared)
            return
        with span:
            await self._delivery.fan_out(topic, shared)
