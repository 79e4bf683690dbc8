"""Broadcast: publish/subscribe by topic, in one process or across hosts via Redis.

::

    hub = triows.Hub()                      # or triows.Hub("redis://127.0.0.1:6379/0")
    app = triows.App(hub=hub)

    @app.websocket_route("/room/{name}")
    async def room(ws, name: str, hub):
        async with hub.subscribe(name) as messages, trio.open_nursery() as nursery:
            nursery.start_soon(forward, messages, ws)
            async for text in ws:
                await hub.publish(name, text)
"""

from __future__ import annotations

from ._hub import DEFAULT_MAX_BUFFER, Hub, HubUnavailable
from ._presence import PresenceChange, PresenceChanges
from ._stats import HubStats
from ._subscription import Lagged, OverflowPolicy, SlowConsumer, Subscription

__all__ = [
    "DEFAULT_MAX_BUFFER",
    "Hub",
    "HubStats",
    "HubUnavailable",
    "Lagged",
    "OverflowPolicy",
    "PresenceChange",
    "PresenceChanges",
    "SlowConsumer",
    "Subscription",
]
