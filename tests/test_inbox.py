"""The pump mode's inbox (triows._serving._inbox.Inbox): bounded, cancel-safe, drained on close."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from triows._serving._inbox import READ_AHEAD, Inbox


def message(n: int) -> dict[str, object]:
    return {"type": "websocket.receive", "text": str(n)}


async def test_a_full_inbox_holds_the_sender_until_the_view_reads() -> None:
    inbox = Inbox[dict[str, object]]()
    for n in range(READ_AHEAD):
        await inbox.put(message(n))
    sent = trio.Event()

    async def sender() -> None:
        await inbox.put(message(READ_AHEAD))
        sent.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set() and len(inbox) == READ_AHEAD
        assert await inbox.get() == message(0)
        await sent.wait()
    assert [await inbox.get() for _ in range(READ_AHEAD)] == [
        message(n) for n in range(1, READ_AHEAD + 1)
    ]


async def test_a_waiting_view_gets_the_next_message_in_order() -> None:
    inbox = Inbox[dict[str, object]]()
    got: list[object] = []

    async def view() -> None:
        for _ in range(3):
            got.append(await inbox.get())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(view)
        for n in range(3):
            await trio.testing.wait_all_tasks_blocked()
            await inbox.put(message(n))
    assert got == [message(0), message(1), message(2)]


async def test_a_cancelled_receive_loses_nothing() -> None:
    inbox = Inbox[dict[str, object]]()
    with trio.move_on_after(0.01) as waiting:
        await inbox.get()
    assert waiting.cancelled_caught
    await inbox.put(message(1))
    assert await inbox.get() == message(1)


async def test_close_drains_then_ends_and_wakes_a_waiting_view() -> None:
    inbox = Inbox[dict[str, object]]()
    await inbox.put(message(1))
    inbox.close()
    assert await inbox.get() == message(1)
    with pytest.raises(trio.EndOfChannel):
        await inbox.get()

    inbox = Inbox[dict[str, object]]()
    async with trio.open_nursery() as nursery:

        async def view() -> None:
            with pytest.raises(trio.EndOfChannel):
                await inbox.get()

        nursery.start_soon(view)
        await trio.testing.wait_all_tasks_blocked()
        inbox.close()
