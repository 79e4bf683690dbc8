"""The live route on a Redis hub: two server processes' worth of Apps, one room."""

from __future__ import annotations

import trio

from triows.client import Message, PresenceChange, connect
from triows.testing import live_server

from .live_apps import TIMEOUT, live_app
from .redis_server import RedisServer, redis_server

__all__ = ["redis_server"]


async def test_a_client_resumes_on_another_server_through_redis(redis_server: RedisServer) -> None:
    first, second = live_app(url=redis_server.url), live_app(url=redis_server.url)
    async with live_server(first) as server_a, live_server(second) as server_b:
        with trio.fail_after(TIMEOUT * 2):
            async with (
                connect(server_a.url("/live?user=ann")) as ann,
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
                    connect(server_b.url("/live?user=bob")) as bob,
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
                connect(server_b.url("/live?user=ann")) as ann,
                ann.subscribe("room", since=position) as room,
            ):
                assert room.recovered is True
                event = await room.receive()
                assert isinstance(event, Message) and event.data == "two"
