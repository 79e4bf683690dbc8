from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

import triows
from triows import WebSocket


def set_up_tracing() -> TracerProvider:
    # Once, at startup, before serving: where spans go. Here the console; in
    # production an OTLP exporter (opentelemetry-exporter-otlp) to your collector.
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


app = triows.App()


@app.websocket_route("/rooms/{room}")
async def room(ws: WebSocket, room: str) -> None:
    # This connection's span ("WebSocket /rooms/{room}") is the current span
    # here: a span the view starts is its child.
    tracer = trace.get_tracer("chat")
    async for message in ws:
        with tracer.start_as_current_span("store message"):
            await ws.send(f"{room}: {message}")
