"""The AsyncAPI 3.0.0 document of an App: every WebSocket route as a channel.

Each route is one channel (the WebSocket connection at its address); the view's
name, made unique, is the channel's id.  Operations are written from the App's
side: ``receive`` for what clients send, ``send`` for what the App sends.  The
messages live in their channel; the operations point at them with ``$ref``.
Shared JSON Schemas (the definitions of typed messages) are in
``components.schemas``.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from typing import Any
from urllib.parse import urlsplit

import attrs

from ._model import Channel, Operation
from ._schemas import Components

__all__ = ["ASYNCAPI_VERSION", "Info", "assemble"]

#: The version of the AsyncAPI specification the documents follow.
ASYNCAPI_VERSION = "3.0.0"
#: What an id (of a channel, an operation) may contain here.
_INVALID = re.compile(r"[^A-Za-z0-9_.\-]")


@attrs.frozen
class Info:
    """The document's ``info`` and ``servers``: what the API is and where it runs."""

    title: str
    version: str
    description: str | None = None
    #: A WebSocket URL (``ws://host:port`` or ``wss://...``) the document names as
    #: its server; None for none.
    server: str | None = None

    def servers(self) -> dict[str, Any]:
        if self.server is None:
            return {}
        parts = urlsplit(self.server)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ValueError(
                f"server={self.server!r} is not a WebSocket URL; give one such as "
                "'ws://127.0.0.1:8000' or 'wss://example.com'"
            )
        server: dict[str, Any] = {"host": parts.netloc, "protocol": parts.scheme}
        if parts.path.strip("/"):
            server["pathname"] = "/" + parts.path.strip("/")
        return {"default": server}


def assemble(info: Info, channels: Iterable[Channel], components: Components) -> dict[str, Any]:
    """The document: ``info``, ``servers``, ``channels``, ``operations``, ``components``."""
    document: dict[str, Any] = {"asyncapi": ASYNCAPI_VERSION, "info": _info(info)}
    servers = info.servers()
    if servers:
        document["servers"] = servers
    document["defaultContentType"] = "application/json"
    all_channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel in channels:
        channel_id = _unique(_INVALID.sub("_", channel.name) or "channel", all_channels)
        all_channels[channel_id] = _channel(channel)
        for operation in channel.operations:
            name = _INVALID.sub("_", f"{channel_id}.{operation.name}")
            operations[_unique(name, operations)] = _operation(channel_id, operation)
    document["channels"] = all_channels
    document["operations"] = operations
    if components.schemas:
        document["components"] = {"schemas": components.schemas}
    return document


def _info(info: Info) -> dict[str, Any]:
    body = {"title": info.title, "version": info.version}
    if info.description:
        body["description"] = info.description
    return body


def _unique(name: str, taken: Container[str]) -> str:
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}_{number}"
    return candidate


def _channel(channel: Channel) -> dict[str, Any]:
    body: dict[str, Any] = {"address": channel.address}
    if channel.description:
        body["description"] = channel.description
    body["messages"] = channel.messages
    if channel.parameters:
        body["parameters"] = channel.parameters
    if channel.bindings:
        body["bindings"] = channel.bindings
    return body


def _operation(channel_id: str, operation: Operation) -> dict[str, Any]:
    channel_ref = {"$ref": f"#/channels/{channel_id}"}
    body: dict[str, Any] = {"action": operation.action, "channel": channel_ref}
    if operation.summary:
        body["summary"] = operation.summary
    if operation.description:
        body["description"] = operation.description
    body["messages"] = [_message_ref(channel_id, key) for key in operation.messages]
    if operation.reply is not None:
        body["reply"] = {
            "channel": channel_ref,
            "messages": [_message_ref(channel_id, key) for key in operation.reply.messages],
        }
    return body


def _message_ref(channel_id: str, key: str) -> dict[str, str]:
    # JSON Pointer escaping (RFC 6901): message keys may hold any character.
    escaped = key.replace("~", "~0").replace("/", "~1")
    return {"$ref": f"#/channels/{channel_id}/messages/{escaped}"}
