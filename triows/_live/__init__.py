"""The live endpoint: topics, resume, presence and client publishes over one WebSocket.

``App.live_route`` registers it; docs/protocol.md is the wire protocol; the
browser client is ``static/triows-live.js``, the trio client ``triows.client``.
"""

from __future__ import annotations

from ._dedup import PublishLog
from ._hooks import Authorize, BeforePublish, Identify, LiveAction, LiveIdentity
from ._protocol import ERROR_CODES, PROTOCOL_VERSION
from ._route import CLIENT_FILE, LiveOptions, LiveRoute, client_script

__all__ = [
    "CLIENT_FILE",
    "ERROR_CODES",
    "PROTOCOL_VERSION",
    "Authorize",
    "BeforePublish",
    "Identify",
    "LiveAction",
    "LiveIdentity",
    "LiveOptions",
    "LiveRoute",
    "PublishLog",
    "client_script",
]
