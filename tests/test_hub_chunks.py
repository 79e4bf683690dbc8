"""A publish to many subscribers works in chunks: the loop runs, order and delivery hold."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio

from triows.hub import Hub, Subscription
from triows.hub import _delivery as delivery

#: More than one chunk's worth of subscribers.
SUBSCRIBERS = 5 * delivery.DELIVERY_CHUNK + 7


@pytest.fixture
def checkpoint_every_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    # A checkpoint between every two chunks, however fast the machine.
    monkeypatch.setattr(delivery, "DELIVERY_SLICE", 0.0)


async def subscribe_many(stack: AsyncExitStack, hub: Hub, n: int) -> list[Subscription]:
    return [await stack.enter_async_context(hub.subscribe("t")) for _ in range(n)]


async def drain(subscription: Subscription) -> list[object]:
    return [await subscription.receive() for _ in range(len(subscription))]


async def under_way(subscriptions: list[Subscription]) -> None:
    """Return once a delivery to ``subscriptions`` has started and is not finished."""
    for _ in range(100):
        await trio.lowlevel.checkpoint()
        if any(len(s) for s in subscriptions):
            break
    assert 0 < sum(1 for s in subscriptions if len(s)) < len(subscriptions)


@pytest.mark.usefixtures("checkpoint_every_chunk")
async def test_other_tasks_run_during_a_large_publish() -> None:
    async with Hub() as hub, AsyncExitStack() as stack:
        subs = await subscribe_many(stack, hub, SUBSCRIBERS)
        seen_partial: list[bool] = []
        done = trio.Event()

        async def watcher() -> None:
            # Runs between chunks: some subscribers have the message, others not yet.
            while not done.is_set():
                have = sum(1 for s in subs if len(s))
                seen_partial.append(0 < have < SUBSCRIBERS)
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher)
            await trio.lowlevel.checkpoint()
            await hub.publish("t", "m")
            done.set()
        assert any(seen_partial)
        assert all(len(s) == 1 for s in subs)
        assert hub.stats.delivered == SUBSCRIBERS


@pytest.mark.usefixtures("checkpoint_every_chunk")
async def test_interleaved_publishes_keep_one_order_for_every_subscriber() -> None:
    # Three publishers at once, each publishing several messages: their chunks
    # would interleave; deliveries to the topic take turns instead, so every
    # subscriber gets the same order, which is the order of the positions.
    async with Hub() as hub, AsyncExitStack() as stack:
        subs = await subscribe_many(stack, hub, SUBSCRIBERS)
        positions: dict[str, object] = {}

        async def publisher(name: str) -> None:
            for i in range(4):
                message = f"{name}{i}"
                positions[message] = await hub.publish("t", message)

        async with trio.open_nursery() as nursery:
            for name in "abc":
                nursery.start_soon(publisher, name)
        by_position = sorted(positions, key=lambda m: int(str(positions[m]).split(":")[1]))
        received = [await drain(s) for s in subs]
        assert received[0] == by_position
        assert all(r == received[0] for r in received)
        for name in "abc":  # each publisher's own order, as a sanity check
            assert [m for m in received[0] if str(m)[0] == name] == [f"{name}{i}" for i in range(4)]


@pytest.mark.usefixtures("checkpoint_every_chunk")
async def test_small_publish_after_a_large_one_waits_its_turn() -> None:
    # While a chunked delivery is under way, a publish to the topic queues behind
    # it, even once the topic has few subscribers left (no chunks needed).
    async with Hub() as hub, AsyncExitStack() as stack:
        staying = await subscribe_many(stack, hub, 3)
        async with AsyncExitStack() as leaving:
            others = await subscribe_many(leaving, hub, SUBSCRIBERS)
            everyone = staying + others
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hub.publish, "t", "first")
                await under_way(everyone)
                await leaving.aclose()
                assert hub.subscriber_count("t") == 3
                await hub.publish("t", "second")
        assert [await drain(s) for s in staying] == [["first", "second"]] * 3


@pytest.mark.usefixtures("checkpoint_every_chunk")
async def test_a_cancelled_publisher_still_delivers_to_everyone() -> None:
    async with Hub() as hub, AsyncExitStack() as stack:
        subs = await subscribe_many(stack, hub, SUBSCRIBERS)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hub.publish, "t", "m")
                await under_way(subs)
                scope.cancel()
        assert all(len(s) == 1 for s in subs)


@pytest.mark.usefixtures("checkpoint_every_chunk")
async def test_subscribers_leaving_or_joining_during_a_delivery() -> None:
    async with Hub() as hub, AsyncExitStack() as stack:
        staying = await subscribe_many(stack, hub, SUBSCRIBERS)
        late: list[Subscription] = []
        async with AsyncExitStack() as leaving:
            leavers = await subscribe_many(leaving, hub, SUBSCRIBERS)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hub.publish, "t", "m")
                await under_way(staying + leavers)
                reached = sum(1 for s in leavers if len(s))
                await leaving.aclose()  # most leave before their chunk is reached
                late.append(await stack.enter_async_context(hub.subscribe("t")))
        # Those who left got nothing more; the one who joined after the publish
        # started starts after it; everyone who stayed got it.
        assert reached < SUBSCRIBERS
        assert sum(1 for s in leavers if len(s)) == reached
        assert len(late[0]) == 0
        assert all(len(s) == 1 for s in staying)
        assert hub.stats.delivered == SUBSCRIBERS + reached
        await hub.publish("t", "next")  # the topic's turn-taking was released
        assert await drain(late[0]) == ["next"]


async def test_disconnected_subscription_is_not_refilled_by_a_later_chunk() -> None:
    # Under "disconnect", a subscription that overflowed is removed: a message
    # delivered in chunks never reaches it after the overflow.
    async with Hub() as hub, AsyncExitStack() as stack:
        subs = await subscribe_many(stack, hub, SUBSCRIBERS)
        slow = await stack.enter_async_context(
            hub.subscribe("t", max_buffer=1, on_overflow="disconnect")
        )
        await hub.publish("t", 1)
        await hub.publish("t", 2)  # overflows `slow`
        await hub.publish("t", 3)
        assert len(slow) == 0 and hub.subscriber_count("t") == SUBSCRIBERS
        assert [await drain(s) for s in subs] == [[1, 2, 3]] * len(subs)


@pytest.mark.usefixtures("checkpoint_every_chunk")
async def test_resuming_while_a_publish_waits_its_turn_gets_no_duplicate() -> None:
    # A publish waiting for the topic's turn already has its position and is in
    # the history; a subscriber resuming meanwhile gets it from the replay, and
    # not a second time when the waiting delivery goes out.
    async with Hub(history=100) as hub, AsyncExitStack() as stack:
        subs = await subscribe_many(stack, hub, 20 * delivery.DELIVERY_CHUNK)
        start = await hub.publish("t", "zero")
        for sub in subs:
            await sub.receive()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hub.publish, "t", "first")
            await under_way(subs)
            nursery.start_soon(hub.publish, "t", "second")
            for _ in range(5):  # "second" takes its position and waits its turn
                await trio.lowlevel.checkpoint()
            resumed = await stack.enter_async_context(hub.subscribe("t", since=start))
        assert resumed.recovered
        assert await drain(resumed) == ["first", "second"]
        assert [await drain(s) for s in subs] == [["first", "second"]] * len(subs)
