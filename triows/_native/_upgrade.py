"""The upgrade request on the native server: its head, its refusal or its 101.

Most handshakes are alike: ``GET``, HTTP/1.1, plain header lines, one
``Connection`` and one ``Upgrade: websocket``, and at most one extension and
one subprotocol header, with the same few offers every time (browsers offer
permessage-deflate: Chromium ``permessage-deflate; client_max_window_bits``,
Firefox ``permessage-deflate`` with ``Connection: keep-alive, Upgrade``).  For
those this module does the work with bytes operations:

* ``triows._native._head`` reads the head without h11;
* :func:`accept_headers` computes ``Sec-WebSocket-Accept`` with hashlib, dates
  the 101 from the per-second cache of ``triows._serving._date``, and answers
  the offers as websockets' ``accept()`` did for the same ``Connection``,
  extension and subprotocol values (the negotiation, websockets' and
  ``triows._native._deflate``'s, runs once per distinct offer and is
  remembered); each connection gets its own copy of the negotiated extension.
  A request with a repeated header, an unusual ``Upgrade`` or ``Origin``, or
  longer offers than browsers make goes to websockets' ``accept()`` (None here).

Both paths give the same bytes on the wire and the same negotiated parameters;
``tests/test_native_upgrade.py`` and ``tests/test_native_offers.py`` check them
against h11 and websockets on many generated requests and offers, and
:data:`UPGRADES` counts which path made each 101.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import re
from typing import Final, cast

import attrs
import trio
from websockets.datastructures import Headers as WSHeaders
from websockets.exceptions import InvalidHeaderValue
from websockets.extensions.base import Extension
from websockets.http11 import Request as WSRequest
from websockets.http11 import Response as WSResponse

from .._serving._date import http_date
from .._serving._handshake import BAD_HANDSHAKE, Refusal, refusal
from ._deflate import LazyInflater
from ._head import HEAD_END, UpgradeHead
from ._http import _reason
from ._protocol import _ServerProtocol, new_protocol
from ._writer import _send_all

__all__ = [
    "UPGRADES",
    "Accepted",
    "Handshaken",
    "UpgradeStats",
    "accept_headers",
    "handshake",
    "refusal_response",
    "websockets_accept",
    "websockets_headers",
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


@attrs.frozen
class _Negotiation:
    """websockets' answer to one set of offers (Connection, extensions, subprotocols)."""

    #: The 101's ``Sec-WebSocket-Extensions``, None when no extension was accepted.
    extensions_header: bytes | None
    #: The accepted permessage-deflate, a template: each connection gets its own copy.
    deflate: LazyInflater | None


#: The longest offers (Connection, extensions and subprotocols together) whose
#: negotiation is remembered: browsers send about 60 bytes.
_MEMO_BYTES: Final = 512
#: A valid key for the requests the negotiation is worked out on (it changes nothing else).
_ANY_KEY: Final = b"dGhlIHNhbXBsZSBub25jZQ=="


@functools.lru_cache(maxsize=64)
def _negotiation(
    connection: bytes, extensions: bytes | None, subprotocols: bytes | None
) -> _Negotiation | None:
    """websockets' ``accept()`` of a request with these ``Connection``,
    ``Sec-WebSocket-Extensions`` and ``Sec-WebSocket-Protocol`` values (one
    each, or none), its other headers valid and plain; None if it refuses it.

    The answer depends on nothing else, and browsers send the same few offers
    on every handshake: remembered (a bounded LRU), each is negotiated once per
    process, by websockets and triows' ``ServerDeflate``, the one copy of the rules.
    """
    headers = [
        (b"connection", connection),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-key", _ANY_KEY),
        (b"sec-websocket-version", b"13"),
    ]
    if extensions is not None:
        headers.append((b"sec-websocket-extensions", extensions))
    if subprotocols is not None:
        headers.append((b"sec-websocket-protocol", subprotocols))
    answered = websockets_accept(headers)
    if answered is None:
        return None
    response, protocol = answered
    answer = response.headers.get("Sec-WebSocket-Extensions")
    deflate = None
    if protocol.extensions:
        (accepted,) = protocol.extensions  # triows offers one extension
        deflate = cast(LazyInflater, accepted)
    return _Negotiation(None if answer is None else answer.encode("latin-1"), deflate)


@attrs.frozen
class Accepted:
    """The 101 of a request the fast path answers, as websockets' ``accept()`` would."""

    #: The 101's headers.
    headers: list[tuple[bytes, bytes]]
    #: The extensions negotiated (this connection's own): the protocol's ``extensions``.
    extensions: list[Extension]


@attrs.define(slots=True, eq=False)
class UpgradeStats:
    """How this process's 101s were made (plain ints): ``fast`` by :func:`accept_headers`,
    ``websockets`` by websockets' ``accept()``."""

    fast: int = 0
    websockets: int = 0


#: This process's counters.
UPGRADES: Final = UpgradeStats()


def accept_headers(headers: list[tuple[bytes, bytes]]) -> Accepted | None:
    """The 101 for a request that passed triows' handshake rule, as websockets'
    ``accept()`` would give it: hashlib's ``Sec-WebSocket-Accept``, the
    negotiation of the request's offers remembered (:func:`_negotiation`).

    None if the request needs websockets itself: a repeated ``Connection``,
    ``Upgrade``, ``Origin``, extension or subprotocol header, an ``Upgrade``
    other than ``websocket``, an ``Origin`` websockets refuses, offers longer
    than browsers make, or offers websockets refuses (it then answers 400).
    """
    key = b""
    connection = extensions = subprotocols = None
    connections = upgrade = origin = offers = protocols = 0
    for name, value in headers:
        if name == b"sec-websocket-key":
            key = value
        elif name == b"connection":
            connection = value
            connections += 1
        elif name == b"upgrade":
            if value.lower() != b"websocket":
                return None
            upgrade += 1
        elif name == b"origin":
            if _VALID_VALUE.fullmatch(value) is None:
                return None  # websockets refuses it: 400
            origin += 1
        elif name == b"sec-websocket-extensions":
            extensions = value
            offers += 1
        elif name == b"sec-websocket-protocol":
            subprotocols = value
            protocols += 1
    if connections != 1 or upgrade != 1 or origin > 1 or offers > 1 or protocols > 1:
        return None
    assert connection is not None
    size = len(connection) + len(extensions or b"") + len(subprotocols or b"")
    negotiation = (
        _negotiation(connection, extensions, subprotocols) if size <= _MEMO_BYTES else None
    )
    if negotiation is None:
        return None
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    answer = [
        (b"Date", http_date().encode()),
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Accept", accept),
    ]
    deflate = negotiation.deflate
    if deflate is None:
        return Accepted(answer, [])
    assert negotiation.extensions_header is not None
    answer.append((b"Sec-WebSocket-Extensions", negotiation.extensions_header))
    return Accepted(answer, [deflate.renewed()])


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
    accepted = accept_headers(request.headers)
    if accepted is not None:
        UPGRADES.fast += 1
        protocol.extensions = accepted.extensions
        answer = accepted.headers
    else:
        # Unusual headers or offers: websockets' accept() decides.
        UPGRADES.websockets += 1
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


def websockets_accept(
    headers: list[tuple[bytes, bytes]],
) -> tuple[WSResponse, _ServerProtocol] | None:
    """websockets' own ``accept()`` of a request with ``headers``: its 101 and the
    protocol that negotiated it (its ``extensions``); None if it refuses it."""
    protocol = new_protocol(1)
    try:
        response = protocol.accept(WSRequest("/", websockets_headers(headers)))
    except InvalidHeaderValue:
        return None
    if response.status_code != 101:
        return None
    return response, protocol


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
