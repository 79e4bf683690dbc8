"""The in-memory Hub's history: positions, resuming with since=, recovered, Lagged."""

from __future__ import annotations

import json

import pytest
import trio

import triows
from triows.hub import Hub, Lagged, SlowConsumer
from triows.testing import TestClient

from .conftest import Backend


async def test_positions_are_ordered_strings_with_the_hubs_epoch() -> None:
    async with Hub(history=10) as hub, Hub(history=10) as other:
        first = await hub.publish("t", "a")
        second = await hub.publish("t", "b")
        elsewhere = await other.publish("t", "a")
        assert isinstance(first, str) and json.loads(json.dumps(first)) == first
        epoch, _, offset = first.partition(":")
        assert second.partition(":")[0] == epoch != elsewhere.partition(":")[0]
        assert int(second.partition(":")[2]) > int(offset)


async def test_resume_replays_then_goes_live_without_duplicate_or_gap() -> None:
    async with Hub(history=100) as hub:
        positions = [await hub.publish("t", n) for n in range(10)]
        await hub.publish("other", "not this topic")
        async with hub.subscribe("t", since=positions[3]) as sub:
            assert sub.recovered
            assert sub.position == positions[3]  # nothing returned yet
            await hub.publish("t", 10)
            assert [await sub.receive() for _ in range(7)] == list(range(4, 11))
            assert len(sub) == 0
            last = await hub.publish("t", 11)
            assert await sub.receive() == 11
            assert sub.position == last


async def test_resume_from_the_newest_position_is_recovered_with_nothing_to_replay() -> None:
    async with Hub(history=5) as hub:
        last = await hub.publish("t", "x")
        async with hub.subscribe("t", since=last) as sub:
            assert sub.recovered and len(sub) == 0 and sub.position == last
        # A topic that never had a message, with a position of this epoch.
        async with hub.subscribe("empty", since=last) as sub:
            assert sub.recovered and len(sub) == 0


async def test_position_before_the_first_message_is_the_topics_head() -> None:
    async with Hub(history=5) as hub:
        await hub.publish("t", "old")
        async with hub.subscribe("t") as sub:
            start = sub.position
            await hub.publish("t", "new")
        async with hub.subscribe("t", since=start) as again:
            assert again.recovered
            assert await again.receive() == "new"


async def test_history_that_no_longer_covers_since_is_not_recovered() -> None:
    async with Hub(history=3) as hub:
        old = await hub.publish("t", 0)
        for n in range(1, 6):
            last = await hub.publish("t", n)
        async with hub.subscribe("t", since=old) as sub:
            assert not sub.recovered
            assert sub.position == last  # starts live, at the head
            assert len(sub) == 0
            await hub.publish("t", "live")
            assert await sub.receive() == "live"
        # Held now: 4, 5, "live"; the oldest held follows 3's position: covered.
        three = f"{old.partition(':')[0]}:4"
        async with hub.subscribe("t", since=three) as sub:
            assert sub.recovered
            assert [await sub.receive() for _ in range(3)] == [4, 5, "live"]


async def test_another_epoch_is_never_mistaken_for_nothing_new() -> None:
    async with Hub(history=10) as first:
        position = await first.publish("t", "lost with this hub")
    async with Hub(history=10) as second, second.subscribe("t", since=position) as sub:
        assert not sub.recovered
        assert sub.position.partition(":")[0] != position.partition(":")[0]


async def test_without_history_resuming_is_recovered_only_when_nothing_happened() -> None:
    async with Hub() as hub:
        position = await hub.publish("t", "a")
        async with hub.subscribe("t", since=position) as sub:
            assert sub.recovered
        await hub.publish("t", "b")
        async with hub.subscribe("t", since=position) as sub:
            assert not sub.recovered
            assert len(sub) == 0


@pytest.mark.parametrize(
    ("since", "problem"),
    [
        ("", "not a hub position"),
        ("12", "not a hub position"),
        ("0123456789abcdef", "not a hub position"),
        ("0123456789ABCDEF:1", "not a hub position"),
        ("0123456789abcdef:x", "not a hub position"),
        ("0123456789abcdef:1:2", "not a hub position"),
        (12, "a position is a str"),
    ],
)
async def test_malformed_since_raises_value_error(since: object, problem: str) -> None:
    async with Hub(history=5) as hub:
        with pytest.raises(ValueError, match=problem):
            async with hub.subscribe("t", since=since):  # type: ignore[arg-type]
                pass
        assert hub.subscriber_count("t") == 0


async def test_overflow_with_history_raises_lagged_and_resumes_without_loss() -> None:
    async with Hub(history=100, max_buffer=4) as hub:
        received: list[int] = []
        async with hub.subscribe("t") as sub:
            for n in range(10):
                await hub.publish("t", n)
            with pytest.raises(Lagged, match="resume with") as caught:
                while True:
                    received.append(await sub.receive())
            assert received == [0, 1, 2, 3]  # what it held, then the signal
            assert caught.value.position == sub.position
            assert hub.subscriber_count("t") == 0  # removed when it stopped
        assert isinstance(caught.value, SlowConsumer) and caught.value.close_code == 1008
        async with hub.subscribe("t", since=sub.position) as again:
            assert again.recovered
            received += [await again.receive() for _ in range(6)]
        assert received == list(range(10))
        assert hub.stats.lagged == 1 and hub.stats.dropped == 0


async def test_disconnect_with_history_is_resumable_too() -> None:
    async with Hub(history=100, max_buffer=2, on_overflow="disconnect") as hub:
        async with hub.subscribe("t") as sub:
            first = await hub.publish("t", 0)
            assert await sub.receive() == 0
            for n in range(1, 5):
                await hub.publish("t", n)
            with pytest.raises(SlowConsumer):
                await sub.receive()
            assert sub.position == first
        async with hub.subscribe("t", since=sub.position) as again:
            assert [await again.receive() for _ in range(4)] == [1, 2, 3, 4]


async def test_messages_published_while_subscribing_are_returned_once() -> None:
    # A publisher runs while subscriptions with since= start: each sees every
    # message after its position exactly once, in order.
    async with Hub(history=1000, max_buffer=1000) as hub, trio.open_nursery() as nursery:
        start = await hub.publish("t", -1)

        async def publisher() -> None:
            for n in range(300):
                await hub.publish("t", n)

        nursery.start_soon(publisher)
        for _ in range(5):
            async with hub.subscribe("t", since=start) as sub:
                assert sub.recovered
                got = [await sub.receive() for _ in range(300)]
                assert got == list(range(300))
            await trio.lowlevel.checkpoint()


async def test_forward_sends_the_replay_then_live_messages() -> None:
    hub = Hub(history=50)
    app = triows.App(hub=hub)

    @app.websocket_route("/t")
    async def view(ws: triows.WebSocket, hub: Hub) -> None:
        since = ws.query_parameters.get("since")
        async with hub.subscribe("t", since=since) as messages:
            await ws.send(json.dumps({"recovered": messages.recovered}))
            await messages.forward(ws)

    async with TestClient(app) as client:
        positions = [await hub.publish("t", f"m{n}") for n in range(5)]
        async with client.websocket_connect(f"/t?since={positions[1]}") as ws:
            assert json.loads(await ws.receive_text()) == {"recovered": True}
            await hub.publish("t", "m5")
            assert [await ws.receive_text() for _ in range(4)] == ["m2", "m3", "m4", "m5"]


async def test_resume_over_real_sockets(backend: Backend) -> None:
    hub = Hub(history=2000, max_buffer=10)
    app = triows.App(hub=hub)

    @app.websocket_route("/t")
    async def view(ws: triows.WebSocket, hub: Hub) -> None:
        async with hub.subscribe("t", since=ws.query_parameters.get("since")) as messages:
            await ws.send(json.dumps({"recovered": messages.recovered}))
            await messages.forward(ws)

    async with backend.serve(app) as served:
        with trio.fail_after(20):
            positions = [await hub.publish("t", f"m{n}") for n in range(1000)]
            async with served.connect(f"/t?since={positions[0]}") as ws:
                assert json.loads(await ws.get_message()) == {"recovered": True}
                got = [await ws.get_message() for _ in range(999)]
                assert got == [f"m{n}" for n in range(1, 1000)]


async def test_a_topics_history_expires_after_history_ttl_without_use(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A topic unused (no publish, no subscription start) for history_ttl loses
    # its messages: a resume into them then says recovered=False, never a
    # silent gap.  Using it (publishing, or starting a subscription) keeps it.
    # (A resume from the topic's last position missed nothing: recovered, see
    # test_hub_history_ttl.py.)
    async with Hub(history=10, history_ttl=60) as hub:
        quiet = await hub.publish("quiet", "first")
        await hub.publish("quiet", "second")
        first = await hub.publish("t", "a")
        await hub.publish("t", "b")
        await trio.sleep(50)
        async with hub.subscribe("t") as sub:  # a start keeps "t" for 60 s more
            assert sub.recovered
        await trio.sleep(50)
        async with hub.subscribe("t", since=first) as sub:
            assert sub.recovered and await sub.receive() == "b"
        async with hub.subscribe("quiet", since=quiet) as sub:
            assert not sub.recovered  # 100 s unused: "second" expired
        await trio.sleep(61)
        async with hub.subscribe("t", since=first) as sub:
            assert not sub.recovered


async def test_an_expired_topic_used_again_never_recovers_an_older_position(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A client at `since` missed "b"; the topic expired; another subscriber
    # started on it (a fresh log).  The first client's resume is not recovered.
    async with Hub(history=10, history_ttl=60) as hub:
        since = await hub.publish("t", "a")
        await hub.publish("t", "b")
        await trio.sleep(61)
        async with hub.subscribe("t") as other:
            assert other.recovered
            async with hub.subscribe("t", since=since) as sub:
                assert not sub.recovered
            await hub.publish("t", "c")
            assert await other.receive() == "c"
        # Resuming from where the fresh subscriber was is recovered.
        async with hub.subscribe("t", since=other.position) as sub:
            assert sub.recovered


def test_history_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="history_ttl=0"):
        Hub(history=10, history_ttl=0)
