"""The Redis backend's history: one counter, one epoch, one Stream per topic, in Lua.

Keys (plain Redis keys, next to the ``triows:<topic>`` pub/sub channels):

- ``triows:epoch``: the history's epoch, set by the first hub that finds it
  missing.  Redis restarted without persistence loses it, so the next hub sets
  a new one, and positions of the old epoch give ``recovered=False``.
- ``triows:counter``: INCR'd once per publication, whatever the topic; the
  offset of a position.
- ``triows:last:<topic>``: the offset of the topic's last message (every hub
  sets it, with or without history), or the head when a subscription found
  none (nothing after it is known).
- ``triows:stream:<topic>`` (with ``history > 0``): the topic's recent messages,
  each with the Stream id ``<counter>-0`` and fields ``m`` (the payload) and
  ``p`` (the offset of the topic's previous message), trimmed to about
  ``history`` entries (``MAXLEN ~``, the oldest first).  Both keys of a topic
  expire ``history_ttl`` after its last publish or subscription start.  The history covers a
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
from ._redis_codec import decode

__all__ = [
    "CHANNEL_PREFIX",
    "EPOCH_KEY",
    "FENCE",
    "PUBLISH_SCRIPT",
    "START_SCRIPT",
    "Start",
    "last_key",
    "parse_start",
    "stream_key",
    "topic_channel",
]

#: Each topic's pub/sub channel is this prefix and the topic.
CHANNEL_PREFIX = b"triows:"
EPOCH_KEY = b"triows:epoch"
COUNTER_KEY = b"triows:counter"

#: KEYS: epoch, counter, stream, last; ARGV: candidate epoch, channel, payload,
#: history, time to live (ms).  Returns {epoch, offset, receivers}.
PUBLISH_SCRIPT = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
end
local offset = redis.call('INCR', KEYS[2])
local previous = redis.call('GET', KEYS[4]) or '0'
redis.call('SET', KEYS[4], offset, 'PX', ARGV[5])
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
#: ('' for no since), since's offset, history, channel, fence, time to live
#: (ms).  Returns {epoch, head, recovered, entries}, then publishes the fence on
#: the topic's channel: once the listener sees it, every message published
#: before the script is buffered.  Recovered only if the entries after since
#: chain, by their ``p``, from since (or before it) to the topic's last offset:
#: a message the Stream lacks (trimmed, expired, published by a hub without
#: history, a deleted Stream) is never skipped.  A topic without a last offset
#: (never used, or expired) gets the head as one: nothing after it is known.
START_SCRIPT = """
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
    redis.call('SET', KEYS[4], head, 'PX', ARGV[7])
  else
    redis.call('PEXPIRE', KEYS[4], ARGV[7])
    redis.call('PEXPIRE', KEYS[3], ARGV[7])
  end
  if ARGV[2] == '' then
    return {epoch, head, 1, {}}
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


def parse_start(reply: Any) -> Start:
    """START_SCRIPT's reply, with the replayed messages decoded."""
    epoch_raw, head, recovered, entries = reply
    epoch = bytes(epoch_raw).decode()
    replay = []
    for entry_id, fields in entries:
        offset = bytes(entry_id).partition(b"-")[0].decode()
        replay.append(Broadcast(decode(bytes(fields[1])), f"{epoch}:{offset}"))
    return Start(epoch, f"{epoch}:{int(head)}", bool(recovered), replay)
