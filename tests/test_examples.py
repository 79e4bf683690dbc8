"""The examples: in memory (TestClient) and over real sockets (live_server + trio-websocket)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

import triows
from examples import echo
from examples.chat import app as chat
from triows.testing import TestClient, TestWebSocket, live_server

from .live_apps import Frames
from .raw_client import http_get as raw_http_get

TIMEOUT = 5.0


def message(user: str, text: str) -> dict[str, str]:
    return {"type": "message", "user": user, "text": text}


# -- echo, in memory -------------------------------------------------------------------


async def test_echo_answers_every_message() -> None:
    async with (
        TestClient(echo.app) as client,
        client.websocket_connect("/echo") as ws,
    ):
        for text in ("hi", "again", ""):
            await ws.send_text(text)
            assert await ws.receive_text() == f"You said: {text}"


async def test_echo_client_leaving_ends_the_view_quietly() -> None:
    # TestClient re-raises the view's exception: none for a 1000 or 1001 close.
    async with TestClient(echo.app) as client:
        for code in (1000, 1001):
            async with client.websocket_connect("/echo") as ws:
                await ws.send_text("bye")
                assert await ws.receive_text() == "You said: bye"
                await ws.close(code)


# -- chat, in memory -------------------------------------------------------------------


@asynccontextmanager
async def chatter(
    client: TestClient, user: str | None
) -> AsyncIterator[tuple[TestWebSocket, Frames]]:
    """A chat client on the live route, following the room (with presence)."""
    path = "/live" if user is None else f"/live?user={user}"
    async with client.websocket_connect(path) as ws:
        frames = Frames(ws.receive_text)
        assert (await frames.next())["type"] == "welcome"
        await ws.send_json({"type": "subscribe", "topic": chat.TOPIC, "presence": True})
        await frames.until(type="subscribed")
        yield ws, frames


def said(user: str, text: str, kind: str = "message") -> dict[str, Any]:
    return {"type": kind, "text": text, "user": user}


async def next_line(frames: Frames) -> dict[str, Any]:
    """The next chat message's data, without its time stamp (checked here)."""
    data: dict[str, Any] = (await frames.until(type="message"))["data"]
    assert isinstance(data.pop("at"), int)
    return data


async def test_chat_page_uses_the_live_client_and_text_only() -> None:
    async with TestClient(chat.app) as client:
        response = await client.get("/")
        script = await client.get("/live/triows-live.js")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for element in ("messages", "members", "status", "user", "text", "submit"):
        assert f'id="{element}"' in page
    assert '<script src="/live/triows-live.js"></script>' in page
    assert "last: RECENT" in page  # a new page asks for the recent messages
    assert "innerHTML" not in page and "textContent" in page
    assert "localhost" not in page
    assert script.status == 200 and "class TriowsLive" in script.text


async def test_chat_users_talk_with_server_stamped_names() -> None:
    async with (
        TestClient(chat.app) as client,
        chatter(client, "alice") as (alice, fa),
        chatter(client, "bob") as (bob, fb),
    ):
        # The sender's name comes from its identity, not from what it sends.
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        await alice.send_json(
            {"type": "publish", "topic": "chat", "id": first, "data": {**said("mallory", "hi")}}
        )
        assert (await fa.until(type="ack"))["id"] == first
        for frames in (fa, fb):
            assert await next_line(frames) == said("alice", "hi")
        await bob.send_json(
            {
                "type": "publish",
                "topic": "chat",
                "id": second,
                "data": {"type": "emote", "text": "waves"},
            }
        )
        for frames in (fa, fb):
            assert await next_line(frames) == said("bob", "waves", "emote")


async def test_chat_presence_lists_named_users_only() -> None:
    async with (
        TestClient(chat.app) as client,
        chatter(client, "alice") as (_, fa),
        chatter(client, None) as (_, watcher),
    ):
        assert (await watcher.until(type="presence"))["members"] == {"alice": {"name": "alice"}}
        async with chatter(client, "Bob") as (_, fb):
            members = (await fb.until(type="presence"))["members"]
            assert members == {"alice": {"name": "alice"}, "bob": {"name": "Bob"}}
            change = await fa.until(type="presence_change")
            assert change["joined"] == {"bob": {"name": "Bob"}}
        assert (await fa.until(type="presence_change"))["left"] == {"bob": {"name": "Bob"}}


@pytest.mark.parametrize(
    ("user", "topic", "data", "code"),
    [
        (None, "chat", {"type": "message", "text": "who am I"}, "forbidden"),
        ("alice", "elsewhere", {"type": "message", "text": "hi"}, "forbidden"),
        ("alice", "chat", {"type": "message", "text": ""}, "invalid_data"),
        ("alice", "chat", {"type": "dance", "text": "hi"}, "invalid_data"),
        ("alice", "chat", {"type": "message", "text": "x" * 1001}, "invalid_data"),
        ("alice", "chat", "not an object", "invalid_data"),
    ],
)
async def test_chat_refuses_what_is_not_a_chat_message(
    user: str | None, topic: str, data: Any, code: str
) -> None:
    async with TestClient(chat.app) as client, chatter(client, user) as (ws, frames):
        ident = str(uuid.uuid4())
        await ws.send_json({"type": "publish", "topic": topic, "id": ident, "data": data})
        error = await frames.until(type="error")
        assert (error["code"], error["id"]) == (code, ident)
        with trio.move_on_after(0.1):
            pytest.fail(f"published anyway: {await frames.until(type='message')}")


async def test_chat_resume_shows_each_message_once() -> None:
    async with TestClient(chat.app) as client:
        async with chatter(client, "alice") as (alice, frames):
            for n in range(3):
                data = {"type": "message", "text": f"line {n}"}
                await alice.send_json(
                    {"type": "publish", "topic": "chat", "id": str(uuid.uuid4()), "data": data}
                )
            first = await frames.until(type="message")
            for _ in range(3):  # all three published before leaving
                await frames.until(type="ack")
        async with client.websocket_connect("/live?user=alice") as again:
            replay = Frames(again.receive_text)
            await replay.next()
            since = {"type": "subscribe", "topic": "chat", "since": first["position"]}
            await again.send_json(since)
            assert (await replay.until(type="subscribed"))["recovered"] is True
            texts = [(await replay.until(type="message"))["data"]["text"] for _ in range(2)]
            assert texts == ["line 1", "line 2"]


async def test_chat_hub_is_in_memory_by_default() -> None:
    assert chat.hub.url is None
    assert chat.hub.history == chat.HISTORY


async def test_chat_style_providers_can_be_injected_under_generic_annotations() -> None:
    # The natural, mypy --strict way to write the chat room: providers' values
    # annotated as set[...] / list[...].  A provider is never converted from the
    # query string, so its annotation needs no string converter.
    app = triows.App()

    @app.provider(scope="app")
    async def clients() -> set[triows.WebSocket]:
        return set()

    @app.provider(scope="app")
    async def history() -> list[dict[str, str]]:
        return [message("a", "old")]

    @app.websocket_route("/chat", value_type="json")
    async def room(
        ws: triows.WebSocket, clients: set[triows.WebSocket], history: list[dict[str, str]]
    ) -> None:
        clients.add(ws)
        await ws.send({"clients": len(clients), "history": history})

    async with TestClient(app) as client, client.websocket_connect("/chat") as ws:
        assert await ws.receive_json() == {"clients": 1, "history": [message("a", "old")]}


# -- real sockets ------------------------------------------------------------------------


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[WebSocketConnection]:
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(url, connect_timeout=TIMEOUT) as ws:
            yield ws


async def get_message(ws: WebSocketConnection) -> str | bytes:
    with trio.fail_after(TIMEOUT):
        return await ws.get_message()


async def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """A minimal HTTP/1.1 GET over a real socket: status, headers, body."""
    with trio.fail_after(TIMEOUT):
        data = await raw_http_get(port, path)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


async def test_echo_over_real_sockets() -> None:
    async with live_server(echo.app) as server, connect(server.url("/echo")) as ws:
        for text in ("hi", "again"):
            await ws.send_message(text)
            assert await get_message(ws) == f"You said: {text}"


async def test_echo_server_shutdown_closes_clients_with_1001() -> None:
    async with trio.open_nursery() as nursery:
        server_scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[int]) -> None:
            with server_scope:
                await triows.serve(echo.app, host="127.0.0.1", port=0, task_status=task_status)

        port: int = await nursery.start(run)
        async with connect(f"ws://127.0.0.1:{port}/echo") as ws:
            await ws.send_message("before")
            assert await get_message(ws) == "You said: before"
            server_scope.cancel()
            with pytest.raises(ConnectionClosed) as closed:
                await get_message(ws)
        assert closed.value.reason is not None
        assert closed.value.reason.code == 1001


@asynccontextmanager
async def real_chatter(url: str) -> AsyncIterator[tuple[WebSocketConnection, Frames]]:
    async with connect(url) as ws:
        frames = Frames(ws.get_message)
        assert (await frames.next())["type"] == "welcome"
        await ws.send_message(json.dumps({"type": "subscribe", "topic": "chat", "presence": True}))
        await frames.until(type="subscribed")
        yield ws, frames


async def publish(ws: WebSocketConnection, ident: str, text: str) -> None:
    data = {"type": "message", "text": text}
    await ws.send_message(
        json.dumps({"type": "publish", "topic": "chat", "id": ident, "data": data})
    )


async def test_chat_over_real_sockets(make_recorder: Any) -> None:
    recorder = make_recorder(chat.app)
    async with live_server(recorder) as server:
        status, headers, body = await http_get(server.port, "/")
        assert status == 200
        assert headers["content-type"].startswith("text/html")
        assert b"textContent" in body and b"innerHTML" not in body
        status, headers, body = await http_get(server.port, "/live/triows-live.js")
        assert status == 200 and b"TriowsLive" in body

        async with real_chatter(server.url("/live?user=alice")) as (alice, fa):
            async with real_chatter(server.url("/live?user=bob")) as (bob, fb):
                await publish(alice, str(uuid.uuid4()), "hi bob")
                for frames in (fa, fb):
                    data = await next_line(frames)
                    assert data == {"type": "message", "text": "hi bob", "user": "alice"}
                await publish(bob, str(uuid.uuid4()), "hi alice")
                assert (await next_line(fa))["user"] == "bob"
            # Bob left: the member list says so (after saying he came, maybe).
            change = await fa.until(type="presence_change")
            if not change["left"]:
                change = await fa.until(type="presence_change")
            assert change["left"] == {"bob": {"name": "bob"}}
    assert recorder.errors == []


async def test_chat_clients_get_1001_at_shutdown() -> None:
    closed: list[int] = []

    async def stay(url: str, task_status: trio.TaskStatus[None]) -> None:
        async with real_chatter(url) as (ws, _):
            task_status.started()
            try:
                while True:
                    await ws.get_message()  # presence changes, then the close
            except ConnectionClosed as exc:
                assert exc.reason is not None
                closed.append(exc.reason.code)

    async with trio.open_nursery() as nursery, live_server(chat.app) as server:
        for user in ("a", "b", "c"):
            await nursery.start(stay, server.url(f"/live?user={user}"))
        # Leaving live_server shut the server down: each client got a close frame.
    assert closed == [1001, 1001, 1001]
