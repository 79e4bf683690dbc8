"""What the route describers hand to the document: channels, their messages and
operations, before ids and ``$ref`` links are assigned."""

from __future__ import annotations

import re
from typing import Any, Literal

import attrs

__all__ = ["Channel", "Operation", "Reply", "name_of_address"]

_INVALID = re.compile(r"[^A-Za-z0-9_.\-]+")


def name_of_address(address: str, default: str) -> str:
    """A channel name made of a route's pattern: ``/rpc/{tenant}`` -> ``rpc_tenant``."""
    return _INVALID.sub("_", address.strip("/")).strip("_") or default


#: From the App's side: it ``receive``s what clients send, and ``send``s to them.
Action = Literal["receive", "send"]


@attrs.frozen
class Reply:
    """The messages that answer an operation's message, on the same channel."""

    messages: tuple[str, ...]


@attrs.frozen
class Operation:
    """One operation of a channel: ``messages`` are keys of the channel's messages.

    ``name`` is unique in its channel; the operation's id is ``channel_id.name``.
    """

    name: str
    action: Action
    messages: tuple[str, ...]
    summary: str | None = None
    description: str | None = None
    reply: Reply | None = None


@attrs.frozen
class Channel:
    """One route: its address, parameters, bindings, messages and operations.

    ``name`` is the view's name; the document makes it a unique channel id.
    ``messages`` maps a key (unique in the channel) to an AsyncAPI Message Object.
    """

    name: str
    address: str
    messages: dict[str, dict[str, Any]]
    operations: tuple[Operation, ...]
    parameters: dict[str, Any] = attrs.field(factory=dict)
    bindings: dict[str, Any] = attrs.field(factory=dict)
    description: str | None = None
