"""The snippets of docs/guide/history.md, executed."""

from __future__ import annotations

import trio

import triows

from .test_docs import load


async def test_hub_resume() -> None:
    recovered, missed, after_restart = await load("hub_resume").main()
    assert recovered is True
    assert missed == ["third", "fourth", "fifth"]
    assert after_restart is False


async def test_hub_gap_follows_through_lagged_and_resyncs() -> None:
    follow = load("hub_gap").follow
    got: list[object] = []
    resyncs: list[str] = []
    done = trio.Event()

    async with triows.Hub(history=1000, max_buffer=5) as hub, trio.open_nursery() as nursery:
        start = await hub.publish("t", "before")

        async def handle(message: object, position: str) -> None:
            got.append(message)
            if len(got) == 50:
                done.set()
            if len(got) % 7 == 0:
                await trio.sleep(0.001)  # a slow client: the subscription lags

        resynced = trio.Event()

        async def resync() -> None:
            resyncs.append("resync")
            resynced.set()

        nursery.start_soon(follow, hub, "t", start, handle, resync)
        for n in range(50):
            await hub.publish("t", n)
        with trio.fail_after(10):
            await done.wait()
        assert hub.stats.lagged > 0  # it did fall behind...
        assert got == list(range(50))  # ...and still got everything once, in order
        assert resyncs == []
        nursery.cancel_scope.cancel()

    async with triows.Hub(history=10) as other, trio.open_nursery() as nursery:
        nursery.start_soon(follow, other, "t", start, handle, resync)  # another epoch
        with trio.fail_after(5):
            await resynced.wait()
        nursery.cancel_scope.cancel()


async def test_hub_presence() -> None:
    members, batches = await load("hub_presence").main()
    assert members == {"alice": {"name": "Alice"}, "bob": {"name": "Bob"}}
    # Joined (together or in two batches), bob left, the reload showed nothing,
    # then alice left.
    view: dict[str, object] = {}
    lefts = []
    for change in batches:
        view.update(change.joined)
        for key in change.left:
            del view[key]
            lefts.append(key)
    assert view == {}
    assert lefts == ["bob", "alice"]
    assert batches[-1] == triows.PresenceChange({}, {"alice": {"name": "Alice"}})


async def test_hub_last() -> None:
    shown, replayed, recovered = await load("hub_last").main()
    assert shown == ["message 3", "message 4", "message 5", "message 6"]
    assert replayed == ["message 4", "message 5", "message 6"]
    assert recovered is True
