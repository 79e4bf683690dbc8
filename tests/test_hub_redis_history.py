"""History and presence through a real redis-server: two hubs, trimming, restarts, death."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from contextlib import suppress

import coredis
import pytest
import trio

from triows.hub import Hub, HubUnavailable, Lagged, PresenceChange
from triows.hub._positions import LAST_POSITION_LIFETIME

from .redis_server import RedisServer, redis_server
from .tcp_proxy import tcp_proxy
from .test_hub_presence import flush_times

__all__ = ["redis_server"]


async def _wait_connected(*hubs: Hub) -> None:
    with trio.fail_after(10):
        # Polls a flag the listener flips on (re)connection; bounded by fail_after.
        while not all(hub.connected for hub in hubs):  # noqa: ASYNC110
            await trio.sleep(0.01)


async def _publish_when_back(hub: Hub, topic: str, message: object) -> str:
    with trio.fail_after(15):
        while True:
            with suppress(HubUnavailable):
                return await hub.publish(topic, message)
            await trio.sleep(0.05)


async def test_another_process_resumes_from_a_position(redis_server: RedisServer) -> None:
    async with Hub(redis_server.url, history=100) as a, Hub(redis_server.url, history=100) as b:
        await _wait_connected(a, b)
        positions = [await a.publish("t", {"n": n}) for n in range(20)]
        assert len(set(positions)) == 20
        assert len({p.partition(":")[0] for p in positions}) == 1  # one epoch
        async with b.subscribe("t", since=positions[4]) as sub:
            assert sub.recovered and sub.position == positions[4]
            last = await a.publish("t", {"n": 20})
            got = [await sub.receive() for _ in range(16)]
            assert got == [{"n": n} for n in range(5, 21)]
            assert sub.position == last


async def test_switch_from_replay_to_live_under_load_has_no_duplicate_or_gap(
    redis_server: RedisServer,
) -> None:
    async with (
        Hub(redis_server.url, history=5000) as a,
        Hub(redis_server.url, history=5000, max_buffer=5000) as b,
        trio.open_nursery() as nursery,
    ):
        await _wait_connected(a, b)
        start = await a.publish("t", -1)

        async def publisher() -> None:
            for n in range(400):
                await a.publish("t", n)

        nursery.start_soon(publisher)
        for _ in range(4):  # subscriptions starting at different moments of the flow
            async with b.subscribe("t", since=start) as sub:
                assert sub.recovered
                with trio.fail_after(20):
                    got = [await sub.receive() for _ in range(400)]
                assert got == list(range(400))
            await trio.sleep(0.02)


async def test_trimmed_history_is_not_recovered(redis_server: RedisServer) -> None:
    async with Hub(redis_server.url, history=10) as hub:
        await _wait_connected(hub)
        first = await hub.publish("t", 0)
        for n in range(1, 500):
            last = await hub.publish("t", n)
        async with hub.subscribe("t", since=first) as sub:
            assert not sub.recovered
            assert sub.position == last and len(sub) == 0
        async with hub.subscribe("t", since=last) as sub:
            assert sub.recovered and len(sub) == 0
        with pytest.raises(ValueError, match="not a hub position"):
            async with hub.subscribe("t", since="1-0"):
                pass


async def test_a_redis_restart_without_persistence_is_a_new_epoch(
    redis_server: RedisServer,
) -> None:
    async with Hub(redis_server.url, history=100) as hub:
        await _wait_connected(hub)
        before = await hub.publish("t", "before")
        await trio.to_thread.run_sync(redis_server.stop)
        await trio.to_thread.run_sync(redis_server.start)
        after = await _publish_when_back(hub, "t", "after")
        assert after.partition(":")[0] != before.partition(":")[0]
        # Offsets restart too, but an old position is never taken for "nothing new".
        async with hub.subscribe("t", since=before) as sub:
            assert not sub.recovered
            assert sub.position == after
        async with hub.subscribe("t", since=after) as sub:
            assert sub.recovered


async def test_history_overflow_is_lagged_and_resumable(redis_server: RedisServer) -> None:
    async with Hub(redis_server.url, history=100, max_buffer=3) as hub:
        await _wait_connected(hub)
        got: list[int] = []
        async with hub.subscribe("t") as sub:
            for n in range(10):
                await hub.publish("t", n)
            with pytest.raises(Lagged), trio.fail_after(5):
                while True:
                    got.append(await sub.receive())
        async with hub.subscribe("t", since=sub.position) as again:
            assert again.recovered
            with trio.fail_after(5):
                while len(got) < 10:
                    got.append(await again.receive())
        assert got == list(range(10))


async def test_presence_across_two_hubs(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        Hub(redis_server.url, presence_interval=0.1) as a,
        Hub(redis_server.url, presence_interval=0.1) as b,
    ):
        await _wait_connected(a, b)
        async with b.presence_changes("room") as changes:
            assert changes.members == {}
            view = dict(changes.members)
            times = flush_times(changes, monkeypatch)

            async def until(expected: dict[str, object]) -> None:
                with trio.fail_after(5):
                    while view != expected:
                        change = await changes.receive()
                        view.update(change.joined)
                        for key in change.left:
                            del view[key]
                # One batch per interval, timed where b's room hands them over.
                assert all(y - x >= 0.1 * 0.99 for x, y in itertools.pairwise(times)), times

            async with a.presence("room", "alice", {"n": 1}), b.presence("room", "alice", {"n": 2}):
                async with a.presence("room", "bob"):
                    members = await b.members("room")
                    # One key held in two processes is one member, with one of the infos.
                    assert members.keys() == {"alice", "bob"}
                    assert members["alice"] in ({"n": 1}, {"n": 2})
                    assert await a.members("room") == members
                    await until(members)
                await until({"alice": members["alice"]})
            await until({})
            assert await a.members("room") == {}


DEAD_PROCESS = textwrap.dedent(
    """
    import sys, trio
    from triows.hub import Hub

    async def main():
        async with Hub(sys.argv[1], presence_ttl=1.0, presence_interval=0.2) as hub:
            async with hub.presence("room", "ghost", "boo"):
                print("present", flush=True)
                await trio.sleep_forever()

    trio.run(main)
    """
)


async def test_a_dead_process_members_vanish_within_the_ttl(redis_server: RedisServer) -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", DEAD_PROCESS, redis_server.url], stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        output = b""
        with trio.fail_after(20):
            while b"\n" not in output:
                output += await process.stdout.receive_some()
        assert output.strip() == b"present"
        async with Hub(redis_server.url, presence_interval=0.2) as hub:
            await _wait_connected(hub)
            async with hub.presence_changes("room") as changes:
                assert changes.members == {"ghost": "boo"}
                process.kill()  # no cleanup at all
                killed_at = trio.current_time()
                with trio.fail_after(5):
                    assert await changes.receive() == PresenceChange({}, {"ghost": "boo"})
                assert trio.current_time() - killed_at < 1.0 + 0.2 + 0.5
            assert await hub.members("room") == {}
    finally:
        process.kill()
        with trio.move_on_after(5):
            await process.wait()


async def _follow(hub: Hub, topic: str, since: str, got: list[object], gaps: list[str]) -> None:
    """Resume through Lagged until cancelled, as docs/snippets/hub_gap.py does."""
    while True:
        try:
            async with hub.subscribe(topic, since=since) as messages:
                if not messages.recovered:
                    gaps.append(since)
                async for message in messages:
                    got.append(message)
                    since = messages.position
        except Lagged as lagged:
            since = lagged.position
        except HubUnavailable:
            await trio.sleep(0.05)


async def test_a_listener_outage_is_resumed_from_the_history(redis_server: RedisServer) -> None:
    # B's listener loses Redis while A publishes: B's subscriber is told (Lagged)
    # once B is back, and resumes from the Stream: every message exactly once.
    acknowledged: list[int] = []
    got: list[object] = []
    gaps: list[str] = []
    raw: coredis.Redis[bytes] = coredis.Redis.from_url(redis_server.url, decode_responses=False)
    async with (
        raw,
        Hub(redis_server.url, history=10_000) as a,
        Hub(redis_server.url, history=10_000) as b,
        trio.open_nursery() as nursery,
    ):
        await _wait_connected(a, b)
        start = await a.publish("t", -1)
        nursery.start_soon(_follow, b, "t", start, got, gaps)
        for n in range(300):
            if n == 100:
                await raw.client_kill(type_=coredis.PureToken.PUBSUB)
            with suppress(HubUnavailable):
                await a.publish("t", n)
                acknowledged.append(n)
            await trio.sleep(0.002)
        with trio.fail_after(10):
            while got[-1:] != acknowledged[-1:]:  # noqa: ASYNC110
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert b.stats.lagged >= 1  # the outage was signalled, not silent
    assert got == acknowledged and gaps == []


async def test_a_redis_restart_interrupts_subscribers_who_then_resync(
    redis_server: RedisServer,
) -> None:
    got: list[object] = []
    gaps: list[str] = []
    async with Hub(redis_server.url, history=100) as hub, trio.open_nursery() as nursery:
        await _wait_connected(hub)
        start = await hub.publish("t", "before")
        nursery.start_soon(_follow, hub, "t", start, got, gaps)
        await trio.to_thread.run_sync(redis_server.stop)
        await trio.to_thread.run_sync(redis_server.start)
        await _publish_when_back(hub, "t", "lost with the restart?")
        with trio.fail_after(10):
            while not gaps:  # noqa: ASYNC110
                await trio.sleep(0.01)
        # The new epoch: the subscriber resynced, and goes on live.
        await _publish_when_back(hub, "t", "after")
        with trio.fail_after(10):
            while "after" not in got:  # noqa: ASYNC110
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert gaps == [start]


async def test_subscribing_right_after_start_waits_for_the_listener(
    redis_server: RedisServer,
) -> None:
    # The subscription's start needs the listener (its fence comes back through
    # it): a hub used at once waits for its first connection, within bounds.
    with trio.fail_after(5):
        async with Hub(redis_server.url, history=10) as hub, hub.subscribe("t") as sub:
            position = await hub.publish("t", "first")
            assert await sub.receive() == "first"
            assert sub.position == position


async def test_presence_comes_back_after_a_redis_restart(redis_server: RedisServer) -> None:
    # Redis restarted without persistence forgets every entry: each process adds
    # its own again at its next refresh (every presence_ttl / 3), and watchers'
    # mirrors are reloaded on reconnection, so everyone converges.
    async with (
        Hub(redis_server.url, presence_ttl=1.5, presence_interval=0.2) as a,
        Hub(redis_server.url, presence_ttl=1.5, presence_interval=0.2) as b,
    ):
        await _wait_connected(a, b)
        async with a.presence("room", "alice", "A"), b.presence_changes("room") as changes:
            view = dict(changes.members)
            assert view == {"alice": "A"}
            await trio.to_thread.run_sync(redis_server.stop)
            await trio.to_thread.run_sync(redis_server.start)
            await _wait_connected(a, b)
            with trio.fail_after(10):
                # Polls Redis (no event tells when the refresh ran), bounded by fail_after.
                while await _members_when_back(b) != {"alice": "A"}:  # noqa: ASYNC110
                    await trio.sleep(0.1)

            async def apply_batches() -> None:
                async for change in changes:
                    view.update(change.joined)
                    for key in change.left:
                        del view[key]

            async with trio.open_nursery() as nursery:
                nursery.start_soon(apply_batches)
                await trio.sleep(1.0)  # any batch from the restart has come
                nursery.cancel_scope.cancel()
            assert view == {"alice": "A"}


async def _members_when_back(hub: Hub) -> dict[str, object]:
    try:
        return await hub.members("room")
    except HubUnavailable:
        return {}


async def test_messages_the_stream_lacks_are_never_skipped(redis_server: RedisServer) -> None:
    # A hub without history shares the Redis (a misconfiguration), then a
    # topic's Stream is deleted: a resume across either is not recovered.
    async with Hub(redis_server.url, history=100) as a, Hub(redis_server.url) as b:
        await _wait_connected(a, b)
        start = await a.publish("t", 0)
        await a.publish("other", "x")  # positions count every topic's messages
        await a.publish("t", 1)
        async with a.subscribe("t", since=start) as sub:
            assert sub.recovered and await sub.receive() == 1
        middle = await a.publish("t", 2)
        await b.publish("t", 3)  # no Stream entry: only the topic's last offset moves
        await a.publish("t", 4)
        async with a.subscribe("t", since=middle) as sub:
            assert not sub.recovered and len(sub) == 0
        last = await a.publish("t", 5)
        async with a.subscribe("t", since=last) as sub:
            assert sub.recovered and len(sub) == 0
        before = await a.publish("t", 6)
        await a.publish("t", 7)
        raw: coredis.Redis[bytes] = coredis.Redis.from_url(redis_server.url)
        async with raw:
            assert await raw.delete(["triows:stream:t"]) == 1
        async with a.subscribe("t", since=before) as sub:
            assert not sub.recovered


async def test_a_publish_whose_reply_is_lost_is_not_run_twice(redis_server: RedisServer) -> None:
    # Redis ran the publish, then the connection died before its reply came
    # back.  The publish must fail (HubUnavailable: the caller cannot know
    # whether it reached Redis) and must not be run again behind the caller's
    # back: coredis's default policy retries a command after a connection
    # error, which published the message a second time (a duplicate for every
    # subscriber, at a new position).
    raw: coredis.Redis[bytes] = coredis.Redis.from_url(redis_server.url, decode_responses=False)
    async with raw, tcp_proxy(redis_server.port) as proxy:
        async with Hub(f"redis://127.0.0.1:{proxy.port}/0", history=10) as hub:
            await _wait_connected(hub)
            await hub.publish("t", "first")
            proxy.mute_replies = True
            async with trio.open_nursery() as nursery:
                failures: list[HubUnavailable] = []

                async def publish() -> None:
                    try:
                        await hub.publish("t", "once")
                    except HubUnavailable as exc:
                        failures.append(exc)

                nursery.start_soon(publish)
                with trio.fail_after(5):
                    # Polls Redis itself (nothing to wait on); bounded by fail_after.
                    while await raw.xlen(b"triows:stream:t") < 2:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                proxy.mute_replies = False
                proxy.drop()  # the reply is lost with the connection
            assert len(failures) == 1, failures
            assert "unavailable" in str(failures[0])
            await _wait_connected(hub)
            await hub.publish("t", "last")
        entries = await raw.xrange(b"triows:stream:t")
        payloads = [entry.field_values[b"m"] for entry in entries]
        assert len(payloads) == 3, payloads
        assert [b"first" in payloads[0], b"once" in payloads[1], b"last" in payloads[2]] == [
            True,
            True,
            True,
        ], payloads


async def test_topic_keys_expire_after_history_ttl_and_a_resume_then_says_so(
    redis_server: RedisServer,
) -> None:
    # history_ttl: a topic's Stream and last offset expire once it is unused
    # (no publish, no subscription start) that long; a resume into it is then
    # not recovered, even after another subscriber started it afresh.
    raw: coredis.Redis[bytes] = coredis.Redis.from_url(redis_server.url, decode_responses=False)
    async with raw, Hub(redis_server.url, history=10, history_ttl=0.5) as hub:
        await _wait_connected(hub)
        since = await hub.publish("t", "a")
        await hub.publish("t", "b")
        assert 0 < await raw.pttl(b"triows:stream:t") <= 500
        # The last offset outlives the messages (see test_hub_history_ttl.py).
        assert 500 < await raw.pttl(b"triows:last:t") <= 500 * LAST_POSITION_LIFETIME
        async with hub.subscribe("t", since=since) as sub:
            assert sub.recovered and await sub.receive() == "b"
        with trio.fail_after(10):
            # Redis expires the keys itself: nothing to wait on but them.
            while await raw.exists([b"triows:stream:t", b"triows:last:t"]):  # noqa: ASYNC110
                await trio.sleep(0.05)
        await hub.publish("elsewhere", "moves the head")
        async with hub.subscribe("t") as fresh:
            assert fresh.recovered
            async with hub.subscribe("t", since=since) as sub:
                assert not sub.recovered  # "b" is gone with the history: a gap
            after = await hub.publish("t", "c")
            with trio.fail_after(5):
                assert await fresh.receive() == "c"
        async with hub.subscribe("t", since=fresh.position) as sub:
            assert sub.recovered and sub.position == after
        # Counter and epoch are shared by every topic: they never expire.
        assert await raw.pttl(b"triows:counter") == -1
