"""The guide's chat room on a Hub: a page at ``/`` and a JSON WebSocket at ``/chat``.

Run it with ``triows run examples.chat.app:app`` and open http://127.0.0.1:8000 in
two browser tabs.  With ``TRIOWS_HUB_URL=redis://127.0.0.1:6379/0`` the room is
shared through Redis by every process that serves the app, for example
``hypercorn -k trio -w 2 examples.chat.app:app`` or two ``triows run`` on two ports.

A message is ``{"type": "message", "user": ..., "text": ..., "id": ...}``; when a
user who spoke leaves, the room gets ``{"type": "left", "user": ..., "id": ...}``.
Each connection runs two tasks in one nursery: hub -> client and client -> hub.
"""

from __future__ import annotations

import os
import secrets
from collections import deque
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import trio

import triows

Message = dict[str, str]

#: The hub topic of the room, and how many recent messages a newcomer gets.
TOPIC = "chat"
HISTORY = 100

hub = triows.Hub(os.environ.get("TRIOWS_HUB_URL") or None)
app = triows.App(hub=hub)

INDEX_HTML = (Path(__file__).parent / "templates" / "index.html").read_text(encoding="utf-8")


@app.route("/")
async def index(request: triows.Request) -> str:
    """The chat page (HTML)."""
    return INDEX_HTML


async def record(
    hub: triows.Hub, history: deque[Message], task_status: trio.TaskStatus[None]
) -> None:
    """Keep the room's recent messages, as this process receives them from the hub."""
    async with hub.subscribe(TOPIC, max_buffer=HISTORY) as messages:
        task_status.started()
        async for message in messages:
            history.append(message)


@app.provider(scope="app")
async def history(hub: triows.Hub) -> AsyncIterator[deque[Message]]:
    """The room's last HISTORY messages, recorded by a background task of the App."""
    recent: deque[Message] = deque(maxlen=HISTORY)
    await app.nursery.start(record, hub, recent)
    yield recent


def clean(message: Any) -> Message | None:
    """The message to relay, rebuilt from known fields; None if it is not a chat message."""
    if not isinstance(message, dict) or message.get("type") != "message":
        return None
    text = str(message.get("text") or "")
    if not text:
        return None
    user = str(message.get("user") or "") or "Anonymous"
    return {"type": "message", "user": user[:50], "text": text[:1000]}


def new_id() -> str:
    # Unique across processes: a newcomer skips what it already got from the history.
    return secrets.token_hex(8)


async def hub_to_client(
    ws: triows.WebSocket, messages: triows.Subscription, already_sent: set[str]
) -> None:
    async for message in messages:
        if message["id"] in already_sent:
            already_sent.discard(message["id"])
            continue
        await ws.send(message)


# 1006 (the connection dropped: a closed laptop lid, a lost network) is how chat
# clients usually leave, not a server error: end the view quietly for it too.
@app.websocket_route("/chat", value_type="json", caught_close_codes=(1000, 1001, 1006))
async def chat(ws: triows.WebSocket, hub: triows.Hub, history: deque[Message]) -> None:
    """Send the recent history, then relay the room both ways until the client leaves."""
    user = None
    # Subscribe before reading the history: nothing published from now on is
    # missed, and what is in both is sent once.
    async with hub.subscribe(TOPIC) as messages:
        already_sent: set[str] = set()
        for past in list(history):
            await ws.send(past)
            already_sent.add(past["id"])
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hub_to_client, ws, messages, already_sent)
                async for received in ws:
                    message = clean(received)
                    if message is not None:
                        user = message["user"]
                        await hub.publish(TOPIC, {**message, "id": new_id()})
        finally:
            if user is not None:
                # Announce the departure even though this view is being cancelled.
                with trio.move_on_after(2, shield=True), suppress(triows.HubUnavailable):
                    await hub.publish(TOPIC, {"type": "left", "user": user, "id": new_id()})
