"""The App: routes, providers, lifespan, and its ASGI entry point."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, Unpack, overload

import trio

from ._app_lifespan import AppRuntime
from ._asgi import ASGITransport
from ._asyncapi import Info, build_document, serve_document
from ._codecs import MessageType
from ._connection._options import WebSocketOptions
from ._connection._transport import Transport
from ._endpoints import AllCodes, Mount, OriginPolicy, WebSocketEndpoints, WebSocketRoute
from ._http_routes import HTTPEndpoints, HTTPRoute
from ._jsonrpc import JSONRPC, jsonrpc_view
from ._limits import ConnectionLimits, check_rate, route_rate
from ._live import LiveOptions, LiveRoute
from ._metrics._serve import serve_metrics
from ._providers import ProviderRegistry, ProviderScope
from ._routing import Pattern, ViewSignature
from ._sessions import DEFAULT_MAX_AGE, SessionConfig
from ._types import ASGIApp, Receive, Scope, Send
from .hub import Hub

__all__ = ["App"]

F = TypeVar("F", bound=Callable[..., Any])
WebSocketView = Callable[..., Awaitable[None]]


class App:
    """A triows application: an ASGI 3 app serving WebSocket and HTTP routes.

    Serve it with ``triows.serve(app)``, ``triows run module:app``, or any ASGI
    server running trio (``hypercorn -k trio module:app``).

    ``hub``: a :class:`~triows.Hub` run for the App's lifetime and injected into
    views as the provider ``hub``.  ``allowed_origins``: origins (such as
    ``"https://example.com"``) whose pages may open WebSockets here besides the
    App's own; ``["*"]`` allows every origin.  By default a handshake whose
    ``Origin`` header does not match its ``Host`` is refused with 403, which stops
    Cross-Site WebSocket Hijacking; clients that send no ``Origin`` are accepted.

    ``session_secret`` enables signed-cookie sessions (``ws.session``, read-only;
    ``request.session``, writable) in the cookie format of Starlette's
    ``SessionMiddleware``, so an app sharing the secret and domain can set it.
    ``session_cookie``, ``session_max_age`` (seconds, default 14 days) and
    ``session_https_only`` tune the cookie.

    ``max_message_size``: the largest message a client may send, in bytes (default
    1 MiB); ``triows.serve`` and ``triows run`` close the connection with 1009
    (Message Too Big) past it unless they are given their own limit.

    ``title`` and ``version`` name the API in its AsyncAPI document
    (:meth:`asyncapi`); ``asyncapi_path`` (such as ``"/asyncapi.json"``) serves
    that document over HTTP GET.

    ``metrics=True`` serves Prometheus metrics at ``metrics_path`` (``triows[metrics]``).
    ``max_connections``/``max_connections_per_ip``: past that many open WebSockets
    in all/from one address, handshakes get 503/429.  ``max_messages_per_second``,
    ``max_burst``: every route's default message rate (see :meth:`websocket_route`).
    """

    def __init__(
        self,
        *,
        hub: Hub | None = None,
        allowed_origins: Iterable[str] | None = None,
        session_secret: str | None = None,
        session_cookie: str = "session",
        session_max_age: int | None = DEFAULT_MAX_AGE,
        session_https_only: bool = False,
        max_message_size: int = 1024 * 1024,
        title: str = "triows app",
        version: str = "0.1.0",
        asyncapi_path: str | None = None,
        metrics: bool = False,
        metrics_path: str = "/metrics",
        max_connections: int | None = None,
        max_connections_per_ip: int | None = None,
        max_messages_per_second: float | None = None,
        max_burst: int | None = None,
    ) -> None:
        if max_message_size < 1:
            raise ValueError(f"max_message_size must be at least 1 byte, got {max_message_size}")
        #: The largest message a client may send, in bytes (``triows.serve`` closes
        #: the connection with 1009 past it, unless given its own limit).
        self.max_message_size = max_message_size
        self.providers = ProviderRegistry()
        self._sessions = (
            None
            if session_secret is None
            else SessionConfig(
                session_secret,
                cookie_name=session_cookie,
                max_age=session_max_age,
                https_only=session_https_only,
            )
        )
        #: The App's Hub, run for the App's lifetime and injected as the provider ``hub``.
        self.hub = hub
        self._mounts: list[Mount] = []
        #: The WebSocket routes and every connection they serve (any server).
        self.websockets = WebSocketEndpoints(
            self.providers, OriginPolicy.of(allowed_origins), self._mounts, self._sessions
        )
        self.websockets.limits = ConnectionLimits.of(max_connections, max_connections_per_ip)
        self._rate = check_rate(max_messages_per_second, max_burst)
        self._http = HTTPEndpoints(self.providers, self.websockets, self._sessions)
        self._runtime = AppRuntime(hub, self.providers, self._mounts, self.websockets)
        if hub is not None:

            async def hub_provider() -> Hub:
                return hub

            hub_provider.__name__ = "hub"
            self.providers.register(hub_provider, "app")
        #: The API's name and version in its AsyncAPI document.
        self.title, self.version = title, version
        if asyncapi_path is not None:
            serve_document(self, asyncapi_path)
        if metrics:
            serve_metrics(self, metrics_path)  # imports prometheus-client

    # -- registration ------------------------------------------------------------------

    def websocket_route(
        self,
        pattern: str,
        *,
        value_type: MessageType | object | None = None,
        receive_type: MessageType | object = "text",
        send_type: MessageType | object = "text",
        auto_accept: bool = True,
        caught_close_codes: Iterable[int] | Callable[..., Any] = (1000, 1001),
        max_messages_per_second: float | None = None,
        max_burst: int | None = None,
    ) -> Callable[[F], F]:
        """Register a WebSocket view for ``pattern`` (``{name}`` segments allowed).

        ``value_type`` sets both ``receive_type`` and ``send_type`` (each one of
        ``"text"``, ``"json"``, ``"bytes"``, or a type: a msgspec Struct, dataclass,
        attrs class, TypedDict, pydantic model or a union of them dispatched on a
        ``type`` field; ``receive()`` then returns validated instances and raises
        :class:`~triows.MessageValidationError`, ``send()`` takes instances).  With ``auto_accept`` the connection is
        accepted before the view runs and closed with 1000 after it returns.
        ``caught_close_codes`` are the client close codes that end the view silently
        (pass the built-in ``all`` for every code, ``()`` for none).
        ``max_messages_per_second``/``max_burst``: each connection's message rate
        (a token bucket: ``max_burst`` at once, default one second's worth); a
        client over it is closed with 1008 and its view sees the departure.
        Default: the App's; ``math.inf`` lifts the App's limit for this route.

        Raises TypeError for a view that is not ``async def`` or lacks a route
        parameter or a type that cannot be a message type, ValueError for an unknown
        message type name or annotation.
        """
        options = WebSocketOptions.of(
            value_type,
            receive_type,
            send_type,
            auto_accept=auto_accept,
            caught_close_codes=AllCodes.caught(caught_close_codes),
            rate=route_rate(self._rate, max_messages_per_second, max_burst),
        )
        compiled = Pattern.compile(pattern)

        def register(view: F) -> F:
            signature = ViewSignature.of(view, compiled, "websocket")
            self.websockets.add(WebSocketRoute(compiled, view, signature, options))
            return view

        return register

    def jsonrpc_route(
        self, pattern: str, rpc: JSONRPC, *, max_concurrent: int = 16, **options: Any
    ) -> None:
        """Serve ``rpc``'s methods as JSON-RPC 2.0 over WebSockets at ``pattern``.

        Calls on one connection run concurrently, at most ``max_concurrent`` at
        once (further calls wait their turn).  ``options`` are
        :meth:`websocket_route`'s (``caught_close_codes``...), except the message
        types and ``auto_accept``, which the route sets.  Raises TypeError for a
        method parameter that is neither a provider, a ``{name}`` of the route nor
        JSON-decodable.  See the JSON-RPC guide for the protocol.
        """
        names = Pattern.compile(pattern).names
        view = jsonrpc_view(rpc, self.providers, names, max_concurrent, options)
        # The view accepts itself, once the providers its methods take exist.
        self.websocket_route(pattern, auto_accept=False, **options)(view)

    def route(self, pattern: str, *, methods: Sequence[str] = ("GET",)) -> Callable[[F], F]:
        """Register an HTTP view: ``async def view(request, ...)`` returning
        ``str`` (HTML), ``bytes``, a ``dict``/``list`` (JSON) or a Response."""
        compiled = Pattern.compile(pattern)
        allowed = tuple(m.upper() for m in methods)
        if "GET" in allowed and "HEAD" not in allowed:
            allowed += ("HEAD",)

        def register(view: F) -> F:
            signature = ViewSignature.of(view, compiled, "http")
            self._http.add(HTTPRoute(compiled, view, signature, allowed))
            return view

        return register

    def live_route(
        self, path: str, hub: Hub | None = None, **options: Unpack[LiveOptions]
    ) -> LiveRoute:
        """Serve the live protocol (topics with resume, presence, client publishes;
        docs/protocol.md) at ``path`` on ``hub`` (default and only choice: the
        App's), and its JS client at ``path + "/triows-live.js"``.  ``options``:
        ``authorize``, ``identify``, ``max_topics``, ``message_type``,
        ``before_publish``, described at :class:`~triows.LiveRoute`."""
        return LiveRoute.install(self, path, hub, **options)

    @overload
    def provider(self, func: F, /) -> F: ...
    @overload
    def provider(self, func: None = None, /, *, scope: ProviderScope = ...) -> Callable[[F], F]: ...

    def provider(
        self, func: F | None = None, /, *, scope: ProviderScope = "connection"
    ) -> F | Callable[[F], F]:
        """Register a provider, injected into views by its function name.

        ``@app.provider`` makes one value per connection; ``@app.provider(scope="app")``
        one for the App's lifetime.  Raises ProviderError on a dependency cycle.
        """

        def register(f: F) -> F:
            self.providers.register(f, scope)
            return f

        return register if func is None else register(func)

    def mount(self, prefix: str, app: ASGIApp) -> None:
        """Hand every HTTP and WebSocket request under ``prefix`` to another ASGI app.

        The mounted app sees ``root_path`` extended by ``prefix`` and ``path`` without it.
        The App's Origin check applies first: a cross-origin WebSocket handshake is
        refused with 403 before the mounted app sees it.
        """
        prefix = "/" + prefix.strip("/")
        self._mounts.append(Mount(prefix, app))

    def on_startup(self, func: F) -> F:
        """Run ``async def func()`` at startup, after app-scoped providers are created.
        An exception aborts the server's startup."""
        self._runtime.startup_hooks.append(func)
        return func

    def on_shutdown(self, func: F) -> F:
        """Run ``async def func()`` at shutdown, before app-scoped providers are torn down."""
        self._runtime.shutdown_hooks.append(func)
        return func

    @property
    def nursery(self) -> trio.Nursery:
        """A nursery for app-wide background tasks: open from startup to shutdown.

        It opens before the hub and the app-scoped providers start (so they may
        use it); at shutdown its tasks are cancelled after the ``on_shutdown``
        hooks and before the providers are torn down and the hub stops.  Raises
        RuntimeError outside the App's lifespan.
        """
        nursery = self._runtime.nursery
        if nursery is None:
            raise RuntimeError(
                "app.nursery is only open while the App runs (between startup and shutdown); "
                "use it from an on_startup hook, a view, or a provider"
            )
        return nursery

    def asyncapi(
        self,
        *,
        title: str | None = None,
        version: str | None = None,
        description: str | None = None,
        server: str | None = None,
    ) -> dict[str, Any]:
        """The AsyncAPI 3.0.0 document of every WebSocket route, as a new dict.

        ``title`` and ``version`` default to the App's; ``server`` (a ``ws://`` or
        ``wss://`` URL) is named as the API's server (ValueError for another
        URL).  See the AsyncAPI guide page.
        """
        info = Info(title or self.title, version or self.version, description, server)
        return build_document(self.websockets.routes, self.providers, info)

    # -- ASGI --------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point: WebSockets through the ASGI adapter, HTTP, lifespan.

        A view's crash is re-raised to the server (after the connection was
        closed with 1011 or refused with 500), for server-side processing.
        """
        kind = scope["type"]
        if kind == "websocket":  # (here, not in a helper: one frame less per connection)
            if (await receive())["type"] != "websocket.connect":
                return  # the client left before the handshake reached the app
            pumps = self._runtime.pumps
            transport = ASGITransport(scope, receive, send, pumps)
            if pumps is None:  # no lifespan: a pump of its own, at once
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(transport.pump)
                    error = await self.websockets.serve(transport)
                    nursery.cancel_scope.cancel()
            else:
                try:
                    error = await self.websockets.serve(transport)
                finally:
                    pump_done = transport.finished()
                    if pump_done is not None:
                        with trio.CancelScope(shield=True):
                            await pump_done.wait()
            if error is not None:
                try:
                    raise error
                finally:
                    error = None  # no reference cycle through this frame
        elif kind == "http":
            if self._sessions is not None and "session" not in scope:
                scope["session"] = self._sessions.load(scope)
            mount = self.websockets.mount_for(scope["path"])
            if mount is None:
                await self._http.serve(scope, receive, send)
            else:
                await mount.app(mount.scope_for(scope), receive, send)
        elif kind == "lifespan":
            await self._runtime.lifespan(scope, receive, send)
        else:
            raise ValueError(f"triows.App cannot serve ASGI scope type {kind!r}")

    def serve_websocket(self, transport: Transport) -> Awaitable[BaseException | None]:
        """Serve one WebSocket connection carried by a server's ``transport``: await it.

        The entry point for servers that speak the Transport protocol (the
        native server); the awaitable returns the view's crash for the server to log.
        """
        return self.websockets.serve(transport)

    async def close_connections(self, timeout: float = 5.0) -> None:
        """Close every open WebSocket with 1001 (Going Away) and wait for their views.

        Views are cancelled (their ``finally`` blocks run); connections not yet
        accepted are refused with 503, and new ones from now on.  Returns when
        every view has finished, or after ``timeout`` seconds."""
        await self.websockets.close_all(timeout)

    async def drain(self, seconds: float = 10.0, timeout: float = 5.0) -> None:
        """Drain for a restart: new handshakes get 503 (``Retry-After: 1``), open
        WebSockets 1012 in jittered batches over ``seconds`` (views cancelled), then
        wait up to ``timeout`` for the views; cancel ``serve()`` next.  A server with
        ``reuse_port=True`` also stops accepting (docs/deployment.md, Draining)."""
        await self.websockets.drain(seconds, timeout)
