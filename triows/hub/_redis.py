"""The Redis backend: topics shared between processes and hosts through pub/sub.

One Redis connection publishes; one pub/sub connection per Hub (the listener)
listens to the topics that have local subscribers and hands each message to the
local fan-out.  A process's own publications come back through Redis like
everyone else's, so every subscriber sees one order per publisher.

What a ``publish()`` that returned means: Redis accepted the message while this
process's listener was connected and subscribed to every topic that had local
subscribers (those whose ``subscribe()`` block had started).  So, overflow
policy aside, this process's subscribers receive every message whose
``publish()`` returned.  While the listener is not connected (a hub that has
just started, an outage, Redis back but the listener still in its backoff),
``publish()`` wakes it and waits for its next attempt, at most PUBLISH_TIMEOUT,
then sends or raises HubUnavailable having sent nothing.  If Redis reports no
receiver at all for a topic the listener believes it is subscribed to, its
connection has outlived the Redis it subscribed on: ``publish()`` raises
HubUnavailable (nobody received the message) and the listener reconnects.

Across processes, delivery stays at-most-once: a process whose listener is down
misses what others publish meanwhile (at most BACKOFF_MAX after Redis is back if
it does not publish itself), and nothing is replayed.

If Redis goes away, the listener logs one warning, reconnects with exponential
backoff (BACKOFF_FIRST to BACKOFF_MAX), subscribes again to every topic with
local subscribers, and logs one line with the outage's duration.  Subscribers
keep running and simply receive nothing meanwhile.

A message on a ``triows:`` channel that is not the hub's (any Redis client can
publish there: no type tag, bad JSON, bad UTF-8) is skipped with a warning,
rate-limited per channel; the connection and the other messages are unaffected.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import coredis
import trio

from ._hub import HubUnavailable
from ._positions import UNKNOWN_EPOCH, new_epoch
from ._redis_codec import decode, encode
from ._redis_history import (
    COUNTER_KEY,
    EPOCH_KEY,
    PUBLISH_SCRIPT,
    START_SCRIPT,
    parse_start,
    stream_key,
)

if TYPE_CHECKING:
    from ._hub import Hub
    from ._subscription import Subscription

__all__ = ["RedisBackend", "decode", "encode"]

logger = logging.getLogger("triows.hub")

CHANNEL_PREFIX = b"triows:"
#: How long publish() waits for Redis before raising HubUnavailable.
PUBLISH_TIMEOUT = 5.0
#: The listener's reconnection backoff (seconds), doubling from first to max.
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 1.0
#: At most one warning per channel per this many seconds about malformed messages.
BAD_MESSAGE_LOG_INTERVAL = 10.0


def _channel(topic: str) -> bytes:
    return CHANNEL_PREFIX + topic.encode()


class RedisBackend:
    """Moves a Hub's messages through Redis pub/sub (coredis, on trio via anyio)."""

    def __init__(self, url: str, history: int = 0) -> None:
        self.url = url
        self.history = history
        #: The history's epoch as last read from Redis (UNKNOWN_EPOCH before).
        self.epoch = UNKNOWN_EPOCH
        self._candidate = new_epoch()
        self._publish_script: Any = None
        self._start_script: Any = None
        self._client: coredis.Redis[bytes] | None = None
        self._pubsub: Any = None
        self._hub: Hub | None = None
        #: Set while the listener is connected and subscribed to the topics with
        #: local subscribers; ``publish()`` raises HubUnavailable while it is not.
        self.connected = False
        #: How many times the listener lost (or could not reach) Redis.
        self.outages = 0
        # Topics whose SUBSCRIBE Redis confirmed on the listener's current connection.
        self._listening: set[str] = set()
        self._session: trio.CancelScope | None = None
        self._restart_reason = ""
        self._retry_now = trio.Event()
        # Set (and replaced) when an attempt to connect succeeds or fails.
        self._attempted = trio.Event()
        self._down_since: float | None = None
        self._last_failure = "not connected yet"
        self._malformed = _MalformedLog()

    async def run(self, hub: Hub, *, task_status: trio.TaskStatus[None]) -> None:
        self._hub = hub
        client: coredis.Redis[bytes] = coredis.Redis.from_url(self.url, decode_responses=False)
        async with client, trio.open_nursery() as nursery:
            self._client = client
            self._publish_script = client.register_script(PUBLISH_SCRIPT)
            self._start_script = client.register_script(START_SCRIPT)
            task_status.started()
            try:
                await self._listen(hub, nursery)
            except BaseExceptionGroup as group:
                cancelled, noise = group.split(trio.Cancelled)
                if cancelled is None:
                    raise
                # Stopping: coredis's pub/sub teardown can fail on a connection it
                # already closed (anyio.ClosedResourceError); that is not an error.
                logger.debug("hub: ignored while stopping: %r", noise)
                raise cancelled from None
            finally:
                self._client = None
                self._hub = None
                self.connected = False

    async def _listen(self, hub: Hub, nursery: trio.Nursery) -> None:
        assert self._client is not None
        delay = BACKOFF_FIRST
        while True:
            try:
                with trio.CancelScope() as self._session:
                    async with self._client.pubsub(
                        ignore_subscribe_messages=True, retry_policy=None
                    ) as pubsub:
                        await self._subscribe_all(pubsub, hub)
                        delay = BACKOFF_FIRST
                        await self._receive(pubsub, hub, nursery)
            except Exception as exc:  # an outage: connection refused, reset, timeout
                self._restart_reason = self._restart_reason or _summary(exc)
            # Here the session failed, or _restart() cancelled it (then it ends quietly).
            self._lost()
            await self._pause(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _subscribe_all(self, pubsub: Any, hub: Hub) -> None:
        # From here on watch() subscribes new topics on this connection itself, so
        # none added while the topics below are being subscribed is missed.
        self._pubsub = pubsub
        topics = hub.topics()
        if topics:
            await pubsub.subscribe(*(_channel(t) for t in topics))
        self._listening.update(topics)
        self.connected = True
        self._attempt_ended()
        if self._down_since is None:
            logger.info("hub: listening on %s", self.url)
        else:
            logger.info(
                "hub: Redis at %s back after %.1f s unavailable; listening again to %d topic(s)",
                self.url,
                trio.current_time() - self._down_since,
                len(topics),
            )
            self._down_since = None

    async def _receive(self, pubsub: Any, hub: Hub, nursery: trio.Nursery) -> None:
        while True:
            message = await pubsub.get_message()
            if message is None or message["type"] != "message":
                continue
            channel = bytes(message["channel"])
            topic = channel[len(CHANNEL_PREFIX) :].decode()
            if not hub.has_subscribers(topic):
                # The last local subscriber left: stop listening lazily,
                # off the subscriber's path.
                nursery.start_soon(self._unsubscribe, pubsub, channel)
                continue
            data: bytes = message["data"]
            offset, _, payload = data.partition(b"\n")
            try:
                if not offset.isdigit() or len(offset) > 19:
                    raise ValueError(f"no position (starts {offset[:20]!r})")
                decoded = decode(payload)
            except (ValueError, RecursionError) as exc:
                # Any Redis client can publish on a triows: channel.  Its bad
                # message is its problem: skip it, keep the connection.
                self._malformed.report(channel, data, exc)
                continue
            hub.deliver(topic, decoded, f"{self.epoch}:{offset.decode()}")

    def _lost(self) -> None:
        reason, self._restart_reason = self._restart_reason, ""
        self.connected = False
        self._pubsub = None
        self._session = None
        self._listening.clear()
        self._last_failure = reason
        if self._down_since is not None:  # a failed attempt to reconnect
            logger.debug("hub: Redis at %s still unavailable (%s)", self.url, reason)
            self._attempt_ended()
            return
        self._down_since = trio.current_time()
        self.outages += 1
        logger.warning(
            "hub: lost Redis at %s (%s); local subscribers receive nothing and "
            "publish() raises HubUnavailable until it is back",
            self.url,
            reason,
        )

    def _attempt_ended(self) -> None:
        self._attempted.set()
        self._attempted = trio.Event()

    async def _pause(self, delay: float) -> None:
        """Wait ``delay`` before the next attempt, or BACKOFF_FIRST if a publish asks."""
        await trio.sleep(BACKOFF_FIRST)
        with trio.move_on_after(delay - BACKOFF_FIRST):
            await self._retry_now.wait()
        self._retry_now = trio.Event()

    def _restart(self, reason: str) -> None:
        """Make the listener drop its connection, reconnect and subscribe again."""
        if self._session is not None:
            self.connected = False  # publish() raises from now on, not from the reconnection
            self._restart_reason = reason
            self._session.cancel()

    async def _unsubscribe(self, pubsub: Any, channel: bytes) -> None:
        topic = channel[len(CHANNEL_PREFIX) :].decode()
        if self._hub is not None and not self._hub.has_subscribers(topic):
            if pubsub is self._pubsub:
                self._listening.discard(topic)
            try:
                await pubsub.unsubscribe(channel)
            except Exception as exc:
                logger.debug("hub: unsubscribe %r failed: %s", topic, exc)

    async def publish(self, topic: str, message: Any) -> str:
        payload = encode(message)
        client = self._client
        if client is None:
            raise HubUnavailable("the Redis hub is not running")
        if not self.connected and not await self._listener_back():
            raise HubUnavailable(
                f"cannot publish to {topic!r}: Redis at {self.url} is unavailable "
                f"to this hub's listener ({self._last_failure}); nothing was sent"
            )
        try:
            with trio.fail_after(PUBLISH_TIMEOUT):
                epoch, offset, receivers = await self._publish_script(
                    keys=[EPOCH_KEY, COUNTER_KEY, stream_key(topic)],
                    args=[self._candidate, _channel(topic), payload, self.history],
                )
        except (trio.TooSlowError, coredis.exceptions.RedisError, OSError) as exc:
            raise HubUnavailable(
                f"cannot publish to {topic!r}: Redis at {self.url} is unavailable ({_summary(exc)})"
            ) from exc
        if receivers == 0 and topic in self._listening:
            # Not even our listener got it: its connection outlived the Redis it
            # subscribed on (a restart it has not noticed).  Nobody received it.
            self._restart(f"Redis reported no subscriber to {topic!r}: stale connection")
            raise HubUnavailable(
                f"cannot publish to {topic!r}: Redis at {self.url} is unavailable "
                "(this hub's listener lost its subscription; reconnecting); nobody received it"
            )
        self.epoch = bytes(epoch).decode()
        return f"{self.epoch}:{int(offset)}"

    async def start(self, subscription: Subscription, since: str | None) -> None:
        """Read the topic's head (and the history after ``since``) in one script."""
        since_epoch, _, since_offset = (since or "").partition(":")
        try:
            with trio.fail_after(PUBLISH_TIMEOUT):
                reply = await self._start_script(
                    keys=[EPOCH_KEY, COUNTER_KEY, stream_key(subscription.topic)],
                    args=[self._candidate, since_epoch, since_offset or "0", self.history],
                )
        except (trio.TooSlowError, coredis.exceptions.RedisError, OSError) as exc:
            if since is not None or self.history:
                raise HubUnavailable(
                    f"cannot subscribe to {subscription.topic!r}: Redis at {self.url} is "
                    f"unavailable ({_summary(exc)}) to read where the subscription starts"
                ) from exc
            # No history: start at offset 0 of the last epoch seen; resuming from
            # it later reports recovered=False, as any resume without history.
            subscription.begin(f"{self.epoch}:0", [], recovered=True)
            return
        start = parse_start(reply)
        self.epoch = start.epoch
        position = since if since is not None and start.recovered else start.head
        subscription.begin(position, start.replay, start.recovered)

    async def _listener_back(self) -> bool:
        """Wake the listener out of its backoff and wait for its next attempt.

        Redis may be back while the listener waits; this also covers a hub that
        has just started.  Bounded by PUBLISH_TIMEOUT; True if it is connected.
        """
        self._retry_now.set()
        attempted = self._attempted
        with trio.move_on_after(PUBLISH_TIMEOUT):
            await attempted.wait()
        return self.connected

    async def watch(self, topic: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            await trio.lowlevel.checkpoint()
            return  # the listener subscribes to every topic when Redis returns
        try:
            await pubsub.subscribe(_channel(topic))
        except Exception as exc:
            logger.debug("hub: subscribe %r failed: %s", topic, exc)
            if pubsub is self._pubsub:
                # Unconfirmed: reconnecting subscribes again to every topic.
                self._restart(f"subscribing to {topic!r} failed ({_summary(exc)})")
            return
        if pubsub is self._pubsub:
            self._listening.add(topic)


class _MalformedLog:
    """Warns about messages that are not the hub's, rate-limited per channel.

    One line per channel per BAD_MESSAGE_LOG_INTERVAL; the next line after a quiet
    period says how many were skipped without a line.
    """

    def __init__(self) -> None:
        # channel -> (when its last line was logged, messages skipped since silently)
        self._channels: dict[bytes, tuple[float, int]] = {}

    def report(self, channel: bytes, payload: bytes, error: Exception) -> None:
        now = trio.current_time()
        logged_at, silent = self._channels.get(channel, (-math.inf, 0))
        if now - logged_at < BAD_MESSAGE_LOG_INTERVAL:
            self._channels[channel] = (logged_at, silent + 1)
            return
        self._channels[channel] = (now, 0)
        more = f"; {silent} more skipped on this channel since the last warning" if silent else ""
        logger.warning(
            "hub: skipped a malformed message on Redis channel %r (%d bytes, starting %r): %s%s",
            channel,
            len(payload),
            payload[:32],
            _summary(error),
            more,
        )


def _summary(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _summary(exc.exceptions[0])
    return f"{type(exc).__name__}: {exc}"
