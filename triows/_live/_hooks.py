"""What an application plugs into a live route: who a client is, what it may do."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import attrs

if TYPE_CHECKING:
    from .._connection._websocket import WebSocket

__all__ = ["Authorize", "BeforePublish", "Identify", "LiveAction", "LiveIdentity", "call_hook"]

#: What a client asks to do with a topic, as the ``authorize`` hook is told.
LiveAction = Literal["subscribe", "publish", "presence"]


@attrs.frozen
class LiveIdentity:
    """Who a live client is, as the route's ``identify`` hook says.

    ``key`` names the client in presence (a user id: one key held by several
    connections counts once) and scopes the deduplication of its publishes;
    ``info`` (JSON-able) is what other members see of it.
    """

    key: str
    info: Any = None


#: ``authorize(ws, topic, action) -> bool`` (or an awaitable of it).
Authorize = Callable[["WebSocket", str, LiveAction], bool | Awaitable[bool]]
#: ``identify(ws) -> LiveIdentity | None`` (or an awaitable of it).
Identify = Callable[["WebSocket"], "LiveIdentity | Awaitable[LiveIdentity | None] | None"]

#: ``before_publish(ws, topic, data) -> data`` (or an awaitable of it): what is published.
BeforePublish = Callable[["WebSocket", str, Any], Any]


async def call_hook(hook: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async hook; its exceptions propagate (a server-side bug: 1011)."""
    result = hook(*args)
    if inspect.isawaitable(result):
        result = await result
    return result
