"""Request heads on the native server: read, checked, parsed.

Every request head, a WebSocket handshake's included, is read by
:class:`RequestReader` under the rules ``triows._native._http`` lists (size,
CRLF line ends, h11's checks).

:func:`parse_upgrade` reads a head with one regular expression that accepts a
strict subset of what h11 accepts (h11's grammar, narrowed to ``GET``,
HTTP/1.1 and unfolded lines), and gives the method, target, version and
headers h11 would give (names lower-cased, values stripped).  Anything else
(another method or version, a folded line, a ``Content-Length`` or
``Transfer-Encoding``, no or several ``Host``, a request that is not an
upgrade) returns None and goes to h11, which applies every rule and answers
every error as before.  ``tests/test_native_upgrade.py`` checks it against h11
on many generated heads.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Final

import attrs
import h11
import trio

from .._serving._handshake import asks_for_websocket
from ._http import MAX_HEAD_SIZE, close_gently, refuse
from ._tls import TLSSocket
from ._writer import RECV_SIZE

__all__ = ["HEAD_END", "RequestReader", "UpgradeHead", "bad_line_end", "parse_upgrade"]

HEAD_END = b"\r\n\r\n"

# h11's grammar (h11._abnf), narrowed: GET, HTTP/1.1, no folded lines.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_FIELD_VCHAR = rb"[^\x00\s]"
_FIELD_VALUE = rb"(?:%s+(?:[ \t]+%s+)*)?" % (_FIELD_VCHAR, _FIELD_VCHAR)
_FAST_HEAD: Final = re.compile(
    rb"GET ([\x21-\x7e]+) HTTP/1\.1\r\n((?:%s:[ \t]*%s[ \t]*\r\n)*)\r\n" % (_TOKEN, _FIELD_VALUE)
)
#: Headers h11 normalizes or checks beyond the grammar: such a request goes to h11.
_H11_CHECKED: Final = frozenset({b"content-length", b"transfer-encoding"})


@attrs.frozen
class UpgradeHead:
    """A request head that asks for a WebSocket, as h11 would parse it.

    ``headers``: names lower-cased, values without surrounding whitespace.
    """

    method: bytes
    target: bytes
    http_version: bytes
    headers: list[tuple[bytes, bytes]]

    @classmethod
    def from_h11(cls, request: h11.Request) -> UpgradeHead:
        """The head of a request h11 parsed."""
        return cls(request.method, request.target, request.http_version, list(request.headers))


def parse_upgrade(head: bytes | bytearray, end: int) -> UpgradeHead | None:
    """The upgrade request in ``head[:end]`` (a whole head, its blank line included),
    or None when it is not a plain, well-formed upgrade (h11 then parses it)."""
    match = _FAST_HEAD.fullmatch(head, 0, end)
    if match is None:
        return None
    headers: list[tuple[bytes, bytes]] = []
    hosts = 0
    for line in match[2].split(b"\r\n")[:-1]:
        name, _, value = line.partition(b":")
        name = name.lower()
        if name in _H11_CHECKED:
            return None
        if name == b"host":
            hosts += 1
        headers.append((name, value.strip(b" \t")))
    if hosts != 1 or not asks_for_websocket(headers):
        return None  # h11 answers a missing or repeated Host; plain HTTP is h11's
    return UpgradeHead(b"GET", match[1], b"1.1", headers)


def bad_line_end(head: bytes | bytearray, start: int, end: int) -> bool:
    """Whether ``head[start:end]`` holds a CR or an LF that is not part of a CRLF.

    Counted in C (three ``count`` passes, where a regular expression with
    look-arounds tried each byte: 14 us for a browser's 500-byte head).  The
    range must not split a CRLF (the reader never ends one between its CR and LF).
    """
    crlf = head.count(b"\r\n", start, end)
    return head.count(b"\n", start, end) != crlf or head.count(b"\r", start, end) != crlf


class _BadHead(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class RequestReader:
    """The request heads of one connection: read, checked, then parsed by h11."""

    __slots__ = ("_conn", "_head", "_scanned", "request", "sock", "upgrade")

    #: The last request read (set by :meth:`next_request`), unless it asks for a WebSocket.
    request: h11.Request

    def __init__(self, sock: trio.socket.SocketType, head: bytearray) -> None:
        self.sock = sock
        #: h11's side, made when a head needs it (a WebSocket handshake rarely does).
        self._conn: h11.Connection | None = None
        #: What was received since the current head started.  The first head's
        #: buffer is the caller's: a WebSocket handshake takes it whole.
        self._head = head
        self._scanned = 0
        #: The last request read, when it asks for a WebSocket (else None).
        self.upgrade: UpgradeHead | None = None

    @property
    def conn(self) -> h11.Connection:
        """h11's connection, fed everything received so far."""
        conn = self._conn
        if conn is None:
            conn = self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
            conn.receive_data(bytes(self._head))
        return conn

    async def next_request(self) -> bool:
        """Read the next request head: True with :attr:`upgrade` (a WebSocket
        handshake) or :attr:`request` (plain HTTP) set.

        False if the client left first, or if the head broke a rule (it was
        answered 400 or 431 and the connection half-closed).  A plain,
        well-formed upgrade request is parsed without h11
        (``triows._native._upgrade``), every other head by h11.
        """
        self.upgrade = None
        try:
            if not await self._read_head():
                return False
            if self._conn is None:
                head = self._head
                self.upgrade = parse_upgrade(head, head.find(HEAD_END) + len(HEAD_END))
                if self.upgrade is not None:
                    return True
            event = self.conn.next_event()
        except _BadHead as exc:
            await refuse(self.sock, exc.status, f"{exc}\n")
            return False
        except h11.RemoteProtocolError as exc:
            await refuse(self.sock, exc.error_status_hint, f"{exc}\n")
            return False
        if not isinstance(event, h11.Request):  # pragma: no cover - a complete head is one
            await refuse(self.sock, 400, "malformed request\n")
            return False
        names = {name for name, _ in event.headers}
        if b"content-length" in names and b"transfer-encoding" in names:
            # RFC 9112 6.3: a smuggling attempt, or at best ambiguous.
            await refuse(self.sock, 400, "both Content-Length and Transfer-Encoding\n")
            return False
        self.request = event
        if asks_for_websocket(event.headers):
            self.upgrade = UpgradeHead.from_h11(event)
        return True

    async def _read_head(self) -> bool:
        sock = self.sock
        direct = not isinstance(sock, TLSSocket)
        while not self._head_complete():
            try:
                if not direct:
                    data = await sock.recv(RECV_SIZE)
                else:
                    try:
                        # What has arrived is read without a pass through the
                        # scheduler (bounded: a head past MAX_HEAD_SIZE is refused).
                        data = os.read(sock.fileno(), RECV_SIZE)
                    except BlockingIOError:
                        await trio.lowlevel.wait_readable(sock)
                        continue
            except (OSError, trio.ClosedResourceError):
                return False  # gone, or closed from outside (the shutdown's reaper)
            if not data:
                return False
            self._head += data
            if self._conn is not None:
                self._conn.receive_data(data)
        return True

    def _head_complete(self) -> bool:
        """Whether the buffer holds a whole head; raises _BadHead if it breaks a rule."""
        head = self._head
        end = head.find(HEAD_END, max(0, self._scanned - 3))
        if end != -1:
            limit = size = end + len(HEAD_END)
        else:
            # A CR at the very end may be the start of a CRLF: look at it next time.
            limit = len(head) - head.endswith(b"\r")
            size = len(head) + 1  # the head needs at least one more byte
        if bad_line_end(head, self._scanned, limit):
            raise _BadHead(400, "request lines must end with CRLF")
        self._scanned = limit
        if size > MAX_HEAD_SIZE:
            raise _BadHead(431, "request head too large")
        return end != -1

    async def next_cycle(self) -> bool:
        """After a complete response: True once ready for the next request.

        False if the connection must close (closed gently if input is left).
        A request body the App did not read is skipped if it has arrived.
        """
        conn = self.conn
        with contextlib.suppress(h11.RemoteProtocolError):
            while conn.their_state is h11.SEND_BODY and conn.next_event() is not h11.NEED_DATA:
                pass
        unread = conn.trailing_data[0]
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self._head[:] = unread[:MAX_HEAD_SIZE]  # past it, the next head is too large
            self._scanned = 0
            return True
        if unread or conn.their_state is not h11.DONE:
            await close_gently(self.sock)
        return False
