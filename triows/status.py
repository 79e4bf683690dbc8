"""WebSocket close codes (RFC 6455 section 7.4 and the IANA registry).

Every code is available both as a module constant, named as in Starlette's
``status`` module so code moves over unchanged, and as a member of
:class:`CloseCode`, an :class:`~enum.IntEnum`::

    from triows import status

    await ws.close(status.WS_1008_POLICY_VIOLATION)
    await ws.close(status.CloseCode.POLICY_VIOLATION)   # the same value

Codes 4000-4999 are reserved for applications: use them for your own errors
(``await ws.close(4003)``).  Codes 1005, 1006 and 1015 are never sent on the wire;
they only report what happened to a connection.
"""

from __future__ import annotations

import enum

__all__ = [
    "APPLICATION_CODES",
    "WS_1000_NORMAL_CLOSURE",
    "WS_1001_GOING_AWAY",
    "WS_1002_PROTOCOL_ERROR",
    "WS_1003_UNSUPPORTED_DATA",
    "WS_1005_NO_STATUS_RCVD",
    "WS_1006_ABNORMAL_CLOSURE",
    "WS_1007_INVALID_FRAME_PAYLOAD_DATA",
    "WS_1008_POLICY_VIOLATION",
    "WS_1009_MESSAGE_TOO_BIG",
    "WS_1010_MANDATORY_EXT",
    "WS_1011_INTERNAL_ERROR",
    "WS_1012_SERVICE_RESTART",
    "WS_1013_TRY_AGAIN_LATER",
    "WS_1014_BAD_GATEWAY",
    "WS_1015_TLS_HANDSHAKE",
    "CloseCode",
]


class CloseCode(enum.IntEnum):
    """The standard WebSocket close codes."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_FRAME_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXT = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


WS_1000_NORMAL_CLOSURE = CloseCode.NORMAL_CLOSURE
WS_1001_GOING_AWAY = CloseCode.GOING_AWAY
WS_1002_PROTOCOL_ERROR = CloseCode.PROTOCOL_ERROR
WS_1003_UNSUPPORTED_DATA = CloseCode.UNSUPPORTED_DATA
WS_1005_NO_STATUS_RCVD = CloseCode.NO_STATUS_RCVD
WS_1006_ABNORMAL_CLOSURE = CloseCode.ABNORMAL_CLOSURE
WS_1007_INVALID_FRAME_PAYLOAD_DATA = CloseCode.INVALID_FRAME_PAYLOAD_DATA
WS_1008_POLICY_VIOLATION = CloseCode.POLICY_VIOLATION
WS_1009_MESSAGE_TOO_BIG = CloseCode.MESSAGE_TOO_BIG
WS_1010_MANDATORY_EXT = CloseCode.MANDATORY_EXT
WS_1011_INTERNAL_ERROR = CloseCode.INTERNAL_ERROR
WS_1012_SERVICE_RESTART = CloseCode.SERVICE_RESTART
WS_1013_TRY_AGAIN_LATER = CloseCode.TRY_AGAIN_LATER
WS_1014_BAD_GATEWAY = CloseCode.BAD_GATEWAY
WS_1015_TLS_HANDSHAKE = CloseCode.TLS_HANDSHAKE

#: The range RFC 6455 reserves for application-defined close codes.
APPLICATION_CODES = range(4000, 5000)
