"""The examples: in memory (TestClient) and over real sockets (live_server + trio-websocket)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

import triows
from examples import echo
from examples.chat import app as chat
from triows.testing import TestClient, TestWebSocket, live_server

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


def left(user: str) -> dict[str, str]:
    return {"type": "left", "user": user}


async def receive(ws: TestWebSocket) -> dict[str, str]:
    """The next room message, without its id (unique per message, checked separately)."""
    received = await ws.receive_json()
    assert isinstance(received.pop("id"), str)
    return cast("dict[str, str]", received)


async def test_chat_page_is_served_without_innerhtml() -> None:
    async with TestClient(chat.app) as client:
        response = await client.get("/")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<ul id="messages">' in page
    assert "innerHTML" not in page
    assert "li.textContent = " in page
    # It connects back to the host that served it, not a hard-coded one.
    assert "${location.host}/chat`" in page
    assert "localhost" not in page


async def test_chat_broadcasts_to_every_client() -> None:
    async with (
        TestClient(chat.app) as client,
        client.websocket_connect("/chat") as alice,
        client.websocket_connect("/chat") as bob,
    ):
        await trio.testing.wait_all_tasks_blocked()  # both views are in the room
        await alice.send_json(message("alice", "hello"))
        assert await receive(alice) == message("alice", "hello")
        assert await receive(bob) == message("alice", "hello")
        await bob.send_json(message("bob", "hi alice"))
        assert await receive(bob) == message("bob", "hi alice")
        assert await receive(alice) == message("bob", "hi alice")


async def test_chat_late_joiner_gets_the_history_in_order_and_departures() -> None:
    async with TestClient(chat.app) as client:
        async with client.websocket_connect("/chat") as alice:
            for text in ("one", "two", "three"):
                await alice.send_json(message("alice", text))
                assert await receive(alice) == message("alice", text)
            async with client.websocket_connect("/chat") as carol:
                for text in ("one", "two", "three"):
                    assert await receive(carol) == message("alice", text)
                await trio.testing.wait_all_tasks_blocked()
                await carol.send_json(message("carol", "caught up"))
                assert await receive(carol) == message("carol", "caught up")
                assert await receive(alice) == message("carol", "caught up")
            # Carol spoke, then left: the room is told.
            assert await receive(alice) == left("carol")
        # The history outlives its authors: a newcomer after both left still gets it.
        async with client.websocket_connect("/chat") as dave:
            seen = [await receive(dave) for _ in range(6)]
            assert [m.get("text") for m in seen[:4]] == ["one", "two", "three", "caught up"]
            assert seen[4:] == [left("carol"), left("alice")]


async def test_chat_history_is_bounded_and_sent_once() -> None:
    async with TestClient(chat.app) as client:
        async with client.websocket_connect("/chat") as alice:
            for n in range(chat.HISTORY + 20):
                await alice.send_json(message("alice", str(n)))
                assert (await receive(alice))["text"] == str(n)
        async with client.websocket_connect("/chat") as bob:
            texts = [(await receive(bob)).get("text") for _ in range(chat.HISTORY)]
        # The oldest 20 fell out; alice's departure is the newest entry.
        assert texts == [str(n) for n in range(21, chat.HISTORY + 20)] + [None]


async def test_chat_history_is_per_app_lifetime() -> None:
    async with TestClient(chat.app) as client, client.websocket_connect("/chat") as ws:
        await ws.send_json(message("x", "first life"))
        assert await receive(ws) == message("x", "first life")
    # A new lifespan (a restarted server) starts with an empty room.
    async with TestClient(chat.app) as client, client.websocket_connect("/chat") as ws:
        await ws.send_json(message("y", "second life"))
        assert await receive(ws) == message("y", "second life")


@pytest.mark.parametrize("code", [1000, 1001, 1006])
async def test_chat_client_leaving_does_not_disturb_the_others(code: int) -> None:
    # 1006 (a dropped connection) is caught too: no exception reaches the server.
    async with (
        TestClient(chat.app) as client,
        client.websocket_connect("/chat") as alice,
    ):
        async with client.websocket_connect("/chat") as bob:
            await trio.testing.wait_all_tasks_blocked()
            await bob.close(code)
        await alice.send_json(message("alice", "anyone?"))
        # Bob never spoke, so no departure is announced for him.
        assert await receive(alice) == message("alice", "anyone?")


async def test_chat_relays_only_clean_chat_messages() -> None:
    async with (
        TestClient(chat.app) as client,
        client.websocket_connect("/chat") as ws,
    ):
        await ws.send_json(["not", "a", "message"])
        await ws.send_json({"type": "presence", "user": "x", "text": "typing"})
        await ws.send_json(message("x", ""))  # blank
        await ws.send_json({"type": "message", "user": "", "text": "who am I", "extra": 1})
        # Markup is relayed as text; the page shows it with textContent.
        await ws.send_json(message("<b>x</b>", "<img src=x onerror=alert(1)>"))
        assert await receive(ws) == message("Anonymous", "who am I")
        assert await receive(ws) == message("<b>x</b>", "<img src=x onerror=alert(1)>")


async def test_chat_invalid_json_closes_with_1007() -> None:
    async with (
        TestClient(chat.app) as client,
        client.websocket_connect("/chat") as ws,
    ):
        await ws.send_text("{not json")
        assert await ws.wait_closed() == 1007


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


async def join(ws: WebSocketConnection, user: str) -> None:
    """Post a hello and wait for it to come back: then ``ws`` is surely in the room."""
    await ws.send_message(f'{{"type": "message", "user": "{user}", "text": "hello"}}')
    with trio.fail_after(TIMEOUT):
        while True:
            if without_id(await ws.get_message()) == message(user, "hello"):
                return


def without_id(raw: str | bytes) -> dict[str, str]:
    received = json.loads(raw)
    received.pop("id")
    return cast("dict[str, str]", received)


async def test_chat_over_real_sockets(make_recorder: Any) -> None:
    recorder = make_recorder(chat.app)
    async with live_server(recorder) as server:
        status, headers, body = await http_get(server.port, "/")
        assert status == 200
        assert headers["content-type"].startswith("text/html")
        assert b"textContent" in body and b"innerHTML" not in body

        url = server.url("/chat")
        async with connect(url) as alice:
            await join(alice, "alice")
            async with connect(url) as bob:
                # The newcomer gets the history (alice's hello), then its own hello.
                assert without_id(await get_message(bob)) == message("alice", "hello")
                await join(bob, "bob")
                assert without_id(await get_message(alice)) == message("bob", "hello")

                await alice.send_message('{"type": "message", "user": "alice", "text": "hi"}')
                assert without_id(await get_message(alice)) == message("alice", "hi")
                assert without_id(await get_message(bob)) == message("alice", "hi")
            # Bob has left (close 1000): the room is told, and alice keeps chatting alone.
            assert without_id(await get_message(alice)) == {"type": "left", "user": "bob"}
            await alice.send_message('{"type": "message", "user": "alice", "text": "bye"}')
            assert without_id(await get_message(alice)) == message("alice", "bye")
            with trio.move_on_after(0.2):
                await alice.get_message()
                pytest.fail("alice received a message nobody sent")
    assert recorder.errors == []


async def test_chat_clients_get_1001_at_shutdown() -> None:
    closed: list[int] = []

    async def stay(url: str, task_status: trio.TaskStatus[None]) -> None:
        async with connect(url) as ws:
            await join(ws, "stayer")
            task_status.started()
            try:
                while True:
                    await get_message(ws)  # the others' hellos, then the close
            except ConnectionClosed as exc:
                assert exc.reason is not None
                closed.append(exc.reason.code)

    async with trio.open_nursery() as nursery, live_server(chat.app) as server:
        for _ in range(3):
            await nursery.start(stay, server.url("/chat"))
        # Leaving live_server shut the server down: each client got a close frame.
    assert closed == [1001, 1001, 1001]
