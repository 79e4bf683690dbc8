"""App(metrics=True): Prometheus metrics from the core's counters, on every server.

In memory (TestClient) and through real sockets on every backend, with the
same expected lines; the Hub's counters; several worker processes sharing a
PROMETHEUS_MULTIPROC_DIR; and the error without prometheus-client.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected

import triows
from triows import WebSocket
from triows.testing import HandshakeRejected, ServerClosed, TestClient

from .conftest import Backend

ROOT = Path(__file__).resolve().parent.parent


def metrics_app(**options: object) -> triows.App:
    app = triows.App(metrics=True, **options)  # type: ignore[arg-type]

    @app.websocket_route("/echo/{name}")
    async def echo(ws: WebSocket, name: str) -> None:
        async for message in ws:
            await ws.send(message)

    @app.websocket_route("/bye")
    async def bye(ws: WebSocket) -> None:
        await ws.close(4000, "bye")

    @app.websocket_route("/guarded", auto_accept=False)
    async def guarded(ws: WebSocket) -> None:
        await ws.reject(401)

    return app


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value for every triows sample in an exposition text."""
    found = {}
    for line in text.splitlines():
        if line.startswith("triows_"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


async def scrape(app: triows.App) -> dict[str, float]:
    response = await TestClient(app).get("/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return samples(response.text)


async def until_closed(app: triows.App) -> None:
    """Wait (bounded) until every connection's end has been counted."""
    with trio.fail_after(5):
        # Released in the server's finally, after the view ended: no event to wait on.
        while app.websockets.live:  # noqa: ASYNC110
            await trio.sleep(0.01)


#: What one session of :func:`drive` leaves, on every server alike.
EXPECTED = {
    'triows_connections_total{outcome="accepted",route="/echo/{name}"}': 2,
    'triows_connections_total{outcome="accepted",route="/bye"}': 1,
    'triows_connections_total{outcome="refused",route="/guarded"}': 1,
    'triows_connections_total{outcome="refused",route="(unmatched)"}': 1,
    'triows_connections_active{route="/echo/{name}"}': 0,
    'triows_messages_received_total{route="/echo/{name}"}': 3,
    'triows_messages_sent_total{route="/echo/{name}"}': 3,
    # "hi" twice (2 bytes each) and "é" (2 bytes in UTF-8)
    'triows_bytes_received_total{route="/echo/{name}"}': 6,
    'triows_bytes_sent_total{route="/echo/{name}"}': 6,
    'triows_close_codes_total{by="client",code="1000"}': 2,
    'triows_close_codes_total{by="server",code="4000"}': 1,
    'triows_handshake_seconds_count{route="/echo/{name}"}': 2,
    'triows_handshake_seconds_count{route="/guarded"}': 1,
}


def check(found: dict[str, float]) -> None:
    for name, value in EXPECTED.items():
        assert found.get(name) == value, (name, found.get(name))
    # Route labels are patterns, never the raw paths.
    assert not [name for name in found if "/echo/a" in name or "/nowhere" in name]


async def test_metrics_in_memory() -> None:
    app = metrics_app()
    async with TestClient(app) as client:
        for name, messages in (("a", ["hi", "é"]), ("b", ["hi"])):
            async with client.websocket_connect(f"/echo/{name}") as ws:
                for message in messages:
                    await ws.send_text(message)
                    assert await ws.receive_text() == message
        async with client.websocket_connect("/bye") as ws:
            with pytest.raises(ServerClosed) as closed:
                await ws.receive()
            assert closed.value.code == 4000
        for path in ("/guarded", "/nowhere"):
            with pytest.raises(HandshakeRejected):
                async with client.websocket_connect(path):
                    pass
        await until_closed(app)
        check(await scrape(app))


async def test_metrics_on_every_server(backend: Backend) -> None:
    app = metrics_app()
    async with backend.serve(app) as served:
        for name, messages in (("a", ["hi", "é"]), ("b", ["hi"])):
            async with served.connect(f"/echo/{name}") as ws:
                for message in messages:
                    await ws.send_message(message)
                    assert await ws.get_message() == message
        async with served.connect("/bye") as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            reason = closed.value.reason
            assert reason is not None and reason.code == 4000
        for path in ("/guarded", "/nowhere"):
            with pytest.raises(ConnectionRejected):
                async with served.connect(path):
                    pass
        await until_closed(app)
        check(await scrape(app))


async def test_a_connection_is_active_while_open() -> None:
    app = metrics_app()
    async with TestClient(app) as client, client.websocket_connect("/echo/a") as ws:
        await ws.send_text("x")
        assert await ws.receive_text() == "x"
        found = await scrape(app)
        assert found['triows_connections_active{route="/echo/{name}"}'] == 1
    await until_closed(app)
    assert (await scrape(app))['triows_connections_active{route="/echo/{name}"}'] == 0


async def test_hub_metrics_come_from_hub_stats() -> None:
    hub = triows.Hub()
    app = triows.App(metrics=True, hub=hub)

    @app.websocket_route("/sub")
    async def sub(ws: WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("news", max_buffer=1, on_overflow="drop_oldest") as messages:
            await ws.send("ready")
            await ws.receive()  # the test publishes while this view does not read
            await ws.send(await messages.receive())

    async with TestClient(app) as client, client.websocket_connect("/sub") as ws:
        assert await ws.receive_text() == "ready"
        for number in range(3):
            await hub.publish("news", str(number))
        await ws.send_text("go")
        assert await ws.receive_text() == "2"  # the two oldest were dropped
        found = await scrape(app)
    stats = hub.stats
    assert found["triows_hub_published_total"] == stats.published == 3
    assert found["triows_hub_delivered_total"] == stats.delivered
    assert found['triows_hub_dropped_total{policy="drop_oldest"}'] == stats.dropped_oldest == 2
    assert found['triows_hub_dropped_total{policy="disconnect"}'] == 0


async def test_scrapes_add_only_what_grew() -> None:
    app = metrics_app()
    async with TestClient(app) as client:
        async with client.websocket_connect("/echo/a") as ws:
            await ws.send_text("hi")
            await ws.receive_text()
        await until_closed(app)
        first = await scrape(app)
        assert await scrape(app) == first  # a second scrape changes nothing
        async with client.websocket_connect("/echo/a") as ws:
            await ws.send_text("hi")
            await ws.receive_text()
        await until_closed(app)
        key = 'triows_messages_received_total{route="/echo/{name}"}'
        assert (await scrape(app))[key] == first[key] + 1


def test_without_prometheus_client_the_error_names_the_extra(tmp_path: Path) -> None:
    # Without prometheus-client, App(metrics=True) says what to install.
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'prometheus_client':\n"
        "            raise ImportError('blocked for the test')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    code = (
        "import triows\n"
        "try:\n"
        "    triows.App(metrics=True)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "triows.App()  # without metrics nothing needs it\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'triows[metrics]'" in done.stdout


async def test_metrics_path_is_configurable() -> None:
    app = triows.App(metrics=True, metrics_path="/internal/prometheus")
    client = TestClient(app)
    assert (await client.get("/internal/prometheus")).status == 200
    assert (await client.get("/metrics")).status == 404


# -- several workers: PROMETHEUS_MULTIPROC_DIR ---------------------------------------------

WORKER = """
import functools, sys, trio, triows
app = triows.App(metrics=True)

@app.websocket_route("/echo")
async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with trio.open_nursery() as nursery:
        port = await nursery.start(functools.partial(triows.serve, app, port=0))
        print("PORT", port, flush=True)

trio.run(main)
"""


async def _start_worker(env: dict[str, str]) -> tuple[trio.Process, int]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", WORKER], stdout=subprocess.PIPE, env=env
    )
    assert process.stdout is not None
    output = b""
    with trio.fail_after(30):
        while b"\n" not in output:
            chunk = await process.stdout.receive_some(1024)
            assert chunk, "the worker exited before printing its port"
            output += chunk
    match = re.match(rb"PORT (\d+)", output)
    assert match, output
    return process, int(match.group(1))


async def test_one_scrape_shows_every_worker(tmp_path: Path) -> None:
    from trio_websocket import open_websocket_url

    from .raw_client import http_get

    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    workers = [await _start_worker(env) for _ in range(2)]
    try:
        for count, (_, port) in enumerate(workers, start=1):
            for _ in range(count):  # 1 message to the first worker, 2 to the second
                async with open_websocket_url(f"ws://127.0.0.1:{port}/echo") as ws:
                    await ws.send_message("hi")
                    assert await ws.get_message() == "hi"
        # Each worker copies its counters to the directory every second: the
        # first worker's scrape shows the second's once it has.
        key = 'triows_messages_received_total{route="/echo"}'
        with trio.fail_after(10):
            while True:
                raw = await http_get(workers[0][1], "/metrics")
                found = samples(raw.partition(b"\r\n\r\n")[2].decode())
                if found.get(key) == 3:
                    break
                await trio.sleep(0.2)
        assert found['triows_connections_total{outcome="accepted",route="/echo"}'] == 3
    finally:
        for process, _ in workers:
            process.terminate()
            with trio.fail_after(10):
                await process.wait()


async def test_triows_run_workers_one_scrape_counts_every_worker() -> None:
    from trio_websocket import open_websocket_url

    from .raw_client import http_get
    from .workers import TIMEOUT, supervised

    async with supervised("tests.metrics_worker_app:app", "--workers", "2") as server:
        await server.wait_for(lambda: len(server.workers) == 2)
        seen: set[int] = set()
        connections = 0
        with trio.fail_after(TIMEOUT * 3):
            while seen != set(server.workers):  # until both workers served some
                async with open_websocket_url(f"ws://127.0.0.1:{server.port}/who") as ws:
                    seen.add(int(await ws.get_message()))
                connections += 1
        key = 'triows_connections_total{outcome="accepted",route="/who"}'
        with trio.fail_after(TIMEOUT):
            while True:  # each worker copies its counters every second
                raw = await http_get(server.port, "/metrics")
                if samples(raw.partition(b"\r\n\r\n")[2].decode()).get(key) == connections:
                    break
                await trio.sleep(0.2)


@pytest.mark.parametrize("through", ["hub", "broadcast"])
async def test_shared_messages_are_counted_exactly(backend: Backend, through: str) -> None:
    # A message for many connections is counted as a run (one small-int addition
    # per connection), folded into the totals when the next message takes over:
    # on the native server over plain TCP the hub's publishing task hands each
    # message to idle subscribers (try_send), elsewhere forward() sends batches;
    # a Broadcast goes through ws.send().  Every scrape is exact, mid-run too.
    hub = triows.Hub()
    app = triows.App(metrics=True, hub=hub)
    views: list[WebSocket] = []

    @app.websocket_route("/sub")
    async def sub(ws: WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("news") as messages:
            views.append(ws)
            await ws.send("ready")  # 5 bytes
            if through == "hub":
                await messages.forward(ws)
            await ws.receive()

    async def publish(message: str) -> None:
        if through == "hub":
            await hub.publish("news", message)
            return
        shared = triows.Broadcast(message)
        for view in views:
            await view.send(shared)

    subscribers = 3
    sent, sent_bytes = subscribers, 5 * subscribers  # the "ready"s
    with trio.fail_after(10):
        async with backend.serve(app) as served, AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(served.connect("/sub")) for _ in range(3)]
            for client in clients:
                assert await client.get_message() == "ready"
            for message in ["m0", "é1", "plain", "ünï", "x" * 300]:
                await publish(message)
                for client in clients:
                    assert await client.get_message() == message
                sent += subscribers
                sent_bytes += subscribers * len(message.encode())
                found = await scrape(app)
                assert found['triows_messages_sent_total{route="/sub"}'] == sent
                assert found['triows_bytes_sent_total{route="/sub"}'] == sent_bytes
