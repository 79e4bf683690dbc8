"""The live route over real sockets: trio-websocket and triows.client, every backend."""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio

import triows
from triows.client import Gap, LiveError, Message, PresenceChange, connect
from triows.client._client import require_trio_websocket

from .conftest import Backend
from .live_apps import TIMEOUT, Frames, live_app
from .tcp_proxy import TCPProxy, tcp_proxy


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def _through(proxy: TCPProxy, url: str) -> str:
    """``url`` with the proxy's port instead of the server's."""
    return url.replace(f":{_port(url)}/", f":{proxy.port}/")


async def test_trio_websocket_client_publishes_and_resumes(backend: Backend) -> None:
    app = live_app()
    async with backend.serve(app) as served:
        async with served.connect("/live?user=ann") as ws:
            frames = Frames(ws.get_message)
            assert (await frames.next())["identity"] == {"key": "ann", "info": {"name": "Ann"}}
            await ws.send_message(json.dumps({"type": "subscribe", "topic": "room"}))
            start = (await frames.until(type="subscribed"))["position"]
            publish = {"type": "publish", "topic": "room", "id": "a-1", "data": {"n": 1}}
            await ws.send_message(json.dumps(publish))
            ack = await frames.until(type="ack")
            message = await frames.until(type="message")
            assert message["position"] == ack["position"] and message["data"] == {"n": 1}
        assert app.hub is not None
        await app.hub.publish("room", {"n": 2})
        async with served.connect("/live?user=ann") as ws:
            frames = Frames(ws.get_message)
            await ws.send_message(
                json.dumps({"type": "subscribe", "topic": "room", "since": start})
            )
            assert (await frames.until(type="subscribed"))["recovered"] is True
            data = [m["data"] for m in await frames.messages("room", 2)]
            assert data == [{"n": 1}, {"n": 2}]
            # The publish resent after the reconnection is not published again.
            await ws.send_message(json.dumps(publish))
            assert (await frames.until(type="ack"))["duplicate"] is True


async def test_a_slow_reader_lags_and_is_resumed_from_the_history(backend: Backend) -> None:
    # The client stops reading; the server's writes block, the subscription's
    # buffer (4 messages) overflows and lags; the route resumes it from the
    # history: every message arrives once, in order, with no gap.
    app = live_app(history=1000, max_buffer=4)
    hub = app.hub
    assert hub is not None
    count, payload = 300, "x" * 65536
    async with backend.serve(app) as served, served.connect("/live", message_queue_size=1) as ws:
        frames = Frames(ws.get_message)
        await frames.next()
        await ws.send_message(json.dumps({"type": "subscribe", "topic": "bulk"}))
        await frames.until(type="subscribed")
        with trio.fail_after(30):
            for n in range(count):
                await hub.publish("bulk", {"n": n, "pad": payload})
            received = [
                (await frames.until(type="message", topic="bulk"))["data"]["n"]
                for _ in range(count)
            ]
        assert received == list(range(count))
        assert not [f for f in frames.seen if f["type"] == "gap"]
    assert hub.stats.lagged > 0


async def test_without_history_a_slow_reader_is_told_of_its_gap(backend: Backend) -> None:
    # No history to resume from: the hub drops the oldest messages of a client
    # that cannot keep up, and the route says so with a gap frame before the next one.
    app = live_app(history=0, max_buffer=4)
    hub = app.hub
    assert hub is not None
    count, payload = 300, "x" * 65536
    async with backend.serve(app) as served, served.connect("/live", message_queue_size=1) as ws:
        frames = Frames(ws.get_message)
        await frames.next()
        await ws.send_message(json.dumps({"type": "subscribe", "topic": "bulk"}))
        await frames.until(type="subscribed")
        with trio.fail_after(30):
            for n in range(count):
                await hub.publish("bulk", {"n": n, "pad": payload})
            seen: list[tuple[str, int]] = []
            while not seen or seen[-1] != ("message", count - 1):
                frame = await frames.next()
                seen.append(
                    (frame["type"], frame["data"]["n"] if frame["type"] == "message" else -1)
                )
        numbers = [n for kind, n in seen if kind == "message"]
        assert numbers == sorted(numbers) and len(numbers) < count
        # Every skip is announced by a gap frame just before the message after it.
        for (kind, n), (_, previous) in zip(seen[1:], seen, strict=False):
            if kind == "message" and previous >= 0 and n != previous + 1:
                pytest.fail(f"messages {previous + 1}..{n - 1} skipped without a gap frame")
        assert ("gap", -1) in seen


async def test_trio_client_survives_drops_with_no_loss_and_no_duplicate(backend: Backend) -> None:
    app = live_app()
    hub = app.hub
    assert hub is not None
    states: list[str] = []
    async with backend.serve(app) as served, tcp_proxy(_port(served.url())) as proxy:
        url = _through(proxy, served.url("/live"))
        async with (
            connect(
                url,
                ssl_context=served.ssl_context,
                min_delay=0.01,
                max_delay=0.05,
                on_state=lambda state, detail: states.append(state),
            ) as live,
            live.subscribe("seq") as seq,
        ):
            count = 60
            received: list[Any] = []
            with trio.fail_after(20):
                for n in range(count):
                    await hub.publish("seq", n)
                    if n % 15 == 7:
                        # Back since the last drop (however slow the machine), then cut.
                        drops = n // 15
                        while live.connections <= drops:  # noqa: ASYNC110
                            await trio.sleep(0.005)
                        assert proxy.drop() == 1  # a network drop mid-stream
                    await trio.sleep(0.005)
                while len(received) < count:
                    event = await seq.receive()
                    assert isinstance(event, Message), event
                    received.append(event.data)
            assert received == list(range(count))
            assert live.connections >= 5
            assert seq.recovered is True
    assert states[:2] == ["connecting", "open"]
    assert states.count("reconnecting") >= 4
    assert states[-1] == "closed"


async def test_trio_client_last_then_resumes_without_replaying(backend: Backend) -> None:
    # A new subscriber's last=3 gives the 3 newest messages once: after a drop the
    # client resumes from its position (asking for them again would repeat 7, 8, 9).
    app = live_app(history=50)
    hub = app.hub
    assert hub is not None
    async with backend.serve(app) as served, tcp_proxy(_port(served.url())) as proxy:
        for n in range(10):
            await hub.publish("room", n)
        url = _through(proxy, served.url("/live"))
        async with (
            connect(url, ssl_context=served.ssl_context, min_delay=0.01, max_delay=0.05) as live,
            live.subscribe("room", last=3) as room,
        ):
            with trio.fail_after(10):
                replayed = [await room.receive() for _ in range(3)]
                assert all(isinstance(e, Message) for e in replayed), replayed
                assert [e.data for e in replayed if isinstance(e, Message)] == [7, 8, 9]
                first = room.position
                assert proxy.drop() == 1
                while live.connections < 2:  # noqa: ASYNC110
                    await trio.sleep(0.005)
                await hub.publish("room", 10)
                event = await room.receive()
            assert isinstance(event, Message) and event.data == 10, event
            assert room.recovered is True
            with pytest.raises(ValueError, match="not both"):
                async with live.subscribe("other", since=first, last=1):
                    pass


async def test_trio_client_publish_with_a_lost_ack_is_published_once(backend: Backend) -> None:
    app = live_app()
    hub = app.hub
    assert hub is not None
    async with (
        backend.serve(app) as served,
        tcp_proxy(_port(served.url())) as proxy,
        hub.subscribe("once") as observed,
    ):
        url = _through(proxy, served.url("/live?user=ann"))
        async with connect(url, ssl_context=served.ssl_context, min_delay=0.01) as live:
            with trio.fail_after(TIMEOUT):
                await live.wait_state("open")
                proxy.mute_replies = True  # the ack will be lost
                async with trio.open_nursery() as nursery:
                    positions: list[str | None] = []

                    async def publish() -> None:
                        positions.append(await live.publish("once", "only once"))

                    nursery.start_soon(publish)
                    assert await observed.receive() == "only once"  # published...
                    proxy.mute_replies = False
                    proxy.drop()  # ...but the client never heard: it resends
                assert positions == [observed.position]
                with trio.move_on_after(0.3):
                    duplicate = await observed.receive()
                    pytest.fail(f"published twice: {duplicate!r}")


async def test_trio_client_queues_publishes_while_offline(backend: Backend) -> None:
    app = live_app()
    hub = app.hub
    assert hub is not None
    async with (
        backend.serve(app) as served,
        tcp_proxy(_port(served.url())) as proxy,
        hub.subscribe("queued") as observed,
    ):
        await proxy.unreachable()
        url = _through(proxy, served.url("/live?user=ann"))
        async with connect(
            url, ssl_context=served.ssl_context, min_delay=0.01, max_delay=0.05
        ) as live:
            with trio.fail_after(TIMEOUT):
                async with trio.open_nursery() as nursery:
                    for text in ("one", "two", "three"):
                        nursery.start_soon(live.publish, "queued", text)
                        await trio.testing.wait_all_tasks_blocked()
                    await trio.sleep(0.1)
                    assert live.state in ("connecting", "reconnecting")
                    assert len(observed) == 0
                    await proxy.listen()
                assert [await observed.receive() for _ in range(3)] == ["one", "two", "three"]


async def test_trio_client_refusals_raise_live_error(backend: Backend) -> None:
    async with (
        backend.serve(live_app()) as served,
        connect(served.url("/live"), ssl_context=served.ssl_context) as live,
    ):
        with trio.fail_after(TIMEOUT):
            with pytest.raises(LiveError) as refused:
                async with live.subscribe("private-room"):
                    pass
            assert refused.value.code == "forbidden"
            with pytest.raises(LiveError) as refused:
                await live.publish("readonly", 1)
            assert refused.value.code == "forbidden"


async def test_trio_client_stops_when_the_server_refuses_it_for_good(backend: Backend) -> None:
    hub = triows.Hub()
    app = triows.App(hub=hub)

    async def identify(ws: triows.WebSocket) -> None:
        await ws.reject(403)

    app.live_route("/live", identify=identify)
    states: list[str] = []
    async with backend.serve(app) as served:
        with trio.fail_after(TIMEOUT), pytest.raises(LiveError) as refused:
            async with connect(
                served.url("/live"),
                ssl_context=served.ssl_context,
                on_state=lambda state, detail: states.append(state),
            ) as live:
                await live.wait_state("open")
    assert refused.value.code == "refused" and "403" in str(refused.value)
    assert states == ["connecting", "closed"]


async def test_trio_client_presence(backend: Backend) -> None:
    async with backend.serve(live_app()) as served:
        base = served.url("/live")
        async with (
            connect(base + "?user=ann", ssl_context=served.ssl_context) as ann,
            ann.subscribe("room", presence=True) as room,
        ):
            with trio.fail_after(TIMEOUT):
                first = await room.receive()
                assert isinstance(first, PresenceChange)
                assert first.members == {"ann": {"name": "Ann"}}
                async with (
                    connect(base + "?user=bob", ssl_context=served.ssl_context) as bob,
                    bob.subscribe("room", presence=True),
                ):
                    change = await room.receive()
                    assert isinstance(change, PresenceChange)
                    assert change.joined == {"bob": {"name": "Bob"}}
                    assert room.members == {"ann": {"name": "Ann"}, "bob": {"name": "Bob"}}
                change = await room.receive()
                assert isinstance(change, PresenceChange) and change.left == {
                    "bob": {"name": "Bob"}
                }


async def test_trio_client_reports_a_gap_when_the_history_is_gone(backend: Backend) -> None:
    # A resume the history no longer covers (another server's epoch) is a Gap event.
    first, second = live_app(), live_app()
    async with backend.serve(first):
        assert first.hub is not None
        old = await first.hub.publish("room", "old")
    async with (
        backend.serve(second) as served,
        connect(served.url("/live"), ssl_context=served.ssl_context) as live,
        live.subscribe("room", since=old) as room,
    ):
        with trio.fail_after(TIMEOUT):
            event = await room.receive()
        assert isinstance(event, Gap) and event.reason == "history"
        assert room.recovered is False


def test_client_needs_trio_websocket_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trio_websocket", None)
    with pytest.raises(ImportError, match=r"triows\[client\]"):
        require_trio_websocket()
