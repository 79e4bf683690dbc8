"""The live route on a Redis hub: two server processes' worth of Apps, one room."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from triows.client import Message, PresenceChange, connect
from triows.testing import live_server

from .conftest import Backend
from .live_apps import TIMEOUT, Frames, live_app
from .redis_server import RedisServer, redis_server

__all__ = ["redis_server"]


async def test_a_client_resumes_on_another_server_through_redis(
    redis_server: RedisServer, backend: Backend
) -> None:
    first, second = live_app(url=redis_server.url), live_app(url=redis_server.url)
    async with backend.serve(first) as server_a, backend.serve(second) as server_b:
        with trio.fail_after(TIMEOUT * 2):
            async with (
                connect(server_a.url("/live?user=ann"), ssl_context=server_a.ssl_context) as ann,
                ann.subscribe("room", presence=True) as room,
            ):
                await ann.publish("room", "one")
                event = await room.receive()
                while not isinstance(event, Message):
                    event = await room.receive()
                assert event.data == "one"
                position = room.position
                # Bob, on the other server, is a member of the same room.
                async with (
                    connect(
                        server_b.url("/live?user=bob"), ssl_context=server_b.ssl_context
                    ) as bob,
                    bob.subscribe("room", presence=True) as bob_room,
                ):
                    while room.members.keys() != {"ann", "bob"}:
                        assert isinstance(await room.receive(), PresenceChange)
                    await bob.publish("room", "two")
                    while not isinstance(event := await bob_room.receive(), Message):
                        pass
                    assert event.data == "two"
            # Ann comes back on the other server, from her last position: "two" only.
            async with (
                connect(server_b.url("/live?user=ann"), ssl_context=server_b.ssl_context) as ann,
                ann.subscribe("room", since=position) as room,
            ):
                assert room.recovered is True
                event = await room.receive()
                assert isinstance(event, Message) and event.data == "two"


async def test_a_redis_restart_keeps_live_clients_connected(redis_server: RedisServer) -> None:
    # Redis restarts without persistence: the history and presence are gone.  The
    # live connection stays up; its topic resumes (a gap, the history being lost)
    # and its presence comes back; no view fails.
    app = live_app(url=redis_server.url)
    hub = app.hub
    assert hub is not None
    async with (
        live_server(app) as server,
        connect(server.url("/live?user=ann"), min_delay=0.05) as ann,
        ann.subscribe("room", presence=True) as room,
    ):
        with trio.fail_after(30):
            await ann.publish("room", "before")
            while not isinstance(event := await room.receive(), Message):
                pass
            assert event.data == "before"
            await trio.to_thread.run_sync(redis_server.stop)
            await trio.to_thread.run_sync(redis_server.start)
            # Publish until the room hears again (the hub reconnects meanwhile).
            heard: list[Any] = []
            while "after" not in heard:
                with trio.move_on_after(0.3):
                    await ann.publish("room", "after")
                with trio.move_on_after(0.3):
                    while True:
                        event = await room.receive()
                        heard.append(getattr(event, "data", type(event).__name__))
            # A fresh member list once presence is back in the new Redis.
            while room.members != {"ann": {"name": "Ann"}}:
                await room.receive()
        assert ann.connections == 1  # never disconnected: no 1011, no reconnection


async def test_a_subscribe_while_redis_is_down_is_retried(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis cannot say where the subscription starts: the route answers
    # "unavailable", the trio client subscribes again a second later, and once
    # Redis is back the subscription is confirmed.
    monkeypatch.setattr("triows.hub._redis.PUBLISH_TIMEOUT", 0.3)
    app = live_app(url=redis_server.url)
    refusals: list[str] = []
    async with live_server(app) as server, connect(server.url("/live?user=ann")) as ann:
        with trio.fail_after(30):
            await ann.wait_state("open")
            await trio.to_thread.run_sync(redis_server.stop)
            async with trio.open_nursery() as nursery:

                async def restart_later() -> None:
                    while not refusals:  # noqa: ASYNC110
                        await trio.sleep(0.05)
                    await trio.to_thread.run_sync(redis_server.start)

                nursery.start_soon(restart_later)
                original = ann.retry_later

                def spy(send: Any) -> None:
                    refusals.append("unavailable")
                    original(send)

                monkeypatch.setattr(ann, "retry_later", spy)
                async with ann.subscribe("room", presence=True) as room:
                    assert refusals  # refused at least once, then confirmed
                    await ann.publish("room", "back")
                    while not isinstance(event := await room.receive(), Message):
                        pass
                    assert event.data == "back"
        assert ann.connections == 1


async def test_a_publish_resent_to_another_server_is_published_once(
    redis_server: RedisServer,
) -> None:
    # The publish ids live in Redis: the resend reaching another process gets the
    # first publish's position back, and nothing is published twice.
    first, second = live_app(url=redis_server.url), live_app(url=redis_server.url)
    publish = {"type": "publish", "topic": "room", "id": "ann-1", "data": "once"}
    async with live_server(first) as server_a, live_server(second) as server_b:
        assert first.hub is not None
        async with first.hub.subscribe("room") as observed:
            acks = []
            for server in (server_a, server_b, server_a):
                async with open_websocket_url(server.url("/live?user=ann")) as ws:
                    frames = Frames(ws.get_message)
                    await frames.next()
                    await ws.send_message(json.dumps(publish))
                    acks.append(await frames.until(type="ack"))
            assert [ack.get("duplicate", False) for ack in acks] == [False, True, True]
            assert len({ack["position"] for ack in acks}) == 1
            with trio.fail_after(TIMEOUT):
                assert await observed.receive() == "once"
            with trio.move_on_after(0.3):
                pytest.fail(f"published twice: {await observed.receive()!r}")
        # Another identity's same id is its own publish.
        async with open_websocket_url(server_b.url("/live?user=bob")) as ws:
            frames = Frames(ws.get_message)
            await frames.next()
            await ws.send_message(json.dumps(publish))
            assert "duplicate" not in await frames.until(type="ack")
