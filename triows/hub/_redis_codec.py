"""How the Redis backend puts a message into bytes and back, tagged with its type."""

from __future__ import annotations

import json
from typing import Any

from ._memory import check_message

__all__ = ["decode", "decode_live", "encode", "split_trace"]


def encode(message: Any, trace: str | None = None) -> bytes:
    """Tag the payload with its type so the receiving side rebuilds the same kind.

    ``trace``: the publish's W3C ``traceparent``, sent first (tag ``t``, up to a
    newline) when the publisher is traced.
    """
    if trace is not None:
        return b"t" + trace.encode() + b"\n" + encode(message)
    if isinstance(message, str):
        return b"s" + message.encode()
    if isinstance(message, bytes | bytearray | memoryview):
        return b"b" + bytes(message)
    check_message(message)
    return b"j" + json.dumps(message, separators=(",", ":")).encode()


def split_trace(payload: bytes) -> tuple[bytes, str | None]:
    """``payload`` without its ``traceparent``, and the ``traceparent`` (None if none)."""
    if payload[:1] != b"t":
        return payload, None
    trace, _, rest = payload[1:].partition(b"\n")
    return rest, trace.decode("ascii", errors="replace")


def decode(payload: bytes) -> Any:
    """The message ``encode`` made (a ``traceparent`` before it is skipped)."""
    payload = split_trace(payload)[0]
    tag, body = payload[:1], payload[1:]
    if tag == b"s":
        return body.decode()
    if tag == b"b":
        return body
    if tag == b"j":
        return json.loads(body)
    raise ValueError(f"not a triows hub message (tag {tag!r})")


def decode_live(data: bytes) -> tuple[str, Any, str | None]:
    """A live message's offset, message and ``traceparent``, from the bytes the
    publish script sent (``b"<offset>\\n"`` before the payload).

    Raises ValueError (or RecursionError, deep JSON) if ``data`` is not one.
    """
    offset, _, payload = data.partition(b"\n")
    if not offset.isdigit() or len(offset) > 19:
        raise ValueError(f"no position (starts {offset[:20]!r})")
    payload, trace = split_trace(payload)
    return offset.decode(), decode(payload), trace
