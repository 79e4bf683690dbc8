"""A chat room on the live route: a page at ``/``, the live protocol at ``/live``.

Run it with ``triows run examples.chat.app:app`` and open http://127.0.0.1:8000 in
two browser tabs.  With ``TRIOWS_REDIS_URL=redis://127.0.0.1:6379/0`` the room, its
history and its member list are shared through Redis by every process serving the
app (``triows run examples.chat.app:app --workers 2``, or two hosts).

The page uses the shipped JS client (``/live/triows-live.js``): it reconnects by
itself, resumes the room from the last message it saw (nothing lost, nothing twice),
a new page starts with the room's 50 newest messages (``last``), and a reloaded
page resumes from where it first joined, so it shows those messages again, once.  Who is online comes from presence; what a user says is a typed
message (``Said`` or ``Emote``), stamped with the sender's name by the server.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import msgspec

import triows

#: The room's topic, and how many recent messages the hub keeps for resuming.
TOPIC = "chat"
HISTORY = 200

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class Said(msgspec.Struct, tag="message", tag_field="type"):
    """``{"type": "message", "text": ...}``: a line in the room."""

    text: Text


class Emote(msgspec.Struct, tag="emote", tag_field="type"):
    """``{"type": "emote", "text": ...}``: "/me waves" on the page."""

    text: Text


#: What a client may publish: anything else is refused with ``invalid_data``.
ChatMessage = Said | Emote

hub = triows.Hub(os.environ.get("TRIOWS_REDIS_URL") or None, history=HISTORY)
app = triows.App(hub=hub)

INDEX_HTML = (Path(__file__).parent / "templates" / "index.html").read_text(encoding="utf-8")


def user_name(ws: triows.WebSocket) -> str:
    """The name the page connected with (``?user=``), trimmed; "" if none.

    A demo's identity: a real app reads its user from the session (``ws.session``).
    """
    return " ".join(ws.query_parameters.get("user", "").split())[:50]


def identify(ws: triows.WebSocket) -> triows.LiveIdentity | None:
    """Named users are members of the room; a page without a name only watches."""
    name = user_name(ws)
    return triows.LiveIdentity(name.casefold(), {"name": name}) if name else None


def authorize(ws: triows.WebSocket, topic: str, action: triows.LiveAction) -> bool:
    """One room; only named users may speak."""
    if topic != TOPIC:
        return False
    return action != "publish" or bool(user_name(ws))


def stamp(ws: triows.WebSocket, topic: str, data: dict[str, Any]) -> dict[str, Any]:
    """What is published: the checked message, with who said it and when (ms)."""
    return {**data, "user": user_name(ws), "at": int(time.time() * 1000)}


app.live_route(
    "/live",
    hub,
    authorize=authorize,
    identify=identify,
    message_type=ChatMessage,
    before_publish=stamp,
)


@app.route("/")
async def index(request: triows.Request) -> str:
    """The chat page (HTML)."""
    return INDEX_HTML
