"""OpenTelemetry spans for the hub: a publish and its deliveries, in one trace.

``Hub.publish()`` records a PRODUCER span ``publish <topic>``.  Each process
that delivers the message to its subscribers records a CONSUMER span
``deliver <topic>`` (with how many subscriptions it reached) as a child of the
publish's span: directly in memory (the delivery runs inside the publish), and
through Redis by a W3C ``traceparent`` that travels with the message.

Only when OpenTelemetry is installed and configured (see ``triows._tracing``):
otherwise every function here returns None after one check per publish and
per delivery, never per subscriber.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from .. import _tracing

__all__ = ["delivery_span", "publish_span", "traceparent"]


def _attributes(topic: str, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": "triows",
        "messaging.destination.name": topic,
        "messaging.operation.type": operation,
    }


def publish_span(topic: str) -> AbstractContextManager[Any] | None:
    """The span of one ``publish()`` (the current span inside it); None when not tracing."""
    tracer = _tracing.current_tracer()
    otel = _tracing.api()
    if tracer is None or otel is None:
        return None
    return tracer.start_as_current_span(
        f"publish {topic}",
        kind=otel.trace.SpanKind.PRODUCER,
        attributes=_attributes(topic, "send"),
    )


def traceparent() -> str | None:
    """The current span's W3C ``traceparent``, to send along a message; None without one."""
    otel = _tracing.api()
    if otel is None or _tracing.current_tracer() is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def delivery_span(
    topic: str, subscribers: int, parent: str | None
) -> AbstractContextManager[Any] | None:
    """The span of one delivery in this process; None when not tracing.

    ``parent``: the publish's ``traceparent`` when the message came from
    another process; None makes the span a child of the current one.
    """
    tracer = _tracing.current_tracer()
    otel = _tracing.api()
    if tracer is None or otel is None:
        return None
    context = None
    if parent is not None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        context = TraceContextTextMapPropagator().extract({"traceparent": parent})
    attributes = _attributes(topic, "process")
    attributes["triows.hub.subscribers"] = subscribers
    return tracer.start_as_current_span(
        f"deliver {topic}",
        context=context,
        kind=otel.trace.SpanKind.CONSUMER,
        attributes=attributes,
    )
