"""The Redis hub against a real redis-server: delivery, outage, and scale-out."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from trio_websocket import open_websocket_url

from triows.hub import Hub, HubUnavailable
from triows.hub._redis import decode, encode

from .redis_server import RedisServer, redis_server

__all__ = ["redis_server"]

ROOT = Path(__file__).resolve().parent.parent


async def _wait_connected(hub: Hub) -> None:
    with trio.fail_after(10):
        # Polls a flag the listener flips on (re)connection; bounded by fail_after.
        while not hub._backend.connected:  # type: ignore[attr-defined]  # noqa: ASYNC110
            await trio.sleep(0.01)


def test_encoding_round_trips_each_type() -> None:
    for message in ["text é", b"\x00\xff", {"a": [1, None]}, [1, 2], 3, None]:
        assert decode(encode(message)) == message
    with pytest.raises(ValueError, match="not a triows hub message"):
        decode(b"xjunk")


async def test_two_hubs_share_a_topic_in_order(redis_server: RedisServer) -> None:
    async with Hub(redis_server.url) as one, Hub(redis_server.url) as two:
        await _wait_connected(one)
        await _wait_connected(two)
        async with one.subscribe("t") as on_one, two.subscribe("t") as on_two:
            for i in range(100):
                await one.publish("t", {"n": i})
            with trio.fail_after(5):
                assert [await on_two.receive() for _ in range(100)] == [
                    {"n": i} for i in range(100)
                ]
                assert [await on_one.receive() for _ in range(100)] == [
                    {"n": i} for i in range(100)
                ]
                await two.publish("t", b"bytes back")
                assert await on_one.receive() == b"bytes back"


async def test_outage_publish_raises_and_subscribers_resume(redis_server: RedisServer) -> None:
    async with Hub(redis_server.url) as hub:
        await _wait_connected(hub)
        async with hub.subscribe("t") as sub:
            await hub.publish("t", "before")
            with trio.fail_after(5):
                assert await sub.receive() == "before"

            await trio.to_thread.run_sync(redis_server.stop)
            with pytest.raises(HubUnavailable, match="unavailable"):
                await hub.publish("t", "during")

            await trio.to_thread.run_sync(redis_server.start)
            await _wait_connected(hub)
            with trio.fail_after(10):
                # Resubscription after reconnecting: publish until one arrives.
                while True:
                    await hub.publish("t", "after")
                    with trio.move_on_after(0.2):
                        assert await sub.receive() == "after"
                        break


async def test_hub_starts_while_redis_is_down_and_catches_up(redis_server: RedisServer) -> None:
    await trio.to_thread.run_sync(redis_server.stop)
    async with Hub(redis_server.url) as hub, hub.subscribe("t") as sub:
        with pytest.raises(HubUnavailable):
            await hub.publish("t", "nobody home")
        await trio.to_thread.run_sync(redis_server.start)
        await _wait_connected(hub)
        with trio.fail_after(10):
            while True:
                await hub.publish("t", "hello")
                with trio.move_on_after(0.2):
                    assert await sub.receive() == "hello"
                    break


def _spawn_room(redis_url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "triows", "run", "tests.apps.redis_room:app", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "TRIOWS_TEST_REDIS_URL": redis_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@asynccontextmanager
async def _triows_process(redis_url: str) -> AsyncIterator[int]:
    """Run tests.apps.redis_room under `python -m triows run` in its own process."""
    process = _spawn_room(redis_url)
    try:
        assert process.stdout is not None
        port = None
        with trio.fail_after(20):
            while port is None:
                line = await trio.to_thread.run_sync(process.stdout.readline)
                if not line:
                    raise AssertionError("the triows process exited before serving")
                found = re.search(rb"serving .* on http://127\.0\.0\.1:(\d+)", line)
                if found:
                    port = int(found.group(1))
        yield port
    finally:
        process.send_signal(signal.SIGINT)
        try:
            returncode = await trio.to_thread.run_sync(process.wait, 15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert returncode == 0


async def test_clients_on_two_processes_chat_through_redis(redis_server: RedisServer) -> None:
    async with (
        _triows_process(redis_server.url) as port_a,
        _triows_process(redis_server.url) as port_b,
    ):
        with trio.fail_after(20):
            async with (
                open_websocket_url(f"ws://127.0.0.1:{port_a}/room/lobby") as alice,
                open_websocket_url(f"ws://127.0.0.1:{port_b}/room/lobby") as bob,
            ):
                assert await alice.get_message() == "subscribed"
                assert await bob.get_message() == "subscribed"
                await alice.send_message("hi from A")
                assert await bob.get_message() == "hi from A"
                assert await alice.get_message() == "hi from A"
                await bob.send_message("hi from B")
                assert await alice.get_message() == "hi from B"
