"""OpenTelemetry spans: one per WebSocket connection (from its handshake to its
close) and one per JSON-RPC call, when OpenTelemetry is installed and configured.

Through opentelemetry-api only (the ``otel`` extra); the application configures
an SDK and its exporter.  Until it does (or without opentelemetry-api),
:func:`current_tracer` returns None and every caller skips its span: one check
per connection and per JSON-RPC call, never anything per message.

The connection's span is the current span while its view runs, so the spans
of its JSON-RPC calls (and any span the view starts, in its own tasks too:
trio copies the context into new tasks) are its children.  A ``traceparent``
header on the handshake (W3C Trace Context, or whatever propagator the
application configured) makes the connection's span a child of the client's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from ._connection._websocket import WebSocket

__all__ = ["ConnectionSpan", "call_span", "current_tracer"]

#: The instrumentation scope's name.
TRACER_NAME = "triows"


@attrs.frozen
class _API:
    """opentelemetry-api's modules, imported on first use (an optional extra)."""

    context: ModuleType
    propagate: ModuleType
    trace: ModuleType


def _import_api() -> _API | None:
    try:
        from opentelemetry import context, propagate, trace
    except ImportError:  # the otel extra is not installed: no spans, no cost
        return None
    return _API(context, propagate, trace)


#: The API once imported (None without opentelemetry-api), and whether it was tried.
_api: _API | None = None
_api_tried = False
#: (provider, its tracer): a global provider is set at most once, so this is reused.
_cached: tuple[Any, Tracer] | None = None
#: A ProxyTracerProvider of our own, asked per connection while no provider is set:
#: it hands out a ProxyTracer until the application sets one, and then the real
#: provider's tracer, without reading the environment (``get_tracer_provider()``
#: looks up OTEL_PYTHON_TRACER_PROVIDER in ``os.environ`` on every call until a
#: provider is set: two KeyErrors raised and caught per connection).
_probe: Any = None


def api() -> _API | None:
    """opentelemetry-api, or None when it is not installed (imported once).

    The first import also asks for the global provider once, as OpenTelemetry's
    own first use would: a provider named by OTEL_PYTHON_TRACER_PROVIDER (read
    at that moment) is loaded and set then.
    """
    global _api, _api_tried, _probe
    if not _api_tried:
        _api, _api_tried = _import_api(), True
        if _api is not None:
            _probe = _api.trace.ProxyTracerProvider()
            _api.trace.get_tracer_provider()
    return _api


def current_tracer() -> Tracer | None:
    """The tracer of the application's configured provider; None without one.

    A provider the application sets at run time (``trace.set_tracer_provider``)
    applies from the next connection on.  Until one is set this costs one
    ProxyTracer (no environment lookup, no exception).
    """
    global _cached
    otel = _api if _api_tried else api()  # (one call less per connection)
    if otel is None:
        return None
    cached = _cached
    if cached is None and isinstance(_probe.get_tracer(TRACER_NAME), otel.trace.ProxyTracer):
        return None  # opentelemetry-api without a configured SDK: nothing to record
    provider = otel.trace.get_tracer_provider()  # set: no environment lookup
    if isinstance(provider, otel.trace.ProxyTracerProvider):
        return None
    if cached is None or cached[0] is not provider:
        from . import __version__

        cached = _cached = (provider, provider.get_tracer(TRACER_NAME, __version__))
    return cached[1]


class ConnectionSpan:
    """A WebSocket connection's span: started at its handshake, ended at its close.

    Made for ``ws`` (its route pattern as ``http.route``) only when
    :func:`current_tracer` gave a tracer.
    """

    __slots__ = ("_api", "_span", "_ws")

    def __init__(self, tracer: Tracer, route: str, ws: WebSocket) -> None:
        otel = api()
        assert otel is not None
        client = ws.client
        self._api, self._ws = otel, ws
        self._span: Span = tracer.start_span(
            f"WebSocket {route}",
            context=otel.propagate.extract(ws.headers),  # traceparent, when the client sent one
            kind=otel.trace.SpanKind.SERVER,
            attributes={
                "http.route": route,
                "url.path": ws.path,
                "network.protocol.name": "websocket",
                **({} if client is None else {"client.address": client[0]}),
            },
        )

    async def run(self, running: Awaitable[BaseException | None]) -> BaseException | None:
        """Await the view's run with this span current; end the span with its outcome."""
        otel = self._api
        token = otel.context.attach(otel.trace.set_span_in_context(self._span))
        error: BaseException | None = None
        try:
            error = await running
            return error
        finally:
            otel.context.detach(token)
            self._end(error)
            error = None  # no reference cycle through this frame

    def _end(self, error: BaseException | None) -> None:
        span, lifecycle = self._span, self._ws.lifecycle
        span.set_attribute("triows.outcome", "accepted" if lifecycle.accepted else "refused")
        status = 101 if lifecycle.accepted else lifecycle.refusal_status
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        closed = lifecycle.closed_by()
        if closed is not None:
            span.set_attribute("websocket.close.code", closed[0])
            span.set_attribute("websocket.close.by", closed[1])
        if error is not None:
            span.record_exception(error)
            span.set_status(self._api.trace.StatusCode.ERROR, type(error).__name__)
        span.end()


@contextmanager
def _call_span(tracer: Tracer, method: str, request_id: Any) -> Iterator[None]:
    attributes: dict[str, str] = {
        "rpc.system": "jsonrpc",
        "rpc.method": method,
        "rpc.jsonrpc.version": "2.0",
    }
    if request_id is not None:
        attributes["rpc.jsonrpc.request_id"] = str(request_id)
    # An exception (an RPCError, a crash, a cancellation or timeout) is recorded
    # on the span, which gets the ERROR status.
    with tracer.start_as_current_span(f"JSON-RPC {method}", attributes=attributes):
        yield


def call_span(method: str, request_id: Any) -> AbstractContextManager[None] | None:
    """A span for one JSON-RPC call (a child of its connection's); None when not tracing.

    ``request_id`` is the call's id (None for a notification).
    """
    tracer = current_tracer()
    return None if tracer is None else _call_span(tracer, method, request_id)
