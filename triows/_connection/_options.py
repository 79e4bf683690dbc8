"""A route's per-connection options, and the checks on what a view may send."""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

import attrs

from .._codecs import Decoder, Encoder, MessageType, check_message_spec, decoder_for, encoder_for
from .._limits import RateLimit
from ._transport import RawHeaders

__all__ = ["DEFAULT_OPTIONS", "WebSocketOptions", "check_close_code", "raw_headers"]


@attrs.frozen
class WebSocketOptions:
    """A route's per-connection settings, resolved once at decoration time.

    ``receive_type``/``send_type``: a message type's name, or a type (typed messages).
    """

    receive_type: MessageType | object = "text"
    send_type: MessageType | object = "text"
    auto_accept: bool = True
    caught_close_codes: Container[int] = (1000, 1001)
    #: The message rate each connection may send (None: no limit).
    rate: RateLimit | None = None
    decode: Decoder = attrs.field(init=False)
    encode: Encoder = attrs.field(init=False)

    @classmethod
    def of(
        cls,
        value_type: MessageType | object | None,
        receive_type: MessageType | object,
        send_type: MessageType | object,
        **options: Any,
    ) -> WebSocketOptions:
        """A route's options from ``websocket_route``'s arguments (``value_type``
        sets both message types); raises like ``check_message_spec``."""
        if value_type is not None:
            receive_type = send_type = check_message_spec(value_type, "value_type")
        return cls(
            receive_type=check_message_spec(receive_type, "receive_type"),
            send_type=check_message_spec(send_type, "send_type"),
            **options,
        )

    @decode.default
    def _decode(self) -> Decoder:
        return decoder_for(self.receive_type)

    @encode.default
    def _encode(self) -> Encoder:
        return encoder_for(self.send_type)


DEFAULT_OPTIONS = WebSocketOptions()


def check_close_code(code: int, reason: str) -> None:
    """Raise ValueError unless a server may send this close code and reason."""
    if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        raise ValueError(
            f"close code {code} cannot be sent: use 1000-1003, 1007-1014, or 3000-4999 "
            "(4000-4999 for application errors)"
        )
    if len(reason.encode()) > 123:
        raise ValueError(
            f"close reason is {len(reason.encode())} bytes; a close frame allows at most 123"
        )


def raw_headers(headers: Sequence[tuple[str, str]]) -> RawHeaders:
    """Header pairs as the wire has them: lower-case names, latin-1 bytes."""
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
