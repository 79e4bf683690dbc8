"""The Redis backend's history: one counter, one epoch, one Stream per topic, in Lua.

Keys (plain Redis keys, next to the ``triows:<topic>`` pub/sub channels):

- ``triows:epoch``: the history's epoch, set by the first hub that finds it
  missing.  Redis restarted without persistence loses it, so the next hub sets
  a new one, and positions of the old epoch give ``recovered=False``.
- ``triows:counter``: INCR'd once per publication, whatever the topic; the
  offset of a position.
- ``triows:last:<topic>``: the offset of the topic's last message (every hub
  sets it, with or without history), or the head when a subscription found
  none (nothing after it is known).  It expires ``LAST_POSITION_LIFETIME``
  times ``history_ttl`` after the topic's last publish or subscription start:
  it outlives the messages, so a resume from the topic's last position after
  a silence longer than ``history_ttl`` is recovered (nothing was missed).
- ``triows:stream:<topic>`` (with ``history > 0``): the topic's recent messages,
  each with the Stream id ``<counter>-0`` and fields ``m`` (the payload) and
  ``p`` (the offset of the topic's previous message), trimmed to about
  ``history`` entries (``MAXLEN ~``, the oldest first).  It expires
  ``history_ttl`` after the topic's last publish or subscription start.  The history covers a
  position if the entries after it chain, each ``p`` the offset of the entry
  before, from the position to the topic's last offset.

``PUBLISH`` runs inside the same script as ``XADD``: every process sees the
topic's messages in Stream order, and each live message carries its offset
(``b"<offset>\\n"`` before the tagged payload), so a subscriber switching from
replay to live drops what it already replayed.  A hub with ``history=0``
writes no Stream entry but moves the topic's last offset, so a resume across
its messages is not recovered (rather than silently missing them).
"""

from __future__ import annotations

from typing import Any

import attrs

from .._connection._frames import Broadcast
from ._positions import LAST_POSITION_LIFETIME, offset_key
from ._redis_codec import decode

__all__ = [
    "CHANNEL_PREFIX",
    "FENCE",
    "HistoryScripts",
    "Start",
    "topic_channel",
]

#: Each topic's pub/sub channel is this prefix and the topic.
CHANNEL_PREFIX = b"triows:"
EPOCH_KEY = b"triows:epoch"
COUNTER_KEY = b"triows:counter"

#: KEYS: epoch, counter, stream, last; ARGV: candidate epoch, channel, payload,
#: history, the Stream's time to live (ms), the last offset's (ms).  Returns
#: {epoch, offset, receivers}.
PUBLISH_SCRIPT = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
end
local offset = redis.call('INCR', KEYS[2])
local previous = redis.call('GET', KEYS[4]) or '0'
redis.call('SET', KEYS[4], offset, 'PX', ARGV[6])
if ARGV[4] ~= '0' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], offset .. '-0', 'm', ARGV[3], 'p', previous)
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
local receivers = redis.call('PUBLISH', ARGV[2], offset .. '\\n' .. ARGV[3])
return {epoch, offset, receivers}
"""

#: KEYS: epoch; ARGV: candidate epoch.  Returns the epoch (set if missing).
EPOCH_SCRIPT = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
end
return epoch
"""

#: KEYS: epoch, counter, stream, last; ARGV: candidate epoch, since's epoch
#: ('' for no since), since's offset, history, channel, fence, the Stream's
#: time to live (ms), the last offset's (ms), how many of the newest messages
#: to return without since (0: none).  Returns {epoch, head, recovered, entries}, then publishes the fence on
#: the topic's channel: once the listener sees it, every message published
#: before the script is buffered.  Recovered only if the entries after since
#: chain, by their ``p``, from since (or before it) to the topic's last offset:
#: a message the Stream lacks (trimmed, expired, published by a hub without
#: history, a deleted Stream) is never skipped.  A topic without a last offset
#: (never used, or expired) gets the head as one: nothing after it is known.
START_SCRIPT = """
-- The topic's newest entries, at most count, oldest first, back from its last
-- offset while they chain (each entry's p is the one before it): no gap.
local function newest(last, count)
  local kept = {}
  if count <= 0 then
    return kept
  end
  local expected = last
  for _, entry in ipairs(redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', count)) do
    if tonumber(string.match(entry[1], '^(%d+)')) ~= expected then
      break
    end
    kept[#kept + 1] = entry
    expected = tonumber(entry[2][4])
  end
  local entries = {}
  for i = #kept, 1, -1 do
    entries[#entries + 1] = kept[i]
  end
  return entries
end
local function start()
  local epoch = redis.call('GET', KEYS[1])
  if not epoch then
    epoch = ARGV[1]
    redis.call('SET', KEYS[1], epoch)
  end
  local head = tonumber(redis.call('GET', KEYS[2]) or '0')
  local last = tonumber(redis.call('GET', KEYS[4]) or '-1')
  if last < 0 then
    last = head
    redis.call('SET', KEYS[4], head, 'PX', ARGV[8])
  else
    redis.call('PEXPIRE', KEYS[4], ARGV[8])
    redis.call('PEXPIRE', KEYS[3], ARGV[7])
  end
  if ARGV[2] == '' then
    return {epoch, head, 1, newest(last, tonumber(ARGV[9]))}
  end
  local after = tonumber(ARGV[3])
  if ARGV[2] ~= epoch or after > head then
    return {epoch, head, 0, {}}
  end
  if after >= last then
    return {epoch, head, 1, {}}
  end
  if ARGV[4] == '0' then
    return {epoch, head, 0, {}}
  end
  local entries = redis.call('XRANGE', KEYS[3], '(' .. ARGV[3] .. '-0', '+')
  -- Positions count every topic's messages: the first entry's predecessor in
  -- this topic may be before since, never after it; the others chain exactly.
  local previous = nil
  for _, entry in ipairs(entries) do
    local p = tonumber(entry[2][4])
    if (previous == nil and p > after) or (previous ~= nil and p ~= previous) then
      return {epoch, head, 0, {}}
    end
    previous = tonumber(string.match(entry[1], '^(%d+)'))
  end
  if previous ~= last then
    return {epoch, head, 0, {}}
  end
  return {epoch, head, 1, entries}
end
local result = start()
redis.call('PUBLISH', ARGV[5], ARGV[6])
return result
"""

#: A fence's payload starts with this (never a digit: not a message).
FENCE = b"fence:"


def topic_channel(topic: str) -> bytes:
    return CHANNEL_PREFIX + topic.encode()


def stream_key(topic: str) -> bytes:
    return b"triows:stream:" + topic.encode()


def last_key(topic: str) -> bytes:
    return b"triows:last:" + topic.encode()


@attrs.frozen
class Start:
    """Where a subscription starts, as START_SCRIPT found it."""

    epoch: str
    head: str
    recovered: bool
    replay: list[Broadcast]

    def position(self, since: str | None) -> str:
        """Where the subscription starts: ``since`` if recovered, else the head;
        without ``since``, just before the replayed newest messages (if any)."""
        if since is not None:
            return since if self.recovered else self.head
        if self.replay:
            return f"{self.epoch}:{offset_key(self.replay[0].position) - 1}"
        return self.head


def parse_start(reply: Any) -> Start:
    """START_SCRIPT's reply, with the replayed messages decoded."""
    epoch_raw, head, recovered, entries = reply
    epoch = bytes(epoch_raw).decode()
    replay = []
    for entry_id, fields in entries:
        offset = bytes(entry_id).partition(b"-")[0].decode()
        replay.append(Broadcast(decode(bytes(fields[1])), f"{epoch}:{offset}"))
    return Start(epoch, f"{epoch}:{int(head)}", bool(recovered), replay)


class HistoryScripts:
    """The history's scripts, registered on one client, with the hub's settings.

    ``history_ttl`` (seconds) is the Stream's time to live; a topic's last
    offset lives LAST_POSITION_LIFETIME times longer.  Each call is one round
    trip; a failure to reach Redis propagates (coredis or OS errors).
    """

    def __init__(self, client: Any, history: int, history_ttl: float) -> None:
        self.history = history
        self._ttl_ms = max(1, round(history_ttl * 1000))
        self._last_ttl_ms = max(1, round(history_ttl * LAST_POSITION_LIFETIME * 1000))
        self._publish = client.register_script(PUBLISH_SCRIPT)
        self._start = client.register_script(START_SCRIPT)
        self._epoch = client.register_script(EPOCH_SCRIPT)

    async def epoch(self, candidate: str) -> str:
        """The history's epoch (``candidate`` becomes it if Redis has none)."""
        return bytes(await self._epoch(keys=[EPOCH_KEY], args=[candidate])).decode()

    async def publish(self, topic: str, payload: bytes, candidate: str) -> tuple[str, int, int]:
        """Publish ``payload`` (encoded) to ``topic``: (epoch, offset, receivers)."""
        epoch, offset, receivers = await self._publish(
            keys=[EPOCH_KEY, COUNTER_KEY, stream_key(topic), last_key(topic)],
            args=[
                candidate,
                topic_channel(topic),
                payload,
                self.history,
                self._ttl_ms,
                self._last_ttl_ms,
            ],
        )
        return bytes(epoch).decode(), int(offset), int(receivers)

    async def start(
        self, topic: str, since: str | None, last: int, fence: bytes, candidate: str
    ) -> Start:
        """Where a subscription to ``topic`` starts: after ``since``, or with the
        ``last`` newest messages; publishes ``fence`` on the topic's channel."""
        since_epoch, _, since_offset = (since or "").partition(":")
        reply = await self._start(
            keys=[EPOCH_KEY, COUNTER_KEY, stream_key(topic), last_key(topic)],
            args=[
                candidate,
                since_epoch,
                since_offset or "0",
                self.history,
                topic_channel(topic),
                FENCE + fence,
                self._ttl_ms,
                self._last_ttl_ms,
                min(last, self.history),
            ],
        )
        return parse_start(reply)
