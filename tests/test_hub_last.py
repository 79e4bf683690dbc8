"""hub.subscribe(topic, last=N): a new subscriber's recent messages, then live ones.

In memory and through a real redis-server: the newest messages (at most N and
what the history holds), oldest first, then live messages, with no duplicate
and no gap at the switch; ``position`` starts just before the first replayed
message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.lowlevel

from triows.hub import Hub

from .redis_server import RedisServer, redis_server

__all__ = ["redis_server"]


@asynccontextmanager
async def _hub(kind: str, redis: RedisServer | None, **options: object) -> AsyncIterator[Hub]:
    hub = Hub(None if redis is None else redis.url, **options)  # type: ignore[arg-type]
    async with hub:
        with trio.fail_after(10):
            while not hub.connected:  # noqa: ASYNC110
                await trio.sleep(0.01)
        yield hub


@pytest.fixture(params=["memory", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def redis(kind: str, request: pytest.FixtureRequest) -> RedisServer | None:
    if kind == "memory":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return server


async def test_last_replays_the_newest_messages_then_live_ones(
    kind: str, redis: RedisServer | None
) -> None:
    async with _hub(kind, redis, history=100) as hub:
        positions = [await hub.publish("t", n) for n in range(10)]
        await hub.publish("other", "not this topic")
        async with hub.subscribe("t", last=3) as sub:
            assert sub.recovered
            # Just before the first replayed message: a resume from it replays them.
            epoch, _, seven = positions[7].partition(":")
            assert sub.position == f"{epoch}:{int(seven) - 1}"
            start = sub.position
            live = await hub.publish("t", 10)
            with trio.fail_after(5):
                assert [await sub.receive() for _ in range(4)] == [7, 8, 9, 10]
            assert len(sub) == 0 and sub.position == live
        async with hub.subscribe("t", since=start) as again:
            assert again.recovered
            with trio.fail_after(5):
                assert [await again.receive() for _ in range(4)] == [7, 8, 9, 10]


async def test_last_is_bounded_by_the_history_and_by_the_topic(
    kind: str, redis: RedisServer | None
) -> None:
    async with _hub(kind, redis, history=5) as hub:
        for n in range(20):
            await hub.publish("t", n)
        async with hub.subscribe("t", last=1000) as sub:
            with trio.fail_after(5):
                got = [await sub.receive() for _ in range(len(sub))]
            # At most `history` (Redis trims with MAXLEN ~: never fewer).
            assert got == list(range(20 - len(got), 20)) and len(got) >= 5
        await hub.publish("short", "only")
        async with hub.subscribe("short", last=10) as sub:
            assert len(sub) == 1 and await sub.receive() == "only"
        async with hub.subscribe("never", last=10) as sub:
            assert len(sub) == 0 and sub.recovered
            head = sub.position
            await hub.publish("never", "first")
            with trio.fail_after(5):
                assert await sub.receive() == "first"
        async with hub.subscribe("never", since=head) as sub:
            assert sub.recovered and len(sub) == 1


async def test_last_with_messages_published_while_subscribing_has_no_duplicate_or_gap(
    kind: str, redis: RedisServer | None
) -> None:
    async with _hub(kind, redis, history=1000) as hub:
        for n in range(50):
            await hub.publish("t", n)
        done = trio.Event()

        async def publisher() -> None:
            for n in range(50, 400):
                await hub.publish("t", n)
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publisher)
            await trio.lowlevel.checkpoint()
            async with hub.subscribe("t", last=20, max_buffer=1000) as sub:
                await done.wait()
                with trio.fail_after(10):
                    got = [await sub.receive()]
                    while got[-1] != 399:
                        got.append(await sub.receive())
        first = got[0]
        assert isinstance(first, int) and first >= 30
        assert got == list(range(first, 400))


async def test_last_after_the_messages_expired_replays_nothing(
    kind: str, redis: RedisServer | None
) -> None:
    async with _hub(kind, redis, history=10, history_ttl=0.2) as hub:
        await hub.publish("t", "old")
        async with hub.subscribe("t", last=10) as sub:
            assert len(sub) == 1
        await trio.sleep(0.5)  # unused for longer than history_ttl
        async with hub.subscribe("t", last=10) as sub:
            assert len(sub) == 0 and sub.recovered


async def test_without_history_last_replays_nothing(kind: str, redis: RedisServer | None) -> None:
    async with _hub(kind, redis) as hub:
        await hub.publish("t", "unkept")
        async with hub.subscribe("t", last=10) as sub:
            assert len(sub) == 0 and sub.recovered


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"last": -1}, "last=-1: give how many"),
        ({"last": "3"}, "last='3'"),
        ({"last": True}, "last=True"),
        ({"last": 3, "since": "0123456789abcdef:1"}, "not both"),
    ],
)
async def test_bad_last_raises_value_error(options: dict[str, object], problem: str) -> None:
    async with Hub(history=10) as hub:
        with pytest.raises(ValueError, match=problem):
            async with hub.subscribe("t", **options):  # type: ignore[arg-type]
                pass
        assert hub.subscriber_count("t") == 0
