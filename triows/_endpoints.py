"""The App's WebSocket side: find the route, check the request, run the view.

:class:`WebSocketEndpoints` serves one connection given as a
:class:`~triows._connection._transport.Transport`, whichever server carries it:
sessions, the Origin check (for mounted apps too), mounted ASGI apps, the
route and its parameters, providers, then the view through the runner.  It
also knows every open connection, for the graceful shutdown.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Iterable
from contextlib import AsyncExitStack
from typing import Any

import attrs
import trio

from . import _tracing as tracing
from ._asgi import serve_asgi_websocket
from ._connection._options import WebSocketOptions
from ._connection._state import Ending
from ._connection._transport import HandshakeRequest, Transport
from ._connection._websocket import WebSocket
from ._http import Request
from ._limits import ConnectionLimits
from ._metrics._counters import UNMATCHED, Counters, RouteCounters
from ._providers import ProviderRegistry
from ._routing import ParameterError, Pattern, ViewSignature
from ._runner import refuse, run_view
from ._serving._drain import RETRY_AFTER, close_in_batches
from ._serving._logs import ClientWarnings, client_address, logger
from ._sessions import SessionConfig
from ._types import ASGIApp, Scope

__all__ = ["AllCodes", "Mount", "OriginPolicy", "WebSocketEndpoints", "WebSocketRoute"]

#: The keyword arguments of a view that takes only the connection (never mutated).
_NO_ARGUMENTS: dict[str, Any] = {}
#: The ``{name}`` values of a route without parameters (read only, never mutated).
_NO_VALUES: dict[str, str] = {}
#: The bodies of the 403 refusing a handshake to a path without a WebSocket route.
NO_WEBSOCKET_ROUTE = b"no WebSocket route for this URL\n"
NOT_A_WEBSOCKET_ROUTE = b"this URL is an HTTP route, not a WebSocket route\n"
_TEXT = ((b"content-type", b"text/plain; charset=utf-8"),)


class AllCodes(Container[int]):
    """What ``caught_close_codes=all`` turns into: contains every code."""

    def __contains__(self, code: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "all"

    @classmethod
    def caught(cls, codes: Iterable[int] | Callable[..., Any]) -> Container[int]:
        """``caught_close_codes`` as given to a route: ``all`` or some codes."""
        return cls() if codes is all else frozenset(codes)  # type: ignore[arg-type]


@attrs.frozen
class WebSocketRoute:
    pattern: Pattern
    view: Callable[..., Awaitable[None]]
    signature: ViewSignature
    options: WebSocketOptions
    #: The route's metrics counters (``App(metrics=True)``), else None.
    counters: RouteCounters | None = None


@attrs.frozen
class Mount:
    prefix: str
    app: ASGIApp

    def matches(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    def scope_for(self, scope: Scope) -> Scope:
        """The mounted app's copy of ``scope``: ``root_path`` extended, ``path`` without prefix."""
        child = dict(scope)
        child["root_path"] = scope.get("root_path", "") + self.prefix
        child["path"] = scope["path"][len(self.prefix) :] or "/"
        return child


@attrs.frozen
class OriginPolicy:
    """Which pages may open WebSockets here: same origin, listed origins, or any.

    Cross-Site WebSocket Hijacking: a browser always sends Origin, so by default
    a page from another site cannot open a socket with the user's cookies.
    Clients that send no Origin (not browsers) are not affected.
    """

    allowed: frozenset[str] = frozenset()

    @classmethod
    def of(cls, origins: Iterable[str] | None) -> OriginPolicy:
        return cls(frozenset(o.rstrip("/").lower() for o in origins or ()))

    def allows(self, request: HandshakeRequest) -> bool:
        """Same-origin (Origin's host:port equals Host), listed, or no Origin at all."""
        raw_origin = request.header(b"origin")
        if raw_origin is None or "*" in self.allowed:
            return True
        origin = raw_origin.decode("latin-1").rstrip("/").lower()
        if origin in self.allowed:
            return True
        host = request.header(b"host")
        return host is not None and origin.partition("://")[2] == host.decode("latin-1").lower()

    def fix_for(self, origin: str) -> str:
        """The ``allowed_origins`` setting that would allow ``origin``, for the log."""
        wanted = sorted(self.allowed | {origin.rstrip("/").lower()})
        return f"App(allowed_origins={wanted!r})"


#: A route without parameters, as the path index holds it: the match to return (the
#: route and no values), and the earlier routes to try first.
_IndexEntry = tuple[tuple[WebSocketRoute, dict[str, str]], list[WebSocketRoute]]


@attrs.define(eq=False)
class WebSocketEndpoints:
    """The App's WebSocket routes, and every connection they serve."""

    providers: ProviderRegistry
    origins: OriginPolicy
    mounts: list[Mount]
    sessions: SessionConfig | None = None
    routes: list[WebSocketRoute] = attrs.field(factory=list)
    live: set[WebSocket] = attrs.field(factory=set)
    #: Set once the graceful shutdown (or a drain) starts; fired when the last view ends.
    closing: trio.Event | None = None
    #: Whether a drain is under way (new handshakes: 503 with Retry-After).
    draining: bool = False
    #: Called once when a drain starts: servers stop accepting where others listen.
    on_drain: list[Callable[[], None]] = attrs.field(factory=list)
    #: Client-caused warnings, rate limited.
    warnings: ClientWarnings = attrs.field(factory=ClientWarnings)
    #: Metrics counters (``App(metrics=True)``) and connection limits, else None.
    counters: Counters | None = None
    limits: ConnectionLimits | None = None
    _index: dict[str, _IndexEntry] | None = None
    #: Whether an HTTP route serves a path (set by the App's HTTP side): a handshake
    #: to it is refused with a body saying so.
    http_route_at: Callable[[str], bool] | None = None

    def add(self, route: WebSocketRoute) -> None:
        """Register ``route`` after the others.  Raises TypeError for a view whose
        first parameter is annotated as an HTTP Request (an HTTP view)."""
        if route.signature.takes(Request):
            name = route.signature.view_name
            raise TypeError(
                f"{name}() takes a Request: it is an HTTP view; register it with "
                f"@app.route({route.pattern.text!r}), not @app.websocket_route"
            )
        if self.counters is not None:
            route = attrs.evolve(route, counters=self.counters.route(route.pattern.text))
        self.routes.append(route)
        self._index = None

    def route_for(self, path: str) -> tuple[WebSocketRoute, dict[str, str]] | None:
        """The first WebSocket route matching ``path``, with its ``{name}`` values."""
        index = self._index
        if index is None:
            index = self._index = _index_routes(self.routes)
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
        for route in self.routes:
            values = route.pattern.match(path)
            if values is not None:
                return route, values
        return None

    def mount_for(self, path: str) -> Mount | None:
        for mount in self.mounts:
            if mount.matches(path):
                return mount
        return None

    def serve(self, transport: Transport) -> Awaitable[BaseException | None]:
        """Serve one connection: await the result at once (the caller's task runs it).

        The awaitable returns the view's crash, for the server to raise or log.
        The checks before the view run here, synchronously, and the view's run is
        the one coroutine returned: a connection's task holds one frame of the
        App's between the server's and the view's (memory per idle connection).
        """
        request = transport.request
        if self.sessions is not None:
            request.scope["session"] = self.sessions.load(request.scope)
        if not self.origins.allows(request):
            return self._refuse_origin(transport)
        if self.mounts:
            mount = self.mount_for(request.path)
            if mount is not None:
                return serve_asgi_websocket(mount.app, mount.scope_for(request.scope), transport)
        found = self.route_for(request.path)
        if found is None:
            self._count_refusal(request.path)
            return self._refuse_no_route(transport)
        return self._start(transport, *found)

    async def _refuse_origin(self, transport: Transport) -> None:
        """A cross-origin handshake: one WARNING naming the fix, then a plain 403."""
        request = transport.request
        origin = (request.header(b"origin") or b"").decode("latin-1")
        self.warnings.warn(
            "origin",
            "refused a cross-origin WebSocket handshake to %s from %s (Origin %r); "
            "%s would allow it",
            request.path,
            client_address(request.client),
            origin,
            self.origins.fix_for(origin),
        )
        self._count_refusal(request.path)
        await transport.refuse(403, (), b"")

    async def _refuse_no_route(self, transport: Transport) -> None:
        """No WebSocket route serves the path: one WARNING naming it, then 403 with a
        short text body (saying so when an HTTP route serves the path)."""
        request = transport.request
        http = self.http_route_at is not None and self.http_route_at(request.path)
        self.warnings.warn(
            "no route",
            "refused a WebSocket handshake to %r from %s with 403: %s",
            request.path,
            client_address(request.client),
            "an HTTP route (@app.route) serves it, no WebSocket route does"
            if http
            else "no WebSocket route matches it",
        )
        body = NOT_A_WEBSOCKET_ROUTE if http else NO_WEBSOCKET_ROUTE
        await transport.refuse(403, _TEXT, body)

    def _start(
        self, transport: Transport, route: WebSocketRoute, values: dict[str, str]
    ) -> Awaitable[BaseException | None]:
        """The view's run (:func:`run_view`), or a refusal: synchronous checks first."""
        ws = WebSocket(transport, route.options, route.counters)
        if self.closing is not None:
            if self.draining:
                retry = (("retry-after", str(RETRY_AFTER)),)
                return refuse(ws, 503, {"detail": "server restarting"}, retry)
            return refuse(ws, 503, {"detail": "server shutting down"})
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
                return refuse(ws, 400, {"detail": exc.detail, "parameter": exc.parameter})
            names = signature.provider_names(providers)
            shared = self.providers.shared(names) if names else None
            if shared is not None:
                kwargs.update(shared)  # app-scoped values only: no exit stack per connection
            elif names:

                async def resolve(stack: AsyncExitStack) -> dict[str, Any]:
                    return await self.providers.resolve(names, stack, ws)

        limits = self.limits
        if limits is not None:
            refusal = limits.admit(ws.client)
            if refusal is not None:
                return self._refuse_over_limit(ws, *refusal)
        tracer = tracing.current_tracer()  # None unless OpenTelemetry is set up
        # From here run_view's ``finally`` calls _ended (the caller awaits at once).
        self.live.add(ws)
        running = run_view(ws, route.view, kwargs, resolve, self.warnings, self._ended)
        if tracer is None:
            return running
        return tracing.ConnectionSpan(tracer, route.pattern.text, ws).run(running)

    def _ended(self, ws: WebSocket) -> None:
        """A view's run is over (its outcome applied): forget the connection."""
        self.live.discard(ws)
        if self.limits is not None:
            self.limits.release(ws.client)
        meter = ws.lifecycle.meter  # the route's counters (metrics only)
        if meter is not None:
            meter.ended(ws.lifecycle)
        if self.closing is not None and not self.live:
            self.closing.set()

    def _count_refusal(self, path: str) -> None:
        """Count a handshake refused before it reached a route (metrics only)."""
        if self.counters is not None:
            found = self.route_for(path)
            pattern = UNMATCHED if found is None else found[0].pattern.text
            self.counters.route(pattern).refused += 1

    async def _refuse_over_limit(self, ws: WebSocket, status: int, detail: str) -> None:
        self.warnings.warn(
            "limit",
            "refused a WebSocket handshake to %s from %s with %d: %s",
            ws.path,
            client_address(ws.client),
            status,
            detail,
        )
        await refuse(ws, status, {"detail": detail})

    def started(self) -> None:
        """The App (re)starts: it serves new handshakes again."""
        self.closing = None
        self.draining = False

    async def drain(self, seconds: float, timeout: float) -> None:
        """Refuse new handshakes (503) and close every view with 1012 in jittered
        batches over ``seconds`` (``triows._serving._drain``); then wait up to
        ``timeout`` seconds for the views to end.  Cancellation stops the batches."""
        if self.closing is None:
            self.closing = trio.Event()
        if self.draining:
            raise RuntimeError(
                "drain() called while a drain is under way: await the first one instead"
            )
        self.draining = True
        for callback in list(self.on_drain):
            callback()
        logger.info(
            "draining: %d WebSocket(s) to close with 1012 over %.1f s", len(self.live), seconds
        )
        await close_in_batches(self.live, seconds, _restart)
        if self.live:
            with trio.move_on_after(timeout):
                await self.closing.wait()

    async def close_all(self, timeout: float) -> None:
        """Cancel every view for the shutdown (their close is 1001); wait up to ``timeout``."""
        if self.closing is None:
            self.closing = trio.Event()
        if not self.live:
            return
        for ws in list(self.live):
            ws.lifecycle.shutdown()
        with trio.move_on_after(timeout):
            await self.closing.wait()


def _restart(ws: WebSocket) -> None:
    ws.lifecycle.shutdown(Ending.RESTART)


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
