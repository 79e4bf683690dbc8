"""The guide's chat room: a page at ``/`` and a JSON WebSocket at ``/chat``.

Run it with ``triows run examples.chat.app:app`` and open http://127.0.0.1:8000 in
two browser tabs.  Two app-scoped providers hold the room's state: ``clients``
(the connected WebSockets) and ``history`` (every message so far, sent to each
newcomer).  A message is ``{"type": "message", "user": ..., "text": ...}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import triows

Message = dict[str, str]

app = triows.App()

INDEX_HTML = (Path(__file__).parent / "templates" / "index.html").read_text(encoding="utf-8")


@app.provider(scope="app")
async def clients() -> set[triows.WebSocket]:
    """The WebSockets of the clients in the room: one set for the App's lifetime."""
    return set()


@app.provider(scope="app")
async def history() -> list[Message]:
    """Every message posted since startup, oldest first (in memory, unbounded: a demo)."""
    return []


@app.route("/")
async def index(request: triows.Request) -> str:
    """The chat page (HTML)."""
    return INDEX_HTML


def clean(message: Any) -> Message | None:
    """The message to relay, rebuilt from known fields; None if it is not a chat message."""
    if not isinstance(message, dict) or message.get("type") != "message":
        return None
    text = str(message.get("text") or "")
    if not text:
        return None
    user = str(message.get("user") or "") or "Anonymous"
    return {"type": "message", "user": user[:50], "text": text[:1000]}


async def broadcast(clients: set[triows.WebSocket], message: Message) -> None:
    """Send ``message`` to every client in ``clients``, dropping those that have left.

    Iterates over a snapshot, since clients join and leave while each send awaits;
    skips a client that left the set meanwhile; a client that cannot receive any
    more (WebSocketDisconnect) is removed and the others still get the message.
    """
    for client in list(clients):
        if client not in clients:
            continue
        try:
            await client.send(message)
        except triows.WebSocketDisconnect:
            clients.discard(client)


# 1006 (the connection dropped: a closed laptop lid, a lost network) is how chat
# clients usually leave, not a server error: end the view quietly for it too.
@app.websocket_route("/chat", value_type="json", caught_close_codes=(1000, 1001, 1006))
async def chat(
    ws: triows.WebSocket, clients: set[triows.WebSocket], history: list[Message]
) -> None:
    """Send the history, join the room, then relay each message to everyone."""
    # Catch up, then join.  Messages posted while we catch up are appended to
    # `history`, so this loop sends them too; there is no checkpoint between its
    # last check and `clients.add`, so no message is missed or sent twice.
    sent = 0
    while sent < len(history):
        await ws.send(history[sent])
        sent += 1
    clients.add(ws)
    try:
        async for received in ws:
            message = clean(received)
            if message is not None:
                history.append(message)
                await broadcast(clients, message)
    finally:
        clients.discard(ws)
