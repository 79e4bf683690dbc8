"""Live clients across ``triows run --workers 2`` with Redis while every worker is rolled.

A rolling restart (SIGHUP) drains each old worker: 503 for new handshakes, 1012
for its clients in jittered batches.  The shipped clients reconnect to a new
worker, resume every topic from their last position through the Redis history,
and resend unacknowledged publishes: every client ends with every message once,
in order.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from triows.client import Message, connect

from .browser import chromium
from .chat_pages import install_helpers, members, open_chat, say, texts
from .redis_server import RedisServer, redis_server
from .workers import Supervised, supervised, wait_gone

__all__ = ["redis_server"]


@pytest.fixture
def chat_on_redis(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The chat example's workers share ``redis_server`` (TRIOWS_REDIS_URL)."""
    monkeypatch.setenv("TRIOWS_REDIS_URL", redis_server.url)
    yield redis_server.url


async def _roll(server: Supervised) -> None:
    """SIGHUP, and wait until every old worker is gone."""
    old = list(server.workers)
    after = len(server.lines)
    server.process.send_signal(signal.SIGHUP)
    await server.wait_for_line("rolling restart done", timeout=60, after=after)
    assert not await wait_gone(old)


async def test_trio_clients_lose_nothing_while_workers_roll(chat_on_redis: str) -> None:
    count = 80
    async with supervised(
        "examples.chat.app:app", "--workers", "2", "--drain-seconds", "1"
    ) as server:
        await server.wait_for(lambda: len(server.workers) == 2)
        url = f"ws://127.0.0.1:{server.port}/live"
        received: dict[str, list[Any]] = {}
        codes: list[int] = []

        async def follow(name: str, task_status: trio.TaskStatus[None]) -> None:
            lines = received[name] = []

            def on_state(state: str, detail: dict[str, Any]) -> None:
                if state == "reconnecting":
                    codes.append(detail["code"])

            async with (
                connect(
                    f"{url}?user={name}", min_delay=0.05, max_delay=0.5, on_state=on_state
                ) as live,
                live.subscribe("chat") as room,
            ):
                task_status.started()
                while len(lines) < count:
                    event = await room.receive()
                    assert isinstance(event, Message), event  # a Gap would be a failure
                    lines.append(event.data["text"])

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for n in range(4):
                    await nursery.start(follow, f"reader{n}")
                async with connect(f"{url}?user=writer", min_delay=0.05, max_delay=0.5) as writer:

                    async def write(first: int, last: int) -> None:
                        for n in range(first, last):
                            text = {"type": "message", "text": str(n)}
                            await writer.publish("chat", text)
                            await trio.sleep(0.01)

                    await write(0, 20)
                    async with trio.open_nursery() as rolling:
                        rolling.start_soon(_roll, server)
                        await write(20, 60)  # published while the workers roll
                    await write(60, count)
        expected = [str(n) for n in range(count)]
        assert received == {f"reader{n}": expected for n in range(4)}
        assert 1012 in codes


def _pages_across_a_roll(url: str, roll: Any) -> None:
    with chromium() as browser:
        alice = open_chat(browser, url, "alice")
        bob = open_chat(browser, url, "bob")
        for page in (alice, bob):
            install_helpers(page)
            page.evaluate(
                "() => { window.states = []; live.on('state', s => window.states.push(s)); }"
            )
        sent = ["alice: hello, I am alice", "bob: hello, I am bob"]
        for n in range(5):
            say(alice, f"before {n}")
            sent.append(f"alice: before {n}")
        roll()  # returns at once; the roll goes on while the pages keep talking
        for n in range(10):
            page, name = (alice, "alice") if n % 2 else (bob, "bob")
            say(page, f"during {n}")
            sent.append(f"{name}: during {n}")
            page.wait_for_timeout(300)
        trio.from_thread.run(lambda: roll.done.wait())
        for page in (alice, bob):
            # Bob's new page started with the room's recent messages: Alice's hello too.
            expected = sent
            page.wait_for_selector("#status[data-state='open']")
            page.wait_for_function(
                f"() => window.chatLines().length >= {len(expected)}", timeout=30_000
            )
            lines = texts(page)
            assert sorted(lines) == sorted(expected), (lines, expected)
            assert page.query_selector("#messages li.note") is None
            assert "reconnecting" in page.evaluate("() => window.states")
        alice.wait_for_function("() => document.querySelectorAll('#members li').length === 2")
        assert members(alice) == members(bob) == ["alice", "bob"]


class _Roller:
    def __init__(self, server: Supervised, nursery: trio.Nursery) -> None:
        self.server = server
        self.nursery = nursery
        self.done = trio.Event()

    def __call__(self) -> None:
        trio.from_thread.run_sync(self.nursery.start_soon, self._run)

    async def _run(self) -> None:
        await _roll(self.server)
        self.done.set()


async def test_two_chat_pages_lose_nothing_while_workers_roll(chat_on_redis: str) -> None:
    async with supervised(
        "examples.chat.app:app", "--workers", "2", "--drain-seconds", "1"
    ) as server:
        await server.wait_for(lambda: len(server.workers) == 2)
        with trio.fail_after(150):
            async with trio.open_nursery() as nursery:
                roller = _Roller(server, nursery)
                url = f"http://127.0.0.1:{server.port}/"
                await trio.to_thread.run_sync(_pages_across_a_roll, url, roller)
