"""A hub subscriber waiting in ``forward()``: its task reads the socket (native, plain TCP).

On the native server over plain TCP, ``Subscription.forward()`` waits in
``WebSocket.idle()``, which reads the socket from the forwarding task: no reader
task, pings answered, the client's messages kept for ``receive()``, a departure
raising WebSocketDisconnect with the client's code at once.  Every test also
runs on native-tls and hypercorn, where a reader task or pump reads instead:
the behaviour the view sees is the same.
"""

from __future__ import annotations

import trio

import triows
from triows import WebSocket, WebSocketDisconnect
from triows._native._reading import AWAY_SWEEP

from .conftest import Backend
from .raw_client import upgraded


def _forwarding_app() -> tuple[triows.App, triows.Hub, list[int], trio.Event]:
    """An App whose ``/sub`` forwards topic ``t``: the App, its hub, the close codes
    ``forward()`` ended with, and an event set when the view ends."""
    hub = triows.Hub()
    app = triows.App(hub=hub)
    codes: list[int] = []
    ended = trio.Event()

    @app.websocket_route("/sub")
    async def sub(ws: WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("t") as news:
            await ws.send("subscribed")
            try:
                await news.forward(ws)
            except WebSocketDisconnect as exc:
                codes.append(exc.code)
                raise
            finally:
                ended.set()

    return app, hub, codes, ended


def _reader_tasks() -> int:
    """How many native reader tasks run in this trio run."""
    count = 0
    root = trio.lowlevel.current_root_task()
    assert root is not None
    pending = [root]
    while pending:
        task = pending.pop()
        if task.name.endswith("Reading.read"):
            count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


async def test_forwarding_subscribers_need_no_reader_task(backend: Backend) -> None:
    hub = triows.Hub()
    app = triows.App(hub=hub)

    @app.websocket_route("/sub")
    async def sub(ws: WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("t") as news:
            await ws.send("subscribed")
            await news.forward(ws)

    with trio.fail_after(10):
        async with (
            backend.serve(app) as served,
            served.connect("/sub") as a,
            served.connect("/sub") as b,
        ):
            assert await a.get_message() == await b.get_message() == "subscribed"
            await trio.sleep(3 * AWAY_SWEEP)  # past the sweeps that would start readers
            readers = _reader_tasks()
            # Pings are answered while the views wait in forward().
            with trio.fail_after(2):
                await a.ping(b"1")
                await b.ping(b"2")
            await hub.publish("t", "one")
            assert await a.get_message() == await b.get_message() == "one"
    # Native over plain TCP: none; under TLS a reader reads from the handshake on;
    # hypercorn has no native reader (its pump is the App's).
    assert readers == (2 if backend.name == "native-tls" else 0)


async def test_a_departure_ends_forward_with_the_clients_code_at_once(backend: Backend) -> None:
    app, hub, codes, ended = _forwarding_app()

    with trio.fail_after(10):
        async with backend.serve(app) as served:
            async with served.connect("/sub") as ws:
                assert await ws.get_message() == "subscribed"
                if backend.name == "native":
                    await trio.sleep(3 * AWAY_SWEEP)  # forward() waits in idle()
                await ws.aclose(4321, "bye")
            await ended.wait()
            assert not hub.has_subscribers("t")
    if backend.name == "native":
        # Read by the forwarding task itself: the code, not a cancelled view.
        assert codes == [4321]


async def test_messages_sent_during_forward_are_kept_for_receive(backend: Backend) -> None:
    hub = triows.Hub()
    app = triows.App(hub=hub)

    @app.websocket_route("/sub")
    async def sub(ws: WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("t") as news:
            await ws.send("subscribed")
            with trio.move_on_after(3 * AWAY_SWEEP + 0.2):
                await news.forward(ws)
            # Everything the client sent meanwhile, in order.
            await ws.send("|".join([await ws.receive() for _ in range(3)]))

    with trio.fail_after(10):
        async with backend.serve(app) as served, served.connect("/sub") as ws:
            assert await ws.get_message() == "subscribed"
            for text in ("a", "b", "c"):
                await ws.send_message(text)
            await hub.publish("t", "news")
            assert await ws.get_message() == "news"
            assert await ws.get_message() == "a|b|c"


async def test_receive_in_another_task_takes_the_reading_over(backend: Backend) -> None:
    hub = triows.Hub()
    app = triows.App(hub=hub)

    @app.websocket_route("/chat")
    async def chat(ws: WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("t") as news, trio.open_nursery() as nursery:
            nursery.start_soon(news.forward, ws)
            await ws.send("subscribed")
            await trio.sleep(3 * AWAY_SWEEP)  # the forwarder is in idle() first
            async for text in ws:
                await hub.publish("t", f"echo {text}")

    with trio.fail_after(10):
        async with backend.serve(app) as served, served.connect("/chat") as ws:
            assert await ws.get_message() == "subscribed"
            for n in range(20):
                await ws.send_message(str(n))
                assert await ws.get_message() == f"echo {n}"


async def test_a_message_the_writer_cannot_take_now_wakes_the_forwarder(backend: Backend) -> None:
    # A message larger than the socket buffer leaves the writer busy: the next
    # one cannot be written from the publisher, so the forwarder wakes for it.
    hub = triows.Hub()
    app = triows.App(hub=hub)

    @app.websocket_route("/sub")
    async def sub(ws: WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("t") as news:
            await ws.send("subscribed")
            await news.forward(ws)

    big = "x" * 4_000_000
    with trio.fail_after(10):
        async with backend.serve(app) as served:
            async with served.connect("/sub", max_message_size=8_000_000) as ws:
                assert await ws.get_message() == "subscribed"
                await trio.sleep(3 * AWAY_SWEEP)
                for n in range(3):
                    await hub.publish("t", big)
                    await hub.publish("t", f"after {n}")
                for n in range(3):
                    assert await ws.get_message() == big
                    assert await ws.get_message() == f"after {n}"
            # The server stays healthy.
            async with served.connect("/sub") as ws:
                assert await ws.get_message() == "subscribed"


async def test_idle_outside_forward_reports_a_departure(backend: Backend) -> None:
    app = triows.App()
    outcome: list[object] = []
    done = trio.Event()

    @app.websocket_route("/idle")
    async def idle(ws: WebSocket) -> None:
        await ws.send("ready")
        try:
            while True:
                if not await ws.idle():
                    await trio.sleep_forever()  # another task reads: the grace cancels us
        except WebSocketDisconnect as exc:
            outcome.append(exc.code)
            raise
        except trio.Cancelled:
            outcome.append("cancelled")
            raise
        finally:
            done.set()

    with trio.fail_after(10):
        async with backend.serve(app) as served:
            async with served.connect("/idle") as ws:
                assert await ws.get_message() == "ready"
                await ws.aclose(4000)
            await done.wait()
    assert outcome == ([4000] if backend.name == "native" else ["cancelled"])


async def test_a_forwarder_whose_client_misses_pongs_ends_with_1006(backend: Backend) -> None:
    # The keepalive task sees the departure, not the forwarding task: it must
    # wake the parked forwarder (native: resume_idle from the departure).
    app, hub, codes, ended = _forwarding_app()

    with trio.fail_after(10):
        async with (
            backend.serve(app, ping_interval=0.1, ping_timeout=0.3) as served,
            upgraded(served, "/sub"),
        ):
            # The raw client reads nothing more and answers no ping.
            await ended.wait()
    assert not hub.has_subscribers("t")
    if backend.name == "native":
        assert codes == [1006]
