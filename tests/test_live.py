"""The live route (App.live_route) in memory, through the TestClient."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

import triows
from triows._live import PublishLog
from triows.testing import HandshakeRejected, TestClient, TestWebSocket

from .live_apps import Frames, live_app


@asynccontextmanager
async def opened(
    client: TestClient, user: str | None = None
) -> AsyncIterator[tuple[TestWebSocket, Frames]]:
    path = "/live" if user is None else f"/live?user={user}"
    async with client.websocket_connect(path) as ws:
        frames = Frames(ws.receive_text)
        welcome = await frames.next()
        assert welcome["type"] == "welcome" and welcome["protocol"] == 1
        yield ws, frames


async def subscribe(ws: TestWebSocket, frames: Frames, topic: str, **extra: Any) -> dict[str, Any]:
    await ws.send_json({"type": "subscribe", "topic": topic, **extra})
    return await frames.until(type="subscribed", topic=topic)


async def test_welcome_names_the_identity() -> None:
    async with TestClient(live_app()) as client:
        async with client.websocket_connect("/live?user=ann") as ws:
            assert await ws.receive_json() == {
                "type": "welcome",
                "protocol": 1,
                "identity": {"key": "ann", "info": {"name": "Ann"}},
            }
        async with client.websocket_connect("/live") as ws:
            assert (await ws.receive_json())["identity"] is None


async def test_publish_reaches_subscribers_with_its_position() -> None:
    async with (
        TestClient(live_app()) as client,
        opened(client) as (a, fa),
        opened(client) as (b, fb),
    ):
        sub_a = await subscribe(a, fa, "room")
        await subscribe(b, fb, "room")
        assert sub_a["recovered"] is None and isinstance(sub_a["position"], str)
        await a.send_json({"type": "publish", "topic": "room", "id": "p1", "data": {"text": "hi"}})
        ack = await fa.until(type="ack", id="p1")
        assert ack == {"type": "ack", "id": "p1", "topic": "room", "position": ack["position"]}
        for frames in (fa, fb):
            message = await frames.until(type="message")
            assert message == {
                "type": "message",
                "topic": "room",
                "position": ack["position"],
                "data": {"text": "hi"},
            }


async def test_server_side_publishes_and_bytes_travel_as_base64() -> None:
    app = live_app()
    async with TestClient(app) as client, opened(client) as (ws, frames):
        await subscribe(ws, frames, "news")
        assert app.hub is not None
        first = await app.hub.publish("news", "plain text")
        await app.hub.publish("news", b"\x00\xff")
        text, raw = await frames.messages("news", 2)
        assert text["data"] == "plain text" and text["position"] == first
        assert raw["data"] == "AP8=" and raw["encoding"] == "base64"


async def test_resume_replays_what_was_missed_in_order() -> None:
    app = live_app()
    assert app.hub is not None
    async with TestClient(app) as client:
        async with opened(client) as (ws, frames):
            start = (await subscribe(ws, frames, "room"))["position"]
        positions = [await app.hub.publish("room", n) for n in range(5)]
        async with opened(client) as (ws, frames):
            subscribed = await subscribe(ws, frames, "room", since=start)
            assert subscribed["recovered"] is True
            replayed = await frames.messages("room", 5)
            assert [m["data"] for m in replayed] == [0, 1, 2, 3, 4]
            assert [m["position"] for m in replayed] == positions
            # Live messages follow the replay, with neither duplicate nor gap.
            await app.hub.publish("room", 5)
            assert (await frames.until(type="message"))["data"] == 5
        async with opened(client) as (ws, frames):
            await subscribe(ws, frames, "room", since=positions[2])
            assert [m["data"] for m in await frames.messages("room", 2)] == [3, 4]


async def test_resume_beyond_the_history_says_recovered_false() -> None:
    app = live_app(history=3)
    assert app.hub is not None
    async with TestClient(app) as client:
        first = await app.hub.publish("room", 0)
        for n in range(1, 10):
            await app.hub.publish("room", n)
        async with opened(client) as (ws, frames):
            subscribed = await subscribe(ws, frames, "room", since=first)
            assert subscribed["recovered"] is False
            await app.hub.publish("room", "live")
            assert (await frames.until(type="message"))["data"] == "live"


async def test_bad_position_is_an_error_and_the_connection_stays() -> None:
    async with TestClient(live_app()) as client, opened(client) as (ws, frames):
        await ws.send_json({"type": "subscribe", "topic": "room", "since": "nonsense"})
        error = await frames.until(type="error")
        assert error["code"] == "invalid_position"
        assert error["action"] == "subscribe" and error["topic"] == "room"
        assert "nonsense" in error["message"]
        # Not subscribed: subscribing again works.
        assert (await subscribe(ws, frames, "room"))["recovered"] is None


@pytest.mark.parametrize(
    ("frame", "action", "topic"),
    [
        ({"type": "subscribe", "topic": "private-1"}, "subscribe", "private-1"),
        ({"type": "publish", "topic": "readonly", "id": "x1", "data": 1}, "publish", "readonly"),
        ({"type": "subscribe", "topic": "nopresence", "presence": True}, "presence", "nopresence"),
    ],
)
async def test_refusals_are_explicit(frame: dict[str, Any], action: str, topic: str) -> None:
    async with TestClient(live_app()) as client, opened(client, "ann") as (ws, frames):
        await ws.send_json(frame)
        error = await frames.until(type="error")
        assert error["code"] == "forbidden"
        assert error["action"] == action and error["topic"] == topic
        assert error.get("id") == frame.get("id")
        assert (await subscribe(ws, frames, "room"))["topic"] == "room"


async def test_without_authorize_clients_subscribe_but_do_not_publish() -> None:
    hub = triows.Hub(history=10)
    app = triows.App(hub=hub)
    app.live_route("/live")
    async with TestClient(app) as client, opened(client) as (ws, frames):
        await subscribe(ws, frames, "room")
        await ws.send_json({"type": "publish", "topic": "room", "id": "1", "data": 1})
        error = await frames.until(type="error")
        assert (error["code"], error["action"], error["id"]) == ("forbidden", "publish", "1")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("{not json", "malformed"),
        ("[1, 2]", "Expected `object`"),
        ('{"type": "dance"}', "Invalid value 'dance'"),
        ('{"type": "subscribe"}', "missing required field `topic`"),
        ('{"type": "subscribe", "topic": ""}', "length >= 1"),
        ('{"type": "subscribe", "topic": "' + "t" * 201 + '"}', "length <= 200"),
        ('{"type": "publish", "topic": "room", "data": 1}', "`id`"),
        ('{"type": "subscribe", "topic": "room", "since": 5}', "$.since"),
    ],
)
async def test_bad_frames_get_bad_message_and_the_connection_stays(raw: str, fragment: str) -> None:
    async with TestClient(live_app()) as client, opened(client) as (ws, frames):
        await ws.send_text(raw)
        error = await frames.until(type="error")
        assert error["code"] == "bad_message"
        assert fragment in error["message"]
        assert (await subscribe(ws, frames, "room"))["topic"] == "room"


async def test_a_binary_frame_closes_with_1003() -> None:
    async with TestClient(live_app()) as client, opened(client) as (ws, _):
        await ws.send_bytes(b"{}")
        assert await ws.wait_closed() == 1003


async def test_duplicate_publish_ids_publish_once() -> None:
    async with TestClient(live_app()) as client:
        async with opened(client, "ann") as (ws, frames):
            await subscribe(ws, frames, "room")
            publish = {"type": "publish", "topic": "room", "id": "ann-1", "data": "once"}
            await ws.send_json(publish)
            first = await frames.until(type="ack", id="ann-1")
            # The same id again on a new connection (a resend after a reconnect).
        async with opened(client, "ann") as (ws, frames):
            await subscribe(ws, frames, "room", since=first["position"])
            await ws.send_json(publish)
            again = await frames.until(type="ack", id="ann-1")
            assert again["duplicate"] is True and again["position"] == first["position"]
            # Another identity's same id is another publish.
        async with opened(client, "bob") as (ws, frames):
            await subscribe(ws, frames, "room", since=first["position"])
            await ws.send_json(publish)
            other = await frames.until(type="ack", id="ann-1")
            assert "duplicate" not in other and other["position"] != first["position"]
            message = await frames.until(type="message")
            assert message["position"] == other["position"]
            with trio.move_on_after(0.2):
                extra = await frames.until(type="message")
                pytest.fail(f"published twice: {extra}")


async def test_unsubscribe_stops_the_messages() -> None:
    app = live_app()
    assert app.hub is not None
    async with TestClient(app) as client, opened(client) as (ws, frames):
        await subscribe(ws, frames, "a")
        await subscribe(ws, frames, "b")
        await ws.send_json({"type": "unsubscribe", "topic": "a"})
        assert await frames.until(type="unsubscribed") == {"type": "unsubscribed", "topic": "a"}
        await app.hub.publish("a", "not for you")
        await app.hub.publish("b", "for you")
        assert (await frames.until(type="message"))["topic"] == "b"
        await ws.send_json({"type": "unsubscribe", "topic": "a"})
        assert (await frames.until(type="error"))["code"] == "not_subscribed"
        await ws.send_json({"type": "subscribe", "topic": "b"})
        assert (await frames.until(type="error"))["code"] == "already_subscribed"


async def test_a_connection_follows_at_most_max_topics() -> None:
    async with TestClient(live_app(max_topics=2)) as client, opened(client) as (ws, frames):
        await subscribe(ws, frames, "a")
        await subscribe(ws, frames, "b")
        await ws.send_json({"type": "subscribe", "topic": "c"})
        error = await frames.until(type="error")
        assert (error["code"], error["topic"]) == ("too_many_topics", "c")


async def test_presence_snapshot_then_batched_changes() -> None:
    async with TestClient(live_app()) as client, opened(client, "ann") as (ann, fa):
        await subscribe(ann, fa, "room", presence=True)
        snapshot = await fa.until(type="presence")
        assert snapshot == {
            "type": "presence",
            "topic": "room",
            "members": {"ann": {"name": "Ann"}},
        }
        async with opened(client, "bob") as (bob, fb):
            await subscribe(bob, fb, "room", presence=True)
            members = (await fb.until(type="presence"))["members"]
            assert members == {"ann": {"name": "Ann"}, "bob": {"name": "Bob"}}
            change = await fa.until(type="presence_change")
            assert change == {
                "type": "presence_change",
                "topic": "room",
                "joined": {"bob": {"name": "Bob"}},
                "left": {},
            }
        change = await fa.until(type="presence_change")
        assert (change["joined"], change["left"]) == ({}, {"bob": {"name": "Bob"}})


async def test_publish_log_forgets_after_its_window() -> None:
    log = PublishLog(window=10.0, max_entries=3)
    calls = 0

    async def publish() -> str:
        nonlocal calls
        calls += 1
        await trio.lowlevel.checkpoint()
        return f"p{calls}"

    assert await log.publish_once(("a", "1"), publish) == ("p1", False)
    assert await log.publish_once(("a", "1"), publish) == ("p1", True)
    for ident in "234":
        await log.publish_once(("a", ident), publish)
    assert len(log) == 3
    # The oldest id fell out of the bounded window: published again.
    assert await log.publish_once(("a", "1"), publish) == ("p5", False)


async def test_publish_log_waits_for_a_publish_in_flight_and_forgets_failures() -> None:
    log = PublishLog()
    release = trio.Event()
    results: list[tuple[str | None, bool]] = []

    async def slow() -> str:
        await release.wait()
        return "first"

    async def failing() -> str:
        await trio.lowlevel.checkpoint()
        raise triows.HubUnavailable("down")

    async with trio.open_nursery() as nursery:

        async def run(publish: Any) -> None:
            results.append(await log.publish_once(("", "x"), publish))

        nursery.start_soon(run, slow)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(run, slow)
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert results == [("first", False), ("first", True)]
    with pytest.raises(triows.HubUnavailable):
        await log.publish_once(("", "y"), failing)
    assert await log.publish_once(("", "y"), slow) == ("first", False)


async def test_the_js_client_is_served_next_to_the_route() -> None:
    async with TestClient(live_app()) as client:
        response = await client.get("/live/triows-live.js")
    assert response.status == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "class TriowsLive" in response.text


def test_live_route_needs_the_apps_hub() -> None:
    with pytest.raises(ValueError, match="App's own hub"):
        triows.App().live_route("/live")
    with pytest.raises(ValueError, match="App's own hub"):
        triows.App(hub=triows.Hub()).live_route("/live", triows.Hub())


async def test_identify_must_return_a_live_identity() -> None:
    hub = triows.Hub()
    app = triows.App(hub=hub)
    app.live_route("/live", identify=lambda ws: {"key": "ann"})  # type: ignore[arg-type,return-value]
    async with TestClient(app, raise_server_exceptions=False) as client:
        with pytest.raises(HandshakeRejected) as refused:
            async with client.websocket_connect("/live"):
                pass
    assert refused.value.status == 500


async def test_identify_may_refuse_the_handshake() -> None:
    hub = triows.Hub()
    app = triows.App(hub=hub)

    async def identify(ws: triows.WebSocket) -> triows.LiveIdentity | None:
        if ws.query_parameters.get("token") != "good":
            await ws.reject(403)
            return None
        return triows.LiveIdentity("ann")

    app.live_route("/live", identify=identify)
    async with TestClient(app) as client:
        with pytest.raises(HandshakeRejected) as refused:
            async with client.websocket_connect("/live?token=bad"):
                pass
        assert refused.value.status == 403
        async with client.websocket_connect("/live?token=good") as ws:
            assert (await ws.receive_json())["identity"] == {"key": "ann", "info": None}


def test_message_frames_are_built_once_per_position_and_bounded() -> None:
    hub = triows.Hub(history=10)
    route = triows.App(hub=hub).live_route("/live")
    first = route.frame("t", "e:1", {"n": 1})
    assert route.frame("t", "e:1", {"n": 1}) is first  # shared by every client
    assert route.frame("u", "e:1", {"n": 1}) is not first  # another topic
    # A position reused for another message gets its own frame.
    reused = route.frame("t", "e:1", {"n": "other"})
    assert reused is not first and '"other"' in str(reused.message)
    first = route.frame("t", "e:1", {"n": 1})
    for n in range(5000):
        route.frame("t", f"e:{n + 2}", n)
    assert route.frame("t", "e:1", {"n": 1}) is not first  # the oldest fell out
