"""The live protocol's messages: what a client may send, what the server answers.

Every frame is one JSON object with a ``type`` (docs/protocol.md is the
reference).  Client messages are decoded by msgspec into tagged structs in one
pass; anything else becomes a :class:`ProtocolError` carrying its error code and
whatever of ``topic``/``id`` the bad message had, so the error can name it.
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any, Final, Literal, get_args

import msgspec

__all__ = [
    "ERROR_CODES",
    "PROTOCOL_VERSION",
    "ClientMessage",
    "ProtocolError",
    "Publish",
    "Subscribe",
    "Unsubscribe",
    "decode",
    "encode",
    "message_frame",
]

#: Sent in ``welcome``; a client speaking another version is told so by its ``error``.
PROTOCOL_VERSION: Final = 1
#: The longest topic name and publish id a client may send, in characters.
MAX_TOPIC_LENGTH: Final = 200
MAX_ID_LENGTH: Final = 100

ErrorCode = Literal[
    "bad_message",
    "forbidden",
    "invalid_position",
    "invalid_data",
    "not_subscribed",
    "already_subscribed",
    "too_many_topics",
    "unavailable",
]
#: Every error code, in the order of the protocol's table.
ERROR_CODES: tuple[ErrorCode, ...] = get_args(ErrorCode)

Topic = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TOPIC_LENGTH)]
PublishId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]


class Subscribe(msgspec.Struct, tag="subscribe", tag_field="type"):
    """Follow ``topic``: from after ``since`` (a position) if given, else from now,
    after the topic's ``last`` newest messages (a new page's recent ones)."""

    topic: Topic
    since: str | None = None
    last: Annotated[int, msgspec.Meta(ge=0)] | None = None
    presence: bool = False


class Unsubscribe(msgspec.Struct, tag="unsubscribe", tag_field="type"):
    """Stop following ``topic``."""

    topic: Topic


class Publish(msgspec.Struct, tag="publish", tag_field="type"):
    """Publish ``data`` to ``topic``; ``id`` is unique per client, for deduplication."""

    topic: Topic
    id: PublishId
    data: Any = None


ClientMessage = Subscribe | Unsubscribe | Publish
_decoder = msgspec.json.Decoder(ClientMessage)


class ProtocolError(Exception):
    """A client message the server cannot act on; answered with an ``error`` frame."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        action: str | None = None,
        topic: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.action = action
        self.topic = topic
        self.id = id

    def frame(self) -> str:
        """The ``error`` frame telling the client what was wrong."""
        error: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.action is not None:
            error["action"] = self.action
        if self.topic is not None:
            error["topic"] = self.topic
        if self.id is not None:
            error["id"] = self.id
        return encode(error)


def decode(raw: str | bytes) -> ClientMessage:
    """One client frame as a message struct; ProtocolError (``bad_message``) if it is none."""
    try:
        message = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise _bad(raw, str(exc)) from None
    return message


def _bad(raw: str | bytes, reason: str) -> ProtocolError:
    """A bad_message error naming what it can of the message (its type, topic, id)."""
    action = topic = ident = None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        fields = [value.get(name) for name in ("type", "topic", "id")]
        action, topic, ident = (
            field[:MAX_ID_LENGTH] if isinstance(field, str) else None for field in fields
        )
    return ProtocolError(
        "bad_message",
        f"not a live protocol message ({reason}); see docs/protocol.md",
        action=action,
        topic=topic,
        id=ident,
    )


_encoder = msgspec.json.Encoder()


def encode(frame: dict[str, Any]) -> str:
    """A server frame as JSON text."""
    return _encoder.encode(frame).decode()


def message_frame(topic: str, position: str | None, data: Any) -> str:
    """The ``message`` frame for one hub message (bytes travel as base64)."""
    if isinstance(data, bytes | bytearray | memoryview):
        return encode(
            {
                "type": "message",
                "topic": topic,
                "position": position,
                "data": base64.b64encode(data).decode(),
                "encoding": "base64",
            }
        )
    return encode({"type": "message", "topic": topic, "position": position, "data": data})
