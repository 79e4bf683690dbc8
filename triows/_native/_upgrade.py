"""The upgrade request on the native server: its head, its refusal or its 101.

Most handshakes are alike: ``GET``, HTTP/1.1, plain header lines, one
``Connection: Upgrade``, one ``Upgrade: websocket``, no extension or
subprotocol offered.  For those this module does the work with bytes
operations:

* ``triows._native._head`` reads the head without h11;
* :func:`accept_headers` computes ``Sec-WebSocket-Accept`` with hashlib and
  dates the 101 from the per-second cache of ``triows._serving._date``, where websockets' ``accept()`` would
  build its ``Headers`` and format the date; a request offering an extension
  or a subprotocol, or with an unusual ``Connection``, ``Upgrade`` or
  ``Origin``, goes to websockets' ``accept()`` (None here).

Both paths give the same bytes on the wire; ``tests/test_native_upgrade.py``
checks both against h11 and websockets on many generated requests.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
from typing import Final

import attrs
import trio
from websockets.datastructures import Headers as WSHeaders
from websockets.exceptions import InvalidHeaderValue
from websockets.http11 import Request as WSRequest

from .._serving._date import http_date
from .._serving._handshake import BAD_HANDSHAKE, Refusal, refusal
from ._head import HEAD_END, UpgradeHead
from ._http import _reason
from ._protocol import _ServerProtocol, new_protocol
from ._writer import _send_all

__all__ = [
    "Handshaken",
    "accept_headers",
    "handshake",
    "refusal_response",
]

#: RFC 6455's GUID, appended to the client's key for Sec-WebSocket-Accept.
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


#: The request headers websockets' accept() reads (the others cannot change its answer).
_ACCEPT_READS: Final = frozenset(
    {
        b"connection",
        b"upgrade",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"origin",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
    }
)
#: A header value websockets' Headers takes (``websockets.http11._value_re``).
_VALID_VALUE: Final = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*")


def accept_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]] | None:
    """The 101's headers for a request that passed triows' handshake rule, as
    websockets' ``accept()`` would give them; None if that request needs
    websockets (an extension or subprotocol offered, unusual ``Connection``,
    ``Upgrade`` or ``Origin`` headers)."""
    key = b""
    connection = upgrade = origin = 0
    for name, value in headers:
        if name == b"sec-websocket-key":
            key = value
        elif name == b"connection":
            if value.lower() != b"upgrade":
                return None
            connection += 1
        elif name == b"upgrade":
            if value.lower() != b"websocket":
                return None
            upgrade += 1
        elif name == b"origin":
            if _VALID_VALUE.fullmatch(value) is None:
                return None  # websockets refuses it: 400
            origin += 1
        elif name == b"sec-websocket-extensions" or name == b"sec-websocket-protocol":
            return None
    if connection != 1 or upgrade != 1 or origin > 1:
        return None
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    return [
        (b"Date", http_date().encode()),
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Accept", accept),
    ]


@attrs.frozen
class Handshaken:
    """An upgrade request accepted by the handshake rule and websockets' checks."""

    protocol: _ServerProtocol
    #: The request-target as sent.
    target: str
    #: The 101's headers, until the App accepts (its own then follow).
    answer: list[tuple[bytes, bytes]]
    #: What the client sent after its request head: WebSocket frames.
    early: bytes


async def handshake(
    sock: trio.socket.SocketType, request: UpgradeHead, head: bytes, max_size: int
) -> Handshaken | None:
    """Check an upgrade request: the protocol and the 101's headers, or None.

    ``head`` is every byte read so far; what follows the request head is
    parsed as WebSocket frames once the handshake is accepted (a second request
    pipelined behind the first is garbage there: 1002).  None once a broken
    handshake was answered, as triows' handshake rule says
    (``triows._serving._handshake``).
    """
    early = head[head.find(HEAD_END) + len(HEAD_END) :]
    version = request.http_version.decode("latin-1")
    refused = refusal(version, request.method, request.headers)
    if refused is not None:
        # The handshake rule both servers share (triows._serving._handshake),
        # before websockets or the App see the request.
        await _send_all(sock, refusal_response(refused))
        return None
    protocol = new_protocol(max_size)
    target = request.target.decode("latin-1")
    answer = accept_headers(request.headers)
    if answer is None:
        # An offer to negotiate, or unusual headers: websockets' accept() decides.
        response = None
        with contextlib.suppress(InvalidHeaderValue):
            response = protocol.accept(WSRequest(target, websockets_headers(request.headers)))
        if response is None or response.status_code != 101:
            # Something websockets refuses beyond triows' rule (a malformed
            # extension offer): a malformed handshake, answered as the rule does.
            await _send_all(sock, refusal_response(BAD_HANDSHAKE))
            return None
        answer = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers.raw_items()
        ]
    return Handshaken(protocol, target, answer, early)


def websockets_headers(headers: list[tuple[bytes, bytes]]) -> WSHeaders:
    """The headers websockets' ``accept()`` reads, as its ``Headers``.

    Raises InvalidHeaderValue for a control character in one (h11 takes them;
    another header's value, which websockets would refuse too, matters to
    neither server's handshake).
    """
    return WSHeaders(
        [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in headers
            if name in _ACCEPT_READS
        ]
    )


def refusal_response(refused: Refusal) -> bytes:
    """The bytes of a refusal: the status and headers both servers send, no body."""
    lines = [b"HTTP/1.1 %d %s" % (refused.status, _reason(refused.status).encode())]
    lines += [name + b": " + value for name, value in refused.headers]
    lines.append(b"Date: " + http_date().encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"
