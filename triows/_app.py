"""The App: routes, providers, lifespan, and its ASGI entry point."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Container, Iterable, Sequence
from contextlib import AsyncExitStack
from typing import Any, TypeVar, overload

import attrs
import trio

from ._codecs import MessageType, check_message_type
from ._http import (
    BodyTooLarge,
    Request,
    Response,
    allow_header,
    read_body,
    send_response,
    to_response,
)
from ._lifespan import Lifespan
from ._providers import ProviderRegistry, ProviderScope
from ._routing import ParameterError, Pattern, ViewSignature
from ._runner import refuse, run_pumped, run_view
from ._sessions import DEFAULT_MAX_AGE, SessionConfig
from ._types import ASGIApp, Message, Receive, Scope, Send
from ._websocket import WebSocket, WebSocketOptions
from .hub import Hub

__all__ = ["App"]

logger = logging.getLogger("triows")

F = TypeVar("F", bound=Callable[..., Any])
WebSocketView = Callable[..., Awaitable[None]]


#: The keyword arguments of a view that takes only the connection (never mutated).
_NO_ARGUMENTS: dict[str, Any] = {}


#: The ``{name}`` values of a route without parameters (read only, never mutated).
_NO_VALUES: dict[str, str] = {}


class _AllCodes(Container[int]):
    """What ``caught_close_codes=all`` turns into: contains every code."""

    def __contains__(self, code: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "all"


@attrs.frozen
class WebSocketRoute:
    pattern: Pattern
    view: WebSocketView
    signature: ViewSignature
    options: WebSocketOptions


#: A route without parameters, as the path index holds it: the match to return (the
#: route and no values), and the earlier routes to try first.
_IndexEntry = tuple[tuple[WebSocketRoute, dict[str, str]], list[WebSocketRoute]]


@attrs.frozen
class HTTPRoute:
    pattern: Pattern
    view: Callable[..., Awaitable[Any]]
    signature: ViewSignature
    methods: tuple[str, ...]


@attrs.frozen
class Mount:
    prefix: str
    app: ASGIApp


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
        # Cross-Site WebSocket Hijacking: a browser always sends Origin, so by
        # default a page from another site cannot open a socket with the user's
        # cookies.  Clients that send no Origin (not browsers) are not affected.
        origins = [o.rstrip("/").lower() for o in allowed_origins or ()]
        self._any_origin = "*" in origins
        self._allowed_origins = frozenset(origins)
        #: The App's Hub, run for the App's lifetime and injected as the provider ``hub``.
        self.hub = hub
        self._websocket_routes: list[WebSocketRoute] = []
        # Path -> (route, the earlier routes that could match it too), for the
        # routes without parameters; built at the first connection.
        self._websocket_index: dict[str, _IndexEntry] | None = None
        self._http_routes: list[HTTPRoute] = []
        self._mounts: list[Mount] = []
        self._startup_hooks: list[Callable[[], Awaitable[None]]] = []
        self._shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
        self._connections: set[WebSocket] = set()
        self._closing: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        if hub is not None:

            async def hub_provider() -> Hub:
                return hub

            hub_provider.__name__ = "hub"
            self.providers.register(hub_provider, "app")

    # -- registration ------------------------------------------------------------------

    def websocket_route(
        self,
        pattern: str,
        *,
        value_type: MessageType | None = None,
        receive_type: MessageType = "text",
        send_type: MessageType = "text",
        auto_accept: bool = True,
        caught_close_codes: Iterable[int] | Callable[..., Any] = (1000, 1001),
    ) -> Callable[[F], F]:
        """Register a WebSocket view for ``pattern`` (``{name}`` segments allowed).

        ``value_type`` sets both ``receive_type`` and ``send_type`` (each one of
        ``"text"``, ``"json"``, ``"bytes"``).  With ``auto_accept`` the connection is
        accepted before the view runs and closed with 1000 after it returns.
        ``caught_close_codes`` are the client close codes that end the view silently
        (pass the built-in ``all`` for every code, ``()`` for none).

        Raises TypeError for a view that is not ``async def`` or lacks a route
        parameter, ValueError for an unknown message type or annotation.
        """
        if value_type is not None:
            receive_type = send_type = check_message_type(value_type, "value_type")
        options = WebSocketOptions(
            receive_type=check_message_type(receive_type, "receive_type"),
            send_type=check_message_type(send_type, "send_type"),
            auto_accept=auto_accept,
            caught_close_codes=(
                _AllCodes() if caught_close_codes is all else frozenset(caught_close_codes)  # type: ignore[arg-type]
            ),
        )
        compiled = Pattern.compile(pattern)

        def register(view: F) -> F:
            signature = ViewSignature.of(view, compiled, "websocket")
            self._websocket_routes.append(WebSocketRoute(compiled, view, signature, options))
            self._websocket_index = None
            return view

        return register

    def route(self, pattern: str, *, methods: Sequence[str] = ("GET",)) -> Callable[[F], F]:
        """Register an HTTP view: ``async def view(request, ...)`` returning
        ``str`` (HTML), ``bytes``, a ``dict``/``list`` (JSON) or a Response."""
        compiled = Pattern.compile(pattern)
        allowed = tuple(m.upper() for m in methods)
        if "GET" in allowed and "HEAD" not in allowed:
            allowed += ("HEAD",)

        def register(view: F) -> F:
            signature = ViewSignature.of(view, compiled, "http")
            self._http_routes.append(HTTPRoute(compiled, view, signature, allowed))
            return view

        return register

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
        self._startup_hooks.append(func)
        return func

    def on_shutdown(self, func: F) -> F:
        """Run ``async def func()`` at shutdown, before app-scoped providers are torn down."""
        self._shutdown_hooks.append(func)
        return func

    @property
    def nursery(self) -> trio.Nursery:
        """A nursery for app-wide background tasks: open from startup to shutdown.

        It opens before the hub and the app-scoped providers start (so they may
        use it); at shutdown its tasks are cancelled after the ``on_shutdown``
        hooks and before the providers are torn down and the hub stops.  Raises
        RuntimeError outside the App's lifespan.
        """
        if self._nursery is None:
            raise RuntimeError(
                "app.nursery is only open while the App runs (between startup and shutdown); "
                "use it from an on_startup hook, a view, or a provider"
            )
        return self._nursery

    # -- ASGI --------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A WebSocket is served here, inline: one coroutine frame per connection
        # (and per resume), not two.  Everything else goes through _dispatch.
        if (
            scope["type"] != "websocket" or self._mounts or self._sessions is not None
        ) and await self._dispatch(scope, receive, send):
            return
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return  # the client left before the handshake reached the app
        path: str = scope["path"]
        found = self._websocket_route_for(path)
        if found is None:
            # No WebSocket route (an HTTP-only route counts as none): refuse with 403.
            await send({"type": "websocket.close", "code": 1000, "reason": ""})
            return
        route, values = found
        if not self._origin_allowed(scope):
            logger.warning("refused a cross-origin WebSocket handshake to %s", path)
            await send({"type": "websocket.close", "code": 1000, "reason": ""})
            return
        ws = WebSocket(scope, receive, send, route.options)
        if self._closing is not None:
            await refuse(ws, 503, {"detail": "server shutting down"})
            return
        signature = route.signature
        kwargs = _NO_ARGUMENTS
        resolve = None
        if signature.parameters or signature.accepts_extra:
            # (A view taking only the connection skips parsing the query string.)
            providers = self.providers.providers
            try:
                kwargs = signature.bind(values, ws.query_parameters, providers)
            except ParameterError as exc:
                # Validation refuses the handshake: never accept-then-close.
                await refuse(ws, 400, {"detail": exc.detail, "parameter": exc.parameter})
                return
            names = signature.provider_names(providers)
            if names:

                async def resolve(stack: AsyncExitStack) -> dict[str, Any]:
                    return await self.providers.resolve(names, stack, ws)

        self._connections.add(ws)
        try:
            # Direct mode needs no nursery: run_view alone (see _runner).
            run = run_view if ws._inbox_send is None else run_pumped
            error = await run(ws, route.view, kwargs, resolve)
        finally:
            self._connections.discard(ws)
            if self._closing is not None and not self._connections:
                self._closing.set()
        if error is not None:
            try:
                raise error
            finally:
                error = None  # no reference cycle through this frame (see run_view)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve the lifespan, HTTP and mounted apps; False for a WebSocket to serve here.

        Loads the session into the scope first, when sessions are enabled.
        """
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return True
        if self._sessions is not None and "session" not in scope:
            scope["session"] = self._sessions.load(scope)
        path: str = scope["path"]
        for mount in self._mounts:
            if path == mount.prefix or path.startswith(mount.prefix + "/"):
                if kind == "websocket" and not self._origin_allowed(scope):
                    # The App's Origin policy covers its mounted apps too.
                    if (await receive())["type"] == "websocket.connect":
                        logger.warning("refused a cross-origin WebSocket handshake to %s", path)
                        await send({"type": "websocket.close", "code": 1000, "reason": ""})
                    return True
                child = dict(scope)
                child["root_path"] = scope.get("root_path", "") + mount.prefix
                child["path"] = path[len(mount.prefix) :] or "/"
                await mount.app(child, receive, send)
                return True
        if kind == "websocket":
            return False
        if kind == "http":
            await self._http(scope, receive, send)
            return True
        raise ValueError(f"triows.App cannot serve ASGI scope type {kind!r}")

    def _websocket_route_for(self, path: str) -> tuple[WebSocketRoute, dict[str, str]] | None:
        """The first WebSocket route matching ``path``, with its ``{name}`` values."""
        index = self._websocket_index
        if index is None:
            index = self._websocket_index = _index_routes(self._websocket_routes)
        hit = index.get(path)
        if hit is not None:
            # A route without parameters matches exactly its text: a dict lookup,
            # after the routes before it that could match the same path.
            found, earlier = hit
            for other in earlier:
                values = other.pattern.match(path)
                if values is not None:
                    return other, values
            return found
        for route in self._websocket_routes:
            values = route.pattern.match(path)
            if values is not None:
                return route, values
        return None

    def _origin_allowed(self, scope: Scope) -> bool:
        """Same-origin (Origin's host:port equals Host), listed, or no Origin at all."""
        raw_origin = raw_host = None
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                raw_origin = value
            elif name == b"host":
                raw_host = value
        if raw_origin is None or self._any_origin:
            return True
        origin = raw_origin.decode("latin-1").rstrip("/").lower()
        if origin in self._allowed_origins:
            return True
        return (
            raw_host is not None
            and origin.partition("://")[2] == raw_host.decode("latin-1").lower()
        )

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        for route in self._http_routes:
            values = route.pattern.match(path)
            if values is not None:
                break
        else:
            if any(r.pattern.match(path) is not None for r in self._websocket_routes):
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

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        self._closing = None
        # Replies go out after the nursery block: closing the stack cancels the
        # nursery, and nothing can be awaited inside a cancelled scope.
        reply: Message = {"type": "lifespan.shutdown.complete"}
        async with trio.open_nursery() as nursery:
            stack = AsyncExitStack()
            try:
                # App-scoped providers may use app.nursery and the hub: open them
                # first.  At shutdown the background tasks are cancelled before
                # the providers are torn down and the hub stops, so a publisher
                # never finds the hub gone.
                self._nursery = nursery
                if self.hub is not None:
                    await stack.enter_async_context(self.hub)
                await self.providers.start_app(stack)
                stack.callback(self._close_nursery, nursery)
                state = scope.setdefault("state", {})
                for mount in self._mounts:
                    mounted = Lifespan(mount.app, state, f"the app mounted at {mount.prefix!r}")
                    stack.push_async_callback(mounted.shutdown)
                    await mounted.startup(nursery)
                for hook in self._startup_hooks:
                    await hook()
                for hook in reversed(self._shutdown_hooks):
                    stack.push_async_callback(hook)
            except Exception as exc:
                logger.exception("triows: startup failed")
                reply = {"type": "lifespan.startup.failed", "message": _describe(exc)}
                with trio.CancelScope(shield=True):
                    await stack.aclose()
                self._close_nursery(nursery)
            else:
                await send({"type": "lifespan.startup.complete"})
                message = await receive()
                try:
                    await self.close_connections()
                    await stack.aclose()
                except Exception as exc:
                    logger.exception("triows: shutdown failed")
                    reply = {"type": "lifespan.shutdown.failed", "message": _describe(exc)}
        await send(reply)

    def _close_nursery(self, nursery: trio.Nursery) -> None:
        self._nursery = None
        nursery.cancel_scope.cancel()

    async def close_connections(self, timeout: float = 5.0) -> None:
        """Close every open WebSocket with 1001 (Going Away) and wait for their views.

        Views are cancelled (their ``finally`` blocks run); connections not yet
        accepted are refused with 503, and new ones are refused from now on.
        Returns when every view has finished, or after ``timeout`` seconds.
        """
        if self._closing is None:
            self._closing = trio.Event()
        if not self._connections:
            return
        for ws in list(self._connections):
            ws._cancel_for_shutdown()
        with trio.move_on_after(timeout):
            await self._closing.wait()


def _index_routes(routes: list[WebSocketRoute]) -> dict[str, _IndexEntry]:
    """Each route without parameters by its text, with the earlier routes that could
    match the same path (those with parameters); the first such route wins a text."""
    index: dict[str, _IndexEntry] = {}
    for position, route in enumerate(routes):
        text = route.pattern.text
        if route.pattern.names or text in index:
            continue
        earlier = [r for r in routes[:position] if r.pattern.names]
        index[text] = ((route, _NO_VALUES), earlier)
    return index


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
