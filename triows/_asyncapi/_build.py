"""From the App's routes to the document."""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import Any

from .._endpoints import WebSocketRoute
from .._jsonrpc import jsonrpc_route_of
from ._document import Info, assemble
from ._live import live_channel, live_route_of
from ._model import Channel
from ._rpc import jsonrpc_channel
from ._schemas import Components
from ._websocket import websocket_channel

__all__ = ["build_document"]


def build_document(
    routes: Iterable[WebSocketRoute], providers: Container[str], info: Info
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document describing ``routes`` (JSON-RPC routes, live
    routes and the others), in registration order.

    ``providers``: the names of the App's providers (view parameters that are not
    query parameters).  A new dict on every call; nothing is cached.
    """
    components = Components()
    channels: list[Channel] = []
    for route in routes:
        served = jsonrpc_route_of(route.view)
        live = live_route_of(route.view)
        if served is not None:
            channels.append(jsonrpc_channel(route, served, providers, components))
        elif live is not None:
            channels.append(live_channel(route.pattern.text, live, components))
        else:
            channels.append(websocket_channel(route, providers, components))
    return assemble(info, channels, components)
