"""The server of :mod:`benchmarks.scale`: idle subscribers of one hub topic.

Served by ``triows run benchmarks.scale_app:app`` (``--workers N`` for several
processes).  The hub is in memory, or on Redis when ``TRIOWS_SCALE_REDIS`` holds
a ``redis://`` URL (every worker then shares the topic).

``/sub``
    a view that subscribes to the topic and forwards it, as the broadcast guide
    shows it, after one ``subscribed`` message (the benchmark's clients wait
    for it, so they know the subscription exists before the broadcast).
``POST /publish``
    publishes one 32-byte message to the topic; answers the subscriber count
    of the process that served it.
``GET /stats``
    this process's subscriber count and pid.
"""

from __future__ import annotations

import os

import triows

__all__ = ["MESSAGE", "TOPIC", "app", "hub"]

TOPIC = "news"
MESSAGE = "scale broadcast 0123456789abcdef"

hub = triows.Hub(os.environ.get("TRIOWS_SCALE_REDIS") or None)
app = triows.App(hub=hub)


@app.websocket_route("/sub", caught_close_codes=(1000, 1001, 1006))
async def sub(ws: triows.WebSocket, hub: triows.Hub) -> None:
    async with hub.subscribe(TOPIC) as news:
        await ws.send("subscribed")
        await news.forward(ws)


@app.route("/publish", methods=["POST"])
async def publish(request: triows.Request, hub: triows.Hub) -> dict[str, object]:
    position = await hub.publish(TOPIC, MESSAGE)
    return {"position": position, "subscribers": hub.subscriber_count(TOPIC)}


@app.route("/stats")
async def stats(request: triows.Request, hub: triows.Hub) -> dict[str, object]:
    return {"subscribers": hub.subscriber_count(TOPIC), "pid": os.getpid()}
