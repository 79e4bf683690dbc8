"""triows: a trio-native WebSocket framework.

Each connection's view runs in its own trio nursery, inside cancel scopes that
keep the protocol's order (accept, then send/receive, then close), so a client's
departure cancels the view promptly and no task outlives its connection.
"""

from __future__ import annotations

from . import status
from ._app import App
from ._connection._frames import Broadcast
from ._connection._state import ConnectionState
from ._connection._websocket import WebSocket
from ._datastructures import URL, Headers, QueryParams
from ._exceptions import (
    BadMessage,
    ClientError,
    MessageDecodeError,
    MessageTypeError,
    MessageValidationError,
    WebSocketDisconnect,
)
from ._http import Request, Response
from ._jsonrpc import JSONRPC, RPCConnection, RPCError
from ._live import LiveAction, LiveIdentity, LiveRoute
from ._providers import ProviderError
from ._routing import ParameterError
from ._server import serve
from .hub import (
    Hub,
    HubStats,
    HubUnavailable,
    Lagged,
    PresenceChange,
    PresenceChanges,
    SlowConsumer,
    Subscription,
)

__all__ = [
    "JSONRPC",
    "URL",
    "App",
    "BadMessage",
    "Broadcast",
    "ClientError",
    "ConnectionState",
    "Headers",
    "Hub",
    "HubStats",
    "HubUnavailable",
    "Lagged",
    "LiveAction",
    "LiveIdentity",
    "LiveRoute",
    "MessageDecodeError",
    "MessageTypeError",
    "MessageValidationError",
    "ParameterError",
    "PresenceChange",
    "PresenceChanges",
    "ProviderError",
    "QueryParams",
    "RPCConnection",
    "RPCError",
    "Request",
    "Response",
    "SlowConsumer",
    "Subscription",
    "WebSocket",
    "WebSocketDisconnect",
    "serve",
    "status",
]

__version__ = "0.1.0"
