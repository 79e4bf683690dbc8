"""A WebSocket route as an AsyncAPI channel: what the view receives and sends."""

from __future__ import annotations

import inspect
from collections.abc import Container

from .._endpoints import WebSocketRoute
from ._messages import route_messages
from ._model import Channel, Operation
from ._parameters import address_parameters, query_bindings
from ._schemas import Components

__all__ = ["websocket_channel"]


def websocket_channel(
    route: WebSocketRoute, providers: Container[str], components: Components
) -> Channel:
    """The channel of ``route``: its address and parameters, its query parameters as
    WebSocket bindings, and a ``receive`` and a ``send`` operation."""
    options = route.options
    received = route_messages(options.receive_type, components)
    sent = route_messages(options.send_type, components)
    name = route.signature.view_name.rpartition(".")[2]
    operations = (
        Operation(
            name="receive",
            action="receive",
            messages=tuple(received),
            summary=f"Messages a client sends to {route.pattern.text}",
        ),
        Operation(
            name="send",
            action="send",
            messages=tuple(sent),
            summary=f"Messages the server sends on {route.pattern.text}",
        ),
    )
    return Channel(
        name=name,
        address=route.pattern.text,
        messages={**received, **sent},
        operations=operations,
        parameters=address_parameters(route.pattern, route.signature),
        bindings=query_bindings(route.signature, providers),
        description=inspect.getdoc(route.view) or None,
    )
