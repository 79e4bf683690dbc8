"""permessage-deflate's server side without per-connection compressors (RFC 7692).

The native server negotiates ``server_no_context_takeover`` with every client
(RFC 7692 7.1.1.1 lets a server add it to its answer even when the offer left
it out), so each message the server sends is compressed on its own: no
message refers back to an earlier one.  The compressed bytes then depend only
on the message and the server's LZ77 window (``server_max_window_bits``), not
on the connection, and a :class:`~triows._connection._frames.Prepared` keeps
its compressed frame per window size: a broadcast to any number of
compressed clients is compressed once per window size in use (one, with the
defaults).  A connection keeps no compressor at all; it keeps its inflater
for what the client sends (client context takeover is the client's choice).

One zlib compressor per window size serves the whole thread (the event loop's):
a full flush after each message resets its history (``Z_FULL_FLUSH``: the
output refers to nothing before it), which is what "no context takeover" asks
for, at the cost of one compressor (about 40 KiB) per window size instead of
one per connection.  Compression runs without yielding, so two messages never
interleave in a compressor; each thread has its own compressors, so two event
loops in two threads of one process (zlib releases the GIL while it works) never
share one.
"""

from __future__ import annotations

import threading
import zlib
from typing import Final

import attrs

__all__ = ["DEFAULT_WINDOW_BITS", "MEM_LEVEL", "STATS", "DeflateStats", "deflate"]

#: The server's LZ77 window offered to every client (4 KiB): websockets'
#: default, which clients may lower (``server_max_window_bits`` 9 to 11).
DEFAULT_WINDOW_BITS: Final = 12
#: zlib's memLevel for the shared compressors (websockets' default).
MEM_LEVEL: Final = 5
#: What a sync or full flush ends with; RFC 7692 7.2.1 removes it from the frame.
_TAIL: Final = b"\x00\x00\xff\xff"


@attrs.define(slots=True, eq=False)
class DeflateStats:
    """The process's compression counters (plain ints, read by the metrics exporter).

    ``messages``: messages compressed (once per message and window size, however
    many clients receive it); ``input_bytes`` / ``output_bytes``: their payloads
    before and after.
    """

    messages: int = 0
    input_bytes: int = 0
    output_bytes: int = 0


#: This process's counters.
STATS: Final = DeflateStats()


class _Compressors(threading.local):
    """This thread's compressors, by window size."""

    def __init__(self) -> None:
        self.by_bits: dict[int, zlib._Compress] = {}


_COMPRESSORS: Final = _Compressors()


def deflate(payload: bytes, bits: int) -> bytes:
    """``payload`` as one permessage-deflate message with no context takeover.

    The result is the frame's payload (the trailing ``00 00 ff ff`` removed, RFC
    7692 7.2.1), the same bytes for every connection that negotiated a server
    window of ``bits`` (9 to 15).  Every message is compressed, even a short one
    that deflate makes a few bytes longer, as websockets does: some clients
    (the Autobahn harness among them) mishandle uncompressed messages on a
    compressed connection, though RFC 7692 allows them.  Synchronous (no
    checkpoint).
    """
    compressors = _COMPRESSORS.by_bits
    compressor = compressors.get(bits)
    if compressor is None:
        compressor = compressors[bits] = zlib.compressobj(wbits=-bits, memLevel=MEM_LEVEL)
    # A full flush ends the output with an empty stored block (the tail, which
    # zlib emits for an empty payload too) and resets the history: the next
    # message refers to nothing before it.
    data = compressor.compress(payload) + compressor.flush(zlib.Z_FULL_FLUSH)
    stats = STATS
    stats.messages += 1
    stats.input_bytes += len(payload)
    stats.output_bytes += len(data) - len(_TAIL)
    return data[: -len(_TAIL)]
