"""history_ttl: a topic's last position outlives its messages (memory and real Redis).

A subscriber whose topic stays silent longer than ``history_ttl`` missed
nothing: resuming from its position is recovered.  A resume from an older
position into expired messages, or after the last position itself expired, or
from another epoch, stays ``recovered=False``.
"""

from __future__ import annotations

import coredis
import trio
import trio.testing

from triows.hub import Hub
from triows.hub._positions import LAST_POSITION_LIFETIME

from .redis_server import RedisServer, redis_server

__all__ = ["redis_server"]

TTL = 60.0


async def test_memory_a_silent_topic_resumes_from_its_last_position(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Hub(history=10, history_ttl=TTL) as hub:
        older = await hub.publish("t", "a")
        async with hub.subscribe("t") as sub:
            last = await hub.publish("t", "b")
            assert await sub.receive() == "b"
            await trio.sleep(TTL * 3)  # the topic stays silent: its messages expire
            position = sub.position
        assert position == last
        await hub.publish("elsewhere", "moves the hub's counter")
        async with hub.subscribe("t", since=position) as sub:
            assert sub.recovered and len(sub) == 0 and sub.position == last
        # A real gap stays one: "b" expired with the messages.
        async with hub.subscribe("t", since=older) as sub:
            assert not sub.recovered
        # A subscriber that started on a topic without messages (at the head).
        async with hub.subscribe("empty") as sub:
            head = sub.position
        await trio.sleep(TTL * 2)
        await hub.publish("elsewhere", "again")
        async with hub.subscribe("empty", since=head) as sub:
            assert sub.recovered
        # After the silence, a new message: resuming from the last position replays it.
        await trio.sleep(TTL * 2)
        newest = await hub.publish("t", "c")
        async with hub.subscribe("t", since=last) as sub:
            assert sub.recovered and await sub.receive() == "c" and sub.position == newest
        async with hub.subscribe("t", since=older) as sub:
            assert not sub.recovered  # "b" is still missing


async def test_memory_the_last_position_expires_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Hub(history=10, history_ttl=TTL) as hub:
        last = await hub.publish("t", "a")
        await trio.sleep(TTL * LAST_POSITION_LIFETIME - 1)
        await hub.publish("elsewhere", "x")
        async with hub.subscribe("t", since=last) as sub:
            assert sub.recovered  # just in time; the start keeps it longer
        await trio.sleep(TTL * LAST_POSITION_LIFETIME + 1)
        await hub.publish("elsewhere", "y")
        async with hub.subscribe("t", since=last) as sub:
            assert not sub.recovered  # nothing is known of "t" any more: say so


async def test_memory_expired_messages_leave_a_small_record_then_nothing() -> None:
    import gc
    import tracemalloc

    clock = trio.testing.MockClock(autojump_threshold=0)
    topics = 2_000

    async def measure() -> tuple[int, int, int]:
        async with Hub(history=100, history_ttl=TTL) as hub:
            await hub.publish("warm", "x" * 100)
            names = [f"topic-{n}" for n in range(topics)]
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            for name in names:
                for _ in range(5):
                    await hub.publish(name, "x" * 100)
            gc.collect()
            full = tracemalloc.get_traced_memory()[0] - base
            await trio.sleep(TTL + 1)
            await hub.publish("warm", "x" * 100)  # any use sweeps the expired topics
            gc.collect()
            records = tracemalloc.get_traced_memory()[0] - base
            await trio.sleep(TTL * LAST_POSITION_LIFETIME)
            await hub.publish("warm", "x" * 100)
            gc.collect()
            left = tracemalloc.get_traced_memory()[0] - base
            tracemalloc.stop()
            return full, records, left

    full, records, left = await trio.to_thread.run_sync(lambda: trio.run(measure, clock=clock))
    assert full > 1_000_000, full
    assert records / topics < 300, records  # a tuple and a dict slot per topic
    assert left < full / 20, (full, left)


async def _wait_gone(raw: coredis.Redis[bytes], key: bytes) -> None:
    with trio.fail_after(10):
        # Redis expires the key itself: nothing to wait on but it.
        while await raw.exists([key]):  # noqa: ASYNC110
            await trio.sleep(0.05)


async def test_redis_a_silent_topic_resumes_from_its_last_position(
    redis_server: RedisServer,
) -> None:
    raw: coredis.Redis[bytes] = coredis.Redis.from_url(redis_server.url, decode_responses=False)
    ttl = 0.3
    async with raw, Hub(redis_server.url, history=10, history_ttl=ttl) as hub:
        with trio.fail_after(10):
            while not hub.connected:  # noqa: ASYNC110
                await trio.sleep(0.01)
        older = await hub.publish("t", "a")
        async with hub.subscribe("t") as sub:
            last = await hub.publish("t", "b")
            with trio.fail_after(5):
                assert await sub.receive() == "b"
            assert 0 < await raw.pttl(b"triows:stream:t") <= ttl * 1000
            lifetime = ttl * LAST_POSITION_LIFETIME * 1000
            assert ttl * 1000 < await raw.pttl(b"triows:last:t") <= lifetime
            await _wait_gone(raw, b"triows:stream:t")  # silent longer than history_ttl
            position = sub.position
        assert position == last and await raw.exists([b"triows:last:t"])
        await hub.publish("elsewhere", "moves the counter")
        async with hub.subscribe("t", since=position) as sub:
            assert sub.recovered and len(sub) == 0 and sub.position == last
        async with hub.subscribe("t", since=older) as sub:
            assert not sub.recovered  # "b" expired: a real gap
        # A new message after the silence: replayed from the last position.
        newest = await hub.publish("t", "c")
        async with hub.subscribe("t", since=last) as sub:
            assert sub.recovered and await sub.receive() == "c" and sub.position == newest
        async with hub.subscribe("t", since=older) as sub:
            assert not sub.recovered
        # Once the last position expires too, nothing is known: not recovered.
        await _wait_gone(raw, b"triows:last:t")
        await hub.publish("elsewhere", "again")
        async with hub.subscribe("t", since=newest) as sub:
            assert not sub.recovered


async def test_redis_a_lost_data_set_is_never_taken_for_a_silent_topic(
    redis_server: RedisServer,
) -> None:
    # Redis restarted without persistence (here: its data set flushed): the
    # epoch changed, so even the topic's last position is not recovered.
    raw: coredis.Redis[bytes] = coredis.Redis.from_url(redis_server.url, decode_responses=False)
    async with raw, Hub(redis_server.url, history=10, history_ttl=0.3) as hub:
        with trio.fail_after(10):
            while not hub.connected:  # noqa: ASYNC110
                await trio.sleep(0.01)
        last = await hub.publish("t", "a")
        await raw.flushall()
        async with hub.subscribe("t", since=last) as sub:
            assert not sub.recovered
            assert sub.position.partition(":")[0] != last.partition(":")[0]
