"""How the Redis backend puts a message into bytes and back, tagged with its type."""

from __future__ import annotations

import json
from typing import Any

from ._memory import check_message

__all__ = ["decode", "encode"]


def encode(message: Any) -> bytes:
    """Tag the payload with its type so the receiving side rebuilds the same kind."""
    if isinstance(message, str):
        return b"s" + message.encode()
    if isinstance(message, bytes | bytearray | memoryview):
        return b"b" + bytes(message)
    check_message(message)
    return b"j" + json.dumps(message, separators=(",", ":")).encode()


def decode(payload: bytes) -> Any:
    tag, body = payload[:1], payload[1:]
    if tag == b"s":
        return body.decode()
    if tag == b"b":
        return body
    if tag == b"j":
        return json.loads(body)
    raise ValueError(f"not a triows hub message (tag {tag!r})")
