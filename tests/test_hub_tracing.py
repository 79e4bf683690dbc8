"""OpenTelemetry: a hub publish and its deliveries in one trace (memory and Redis)."""

from __future__ import annotations

import trio
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from triows import Hub

from .redis_server import RedisServer, redis_server
from .test_tracing import spans

__all__ = ["redis_server", "spans"]


async def test_a_publish_and_its_delivery_share_a_trace_in_memory(
    spans: InMemorySpanExporter,
) -> None:
    async with Hub() as hub, hub.subscribe("t") as one, hub.subscribe("t") as two:
        position = await hub.publish("t", "hello")
        assert await one.receive() == await two.receive() == "hello"
    published = [s for s in spans.get_finished_spans() if s.name == "publish t"]
    delivered = [s for s in spans.get_finished_spans() if s.name == "deliver t"]
    assert len(published) == len(delivered) == 1, spans.get_finished_spans()
    (publish,), (deliver,) = published, delivered
    assert publish.kind is SpanKind.PRODUCER and deliver.kind is SpanKind.CONSUMER
    assert publish.attributes is not None and deliver.attributes is not None
    assert publish.attributes["messaging.destination.name"] == "t"
    assert publish.attributes["messaging.message.id"] == position
    assert deliver.attributes["triows.hub.subscribers"] == 2
    assert deliver.parent is not None and publish.context is not None
    assert deliver.parent.span_id == publish.context.span_id


async def test_a_delivery_in_another_process_joins_the_publish_trace(
    spans: InMemorySpanExporter, redis_server: RedisServer
) -> None:
    async with Hub(redis_server.url) as a, Hub(redis_server.url) as b:
        with trio.fail_after(10):
            while not (a.connected and b.connected):  # noqa: ASYNC110 (a polled flag)
                await trio.sleep(0.01)
        async with b.subscribe("room") as sub:
            await a.publish("room", {"n": 1})
            with trio.fail_after(5):
                assert await sub.receive() == {"n": 1}
    (publish,) = [s for s in spans.get_finished_spans() if s.name == "publish room"]
    delivered = [s for s in spans.get_finished_spans() if s.name == "deliver room"]
    # b's delivery (a has no subscriber of its own: no delivery span there).
    assert len(delivered) == 1
    (deliver,) = delivered
    assert publish.context is not None and deliver.context is not None
    assert deliver.context.trace_id == publish.context.trace_id
    assert deliver.parent is not None and deliver.parent.span_id == publish.context.span_id
    assert deliver.parent.is_remote
