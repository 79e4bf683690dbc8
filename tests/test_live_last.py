"""A new page's recent messages on the live route (``subscribe`` with ``last``).

In memory (TestClient), over real sockets on every backend (trio-websocket; in
memory and through a real redis-server), and with the shipped JS client under
Node: the topic's newest messages, then
live ones, no duplicate, no gap; a resume from the ``subscribed`` position
replays them again; bad requests get precise errors and the connection stays.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from triows.testing import TestClient

from .conftest import Backend
from .live_apps import Frames, live_app
from .redis_server import RedisServer, redis_server
from .tcp_proxy import tcp_proxy
from .test_live_node import Lines, live_url_for_node, node_and_client, publish_with_drops

__all__ = ["redis_server"]


async def test_last_in_memory_then_resume_from_the_subscribed_position() -> None:
    app = live_app()
    hub = app.hub
    assert hub is not None
    async with TestClient(app) as client:
        for n in range(10):
            await hub.publish("room", n)
        async with client.websocket_connect("/live") as ws:
            frames = Frames(ws.receive_text)
            await frames.until(type="welcome")
            await ws.send_json({"type": "subscribe", "topic": "room", "last": 3})
            subscribed = await frames.until(type="subscribed")
            assert subscribed["recovered"] is None
            await hub.publish("room", 10)
            got = [m["data"] for m in await frames.messages("room", 4)]
            assert got == [7, 8, 9, 10]
        async with client.websocket_connect("/live") as ws:
            frames = Frames(ws.receive_text)
            await frames.until(type="welcome")
            since = subscribed["position"]
            await ws.send_json({"type": "subscribe", "topic": "room", "since": since})
            assert (await frames.until(type="subscribed"))["recovered"] is True
            assert [m["data"] for m in await frames.messages("room", 4)] == [7, 8, 9, 10]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"last": 3, "since": "0123456789abcdef:1"}, "not both"),
        ({"last": -1}, "last"),
        ({"last": "3"}, "last"),
    ],
)
async def test_bad_last_is_a_bad_message_and_the_connection_stays(
    extra: dict[str, Any], fragment: str
) -> None:
    async with TestClient(live_app()) as client, client.websocket_connect("/live") as ws:
        frames = Frames(ws.receive_text)
        await frames.until(type="welcome")
        await ws.send_json({"type": "subscribe", "topic": "room", **extra})
        error = await frames.until(type="error")
        assert error["code"] == "bad_message" and fragment in error["message"]
        assert error["action"] == "subscribe" and error["topic"] == "room"
        await ws.send_json({"type": "subscribe", "topic": "room", "last": 0})
        assert (await frames.until(type="subscribed"))["recovered"] is None


async def test_last_over_real_sockets(backend: Backend) -> None:
    app = live_app(history=50)
    hub = app.hub
    assert hub is not None
    async with backend.serve(app) as served:
        for n in range(100):
            await hub.publish("room", n)
        async with served.connect("/live") as ws:
            frames = Frames(ws.get_message)
            await frames.until(type="welcome")
            await ws.send_message(json.dumps({"type": "subscribe", "topic": "room", "last": 80}))
            await frames.until(type="subscribed")
            await hub.publish("room", 100)
            got = [m["data"] for m in await frames.messages("room", 51)]
            assert got == list(range(50, 101))  # at most the history's 50, then live


async def test_js_client_under_node_gets_the_recent_messages_once(
    backend: Backend, tmp_path: Any
) -> None:
    node, client = node_and_client(tmp_path)
    app = live_app()
    hub = app.hub
    assert hub is not None
    count = 30
    async with backend.serve(app) as served, tcp_proxy(served.port) as proxy:
        for n in range(10):
            await hub.publish("recent", n)
        url, env = live_url_for_node(backend, proxy.port)
        script = __file__.rsplit("/", 1)[0] + "/live_node_last.js"
        process = await trio.lowlevel.open_process(
            [node, "--experimental-websocket", script, str(client), url, "recent", "5", str(count)],
            stdout=-1,
            env=env,
        )
        try:
            assert process.stdout is not None
            lines = Lines(process.stdout)
            with trio.fail_after(20):
                assert (await lines.until("subscribed"))["subscribed"] is None
                # The 5 newest first, before anything live.
                assert [(await lines.until("received"))["received"] for _ in range(5)] == [
                    5,
                    6,
                    7,
                    8,
                    9,
                ]
                # Resumed from its position after each drop (no second `last` replay).
                await publish_with_drops(hub, "recent", range(10, 10 + count - 5), proxy, lines)
                done = await lines.until("done")
                assert await process.wait() == 0
        finally:
            process.kill()
            await process.wait()
    assert done == {"done": list(range(5, 5 + count)), "gaps": []}


async def test_last_through_redis_on_another_server(
    redis_server: RedisServer, backend: Backend
) -> None:
    # Published through one server's hub; a new client of another server sharing
    # the Redis gets the recent messages from the Stream, then live ones.
    first, second = live_app(url=redis_server.url), live_app(url=redis_server.url)
    hub = first.hub
    assert hub is not None
    async with backend.serve(first), backend.serve(second) as served:
        with trio.fail_after(10):
            while not hub.connected:  # noqa: ASYNC110
                await trio.sleep(0.01)
        for n in range(20):
            await hub.publish("room", n)
        async with served.connect("/live") as ws:
            frames = Frames(ws.get_message)
            await frames.until(type="welcome")
            await ws.send_message(json.dumps({"type": "subscribe", "topic": "room", "last": 5}))
            subscribed = await frames.until(type="subscribed")
            await hub.publish("room", 20)
            assert [m["data"] for m in await frames.messages("room", 6)] == list(range(15, 21))
            await ws.send_message(json.dumps({"type": "unsubscribe", "topic": "room"}))
            await frames.until(type="unsubscribed")
            resume = {"type": "subscribe", "topic": "room", "since": subscribed["position"]}
            await ws.send_message(json.dumps(resume))
            assert (await frames.until(type="subscribed"))["recovered"] is True
            assert [m["data"] for m in await frames.messages("room", 6)] == list(range(15, 21))
