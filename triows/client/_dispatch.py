"""The trio client's reading side: one server frame at a time, in order."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from ._topic import Gap, LiveError, Message, PresenceChange

if TYPE_CHECKING:
    from ._client import LiveClient

__all__ = ["dispatch"]


def _data(frame: dict[str, Any]) -> Any:
    if frame.get("encoding") == "base64":
        return base64.b64decode(frame["data"])
    return frame.get("data")


async def dispatch(client: LiveClient, frame: dict[str, Any]) -> None:
    """Act on one server frame (unknown types are a newer server's: ignored)."""
    kind = frame.get("type")
    topic = client.topics.get(frame.get("topic", ""))
    if kind == "message":
        if topic is not None and topic.active:
            await topic.put(Message(topic.name, frame.get("position"), _data(frame)))
    elif kind == "ack":
        client.acknowledged(frame)
    elif kind == "error":
        await _refused(client, frame, topic)
    elif topic is None or not topic.active:
        return
    elif kind == "subscribed":
        resumed = topic.position is not None
        topic.position = frame.get("position")
        topic.recovered = frame.get("recovered")
        topic.confirmed.set()
        if resumed and topic.recovered is False:
            await topic.put(Gap(topic.name, topic.position, "history"))
    elif kind == "gap":
        topic.position = frame.get("position")
        await topic.put(Gap(topic.name, topic.position, str(frame.get("reason") or "overflow")))
    elif kind == "presence":
        topic.members = dict(frame.get("members") or {})
        await topic.put(PresenceChange(topic.name, dict(topic.members), dict(topic.members), {}))
    elif kind == "presence_change":
        left, joined = frame.get("left") or {}, frame.get("joined") or {}
        for key in left:
            topic.members.pop(key, None)
        topic.members.update(joined)
        await topic.put(PresenceChange(topic.name, dict(topic.members), joined, left))


async def _refused(client: LiveClient, frame: dict[str, Any], topic: Any) -> None:
    if frame.get("id") is not None:
        client.publish_refused(frame)
        return
    if topic is None or frame.get("action") != "subscribe":
        return
    code = frame.get("code")
    if code == "unavailable":
        client.retry_later(lambda: client.resubscribe(topic))
    elif code == "invalid_position":
        topic.position = None
        await topic.put(Gap(topic.name, None, "invalid_position"))
        await client.resubscribe(topic)
    else:
        topic.error = LiveError(frame)
        topic.active = False
        topic.confirmed.set()
        client.topics.pop(topic.name, None)
