"""JSON-RPC 2.0 over a WebSocket: ``JSONRPC``, ``RPCError``, ``RPCConnection``.

``_errors`` (codes, RPCError), ``_methods`` (the registry and its read-only
method records), ``_plan`` (binding a call's params), ``_session`` (one
connection's calls: concurrency, cancellation, responses), ``_route`` (the
WebSocket view ``app.jsonrpc_route`` registers).
"""

from __future__ import annotations

from ._errors import STANDARD_ERRORS, RPCError
from ._methods import JSONRPC, RPCMethod, RPCParameter
from ._route import JSONRPCRoute, jsonrpc_route_of, jsonrpc_view
from ._session import CANCEL_METHOD, RPCConnection

__all__ = [
    "CANCEL_METHOD",
    "JSONRPC",
    "STANDARD_ERRORS",
    "JSONRPCRoute",
    "RPCConnection",
    "RPCError",
    "RPCMethod",
    "RPCParameter",
    "jsonrpc_route_of",
    "jsonrpc_view",
]
