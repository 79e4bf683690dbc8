"""permessage-deflate's negotiation on the native server (websockets' extension).

The server answers every offer with ``server_no_context_takeover``, so that a
message compresses to the same bytes for every client
(``triows._connection._deflate``).  What a connection then keeps is the
inflater for its client's messages, and it gets it only with its client's
first compressed message: a subscriber that only listens holds no zlib state
at all (websockets makes the inflater at the handshake, about 7 KiB).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.typing import ExtensionParameter

from .._connection._deflate import DEFAULT_WINDOW_BITS, MEM_LEVEL

__all__ = ["LazyInflater", "ServerDeflate", "compression"]


class LazyInflater(PerMessageDeflate):
    """websockets' extension, its inflater made when the first compressed message
    arrives instead of at the handshake (then kept, as websockets keeps it, for
    a client with context takeover)."""

    def __init__(
        self,
        remote_no_context_takeover: bool,
        local_no_context_takeover: bool,
        remote_max_window_bits: int,
        local_max_window_bits: int,
        compress_settings: dict[Any, Any] | None = None,
    ) -> None:
        # websockets makes the inflater here unless the client has no context
        # takeover: ask for none, then say what was negotiated.
        super().__init__(
            True,
            local_no_context_takeover,
            remote_max_window_bits,
            local_max_window_bits,
            compress_settings,
        )
        self.remote_no_context_takeover = remote_no_context_takeover

    def __getattr__(self, name: str) -> Any:
        # Called only while the attribute does not exist: the first use of the
        # inflater makes it (decode() reads self.decoder).
        if name != "decoder":
            raise AttributeError(name)
        decoder = self.decoder = zlib.decompressobj(wbits=-self.remote_max_window_bits)
        return decoder

    def renewed(self) -> LazyInflater:
        """A new extension with the parameters negotiated here, for another
        connection (no zlib state: the inflater is made on first use)."""
        return LazyInflater(
            self.remote_no_context_takeover,
            self.local_no_context_takeover,
            self.remote_max_window_bits,
            self.local_max_window_bits,
            self.compress_settings,
        )


class ServerDeflate(ServerPerMessageDeflateFactory):
    """websockets' server factory, answering with an extension whose inflater is lazy."""

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        response, negotiated = super().process_request_params(params, accepted_extensions)
        return response, LazyInflater(
            negotiated.remote_no_context_takeover,
            negotiated.local_no_context_takeover,
            negotiated.remote_max_window_bits,
            negotiated.local_max_window_bits,
            negotiated.compress_settings,
        )


def compression() -> list[ServerDeflate]:
    """The server's extensions: permessage-deflate with websockets' window sizes
    (4 KiB: 12 bits each way) and ``server_no_context_takeover`` always in the
    answer (RFC 7692 7.1.1.1 allows it unoffered)."""
    return [
        ServerDeflate(
            server_no_context_takeover=True,
            server_max_window_bits=DEFAULT_WINDOW_BITS,
            client_max_window_bits=DEFAULT_WINDOW_BITS,
            compress_settings={"memLevel": MEM_LEVEL},
        )
    ]
