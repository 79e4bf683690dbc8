"""The Redis backend: topics shared between processes and hosts through pub/sub.

One Redis connection publishes (a Lua script: offset, Stream with history,
PUBLISH); one pub/sub connection per Hub (the listener) listens to the topics
with local subscribers and hands each message to the local fan-out.

A ``publish()`` that returned means: Redis accepted the message while this
process's listener was connected and subscribed to every topic with local
subscribers, so they receive it (overflow aside).  While the listener is not
connected, ``publish()`` wakes it and waits for its next attempt (at most
PUBLISH_TIMEOUT), then sends or raises HubUnavailable having sent nothing.  If
Redis reports no receiver for a topic the listener believes it is subscribed
to, its connection outlived the Redis it subscribed on: HubUnavailable, and the
listener reconnects.  A publish whose reply is lost raises HubUnavailable
(Redis may have run it) and is never resent behind the caller's back.

A process whose listener is down misses what others publish meanwhile.  Without
history that is silent (at-most-once); with history, every local subscription
is interrupted with Lagged when the listener is back, and resumes from the
Streams.  The listener logs one warning per outage, reconnects with exponential
backoff (BACKOFF_FIRST to BACKOFF_MAX), subscribes again, and logs one line
with the outage's duration.  A message on a ``triows:`` channel that is not the
hub's is skipped with a warning, rate-limited per channel.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import coredis
import trio
from coredis.retry import NoRetryPolicy

from ._backend import HubUnavailable
from ._positions import UNKNOWN_EPOCH, new_epoch
from ._presence import PresenceChanges
from ._redis_codec import decode, decode_live, encode
from ._redis_history import CHANNEL_PREFIX, FENCE, HistoryScripts, topic_channel
from ._redis_logs import MalformedLog, summary
from ._redis_presence import PRESENCE_PREFIX, RedisPresence
from ._redis_presence import channel as presence_channel
from ._traces import traceparent

if TYPE_CHECKING:
    from ._hub import Hub
    from ._subscription import Subscription

__all__ = ["RedisBackend", "decode", "encode"]

logger = logging.getLogger("triows.hub")

#: How long publish() waits for Redis before raising HubUnavailable.
PUBLISH_TIMEOUT = 5.0
#: The listener's reconnection backoff (seconds), doubling from first to max.
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 1.0


@contextmanager
def _reaching(url: str, doing: str, topic: str) -> Iterator[None]:
    """Bound the block by PUBLISH_TIMEOUT; a failure to reach Redis is HubUnavailable."""
    try:
        with trio.fail_after(PUBLISH_TIMEOUT):
            yield
    except (trio.TooSlowError, coredis.exceptions.RedisError, OSError) as exc:
        raise HubUnavailable(
            f"cannot {doing} {topic!r}: Redis at {url} is unavailable ({summary(exc)})"
        ) from exc


class RedisBackend:
    """Moves a Hub's messages through Redis pub/sub (coredis, on trio via anyio)."""

    def __init__(
        self,
        url: str,
        history: int = 0,
        presence_ttl: float = 15.0,
        presence_interval: float = 1.0,
        history_ttl: float = 86400.0,
    ) -> None:
        self.url = url
        self.history = history
        self.history_ttl = history_ttl
        #: The history's epoch as last read from Redis (UNKNOWN_EPOCH before).
        self.epoch = UNKNOWN_EPOCH
        self._scripts: HistoryScripts | None = None
        # Fences of subscriptions starting: token -> set when the listener sees it.
        self._fences: dict[bytes, trio.Event] = {}
        self._presence = RedisPresence(
            new_epoch(), presence_ttl, presence_interval, self._listen_to
        )
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
        self._malformed = MalformedLog()

    async def run(self, hub: Hub, *, task_status: trio.TaskStatus[None]) -> None:
        self._hub = hub
        # No retry in coredis: it would run a publish whose reply was lost twice.
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            self.url, decode_responses=False, retry_policy=NoRetryPolicy()
        )
        async with client, trio.open_nursery() as nursery:
            self._client = client
            self._scripts = HistoryScripts(client, self.history, self.history_ttl)
            self._presence.bind(client)
            nursery.start_soon(self._presence.run)
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
                self._restart_reason = self._restart_reason or summary(exc)
            # Here the session failed, or _restart() cancelled it (then it ends quietly).
            self._lost()
            await self._pause(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _subscribe_all(self, pubsub: Any, hub: Hub) -> None:
        # From here on watch() subscribes new topics on this connection itself, so
        # none added while the topics below are being subscribed is missed.
        # Live messages are labelled with the epoch: read it anew (Redis may
        # have restarted without persistence meanwhile).
        assert self._scripts is not None
        self.epoch = await self._scripts.epoch(new_epoch())
        if self.history and self._down_since is not None:
            # Messages published during the outage never reached this process:
            # tell every subscriber, who resumes from the history.
            hub.interrupt(f"the hub lost Redis for a while ({self._last_failure})")
        self._pubsub = pubsub
        topics = hub.topics()
        watched = self._presence.watched()
        channels = [topic_channel(t) for t in topics] + [presence_channel(t) for t in watched]
        if channels:
            await pubsub.subscribe(*channels)
        self._listening.update(topics)
        for topic in watched:  # announcements may have been missed meanwhile
            await self._presence.load(topic)
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
            if channel.startswith(PRESENCE_PREFIX):
                self._presence.on_message(channel, bytes(message["data"]))
                continue
            topic = channel[len(CHANNEL_PREFIX) :].decode()
            if not hub.has_subscribers(topic):
                # The last local subscriber left: stop listening lazily,
                # off the subscriber's path.
                nursery.start_soon(self._unsubscribe, pubsub, channel)
                continue
            data: bytes = message["data"]
            if data.startswith(FENCE):  # a subscription's start (maybe another process's)
                fence = self._fences.pop(data[len(FENCE) :], None)
                if fence is not None:
                    fence.set()
                continue
            try:
                offset, decoded, trace = decode_live(data)
            except (ValueError, RecursionError) as exc:
                # Any Redis client can publish on a triows: channel.  Its bad
                # message is its problem: skip it, keep the connection.
                self._malformed.report(channel, data, exc)
                continue
            await hub.deliver(topic, decoded, f"{self.epoch}:{offset}", trace)

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
        payload = encode(message, traceparent())
        scripts = self._scripts
        if self._client is None or scripts is None:
            raise HubUnavailable("the Redis hub is not running")
        if not self.connected and not await self._listener_back():
            raise HubUnavailable(
                f"cannot publish to {topic!r}: Redis at {self.url} is unavailable "
                f"to this hub's listener ({self._last_failure}); nothing was sent"
            )
        with _reaching(self.url, "publish to", topic):
            epoch, offset, receivers = await scripts.publish(topic, payload, new_epoch())
        if receivers == 0 and topic in self._listening:
            # Not even our listener got it: its connection outlived the Redis it
            # subscribed on (a restart it has not noticed).  Nobody received it.
            self._restart(f"Redis reported no subscriber to {topic!r}: stale connection")
            raise HubUnavailable(
                f"cannot publish to {topic!r}: Redis at {self.url} is unavailable "
                "(this hub's listener lost its subscription; reconnecting); nobody received it"
            )
        self.epoch = epoch
        return f"{epoch}:{offset}"

    async def start(self, subscription: Subscription, since: str | None, last: int) -> None:
        """Read the topic's head (and the history after ``since``, or its ``last``
        newest messages) in one script."""
        topic = subscription.topic
        # Without the listener the fence never comes back.  With nothing to
        # replay, no wait: the subscription receives once the listener is back.
        lenient = since is None and not self.history
        if not self.connected and (lenient or not await self._listener_back()):
            self._start_unconfirmed(subscription, since, "this hub's listener is not connected")
            return
        token = new_epoch().encode()
        fence = self._fences[token] = trio.Event()
        try:
            with trio.fail_after(PUBLISH_TIMEOUT):
                assert self._scripts is not None
                start = await self._scripts.start(topic, since, last, token, new_epoch())
                # Every message published before the script is now in the buffer,
                # where begin() drops what the replay (or the head) covers.
                await fence.wait()
        except (trio.TooSlowError, coredis.exceptions.RedisError, OSError) as exc:
            self._fences.pop(token, None)
            self._start_unconfirmed(subscription, since, summary(exc))
            return
        self.epoch = start.epoch
        subscription.begin(start.position(since), start.replay, start.recovered)

    def _start_unconfirmed(self, subscription: Subscription, since: str | None, why: str) -> None:
        """Redis cannot say where the subscription starts: fail, unless nothing is lost."""
        if since is not None or self.history:
            raise HubUnavailable(
                f"cannot subscribe to {subscription.topic!r}: Redis at {self.url} is "
                f"unavailable ({why}) to read where the subscription starts"
            )
        # No history: offset 0 of the last epoch seen (resuming from it reports
        # recovered=False, as any resume without history).
        subscription.begin(f"{self.epoch}:0", [], recovered=True)

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

    async def _listen_to(self, channel: bytes) -> bool:
        """Subscribe the listener to ``channel``; True if Redis confirmed it.

        Without a listener connection, False: reconnecting subscribes again to
        every channel in use.  A failure makes the listener reconnect.
        """
        pubsub = self._pubsub
        if pubsub is None:
            await trio.lowlevel.checkpoint()
            return False
        try:
            await pubsub.subscribe(channel)
        except Exception as exc:
            logger.debug("hub: subscribe %r failed: %s", channel, exc)
            if pubsub is self._pubsub:
                self._restart(f"subscribing to {channel!r} failed ({summary(exc)})")
            return False
        return pubsub is self._pubsub

    def presence(self, topic: str, key: str, info: Any) -> Any:
        return self._presence.presence(topic, key, info)

    async def members(self, topic: str) -> dict[str, Any]:
        with _reaching(self.url, "read the members of", topic):
            return await self._presence.members(topic)

    def presence_changes(self, topic: str) -> AbstractAsyncContextManager[PresenceChanges]:
        return self._presence.presence_changes(topic)

    async def watch(self, topic: str) -> None:
        if await self._listen_to(topic_channel(topic)):
            self._listening.add(topic)
