"""Message types: how ``receive()`` decodes and ``send()`` encodes a value.

A route resolves its ``receive_type`` and ``send_type`` to one decoder and one
encoder at decoration time, so each message costs a single function call.  A
message type is one of the names below, or a type (typed messages: see
``triows._typed``), which brings its own decoder and the shared JSON encoder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from ._exceptions import MessageDecodeError, MessageTypeError
from ._typed import codec_for, encode_typed

__all__ = [
    "DECODERS",
    "ENCODERS",
    "MESSAGE_TYPES",
    "MessageType",
    "check_message_spec",
    "check_message_type",
    "decoder_for",
    "encoder_for",
]

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


def check_message_spec(spec: object, argument: str) -> object:
    """Return ``spec`` if it is a message type's name or a supported type.

    ValueError for an unknown name, TypeError naming ``argument`` for a type that
    cannot be decoded from JSON.  A type's codec is built here, once.
    """
    if isinstance(spec, str):
        return check_message_type(spec, argument)
    if spec in (str, bytes):
        # A type means "JSON of that type": str would want '"hello"', not 'hello'.
        name = "text" if spec is str else "bytes"
        raise TypeError(
            f"{argument}={spec.__name__} would read JSON strings; for plain "
            f"{name} messages pass {argument}={name!r}"
        )
    try:
        codec_for(spec)
    except TypeError as exc:
        raise TypeError(f"{argument}={spec!r} is not supported: {exc}") from None
    return spec


def decoder_for(spec: object) -> Decoder:
    """The decoder of a message type's name, or of a type (its validating decoder)."""
    return DECODERS[spec] if isinstance(spec, str) else codec_for(spec).decode  # type: ignore[index]


def encoder_for(spec: object) -> Encoder:
    """The encoder of a message type's name; a type's is the shared JSON encoder."""
    return ENCODERS[spec] if isinstance(spec, str) else encode_typed  # type: ignore[index]


def decode_text(data: str | bytes) -> str:
    if data.__class__ is not str:  # (a transport's message is exactly str or bytes)
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
    if value.__class__ is not str and not isinstance(value, str):  # (the common case first)
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
