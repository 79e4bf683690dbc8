"""The App's HTTP side: route lookup, method checks, body reading, the view call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import attrs

from ._connection._websocket import WebSocket
from ._endpoints import WebSocketEndpoints
from ._http import (
    BodyIncomplete,
    BodyTooLarge,
    Request,
    Response,
    allow_header,
    read_body,
    send_response,
    to_response,
)
from ._providers import ProviderRegistry
from ._routing import ParameterError, Pattern, ViewSignature
from ._sessions import SessionConfig
from ._types import Receive, Scope, Send

__all__ = ["HTTPEndpoints", "HTTPRoute"]


@attrs.frozen
class HTTPRoute:
    pattern: Pattern
    view: Callable[..., Awaitable[Any]]
    signature: ViewSignature
    methods: tuple[str, ...]


class HTTPEndpoints:
    """The App's HTTP routes, in registration order (the first match serves)."""

    def __init__(
        self,
        providers: ProviderRegistry,
        websockets: WebSocketEndpoints,
        sessions: SessionConfig | None,
    ) -> None:
        self.providers = providers
        self.websockets = websockets
        self._sessions = sessions
        self.routes: list[HTTPRoute] = []
        websockets.http_route_at = self.serves

    def add(self, route: HTTPRoute) -> None:
        """Register ``route`` after the existing ones.  Raises TypeError for a view
        whose first parameter is annotated as a WebSocket (a WebSocket view)."""
        if route.signature.takes(WebSocket):
            raise TypeError(
                f"{route.signature.view_name}() takes a WebSocket: it is a WebSocket view; "
                f"register it with @app.websocket_route({route.pattern.text!r}), not @app.route"
            )
        self.routes.append(route)

    def serves(self, path: str) -> bool:
        """Whether an HTTP route matches ``path`` (whatever its methods)."""
        return any(route.pattern.match(path) is not None for route in self.routes)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one HTTP request: the matching route's view, or 404/405/426."""
        path: str = scope["path"]
        method: str = scope["method"]
        for route in self.routes:
            values = route.pattern.match(path)
            if values is not None:
                break
        else:
            if self.websockets.route_for(path) is not None:
                response = Response("this URL speaks WebSocket only", 426, {"upgrade": "websocket"})
            else:
                response = Response("not found", 404)
            await send_response(send, response)
            return
        if method not in route.methods:
            await send_response(
                send, Response("method not allowed", 405, allow_header(route.methods))
            )
            return
        try:
            body = await read_body(receive)
        except BodyIncomplete:
            return  # the client left mid-body: nothing to answer, nothing to log
        except BodyTooLarge:
            await send_response(send, Response("request body too large", 413))
            return
        request = Request(scope, body)
        session_before = None if self._sessions is None else dict(scope["session"])
        providers = self.providers.providers
        try:
            kwargs = route.signature.bind(values, request.query_parameters, providers)
        except ParameterError as exc:
            await send_response(
                send, Response.json({"detail": exc.detail, "parameter": exc.parameter}, 400)
            )
            return
        try:
            async with AsyncExitStack() as stack:
                kwargs.update(
                    await self.providers.resolve(
                        route.signature.provider_names(providers), stack, request
                    )
                )
                response = to_response(await route.view(request, **kwargs))
        except Exception:
            await send_response(send, Response("internal server error", 500))
            raise
        extra_headers: list[tuple[bytes, bytes]] = []
        if self._sessions is not None and scope["session"] != session_before:
            cookie = self._sessions.set_cookie(scope["session"])
            extra_headers.append((b"set-cookie", cookie.encode("latin-1")))
        await send_response(send, response, head=method == "HEAD", extra_headers=extra_headers)
