"""The App's AsyncAPI 3.0.0 document (``App.asyncapi()``), served over HTTP and
printed by ``triows asyncapi``.

``_parameters``: route and query parameters; ``_messages``: a route's messages;
``_schemas``: shared JSON Schemas; ``_websocket``: a WebSocket route's channel;
``_rpc``: a JSON-RPC route's channel; ``_live``: a live route's; ``_model``: what they hand to ``_document``;
``_document``: the whole document; ``_serve``: the HTTP route and the command.
"""

from __future__ import annotations

from ._build import build_document
from ._document import ASYNCAPI_VERSION, Info
from ._serve import document_json, serve_document

__all__ = ["ASYNCAPI_VERSION", "Info", "build_document", "document_json", "serve_document"]
