"""Presence through Redis: members of every process, expiring with their process.

Per topic, a sorted set ``triows:presence:<topic>`` holds one entry per
(process, key), ``"<process id>\\n<key>"``, scored with its expiry (Redis's own
clock, ms), and a hash ``triows:presence-info:<topic>`` its info.  Each process
refreshes its entries every ``ttl / 3`` (re-adding any that vanished, e.g. after
a Redis restart) and, for the topics it watches, removes expired entries every
``interval``: a process that died without cleaning up leaves within ``ttl``.
Every change is announced on the channel ``triows.presence:<topic>`` (``+`` with
the info, or ``-``) by the script that makes it.

A process that watches a topic mirrors its entries in a local :class:`Rooms`
(holder = process id), fed by those announcements and reloaded whenever the
listener (re)subscribes, so batching works exactly as in memory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._presence import PresenceChanges
from ._rooms import Rooms

__all__ = ["PRESENCE_PREFIX", "RedisPresence"]

logger = logging.getLogger("triows.hub")

PRESENCE_PREFIX = b"triows.presence:"
#: How long a presence script may take before the call gives up, seconds.
TIMEOUT = 5.0

_NOW = "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

#: KEYS: zset, hash; ARGV: channel, ttl ms, then member, info pairs.  (Re)adds
#: each entry; announces the new ones and those whose info changed.
JOIN_SCRIPT = (
    _NOW
    + """
for i = 3, #ARGV, 2 do
  local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[i])
  local old = redis.call('HGET', KEYS[2], ARGV[i])
  if added == 1 or old ~= ARGV[i + 1] then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    redis.call('PUBLISH', ARGV[1], '+' .. ARGV[i] .. '\\n' .. ARGV[i + 1])
  end
end
return 1
"""
)

#: KEYS: zset, hash; ARGV: channel, member.
LEAVE_SCRIPT = """
if redis.call('ZREM', KEYS[1], ARGV[2]) == 1 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('PUBLISH', ARGV[1], '-' .. ARGV[2])
end
return 1
"""

#: Lua: remove the entries of KEYS[1]/KEYS[2] expired by ``now`` and announce
#: each on the channel ARGV[1]; leaves them in ``expired``.
_EXPIRE = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, member in ipairs(expired) do
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
  redis.call('PUBLISH', ARGV[1], '-' .. member)
end
"""

#: KEYS: zset, hash; ARGV: channel.  Removes and announces expired entries,
#: returns the live ones as member, info pairs.
MEMBERS_SCRIPT = (
    _NOW
    + _EXPIRE
    + """
local result = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  table.insert(result, member)
  table.insert(result, redis.call('HGET', KEYS[2], member) or 'null')
end
return result
"""
)


#: KEYS: zset, hash; ARGV: channel.  Removes and announces expired entries only.
SWEEP_SCRIPT = (
    _NOW
    + _EXPIRE
    + """
return #expired
"""
)


def _keys(topic: str) -> list[bytes]:
    name = topic.encode()
    return [b"triows:presence:" + name, b"triows:presence-info:" + name]


def channel(topic: str) -> bytes:
    return PRESENCE_PREFIX + topic.encode()


class RedisPresence:
    """The Redis backend's presence (see the module docstring)."""

    def __init__(
        self,
        process: str,
        ttl: float,
        interval: float,
        subscribe: Callable[[bytes], Awaitable[bool]],
    ) -> None:
        self.process = process
        self.ttl = ttl
        self.interval = interval
        # Across processes a key shows the info of its greatest process id, as
        # members() does: one rule for both, whatever order announcements take.
        self.mirror = Rooms(interval, by_process)
        self._subscribe = subscribe
        self._scripts: dict[str, Any] = {}
        #: (topic, key) -> {holder: info}: this process's presence blocks.
        self._held: dict[tuple[str, str], dict[object, str]] = {}
        #: topic -> number of local presence_changes() blocks.
        self._watched: dict[str, int] = {}

    def bind(self, client: Any) -> None:
        """Use ``client`` (before the hub is usable)."""
        self._scripts = {
            "join": client.register_script(JOIN_SCRIPT),
            "leave": client.register_script(LEAVE_SCRIPT),
            "members": client.register_script(MEMBERS_SCRIPT),
            "sweep": client.register_script(SWEEP_SCRIPT),
        }

    async def run(self) -> None:
        """Refresh this process's entries and sweep watched topics, until cancelled."""
        async with trio.open_nursery() as nursery:
            self.mirror.nursery = nursery
            refreshed = trio.current_time()
            while True:
                await trio.sleep(min(self.interval, self.ttl / 3))
                if trio.current_time() - refreshed >= self.ttl / 3:
                    refreshed = trio.current_time()
                    await self._refresh_all()
                for topic in list(self._watched):  # the announcements update mirrors
                    sweep = self._scripts["sweep"](keys=_keys(topic), args=[channel(topic)])
                    await self._call_quietly(sweep)

    def _member(self, key: str) -> str:
        return f"{self.process}\n{key}"

    async def _call_quietly(self, call: Awaitable[Any]) -> None:
        try:
            with trio.fail_after(TIMEOUT):
                await call
        except Exception as exc:  # Redis unavailable: the next round retries
            logger.debug("hub: presence update failed: %r", exc)

    async def _join(self, topic: str, pairs: list[str]) -> None:
        args = [channel(topic), int(self.ttl * 1000), *pairs]
        await self._scripts["join"](keys=_keys(topic), args=args)

    async def _refresh_all(self) -> None:
        by_topic: dict[str, list[str]] = {}
        for (topic, key), holders in list(self._held.items()):
            by_topic.setdefault(topic, []).extend([self._member(key), _latest(holders)])
        for topic, pairs in by_topic.items():
            await self._call_quietly(self._join(topic, pairs))

    @asynccontextmanager
    async def presence(self, topic: str, key: str, info: Any) -> AsyncIterator[None]:
        holder = object()
        holders = self._held.setdefault((topic, key), {})
        holders[holder] = json.dumps(info, separators=(",", ":"))
        try:
            # Redis down: the refresh adds it when Redis is back.
            await self._call_quietly(self._join(topic, [self._member(key), _latest(holders)]))
            yield
        finally:
            del holders[holder]
            with trio.CancelScope(shield=True):
                if holders:  # the info of the remaining most recent holder
                    pairs = [self._member(key), _latest(holders)]
                    await self._call_quietly(self._join(topic, pairs))
                else:
                    del self._held[(topic, key)]
                    args = [channel(topic), self._member(key)]
                    await self._call_quietly(self._scripts["leave"](keys=_keys(topic), args=args))

    async def members(self, topic: str) -> dict[str, Any]:
        """``{key: info}`` of every live entry (expired ones are removed on the way)."""
        reply = await self._scripts["members"](keys=_keys(topic), args=[channel(topic)])
        holders: dict[str, dict[str, str]] = {}
        for member, info in zip(reply[::2], reply[1::2], strict=True):
            process, _, key = bytes(member).decode().partition("\n")
            holders.setdefault(key, {})[process] = info
        return {key: json.loads(by_process(infos)) for key, infos in holders.items()}

    async def load(self, topic: str) -> None:
        """Make the mirror of ``topic`` match Redis (after a (re)subscription)."""
        reply = await self._scripts["members"](keys=_keys(topic), args=[channel(topic)])
        current: dict[tuple[str, str], Any] = {}
        for member, info in zip(reply[::2], reply[1::2], strict=True):
            process, _, key = bytes(member).decode().partition("\n")
            current[(process, key)] = json.loads(info)
        room = self.mirror.get(topic)
        if room is not None:
            for key, holders in list(room.holders.items()):
                for holder in list(holders):
                    if (holder, key) not in current:
                        self.mirror.remove(topic, holder, key)
        for (process, key), info in current.items():
            self.mirror.add(topic, process, key, info)

    def on_message(self, channel_name: bytes, data: bytes) -> None:
        """An announcement on a presence channel: update the mirror."""
        topic = channel_name[len(PRESENCE_PREFIX) :].decode()
        if topic not in self._watched:
            return
        try:
            text = data.decode()
            kind, (process, _, rest) = text[:1], text[1:].partition("\n")
            if kind == "+":
                key, _, info = rest.rpartition("\n")  # compact JSON has no newline
                self.mirror.add(topic, process, key, json.loads(info))
            elif kind == "-":
                self.mirror.remove(topic, process, rest)
            else:
                raise ValueError(f"unknown announcement {text[:20]!r}")
        except (ValueError, UnicodeDecodeError) as exc:
            logger.debug("hub: skipped a malformed presence announcement: %r", exc)

    def watched(self) -> list[str]:
        return list(self._watched)

    @asynccontextmanager
    async def presence_changes(self, topic: str) -> AsyncIterator[PresenceChanges]:
        first = topic not in self._watched
        self._watched[topic] = self._watched.get(topic, 0) + 1
        try:
            if first:
                await self._subscribe(channel(topic))
                await self.load(topic)
            async with self.mirror.watch(topic) as changes:
                yield changes
        finally:
            self._watched[topic] -= 1
            if not self._watched[topic]:
                del self._watched[topic]
                self.mirror.forget(topic)


def _latest(holders: dict[object, str]) -> str:
    return next(reversed(holders.values()))


def by_process(holders: dict[Any, Any]) -> Any:
    """The info of the greatest process id among a key's holders."""
    return holders[max(holders)]
