"""triows.client: a trio client of the live route (``App.live_route``).

::

    async with triows.client.connect("ws://127.0.0.1:8000/live") as live:
        async with live.subscribe("room", presence=True) as room:
            await live.publish("room", {"text": "hello"})
            async for event in room:
                ...

It reconnects with backoff and jitter, resumes every topic from its last
position, and resends unacknowledged publishes (published once: the server
deduplicates their ids).  Needs the ``client`` extra (trio-websocket).
"""

from __future__ import annotations

from ._client import LiveClient, State, backoff, connect
from ._topic import Gap, LiveError, Message, PresenceChange, Topic, TopicEvent

__all__ = [
    "Gap",
    "LiveClient",
    "LiveError",
    "Message",
    "PresenceChange",
    "State",
    "Topic",
    "TopicEvent",
    "backoff",
    "connect",
]
