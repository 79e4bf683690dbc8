"""Presence in memory: members, batched changes, reloads, several holders of a key."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from triows.hub import Hub, PresenceChange, PresenceChanges

INTERVAL = 0.2


def flush_times(changes: PresenceChanges, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When the room hands ``changes`` each batch: the list grows as it does.

    Timed at the hand-over, where the room's one-flush-per-interval rule acts, not
    where a reader gets the batch: a reader scheduled late (a loaded machine) reads
    two batches closer together than the room flushed them.
    """
    times: list[float] = []
    push = changes.push

    def timed(change: PresenceChange) -> None:
        times.append(trio.current_time())
        push(change)

    monkeypatch.setattr(changes, "push", timed)
    return times


async def test_members_count_a_key_once_and_leave_with_its_last_holder() -> None:
    async with Hub() as hub:
        assert await hub.members("room") == {}
        async with hub.presence("room", "alice", {"name": "Alice"}):
            async with hub.presence("room", "alice", {"name": "Alice (phone)"}):
                async with hub.presence("room", "bob"):
                    assert await hub.members("room") == {
                        "alice": {"name": "Alice (phone)"},
                        "bob": None,
                    }
                assert await hub.members("room") == {"alice": {"name": "Alice (phone)"}}
            # The phone left: the remaining holder's info.
            assert await hub.members("room") == {"alice": {"name": "Alice"}}
            assert await hub.members("other") == {}
        assert await hub.members("room") == {}


async def test_changes_are_batched_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    async with (
        Hub(presence_interval=INTERVAL) as hub,
        hub.presence("room", "old"),
        hub.presence_changes("room") as changes,
        trio.open_nursery() as nursery,
    ):
        assert changes.members == {"old": None}
        times = flush_times(changes, monkeypatch)
        batches: list[PresenceChange] = []

        async def watch() -> None:
            async for change in changes:
                batches.append(change)

        nursery.start_soon(watch)
        async with trio.open_nursery() as churn:
            for n in range(30):
                churn.start_soon(_hold, hub, f"user{n}", 0.5)
                await trio.sleep(0.01)
        await trio.sleep(3 * INTERVAL)
        nursery.cancel_scope.cancel()
    assert all(b - a >= INTERVAL * 0.99 for a, b in itertools.pairwise(times)), times
    members = {"old": None}
    for change in batches:
        assert not set(change.joined) & set(change.left)
        members.update(change.joined)
        for key in change.left:
            del members[key]
    assert members == {"old": None}  # everyone came and went
    assert len(batches) <= len(times) < 30


async def _hold(hub: Hub, key: str, seconds: float) -> None:
    async with hub.presence("room", key, {"key": key}):
        await trio.sleep(seconds)


async def test_a_reload_within_the_interval_shows_no_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # On the virtual clock: a machine too busy to run this test for INTERVAL * 3/4
    # of real time would make the reload last longer than the interval.
    async with (
        Hub(presence_interval=INTERVAL) as hub,
        hub.presence_changes("room") as changes,
    ):
        async with hub.presence("room", "alice", "A"):
            with trio.fail_after(2):
                first = await changes.receive()
            assert first == PresenceChange({"alice": "A"}, {})
        # A reload: gone for less than the interval, back with the same info.
        await trio.sleep(INTERVAL / 4)
        async with hub.presence("room", "alice", "A"):
            with trio.move_on_after(3 * INTERVAL) as quiet:
                await changes.receive()
            assert quiet.cancelled_caught  # nothing to report
        with trio.fail_after(2):
            gone = await changes.receive()
        assert gone == PresenceChange({}, {"alice": "A"})


async def test_a_slow_watcher_gets_one_merged_batch() -> None:
    async with (
        Hub(presence_interval=0.05) as hub,
        hub.presence_changes("room") as changes,
        hub.presence("room", "a", 1),
    ):
        await trio.sleep(0.2)
        async with hub.presence("room", "b", 2):
            await trio.sleep(0.2)
        await trio.sleep(0.2)
        async with hub.presence("room", "c", 3):
            await trio.sleep(0.2)
            # Never read meanwhile: a joined, b came and went, c joined.
            assert await changes.receive() == PresenceChange({"a": 1, "c": 3}, {})
            with trio.move_on_after(0.2) as quiet:
                await changes.receive()
            assert quiet.cancelled_caught  # a merged batch is one batch
        with trio.fail_after(1):
            assert await changes.receive() == PresenceChange({}, {"c": 3})
        async with hub.presence("room", "d", 4):
            await trio.sleep(0.2)
        await trio.sleep(0.2)
        # d came and went unread: nothing at all to report.
        with trio.move_on_after(0.2) as quiet:
            await changes.receive()
        assert quiet.cancelled_caught


async def test_info_change_is_reported_as_joined() -> None:
    async with (
        Hub(presence_interval=0.05) as hub,
        hub.presence_changes("room") as changes,
        hub.presence("room", "alice", "away"),
    ):
        assert await changes.receive() == PresenceChange({"alice": "away"}, {})
        async with hub.presence("room", "alice", "back"):
            assert await changes.receive() == PresenceChange({"alice": "back"}, {})


async def test_presence_arguments_are_checked() -> None:
    async with Hub() as hub:
        with pytest.raises(TypeError, match="use a str"):
            hub.presence("room", 12)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="JSON-able"):
            hub.presence("room", "k", object())
    with pytest.raises(RuntimeError, match="not running"):
        await hub.members("room")
    with pytest.raises(ValueError, match="presence_interval"):
        Hub(presence_interval=0)
