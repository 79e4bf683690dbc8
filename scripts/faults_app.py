"""The App that scripts/faults.py serves with ``triows run --workers N``.

One route, ``/resume/{topic}?since=POSITION``: it subscribes to ``topic`` on a
Redis hub with history (``since`` resumes after that position), sends
``{"recovered": bool, "position": str}`` first, then every message as
``{"position": str, "message": ...}``.  A subscription that falls behind
(``Lagged``) is closed with 1013 (Try Again Later): the client resumes from
the last position it got.  Settings come from the environment:
``TRIOWS_FAULTS_REDIS`` (the Redis URL), ``TRIOWS_FAULTS_HISTORY`` (messages
kept per topic) and ``TRIOWS_FAULTS_BUFFER`` (a subscription's buffer).
"""

from __future__ import annotations

import json
import os

import triows
from triows.hub import Lagged

hub = triows.Hub(
    os.environ.get("TRIOWS_FAULTS_REDIS", "redis://127.0.0.1:6379/0"),
    history=int(os.environ.get("TRIOWS_FAULTS_HISTORY", "5000")),
    max_buffer=int(os.environ.get("TRIOWS_FAULTS_BUFFER", "64")),
)
app = triows.App(hub=hub)


@app.websocket_route("/resume/{topic}")
async def resume(ws: triows.WebSocket, topic: str, since: str = "") -> None:
    try:
        async with hub.subscribe(topic, since=since or None) as subscription:
            hello = {"recovered": subscription.recovered, "position": subscription.position}
            await ws.send(json.dumps(hello))
            while True:
                message = await subscription.receive()
                await ws.send(json.dumps({"position": subscription.position, "message": message}))
    except Lagged:
        await ws.close(1013, "lagged: resume from your last position")
