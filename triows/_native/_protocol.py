"""The WebSocket protocol on the native server: websockets' sans-I/O ServerProtocol.

:func:`new_protocol` makes one for a handshake request already read and checked
(``triows._native._upgrade``); the connection then feeds the socket's bytes to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.protocol import CLOSED, CONNECTING, OPEN, Protocol
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

try:  # websockets' C unmasking (the pure-Python one where it was not built)
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

from .._connection._frames import Prepared
from ._deflate import compression

__all__ = ["COMPRESSION", "CONTROL_SLACK", "new_protocol"]

#: permessage-deflate, negotiated when the client offers it (browsers do), always
#: without server context takeover: each server message is compressed once for
#: every client (``triows._connection._deflate``); a connection keeps no
#: compressor, only, from its client's first compressed message on, an inflater
#: (``triows._native._deflate``).
COMPRESSION: Final = compression()

#: What websockets' parser waits in between two frames (``StreamReader.at_eof``).
#: With an empty buffer it may also be inside a frame whose header it already
#: read (a read that ended right after a header): then the next bytes are that
#: frame's payload, not a frame, and only websockets' parser may take them.
_BETWEEN_FRAMES: Final = StreamReader.at_eof.__code__

#: The largest control frame payload (RFC 6455 5.5): what a ping between two
#: fragments may add to the size the parser allows for the next frame.
CONTROL_SLACK: Final = 125

# websockets logs "connection open/closed" at INFO for every connection; that is an
# access log, which triows controls itself (access_log=True).
_protocol_logger = logging.getLogger("triows.native.protocol")
_protocol_logger.setLevel(logging.WARNING)


#: Close codes registered after RFC 6455 (Service Restart, Try Again Later, Bad
#: Gateway): websockets accepts them from a client, hypercorn's wsproto fails the
#: connection with 1002.  One rule for both servers: refused here too.
REFUSED_CLOSE_CODES: Final = frozenset({1012, 1013, 1014})


class _ServerProtocol(ServerProtocol):
    """websockets' protocol, with two fixes for messages sent in fragments.

    * A close frame may end a fragmented message.  RFC 6455 5.4 lets control
      frames (close included) arrive between the fragments of a message;
      websockets fails the connection with 1002 there, where the client asked
      for a normal close (Autobahn case 7.1.5).  The unfinished message is
      dropped and the close is answered as usual.
    * Only a message's own payload counts against ``max_size``.  websockets
      gives the next frame what is left of the limit, so a ping between two
      fragments of a message close to the limit failed it with 1009.  Between
      fragments the parser allows a control frame's worth more, and the
      message's total is checked here instead.
    """

    def __init__(self, *, max_size: int | None, **kwargs: Any) -> None:
        # (Attributes here count: past 29 in all, CPython 3.11 stops sharing the
        # instance dict's keys, and each protocol's dict grows from 296 to 1,584 bytes.)
        self._limit: int | None = max_size
        #: The message being received in fragments: one growing buffer, so that
        #: a message sent in 1-byte fragments costs about its size.
        self._fragments: bytearray | None = None
        self._fragments_text = False
        #: Called with the payload of every pong (the keepalive matches it to its ping).
        self.on_pong: Callable[[bytes], None] | None = None
        super().__init__(max_size=max_size, **kwargs)

    @classmethod
    def for_request(cls, max_size: int) -> _ServerProtocol:
        """A protocol for an upgrade request already read and checked: it starts at
        its frame parser (websockets does not parse the request again).

        Built by websockets' own ``__init__`` (triows does not rewrite another
        project's methods), so it pays for what that sets up and triows does not
        read: a ``uuid4()`` id and an HTTP parser, replaced at once.
        """
        self = cls(extensions=COMPRESSION, max_size=max_size, logger=_protocol_logger)
        self.parser = Protocol.parse(self)
        next(self.parser)
        return self

    @property
    def max_message_size(self) -> int | None:
        limit = self._limit
        if limit is None or self.current_size is None:
            return limit
        return limit + CONTROL_SLACK

    @max_message_size.setter
    def max_message_size(self, value: int | None) -> None:
        self._limit = value

    def recv_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        current = self.current_size
        if opcode is Opcode.CLOSE:
            self.current_size = None
            if int.from_bytes(frame.data[:2], "big") in REFUSED_CLOSE_CODES:
                raise ProtocolError("invalid close code from the client")
        elif (
            opcode is Opcode.CONT
            and current is not None
            and self._limit is not None
            and current + len(frame.data) > self._limit
        ):
            raise PayloadTooBig(len(frame.data), self._limit - current)
        super().recv_frame(frame)

    def send_101(self, headers: Sequence[tuple[bytes, bytes]]) -> None:
        """Send the 101 with ``headers`` (as websockets' ``send_response`` would
        serialize them): the connection is open."""
        assert self.state is CONNECTING
        lines = [name + b": " + value + b"\r\n" for name, value in headers]
        self.writes.append(b"HTTP/1.1 101 Switching Protocols\r\n" + b"".join(lines) + b"\r\n")
        self.state = OPEN

    def frames(self, messages: Sequence[Prepared]) -> bytes:
        """The wire bytes of a batch (the connection is open).

        One shared frame per message serves every client: the plain frame
        without an extension, the compressed one (per server window size) with
        permessage-deflate, which the server negotiates without context takeover.
        """
        extensions = self.extensions
        if extensions:
            bits = cast(PerMessageDeflate, extensions[0]).local_max_window_bits
            if len(messages) == 1:
                return messages[0].deflated(bits)
            return b"".join([m.deflated(bits) for m in messages])
        if len(messages) == 1:
            return messages[0].frame()
        return b"".join([m.frame() for m in messages])

    def receive_frames(self, data: bytes) -> list[str | bytes]:
        """Feed ``data`` from the socket; the messages parsed at once, in order
        before those of :meth:`take_messages`.

        The common case, whole unfragmented text or binary frames arriving on a
        frame boundary with no extension, is parsed here in one loop
        (:meth:`_parse_fast`: the header's bytes read directly, websockets' C
        unmasking, UTF-8 decoding); whatever does not fit that case, from the
        first such frame on, goes to websockets' parser, which applies every
        rule (control frames, fragments, limits, RSV bits, invalid UTF-8).
        """
        if (
            self.state is OPEN
            and not self.extensions
            and self.current_size is None
            and self._fragments is None
            and self.parser_exc is None
            and not self.reader.buffer
            and self.max_fragment_size is None
            and getattr(self.parser.gi_yieldfrom, "gi_code", None) is _BETWEEN_FRAMES  # type: ignore[attr-defined]
        ):
            ready: list[str | bytes] = []
            parsed = self._parse_fast(data, ready)
            if parsed == len(data):
                return ready
            if parsed:
                data = data[parsed:]
            self.receive_data(data)
            return ready
        self.receive_data(data)
        return []

    def _parse_fast(self, data: bytes, ready: list[str | bytes]) -> int:
        """Parse the leading whole, masked, final TEXT/BINARY frames of ``data``
        (payload under 64 KiB and within the size limit) into ``ready``; return
        the bytes used."""
        limit = self._limit
        end = len(data)
        pos = 0
        while end - pos >= 6:
            first = data[pos]
            second = data[pos + 1]
            # FIN set, RSV clear, opcode 1 or 2 (0x81, 0x82), and masked.
            if (first != 0x81 and first != 0x82) or second < 0x80:
                break
            size = second & 0x7F
            head = pos + 2
            if size == 126:
                size = (data[head] << 8) | data[head + 1]
                head += 2
            elif size == 127:
                break
            stop = head + 4 + size
            if stop > end or (limit is not None and size > limit):
                break
            payload = apply_mask(data[head + 4 : stop], data[head : head + 4])
            if first == 0x81:
                try:
                    ready.append(payload.decode())
                except UnicodeDecodeError:
                    break  # websockets' parser takes it: 1007 (take_messages)
            else:
                ready.append(payload)
            pos = stop
        return pos

    def take_messages(self) -> list[str | bytes]:
        """The complete messages received since the last call (``str`` for text).

        Hands each pong's payload to :attr:`on_pong`.  Invalid
        UTF-8 in a text message fails the connection with 1007.
        """
        messages: list[str | bytes] = []
        for frame in self.events_received():
            if not isinstance(frame, Frame):
                continue  # a second request during the handshake: nothing for the App
            opcode = frame.opcode
            data: bytes | bytearray | memoryview
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                is_text = opcode is Opcode.TEXT
                if not frame.fin:
                    self._fragments = bytearray(frame.data)
                    self._fragments_text = is_text
                    continue
                data = frame.data
            elif opcode is Opcode.CONT:
                fragments = self._fragments
                if fragments is None:
                    continue  # the protocol already failed the connection
                fragments += frame.data
                if not frame.fin:
                    continue
                self._fragments = None
                data, is_text = fragments, self._fragments_text
            else:
                if opcode is Opcode.PONG and self.on_pong is not None:
                    self.on_pong(bytes(frame.data))
                continue
            if is_text:
                try:
                    messages.append(str(data, "utf-8"))
                except UnicodeDecodeError:
                    if self.state is OPEN:
                        self.fail(1007, "invalid UTF-8 in a text message")
                    break
            else:
                messages.append(bytes(data))
        return messages

    def departure(self, eof: bool) -> tuple[int, str] | None:
        """The client's close code and reason once the connection ended (not OPEN).

        ``eof``: the socket's input ended.  None while our own close frame waits
        for the client's answer.
        """
        self._fragments = None
        received = self.close_rcvd
        if received is not None:
            return received.code, received.reason
        sent = self.close_sent
        if isinstance(self.parser_exc, EOFError) or (sent is None and eof):
            return 1006, ""
        if sent is not None and (self.eof_sent or self.state is CLOSED or eof):
            # The server failed the connection (1009 message too big, 1002,
            # 1007): the view sees the code the client was sent.
            return sent.code, sent.reason
        return None


def new_protocol(max_size: int) -> _ServerProtocol:
    """A protocol for an upgrade request already read and checked (see
    :meth:`_ServerProtocol.for_request`)."""
    return _ServerProtocol.for_request(max_size)
