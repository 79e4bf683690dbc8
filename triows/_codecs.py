"""Message types: how ``receive()`` decodes and ``send()`` encodes a value.

A route resolves its ``receive_type`` and ``send_type`` to one decoder and one
encoder at decoration time, so each message costs a single function call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from ._exceptions import MessageDecodeError, MessageTypeError

__all__ = ["DECODERS", "ENCODERS", "MESSAGE_TYPES", "MessageType", "check_message_type"]

MessageType = Literal["text", "json", "bytes"]
MESSAGE_TYPES: tuple[MessageType, ...] = ("text", "json", "bytes")

#: A message as it arrives: ``str`` for text, ``bytes`` for binary.
Decoder = Callable[[str | bytes], Any]
#: What ``send()`` puts on the wire: ``str`` for text, ``bytes`` for binary.
Encoder = Callable[[Any], str | bytes]


def check_message_type(name: str, argument: str) -> MessageType:
    """Return ``name`` if it is a message type, else raise ValueError naming the choices."""
    if name not in MESSAGE_TYPES:
        raise ValueError(
            f"{argument}={name!r} is not a message type; choose one of "
            + ", ".join(repr(t) for t in MESSAGE_TYPES)
        )
    return name


def decode_text(data: str | bytes) -> str:
    if not isinstance(data, str):
        raise MessageTypeError(f"expected a text message, got a binary one ({len(data)} bytes)")
    return data


def decode_bytes(data: str | bytes) -> bytes:
    if data.__class__ is str:
        raise MessageTypeError("expected a binary message, got a text one")
    return data  # type: ignore[return-value]


def decode_json(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise MessageDecodeError("the message's JSON is nested too deeply to decode") from None
    except (ValueError, TypeError) as exc:
        raise MessageDecodeError(f"the message is not valid JSON: {exc}") from None


def encode_text(value: Any) -> str | bytes:
    if not isinstance(value, str):
        raise TypeError(
            f"send_text() takes a str, got {type(value).__name__}; "
            "use send_json() or send_bytes() for other values"
        )
    return value


def encode_bytes(value: Any) -> str | bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(
            f"send_bytes() takes bytes, got {type(value).__name__}; "
            "use send_text() or send_json() for other values"
        )
    return bytes(value)


def encode_json(value: Any) -> str | bytes:
    # Compact separators: fewer bytes on the wire, and what browsers' JSON.stringify emits.
    try:
        return json.dumps(value, separators=(",", ":"))
    except RecursionError:
        raise ValueError(
            "cannot send the value as JSON: it is nested too deeply (past Python's "
            "recursion limit); send a flatter value"
        ) from None


DECODERS: dict[MessageType, Decoder] = {
    "text": decode_text,
    "json": decode_json,
    "bytes": decode_bytes,
}
ENCODERS: dict[MessageType, Encoder] = {
    "text": encode_text,
    "json": encode_json,
    "bytes": encode_bytes,
}
