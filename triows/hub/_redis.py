"""The Redis backend: topics shared between processes and hosts through pub/sub.

One Redis connection publishes; one pub/sub connection per Hub listens to the
topics that have local subscribers and hands each message to the local fan-out.
A process's own publications come back through Redis like everyone else's, so
every subscriber sees one order per publisher.

If Redis goes away, the listener reconnects with exponential backoff (0.1 s to
5 s) and subscribes again to every topic with local subscribers; subscribers
keep running and simply receive nothing meanwhile.  ``publish`` raises
HubUnavailable during the outage.  Delivery is at-most-once.

A message on a ``triows:`` channel that is not the hub's (any Redis client can
publish there: no type tag, bad JSON, bad UTF-8) is skipped with a warning,
rate-limited per channel; the connection and the other messages are unaffected.
"""

from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING, Any

import coredis
import trio

from ._hub import HubUnavailable, check_message

if TYPE_CHECKING:
    from ._hub import Hub

__all__ = ["RedisBackend", "decode", "encode"]

logger = logging.getLogger("triows.hub")

CHANNEL_PREFIX = b"triows:"
#: How long publish() waits for Redis before raising HubUnavailable.
PUBLISH_TIMEOUT = 5.0
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
#: At most one warning per channel per this many seconds about malformed messages.
BAD_MESSAGE_LOG_INTERVAL = 10.0


def encode(message: Any) -> bytes:
    """Tag the payload with its type so the receiving side rebuilds the same kind."""
    if isinstance(message, str):
        return b"s" + message.encode()
    if isinstance(message, bytes | bytearray | memoryview):
        return b"b" + bytes(message)
    check_message(message)
    return b"j" + json.dumps(message, separators=(",", ":")).encode()


def decode(payload: bytes) -> Any:
    tag, body = payload[:1], payload[1:]
    if tag == b"s":
        return body.decode()
    if tag == b"b":
        return body
    if tag == b"j":
        return json.loads(body)
    raise ValueError(f"not a triows hub message (tag {tag!r})")


def _channel(topic: str) -> bytes:
    return CHANNEL_PREFIX + topic.encode()


class RedisBackend:
    """Moves a Hub's messages through Redis pub/sub (coredis, on trio via anyio)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: coredis.Redis[bytes] | None = None
        self._pubsub: Any = None
        self._hub: Hub | None = None
        #: Set while the listener is connected and subscribed.
        self.connected = False
        #: How many times the listener lost its connection to Redis.
        self.outages = 0
        self._malformed = _MalformedLog()

    async def run(self, hub: Hub, *, task_status: trio.TaskStatus[None]) -> None:
        self._hub = hub
        client: coredis.Redis[bytes] = coredis.Redis.from_url(self.url, decode_responses=False)
        async with client, trio.open_nursery() as nursery:
            self._client = client
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

    async def _listen(self, hub: Hub, nursery: trio.Nursery) -> None:
        assert self._client is not None
        delay = BACKOFF_FIRST
        while True:
            try:
                async with self._client.pubsub(
                    ignore_subscribe_messages=True, retry_policy=None
                ) as pubsub:
                    self._pubsub = pubsub
                    topics = list(hub._topics)
                    if topics:
                        await pubsub.subscribe(*(_channel(t) for t in topics))
                    if not self.connected:
                        logger.info("hub: listening on %s", self.url)
                    self.connected = True
                    delay = BACKOFF_FIRST
                    while True:
                        message = await pubsub.get_message()
                        if message is None or message["type"] != "message":
                            continue
                        channel = bytes(message["channel"])  # type: ignore[arg-type]
                        topic = channel[len(CHANNEL_PREFIX) :].decode()
                        if not hub.has_subscribers(topic):
                            # The last local subscriber left: stop listening lazily,
                            # off the subscriber's path.
                            nursery.start_soon(self._unsubscribe, pubsub, channel)
                            continue
                        data: bytes = message["data"]  # type: ignore[assignment]
                        try:
                            decoded = decode(data)
                        except (ValueError, RecursionError) as exc:
                            # Any Redis client can publish on a triows: channel.  Its bad
                            # message is its problem: skip it, keep the connection.
                            self._malformed.report(channel, data, exc)
                            continue
                        hub._deliver(topic, decoded)
            except Exception as exc:  # an outage: connection refused, reset, timeout
                self._pubsub = None
                if self.connected:
                    self.outages += 1
                self.connected = False
                logger.warning(
                    "hub: Redis at %s unavailable (%s); retrying in %.1f s",
                    self.url,
                    _summary(exc),
                    delay,
                )
                await trio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    async def _unsubscribe(self, pubsub: Any, channel: bytes) -> None:
        topic = channel[len(CHANNEL_PREFIX) :].decode()
        if self._hub is not None and not self._hub.has_subscribers(topic):
            try:
                await pubsub.unsubscribe(channel)
            except Exception as exc:
                logger.debug("hub: unsubscribe %r failed: %s", topic, exc)

    async def publish(self, topic: str, message: Any) -> None:
        payload = encode(message)
        client = self._client
        if client is None:
            raise HubUnavailable("the Redis hub is not running")
        try:
            with trio.fail_after(PUBLISH_TIMEOUT):
                await client.publish(_channel(topic), payload)
        except (trio.TooSlowError, coredis.exceptions.RedisError, OSError) as exc:
            raise HubUnavailable(
                f"cannot publish to {topic!r}: Redis at {self.url} is unavailable ({_summary(exc)})"
            ) from exc

    async def watch(self, topic: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            await trio.lowlevel.checkpoint()
            return  # the listener subscribes to every topic when Redis returns
        try:
            await pubsub.subscribe(_channel(topic))
        except Exception as exc:
            # The listener will notice the outage and resubscribe on reconnect.
            logger.debug("hub: subscribe %r failed: %s", topic, exc)


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
