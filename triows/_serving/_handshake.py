"""The handshake rule, written once for both servers: which upgrades are refused, and how.

A server calls :func:`refusal` on a request that asks for a WebSocket
(:func:`asks_for_websocket`: its ``Upgrade`` header names ``websocket``) over
HTTP/1 (HTTP/2 has no such upgrade), before the App sees it, and answers a :class:`Refusal` as it is:
the same status and headers on both servers, an empty body, and the
connection closed.  The rule (RFC 6455 4.2.1, 4.2.2; RFC 9110 15.5.22):

=====================================================  =============================
the request                                             the answer
=====================================================  =============================
not HTTP/1.1, or not ``GET``                            400
``Upgrade`` not exactly ``websocket``, or               426, ``Upgrade: websocket``
``Connection`` without the ``Upgrade`` token
no ``Sec-WebSocket-Version``, or several                400
a ``Sec-WebSocket-Version`` other than 13               426, ``Upgrade: websocket``,
                                                        ``Sec-WebSocket-Version: 13``
no ``Sec-WebSocket-Key``, several, or one that is not   400
the base64 of 16 bytes
=====================================================  =============================
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from typing import Final

import attrs

__all__ = ["BAD_HANDSHAKE", "Refusal", "asks_for_websocket", "refusal"]

Headers = Iterable[tuple[bytes, bytes]]


@attrs.frozen
class Refusal:
    """An answer refusing a handshake: the status and the headers, in this order."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]


_CLOSE: Final = ((b"Content-Length", b"0"), (b"Connection", b"close"))
_UPGRADE: Final = (b"Upgrade", b"websocket")

#: A malformed handshake.
BAD_HANDSHAKE: Final = Refusal(400, _CLOSE)
#: Not an upgrade to WebSocket (RFC 9110: a 426 names the protocol to upgrade to).
NOT_AN_UPGRADE: Final = Refusal(426, (_UPGRADE, *_CLOSE))
#: A version this server does not speak (RFC 6455 4.2.2: name the one it does).
WRONG_VERSION: Final = Refusal(426, (_UPGRADE, (b"Sec-WebSocket-Version", b"13"), *_CLOSE))


def _tokens(values: list[bytes]) -> list[bytes]:
    return [token.strip().lower() for value in values for token in value.split(b",")]


def asks_for_websocket(headers: Headers) -> bool:
    """Whether a request asks for a WebSocket: an ``Upgrade`` header names ``websocket``."""
    upgrades = [value for name, value in headers if name.lower() == b"upgrade"]
    return b"websocket" in _tokens(upgrades)


def refusal(http_version: str, method: bytes, headers: Headers) -> Refusal | None:
    """How to refuse this HTTP/1 upgrade request, or None if it is a valid handshake.

    ``http_version`` as ASGI spells it (``"1.1"``).
    """
    found: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        found.setdefault(name.lower(), []).append(value.strip())
    if http_version != "1.1" or method != b"GET":
        return BAD_HANDSHAKE
    upgrade = [token for token in _tokens(found.get(b"upgrade", [])) if token]
    if upgrade != [b"websocket"] or b"upgrade" not in _tokens(found.get(b"connection", [])):
        return NOT_AN_UPGRADE
    versions = found.get(b"sec-websocket-version", [])
    if len(versions) != 1:
        return BAD_HANDSHAKE
    if versions[0] != b"13":
        return WRONG_VERSION
    keys = found.get(b"sec-websocket-key", [])
    if len(keys) != 1 or not _valid_key(keys[0]):
        return BAD_HANDSHAKE
    return None


def _valid_key(key: bytes) -> bool:
    try:
        return len(binascii.a2b_base64(key, strict_mode=True)) == 16
    except (binascii.Error, ValueError):
        return False
