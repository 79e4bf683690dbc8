"""The in-memory Hub: ordering, buffers, overflow policies, unsubscription, App wiring."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import triows
from triows.hub import Hub, SlowConsumer
from triows.testing import TestClient


async def test_publish_reaches_every_subscriber_in_order() -> None:
    async with Hub() as hub, hub.subscribe("t") as a, hub.subscribe("t") as b:
        for i in range(50):
            await hub.publish("t", i)
        assert [await a.receive() for _ in range(50)] == list(range(50))
        assert [await b.receive() for _ in range(50)] == list(range(50))


async def test_topics_are_separate_and_types_survive() -> None:
    async with Hub() as hub, hub.subscribe("x") as x, hub.subscribe("y") as y:
        await hub.publish("x", "text")
        await hub.publish("y", b"\x00bytes")
        await hub.publish("x", {"json": [1, 2]})
        assert await x.receive() == "text"
        assert await x.receive() == {"json": [1, 2]}
        assert await y.receive() == b"\x00bytes"
        assert len(x) == 0 and len(y) == 0


async def test_unserialisable_message_is_refused() -> None:
    async with Hub() as hub:
        with pytest.raises(TypeError, match="JSON-able"):
            await hub.publish("t", object())


async def test_drop_oldest_bounds_the_buffer_and_counts() -> None:
    async with Hub() as hub, hub.subscribe("t", max_buffer=10) as sub:
        for i in range(25):
            await hub.publish("t", i)
        assert len(sub) == 10
        assert sub.dropped == 15
        assert [await sub.receive() for _ in range(10)] == list(range(15, 25))


async def test_disconnect_policy_raises_slow_consumer_and_unsubscribes() -> None:
    async with (
        Hub() as hub,
        hub.subscribe("t", max_buffer=3, on_overflow="disconnect") as slow,
        hub.subscribe("t", max_buffer=100) as fast,
    ):
        for i in range(5):
            await hub.publish("t", i)
        with pytest.raises(SlowConsumer, match="fell 3 messages behind"):
            await slow.receive()
        # The fast subscriber lost nothing, and the slow one is gone from the topic.
        assert [await fast.receive() for _ in range(5)] == list(range(5))
        assert hub.subscriber_count("t") == 1


async def test_slow_subscriber_never_blocks_the_publisher() -> None:
    async with Hub() as hub, hub.subscribe("t", max_buffer=1) as _never_read:
        with trio.fail_after(2):
            for i in range(10_000):
                await hub.publish("t", i)
        assert _never_read.dropped == 9_999


async def test_subscriber_waits_then_wakes() -> None:
    async with Hub() as hub, hub.subscribe("t") as sub:
        got: list[object] = []

        async def reader() -> None:
            got.append(await sub.receive())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            await hub.publish("t", "late")
        assert got == ["late"]


async def test_cancelled_receive_loses_nothing_and_unsubscribes_on_exit() -> None:
    async with Hub() as hub:
        async with hub.subscribe("t") as sub:
            with trio.move_on_after(0.01):
                await sub.receive()
            await hub.publish("t", "kept")
            assert await sub.receive() == "kept"
        assert not hub.has_subscribers("t")
        await hub.publish("t", "nobody")  # no subscriber: nothing to do, no error


async def test_cancelling_a_subscriber_task_unsubscribes() -> None:
    async with Hub() as hub:
        started = trio.Event()

        async def subscriber() -> None:
            async with hub.subscribe("t") as sub:
                started.set()
                async for _ in sub:
                    pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(subscriber)
            await started.wait()
            assert hub.has_subscribers("t")
            nursery.cancel_scope.cancel()
        assert not hub.has_subscribers("t")


async def test_subscriber_count_topics_and_connected() -> None:
    hub = Hub()
    assert hub.subscriber_count("t") == 0 and not hub.connected
    async with hub:
        assert hub.connected and hub.topics() == []
        async with hub.subscribe("t"), hub.subscribe("t"), hub.subscribe("u"):
            assert (hub.subscriber_count("t"), hub.subscriber_count("u")) == (2, 1)
            assert sorted(hub.topics()) == ["t", "u"]
            assert hub.subscriber_count("nobody") == 0
        assert hub.subscriber_count("t") == 0 and hub.topics() == []
    assert not hub.connected


async def test_deliver_reaches_local_subscribers_without_the_backend() -> None:
    # Backends call deliver() for each message that reaches this process.
    async with Hub() as hub, hub.subscribe("t") as sub:
        await hub.deliver("t", {"n": 1})
        await hub.deliver("nobody", "dropped")
        assert len(sub) == 1
        assert await sub.receive() == {"n": 1}


async def test_two_receivers_on_one_subscription_is_an_error() -> None:
    async with Hub() as hub, hub.subscribe("t") as sub, trio.open_nursery() as nursery:
        nursery.start_soon(sub.receive)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await sub.receive()
        nursery.cancel_scope.cancel()


async def test_hub_must_run_before_use() -> None:
    hub = Hub()
    with pytest.raises(RuntimeError, match="not running"):
        await hub.publish("t", "x")
    with pytest.raises(RuntimeError, match="not running"):
        async with hub.subscribe("t"):
            pass


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="redis://"):
        Hub("http://example")
    hub = Hub()
    with pytest.raises(ValueError, match="on_overflow"):
        triows.Subscription("t", 10, "explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_buffer"):
        triows.Subscription("t", 0, "drop_oldest")
    assert hub.max_buffer == 100 and hub.on_overflow == "drop_oldest"


async def test_app_runs_the_hub_and_injects_it() -> None:
    hub = Hub()
    app = triows.App(hub=hub)

    @app.websocket_route("/room/{name}")
    async def room(ws: triows.WebSocket, name: str, hub: Hub) -> None:
        async with hub.subscribe(name) as messages, trio.open_nursery() as nursery:

            async def forward() -> None:
                async for message in messages:
                    await ws.send(message)

            nursery.start_soon(forward)
            await ws.send("subscribed")
            async for text in ws:
                await hub.publish(name, text)

    assert not hub.running
    async with TestClient(app) as client:
        assert hub.running
        async with (
            client.websocket_connect("/room/a") as alice,
            client.websocket_connect("/room/a") as bob,
        ):
            assert await alice.receive_text() == "subscribed"
            assert await bob.receive_text() == "subscribed"
            await alice.send_text("hello")
            assert await bob.receive_text() == "hello"
            assert await alice.receive_text() == "hello"
        # Both views have ended: their subscriptions are gone.
        assert not hub.has_subscribers("a")
    assert not hub.running


async def test_slow_consumer_uncaught_in_a_view_closes_with_1008() -> None:
    hub = Hub(max_buffer=2, on_overflow="disconnect")
    app = triows.App(hub=hub)
    subscribed = trio.Event()
    flood = trio.Event()

    @app.websocket_route("/slow")
    async def slow(ws: triows.WebSocket, hub: Hub) -> None:
        async with hub.subscribe("t") as messages:
            subscribed.set()
            await flood.wait()
            async for message in messages:
                await ws.send(message)

    async with TestClient(app) as client, client.websocket_connect("/slow") as ws:
        await subscribed.wait()
        for i in range(5):
            await hub.publish("t", str(i))
        flood.set()
        assert await ws.wait_closed() == 1008


async def test_background_publishers_stop_before_the_hub() -> None:
    # A publisher in app.nursery publishing up to the last moment must be cancelled
    # before the hub stops, never find it gone ("the Hub is not running").
    hub = Hub()
    app = triows.App(hub=hub)
    published = 0

    async def publish_forever() -> None:
        nonlocal published
        while True:
            await hub.publish("t", published)
            published += 1

    @app.on_startup
    async def start() -> None:
        app.nursery.start_soon(publish_forever)

    async with TestClient(app):
        while published < 100:
            await trio.lowlevel.checkpoint()
    assert not hub.running


async def test_stats_count_publishes_deliveries_and_drops_per_policy() -> None:
    async with Hub() as hub:
        assert hub.stats == triows.HubStats()
        async with (
            hub.subscribe("t", max_buffer=2) as oldest,
            hub.subscribe("t", max_buffer=2, on_overflow="disconnect") as slow,
        ):
            for i in range(3):
                await hub.publish("t", i)
            with pytest.raises(SlowConsumer):
                await slow.receive()
            assert oldest.dropped == 1
        await hub.publish("nobody", "x")
        assert hub.stats.published == 4
        # 3 to `oldest`, 2 to `slow` before its overflow (the third did not fit).
        assert hub.stats.delivered == 5
        assert hub.stats.dropped_oldest == 1
        assert hub.stats.dropped_disconnect == 3  # two buffered, one that did not fit
        assert hub.stats.disconnected == 1
        assert hub.stats.dropped == 4
