"""A live route (``app.live_route``) as an AsyncAPI channel: the live protocol.

The client's frames (``subscribe``, ``unsubscribe``, ``publish``) are the live
protocol's own msgspec structs, described through :func:`triows._typed.json_schemas`;
each is an operation the App receives, with its ``reply``: the confirmation or an
``error`` frame.  The server's other frames (``welcome``, ``message``, ``gap``,
``presence``, ``presence_change``) are one ``send`` operation.  Their schemas below
follow docs/protocol.md; tests/test_asyncapi_wire.py checks real frames against
them.  A route's ``message_type`` is the schema of a ``publish``'s ``data``.
"""

from __future__ import annotations

from typing import Any

from .._live import ERROR_CODES, PROTOCOL_VERSION, LiveRoute
from .._live._protocol import ClientMessage
from .._typed import json_schemas
from ._model import Channel, Operation, Reply, name_of_address
from ._schemas import LOCAL_REF_TEMPLATE, Components

__all__ = ["live_channel", "live_route_of"]

_TOPIC = {"type": "string", "minLength": 1}
_POSITION = {"type": "string", "description": "opaque: store it, send it back as `since`"}
_MEMBERS = {"type": "object", "description": "presence key -> the member's info"}
_DESCRIPTION = (
    "triows' live protocol (version {version}, docs/protocol.md): topics with resume, "
    "presence and client publishes. Every frame is a JSON text frame with a `type`; a "
    "binary frame closes with 1003. Frames of an unknown `type` must be ignored."
)


def _frame(title: str, kind: str, fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A server frame's schema: an object with its ``type`` and ``fields``."""
    return {
        "title": title,
        "type": "object",
        "properties": {"type": {"const": kind}, **fields},
        "required": ["type", *required],
    }


_SERVER_FRAMES: dict[str, dict[str, Any]] = {
    "welcome": _frame(
        "Welcome",
        "welcome",
        {
            "protocol": {"const": PROTOCOL_VERSION},
            "identity": {
                "type": ["object", "null"],
                "properties": {"key": {"type": "string"}, "info": {}},
                "description": "what the route's identify hook returned (null: anonymous)",
            },
        },
        ["protocol", "identity"],
    ),
    "subscribed": _frame(
        "Subscribed",
        "subscribed",
        {
            "topic": _TOPIC,
            "position": _POSITION,
            "recovered": {
                "type": ["boolean", "null"],
                "description": "true: every message after `since` follows; null: no `since`",
            },
        },
        ["topic", "position", "recovered"],
    ),
    "message": _frame(
        "TopicMessage",
        "message",
        {
            "topic": _TOPIC,
            "position": {**_POSITION, "type": ["string", "null"]},
            "data": {"description": "the published value (base64 text for binary data)"},
            "encoding": {"const": "base64"},
        },
        ["topic", "position", "data"],
    ),
    "gap": _frame(
        "Gap",
        "gap",
        {"topic": _TOPIC, "position": _POSITION, "reason": {"type": "string"}},
        ["topic", "position", "reason"],
    ),
    "presence": _frame(
        "Presence", "presence", {"topic": _TOPIC, "members": _MEMBERS}, ["topic", "members"]
    ),
    "presence_change": _frame(
        "PresenceChange",
        "presence_change",
        {"topic": _TOPIC, "joined": _MEMBERS, "left": _MEMBERS},
        ["topic", "joined", "left"],
    ),
    "unsubscribed": _frame("Unsubscribed", "unsubscribed", {"topic": _TOPIC}, ["topic"]),
    "ack": _frame(
        "Ack",
        "ack",
        {
            "id": {"type": "string"},
            "topic": _TOPIC,
            "position": _POSITION,
            "duplicate": {"const": True, "description": "only when the id was seen already"},
        },
        ["id", "topic", "position"],
    ),
    "error": _frame(
        "LiveError",
        "error",
        {
            "code": {"enum": list(ERROR_CODES)},
            "message": {"type": "string"},
            "action": {"type": "string"},
            "topic": {"type": "string"},
            "id": {"type": "string"},
        },
        ["code", "message"],
    ),
}
#: The client frame each confirmation answers.
_REPLIES = {"Subscribe": "subscribed", "Unsubscribe": "unsubscribed", "Publish": "ack"}
_PUSHED = ("welcome", "message", "gap", "presence", "presence_change")


def live_route_of(view: object) -> LiveRoute | None:
    """The LiveRoute a WebSocket route's view serves (its bound ``serve``), or None."""
    owner = getattr(view, "__self__", None)
    return owner if isinstance(owner, LiveRoute) else None


def live_channel(address: str, live: LiveRoute, components: Components) -> Channel:
    """The channel of a live route: its client frames with their replies, and the
    frames the server sends by itself."""
    [union], named = json_schemas([ClientMessage], LOCAL_REF_TEMPLATE)
    named = dict(named)
    if live.message_type is not None:
        [data], more = json_schemas([live.message_type], LOCAL_REF_TEMPLATE)
        publish = named["Publish"]
        named["Publish"] = {**publish, "properties": {**publish["properties"], "data": data}}
        named.update(more)
    root = components.add(union, named)
    # The structs' component names (one may have been renamed to stay unique).
    final = {
        original["$ref"].rpartition("/")[2]: renamed["$ref"].rpartition("/")[2]
        for original, renamed in zip(union["anyOf"], root["anyOf"], strict=True)
    }
    messages: dict[str, dict[str, Any]] = {}
    operations: list[Operation] = []
    for kind, frame in _SERVER_FRAMES.items():
        messages[kind] = _message(kind, frame)
    for client_frame, reply in _REPLIES.items():
        key = client_frame.lower()
        component = final[client_frame]
        messages[key] = _message(key, {"$ref": f"#/components/schemas/{component}"})
        messages[key]["summary"] = components.schemas[component].get("description", "")
        operations.append(
            Operation(name=key, action="receive", messages=(key,), reply=Reply((reply, "error")))
        )
    operations.append(
        Operation(
            name="frames",
            action="send",
            messages=_PUSHED,
            summary="Frames the server sends by itself: welcome first, then topics' news",
        )
    )
    return Channel(
        name=name_of_address(address, "live"),
        address=address,
        messages=messages,
        operations=tuple(operations),
        description=_DESCRIPTION.format(version=PROTOCOL_VERSION),
    )


def _message(key: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"name": key, "contentType": "application/json", "payload": payload}
