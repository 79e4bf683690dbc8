"""OpenTelemetry: a span per WebSocket connection (route, close code) and per
JSON-RPC call (a child of its connection's), only when OpenTelemetry is set up.

The in-process tests give triows a tracer from a local SDK provider with an
in-memory exporter (the global provider can be set once per process, and
would trace every later test); a subprocess configures the global provider
the way an application does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio_websocket
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import triows
from triows import JSONRPC, RPCError, WebSocket
from triows import _tracing as tracing
from triows.testing import HandshakeRejected, ServerClosed, TestClient

from .conftest import Backend

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """triows traces into an in-memory exporter for the test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("triows")
    monkeypatch.setattr(tracing, "current_tracer", lambda: tracer)
    yield exporter
    provider.shutdown()


def traced_app() -> triows.App:
    app = triows.App()
    rpc = JSONRPC()

    @rpc.method
    async def add(a: int, b: int) -> int:
        return a + b

    @rpc.method
    async def fail() -> None:
        raise RPCError(4000, "no")

    @app.websocket_route("/rooms/{room}")
    async def room(ws: WebSocket, room: str) -> None:
        async for message in ws:
            if message == "bye":
                await ws.close(4000, "bye")
                return
            if message == "crash":
                raise RuntimeError("the view crashed")
            await ws.send(message)

    app.jsonrpc_route("/rpc", rpc)
    return app


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


async def until_ended(app: triows.App) -> None:
    with trio.fail_after(5):
        while app.websockets.live:  # noqa: ASYNC110 (spans end after the view, in the server)
            await trio.sleep(0.01)


async def test_a_span_per_connection_with_route_and_close_code(
    spans: InMemorySpanExporter,
) -> None:
    app = traced_app()
    async with TestClient(app, raise_server_exceptions=False) as client:
        async with client.websocket_connect("/rooms/lobby") as ws:
            await ws.send_text("hi")
            assert await ws.receive_text() == "hi"
        await until_ended(app)
        (span,) = spans.get_finished_spans()
        assert span.name == "WebSocket /rooms/{room}"
        assert span.kind is SpanKind.SERVER
        assert span.attributes is not None
        assert span.attributes["http.route"] == "/rooms/{room}"
        assert span.attributes["url.path"] == "/rooms/lobby"
        assert span.attributes["triows.outcome"] == "accepted"
        assert span.attributes["http.response.status_code"] == 101
        assert span.attributes["websocket.close.code"] == 1000
        assert span.attributes["websocket.close.by"] == "client"
        spans.clear()
        async with client.websocket_connect("/rooms/lobby") as ws:
            await ws.send_text("crash")
            with pytest.raises(ServerClosed):
                await ws.receive_text()
        await until_ended(app)
        (span,) = spans.get_finished_spans()
        assert span.attributes is not None
        assert span.attributes["websocket.close.code"] == 1011
        assert span.attributes["websocket.close.by"] == "server"
        assert span.status.status_code is StatusCode.ERROR
        assert span.events[0].name == "exception"


async def test_spans_on_every_server(backend: Backend, spans: InMemorySpanExporter) -> None:
    app = traced_app()
    async with backend.serve(app) as served:
        async with served.connect("/rooms/lobby") as ws:
            await ws.send_message("bye")
            with pytest.raises(trio_websocket.ConnectionClosed):
                await ws.get_message()
        await until_ended(app)
    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("WebSocket")]
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/rooms/{room}"
    assert span.attributes["websocket.close.code"] == 4000
    assert span.attributes["websocket.close.by"] == "server"


async def test_a_refused_handshake_has_its_span(spans: InMemorySpanExporter) -> None:
    app = triows.App(max_connections_per_ip=1)

    @app.websocket_route("/wait")
    async def wait(ws: WebSocket) -> None:
        await trio.sleep_forever()

    @app.websocket_route("/private", auto_accept=False)
    async def private(ws: WebSocket) -> None:
        await ws.reject(401)

    async with TestClient(app) as client:
        with pytest.raises(HandshakeRejected):
            async with client.websocket_connect("/private"):
                pass
        await until_ended(app)
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["triows.outcome"] == "refused"
    assert span.attributes["http.response.status_code"] == 401
    assert "websocket.close.code" not in span.attributes


async def test_the_clients_traceparent_is_the_parent(spans: InMemorySpanExporter) -> None:
    app = traced_app()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"
    async with TestClient(app) as client:
        async with client.websocket_connect("/rooms/a", headers={"traceparent": parent}) as ws:
            await ws.send_text("hi")
            await ws.receive_text()
        await until_ended(app)
    (span,) = spans.get_finished_spans()
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == "00f067aa0ba902b7"


async def test_a_span_per_json_rpc_call_inside_its_connection(
    spans: InMemorySpanExporter,
) -> None:
    app = traced_app()
    async with TestClient(app) as client:
        async with client.websocket_connect("/rpc") as ws:
            await ws.send_text(
                json.dumps({"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 7})
            )
            assert json.loads(await ws.receive_text())["result"] == 3
            await ws.send_text(json.dumps({"jsonrpc": "2.0", "method": "fail", "id": 8}))
            assert json.loads(await ws.receive_text())["error"]["code"] == 4000
        await until_ended(app)
    found = by_name(spans)
    connection, add, fail = found["WebSocket /rpc"], found["JSON-RPC add"], found["JSON-RPC fail"]
    for call in (add, fail):
        assert call.parent is not None
        assert call.parent.span_id == connection.context.span_id
        assert call.context.trace_id == connection.context.trace_id
    assert add.attributes is not None and fail.attributes is not None
    assert add.attributes["rpc.system"] == "jsonrpc"
    assert add.attributes["rpc.method"] == "add"
    assert add.attributes["rpc.jsonrpc.request_id"] == "7"
    assert add.status.status_code is StatusCode.UNSET
    assert fail.status.status_code is StatusCode.ERROR


def test_without_a_configured_sdk_there_is_no_tracer() -> None:
    # opentelemetry-api is installed here, but no provider was configured.
    assert tracing.current_tracer() is None


CONFIGURED = """
import trio, triows
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from triows.testing import TestClient

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
app = triows.App()

@app.websocket_route("/echo/{name}")
async def echo(ws, name: str):
    await ws.send(await ws.receive())

async def main():
    async with TestClient(app) as client:
        async with client.websocket_connect("/echo/a") as ws:  # before: no tracing
            await ws.send_text("x")
            await ws.receive_text()
        trace.set_tracer_provider(provider)  # the application sets OpenTelemetry up
        async with client.websocket_connect("/echo/b") as ws:
            await ws.send_text("x")
            await ws.receive_text()
        with trio.fail_after(5):
            while app.websockets.live:
                await trio.sleep(0.01)
    for span in exporter.get_finished_spans():
        print(span.name, span.attributes["url.path"], span.instrumentation_scope.name)

trio.run(main)
"""


def test_the_globally_configured_provider_is_used() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CONFIGURED], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["WebSocket /echo/{name} /echo/b triows"]


def test_without_opentelemetry_installed_connections_are_served(tmp_path: Path) -> None:
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'opentelemetry':\n"
        "            raise ImportError('blocked for the test')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    code = (
        "import trio, triows\n"
        "from triows import _tracing\n"
        "from triows.testing import TestClient\n"
        "app = triows.App()\n"
        "@app.websocket_route('/echo')\n"
        "async def echo(ws):\n"
        "    await ws.send(await ws.receive())\n"
        "async def main():\n"
        "    async with TestClient(app) as client, client.websocket_connect('/echo') as ws:\n"
        "        await ws.send_text('hi')\n"
        "        print(await ws.receive_text(), _tracing.current_tracer())\n"
        "trio.run(main)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hi", "None"]


def test_a_provider_named_in_the_environment_is_used() -> None:
    # OTEL_PYTHON_TRACER_PROVIDER, read once (the first connection asks for the API),
    # as OpenTelemetry's own first use would; no environment lookup per connection.
    code = (
        "from triows import _tracing\n"
        "tracer = _tracing.current_tracer()\n"
        "print(type(tracer).__module__, _tracing.current_tracer() is tracer)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["opentelemetry.sdk.trace", "True"]
