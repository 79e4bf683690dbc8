"""The WebSocket object, in memory (triows.testing.TestClient)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import triows
from triows import status
from triows._serving._inbox import READ_AHEAD
from triows.testing import HandshakeRejected, ServerClosed, TestClient

# -- the request -------------------------------------------------------------------


async def test_url_headers_and_query() -> None:
    app = triows.App()
    seen: dict[str, Any] = {}

    @app.websocket_route("/info/{room}")
    async def info(ws: triows.WebSocket, room: str) -> None:
        seen["url"] = str(ws.url)
        seen["scheme"] = ws.url.scheme
        seen["path"] = ws.url.path
        seen["query"] = ws.url.query
        seen["port"] = ws.url.port
        seen["user"] = ws.headers["User"]
        seen["user_lower"] = ws.headers.get("user")
        seen["user_upper"] = ws.headers["USER"]
        seen["has"] = "X-Missing" in ws.headers
        seen["q"] = dict(ws.query_parameters)

    headers = {"Host": "example.com:8000", "User": "alice"}
    async with TestClient(app).websocket_connect("/info/lobby?a=1&b=two", headers=headers) as ws:
        assert await ws.wait_closed() == 1000
    assert seen == {
        "url": "ws://example.com:8000/info/lobby?a=1&b=two",
        "scheme": "ws",
        "path": "/info/lobby",
        "query": "a=1&b=two",
        "port": 8000,
        "user": "alice",
        "user_lower": "alice",
        "user_upper": "alice",
        "has": False,
        "q": {"a": "1", "b": "two"},
    }


async def test_headers_and_query_parameters_are_immutable() -> None:
    app = triows.App()
    errors: list[str] = []

    @app.websocket_route("/x")
    async def view(ws: triows.WebSocket) -> None:
        for mapping in (ws.headers, ws.query_parameters):
            try:
                mapping["new"] = "value"  # type: ignore[index]
            except TypeError:
                errors.append("set")
            try:
                del mapping["a"]  # type: ignore[union-attr]
            except (TypeError, AttributeError):
                errors.append("del")
            assert not hasattr(mapping, "update")
            assert not hasattr(mapping, "pop")
            assert "new" not in mapping

    async with TestClient(app).websocket_connect("/x?a=1", headers={"a": "b"}) as ws:
        assert await ws.wait_closed() == 1000
    assert errors == ["set", "del", "set", "del"]


async def test_session_raises_clear_runtime_error() -> None:
    app = triows.App()
    messages: list[str] = []

    @app.websocket_route("/s")
    async def view(ws: triows.WebSocket) -> None:
        with pytest.raises(RuntimeError) as info:
            _ = ws.session
        messages.append(str(info.value))

    async with TestClient(app).websocket_connect("/s") as ws:
        await ws.wait_closed()
    assert len(messages) == 1
    assert "session" in messages[0].lower()


# -- messages -------------------------------------------------------------------------


async def test_default_types_are_text_and_echo() -> None:
    app = triows.App()

    @app.websocket_route("/echo")
    async def echo(ws: triows.WebSocket) -> None:
        message = await ws.receive()
        await ws.send(f"You said: {message}")

    async with TestClient(app).websocket_connect("/echo") as ws:
        await ws.send_text("hi")
        assert await ws.receive() == "You said: hi"
        assert await ws.wait_closed() == 1000


async def test_value_type_json_sets_both_and_json_goes_out_as_text() -> None:
    app = triows.App()

    @app.websocket_route("/j", value_type="json")
    async def view(ws: triows.WebSocket) -> None:
        message = await ws.receive()
        await ws.send({"got": message})

    async with TestClient(app).websocket_connect("/j") as ws:
        await ws.send_json({"a": [1, 2]})
        frame = await ws.receive()
        assert isinstance(frame, str)  # a text frame, not binary
        assert frame == '{"got":{"a":[1,2]}}'


async def test_receive_and_send_types_are_independent() -> None:
    app = triows.App()

    @app.websocket_route("/rb", receive_type="bytes", send_type="json")
    async def view(ws: triows.WebSocket) -> None:
        data = await ws.receive()
        assert isinstance(data, bytes)
        await ws.send({"length": len(data)})

    async with TestClient(app).websocket_connect("/rb") as ws:
        await ws.send_bytes(b"\x00\x01\x02")
        assert await ws.receive_json() == {"length": 3}


async def test_value_type_bytes() -> None:
    app = triows.App()

    @app.websocket_route("/b", value_type="bytes")
    async def view(ws: triows.WebSocket) -> None:
        await ws.send((await ws.receive())[::-1])

    async with TestClient(app).websocket_connect("/b") as ws:
        await ws.send_bytes(b"abc")
        assert await ws.receive_bytes() == b"cba"


async def test_typed_helpers_always_available() -> None:
    app = triows.App()

    @app.websocket_route("/all")  # text route: the helpers ignore the route's types
    async def view(ws: triows.WebSocket) -> None:
        text = await ws.receive_text()
        data = await ws.receive_bytes()
        obj = await ws.receive_json()
        await ws.send_text(text.upper())
        await ws.send_bytes(data * 2)
        await ws.send_json(obj)

    async with TestClient(app).websocket_connect("/all") as ws:
        await ws.send_text("hey")
        await ws.send_bytes(b"ab")
        await ws.send_text('{"k": null}')
        assert await ws.receive() == "HEY"
        assert await ws.receive() == b"abab"
        json_frame = await ws.receive()
        assert isinstance(json_frame, str)
        assert json_frame == '{"k":null}'


async def test_send_wrong_python_type_raises_type_error() -> None:
    app = triows.App()
    errors: list[type[BaseException]] = []

    @app.websocket_route("/t")
    async def view(ws: triows.WebSocket) -> None:
        calls: list[tuple[Any, Any]] = [(ws.send, 1), (ws.send_bytes, "s"), (ws.send_text, b"b")]
        for call, value in calls:
            try:
                await call(value)
            except TypeError as exc:
                errors.append(type(exc))

    async with TestClient(app).websocket_connect("/t") as ws:
        assert await ws.wait_closed() == 1000
    assert errors == [TypeError, TypeError, TypeError]


async def test_async_for_iterates_until_disconnect() -> None:
    app = triows.App()
    received: list[str] = []
    ended = trio.Event()

    @app.websocket_route("/it")
    async def view(ws: triows.WebSocket) -> None:
        try:
            async for message in ws:
                received.append(message)
                await ws.send(message * 2)
        finally:
            ended.set()

    async with TestClient(app).websocket_connect("/it") as ws:
        for word in ("a", "b", "c"):
            await ws.send_text(word)
            assert await ws.receive_text() == word * 2
    with trio.fail_after(1):
        await ended.wait()
    assert received == ["a", "b", "c"]


async def test_raw_events_are_tracked_by_state_machine() -> None:
    app = triows.App()
    seen: dict[str, Any] = {}

    @app.websocket_route("/raw", auto_accept=False)
    async def view(ws: triows.WebSocket) -> None:
        assert ws.state is triows.ConnectionState.CONNECTING
        await ws.send_event({"type": "websocket.accept"})
        seen["after_accept"] = ws.state
        event = await ws.receive_event()
        await ws.send_event({"type": "websocket.send", "text": f"You said: {event['text']}"})
        await ws.send_event({"type": "websocket.close", "code": 4002, "reason": "raw"})
        seen["after_close"] = ws.state
        seen["close_code"] = ws.close_code
        with pytest.raises(RuntimeError):
            await ws.close()
        with pytest.raises(RuntimeError):
            await ws.send_event({"type": "websocket.send", "text": "late"})
        await ws.ensure_closed()

    async with TestClient(app).websocket_connect("/raw") as ws:
        await ws.send_text("x")
        assert await ws.receive_text() == "You said: x"
        with pytest.raises(ServerClosed) as closed:
            await ws.receive()
        assert (closed.value.code, closed.value.reason) == (4002, "raw")
    assert seen == {
        "after_accept": triows.ConnectionState.CONNECTED,
        "after_close": triows.ConnectionState.CLOSED,
        "close_code": 4002,
    }


async def test_raw_send_before_accept_raises() -> None:
    app = triows.App()

    @app.websocket_route("/raw", auto_accept=False)
    async def view(ws: triows.WebSocket) -> None:
        with pytest.raises(RuntimeError, match="accept"):
            await ws.send_event({"type": "websocket.send", "text": "too early"})
        with pytest.raises(ValueError):
            await ws.send_event({"type": "http.response.start"})
        await ws.accept()

    async with TestClient(app).websocket_connect("/raw") as ws:
        assert await ws.wait_closed() == 1000


async def test_receive_event_reports_disconnect() -> None:
    app = triows.App()
    events: list[dict[str, Any]] = []
    done = trio.Event()

    @app.websocket_route("/raw")
    async def view(ws: triows.WebSocket) -> None:
        try:
            events.append(dict(await ws.receive_event()))
            events.append(dict(await ws.receive_event()))
            events.append(dict(await ws.receive_event()))
        finally:
            done.set()

    async with TestClient(app).websocket_connect("/raw") as ws:
        await ws.send_bytes(b"1")
        await ws.close(4005, "later")
    with trio.fail_after(1):
        await done.wait()
    assert events == [
        {"type": "websocket.receive", "bytes": b"1"},
        {"type": "websocket.disconnect", "code": 4005, "reason": "later"},
        {"type": "websocket.disconnect", "code": 4005, "reason": "later"},
    ]


# -- accept, close, reject, ensure_closed ----------------------------------------------


async def test_auto_accept_closes_with_1000_after_return() -> None:
    app = triows.App()

    @app.websocket_route("/hi")
    async def view(ws: triows.WebSocket) -> None:
        assert ws.state is triows.ConnectionState.CONNECTED
        await ws.send("hello")

    async with TestClient(app).websocket_connect("/hi") as ws:
        assert await ws.receive_text() == "hello"
        with pytest.raises(ServerClosed) as closed:
            await ws.receive()
        assert closed.value.code == 1000


async def test_manual_accept_and_close_with_code_and_reason() -> None:
    app = triows.App()

    @app.websocket_route("/m", auto_accept=False)
    async def view(ws: triows.WebSocket) -> None:
        assert ws.state is triows.ConnectionState.CONNECTING
        await ws.accept()
        await ws.send("ok")
        await ws.close(status.WS_1008_POLICY_VIOLATION, "nope")
        assert ws.state is triows.ConnectionState.CLOSED  # type: ignore[comparison-overlap]

    async with TestClient(app).websocket_connect("/m") as ws:
        assert await ws.receive_text() == "ok"
        with pytest.raises(ServerClosed) as closed:
            await ws.receive()
        assert (closed.value.code, closed.value.reason) == (1008, "nope")


async def test_application_close_code() -> None:
    app = triows.App()

    @app.websocket_route("/dangerous")
    async def view(ws: triows.WebSocket) -> None:
        await ws.receive()
        await ws.close(4003)

    async with TestClient(app).websocket_connect("/dangerous") as ws:
        await ws.send_text("go")
        assert await ws.wait_closed() == 4003


async def test_async_with_accepts_and_closes() -> None:
    app = triows.App()
    states: list[triows.ConnectionState] = []

    @app.websocket_route("/w", auto_accept=False)
    async def view(ws: triows.WebSocket) -> None:
        states.append(ws.state)
        async with ws:
            states.append(ws.state)
            await ws.send("inside")
        states.append(ws.state)

    async with TestClient(app).websocket_connect("/w") as ws:
        assert await ws.receive_text() == "inside"
        assert await ws.wait_closed() == 1000
    C = triows.ConnectionState
    assert states == [C.CONNECTING, C.CONNECTED, C.CLOSED]


async def test_close_inside_async_with_is_safe() -> None:
    app = triows.App()

    @app.websocket_route("/w", auto_accept=False)
    async def view(ws: triows.WebSocket) -> None:
        async with ws:
            await ws.close(4010)

    async with TestClient(app).websocket_connect("/w") as ws:
        assert await ws.wait_closed() == 4010


async def test_close_twice_raises_runtime_error() -> None:
    app = triows.App()
    errors: list[str] = []

    @app.websocket_route("/c")
    async def view(ws: triows.WebSocket) -> None:
        await ws.close(4000)
        try:
            await ws.close()
        except RuntimeError as exc:
            errors.append(str(exc))

    async with TestClient(app).websocket_connect("/c") as ws:
        assert await ws.wait_closed() == 4000
    assert len(errors) == 1
    assert "ensure_closed" in errors[0]


async def test_ensure_closed_is_idempotent_and_keeps_earlier_code() -> None:
    app = triows.App()

    @app.websocket_route("/e")
    async def view(ws: triows.WebSocket) -> None:
        await ws.ensure_closed(4004, "first")
        await ws.ensure_closed(1000)
        await ws.ensure_closed()
        assert ws.close_code == 4004

    async with TestClient(app).websocket_connect("/e") as ws:
        with pytest.raises(ServerClosed) as closed:
            await ws.receive()
        assert (closed.value.code, closed.value.reason) == (4004, "first")
        # Only one close frame went out.
        with pytest.raises(ServerClosed):
            await ws.receive()


async def test_ensure_closed_before_close_sends_one() -> None:
    app = triows.App()

    @app.websocket_route("/e", auto_accept=False)
    async def view(ws: triows.WebSocket) -> None:
        await ws.accept()
        await ws.ensure_closed(4100)
        await ws.ensure_closed(4200)

    async with TestClient(app).websocket_connect("/e") as ws:
        assert await ws.wait_closed() == 4100


async def test_reject_before_accept_gives_403() -> None:
    app = triows.App()
    after: list[str] = []

    @app.websocket_route("/hello", auto_accept=False)
    async def hello(ws: triows.WebSocket) -> None:
        if ws.headers.get("api-key") != "s3kr3t":
            await ws.reject()
        async with ws:
            after.append("inside")
            await ws.send("welcome")

    client = TestClient(app)
    with pytest.raises(HandshakeRejected) as info:
        async with client.websocket_connect("/hello"):
            pass
    assert info.value.status == 403
    assert after == []
    async with client.websocket_connect("/hello", headers={"api-key": "s3kr3t"}) as ws:
        assert await ws.receive_text() == "welcome"
    assert after == ["inside"]


async def test_close_before_accept_refuses_with_403() -> None:
    app = triows.App()

    @app.websocket_route("/c", auto_accept=False)
    async def view(ws: triows.WebSocket) -> None:
        await ws.close()

    with pytest.raises(HandshakeRejected) as info:
        async with TestClient(app).websocket_connect("/c"):
            pass
    assert info.value.status == 403


async def test_reject_after_accept_raises_runtime_error_naming_the_fix() -> None:
    app = triows.App()
    messages: list[str] = []

    @app.websocket_route("/r")  # auto_accept=True: already accepted
    async def view(ws: triows.WebSocket) -> None:
        try:
            await ws.reject()
        except RuntimeError as exc:
            messages.append(str(exc))

    async with TestClient(app).websocket_connect("/r") as ws:
        assert await ws.wait_closed() == 1000
    assert len(messages) == 1
    assert "auto_accept=False" in messages[0]


async def test_uncaught_reject_after_accept_is_a_server_error() -> None:
    app = triows.App()

    @app.websocket_route("/r")
    async def view(ws: triows.WebSocket) -> None:
        await ws.reject()

    with pytest.raises(RuntimeError, match="auto_accept=False"):
        async with TestClient(app).websocket_connect("/r") as ws:
            assert await ws.wait_closed() == 1011


async def test_accept_twice_raises() -> None:
    app = triows.App()

    @app.websocket_route("/a")
    async def view(ws: triows.WebSocket) -> None:
        with pytest.raises(RuntimeError, match="auto_accept=False"):
            await ws.accept()

    async with TestClient(app).websocket_connect("/a") as ws:
        assert await ws.wait_closed() == 1000


async def test_send_and_receive_before_accept_or_after_close_raise() -> None:
    app = triows.App()
    errors: list[str] = []

    @app.websocket_route("/s", auto_accept=False)
    async def view(ws: triows.WebSocket) -> None:
        for call in (ws.send("x"), ws.receive()):
            try:
                await call
            except RuntimeError as exc:
                errors.append("before:" + ("accept" in str(exc)).__str__())
        await ws.accept()
        await ws.close()
        for call in (ws.send("x"), ws.receive()):
            try:
                await call
            except RuntimeError as exc:
                errors.append("after:" + ("close" in str(exc)).__str__())

    async with TestClient(app).websocket_connect("/s") as ws:
        assert await ws.wait_closed() == 1000
    assert errors == ["before:True", "before:True", "after:True", "after:True"]


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2000, 5000])
async def test_close_with_unsendable_code_raises_value_error(code: int) -> None:
    app = triows.App()
    errors: list[type[BaseException]] = []

    @app.websocket_route("/c")
    async def view(ws: triows.WebSocket) -> None:
        try:
            await ws.close(code)
        except ValueError as exc:
            errors.append(type(exc))

    async with TestClient(app).websocket_connect("/c") as ws:
        assert await ws.wait_closed() == 1000
    assert errors == [ValueError]


# -- errors ---------------------------------------------------------------------------


class Boom(Exception):
    pass


async def test_exception_after_accept_closes_1011_and_reraises() -> None:
    app = triows.App()

    @app.websocket_route("/boom")
    async def view(ws: triows.WebSocket) -> None:
        await ws.send("before")
        raise Boom("kaput")

    with pytest.raises(Boom, match="kaput"):
        async with TestClient(app).websocket_connect("/boom") as ws:
            assert await ws.receive_text() == "before"
            assert await ws.wait_closed() == 1011


async def test_exception_before_accept_gives_http_500() -> None:
    app = triows.App()

    @app.websocket_route("/boom", auto_accept=False)
    async def view(ws: triows.WebSocket) -> None:
        raise Boom

    with pytest.raises(HandshakeRejected) as info:
        async with TestClient(app, raise_server_exceptions=False).websocket_connect("/boom"):
            pass
    assert info.value.status == 500

    # And the exception still reaches the server.
    with pytest.raises(HandshakeRejected) as again:
        async with TestClient(app).websocket_connect("/boom"):
            pass
    assert isinstance(again.value.__cause__, Boom)


async def test_server_keeps_serving_after_an_error() -> None:
    app = triows.App()

    @app.websocket_route("/boom/{fail}")
    async def view(ws: triows.WebSocket, fail: bool) -> None:
        if fail:
            raise Boom
        await ws.send("fine")

    async with TestClient(app) as client:
        with pytest.raises(Boom):
            async with client.websocket_connect("/boom/yes") as ws:
                assert await ws.wait_closed() == 1011
        async with client.websocket_connect("/boom/no") as ws:
            assert await ws.receive_text() == "fine"


@pytest.mark.parametrize(
    ("options", "manual", "sent", "code"),
    [
        ({}, False, b"\xff", 1003),  # binary frame on a text route
        ({"receive_type": "bytes"}, False, "nope", 1003),  # text frame on a bytes route
        ({"value_type": "json"}, False, "{not json", 1007),
        ({"auto_accept": False}, True, "]", 1007),  # receive_json() in a manual route
    ],
)
async def test_bad_messages_close_with_their_code(
    options: dict[str, Any], manual: bool, sent: str | bytes, code: int
) -> None:
    app = triows.App()

    @app.websocket_route("/r", **options)
    async def view(ws: triows.WebSocket) -> None:
        if manual:
            async with ws:
                await ws.receive_json()
        else:
            await ws.receive()
        raise AssertionError("unreachable")  # pragma: no cover

    async with TestClient(app).websocket_connect("/r") as ws:
        if isinstance(sent, bytes):
            await ws.send_bytes(sent)
        else:
            await ws.send_text(sent)
        assert await ws.wait_closed() == code


async def test_view_may_catch_bad_messages() -> None:
    app = triows.App()

    @app.websocket_route("/json", value_type="json")
    async def view(ws: triows.WebSocket) -> None:
        while True:
            try:
                message = await ws.receive()
            except triows.MessageTypeError:
                await ws.send({"error": "type"})
            except triows.MessageDecodeError:
                await ws.send({"error": "decode"})
            else:
                await ws.send({"ok": message})

    async with TestClient(app).websocket_connect("/json") as ws:
        await ws.send_text("nope")
        assert await ws.receive_json() == {"error": "decode"}
        await ws.send_json([1])
        assert await ws.receive_json() == {"ok": [1]}

    app2 = triows.App()

    @app2.websocket_route("/t")
    async def view2(ws: triows.WebSocket) -> None:
        try:
            await ws.receive()
        except triows.MessageTypeError as exc:
            assert isinstance(exc, triows.BadMessage)
            await ws.send("caught")

    async with TestClient(app2).websocket_connect("/t") as ws:
        await ws.send_bytes(b"x")
        assert await ws.receive_text() == "caught"
        assert await ws.wait_closed() == 1000


# -- client disconnect ----------------------------------------------------------------


async def test_disconnect_raises_with_code_and_reason() -> None:
    app = triows.App()
    seen: list[tuple[int, str]] = []

    @app.websocket_route("/d", auto_accept=False)
    async def view(ws: triows.WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive()
        except triows.WebSocketDisconnect as exc:
            seen.append((exc.code, exc.reason))

    async with TestClient(app).websocket_connect("/d") as ws:
        await ws.close(4001, "bye")
    assert seen == [(4001, "bye")]


async def test_messages_sent_before_close_are_delivered_first() -> None:
    app = triows.App()
    seen: list[Any] = []

    @app.websocket_route("/d")
    async def view(ws: triows.WebSocket) -> None:
        try:
            while True:
                seen.append(await ws.receive())
        except triows.WebSocketDisconnect as exc:
            seen.append(exc.code)

    async with TestClient(app).websocket_connect("/d") as ws:
        await ws.send_text("1")
        await ws.send_text("2")
        await ws.close(1001)
    assert seen == ["1", "2", 1001]


async def test_send_after_client_left_raises_websocket_disconnect() -> None:
    app = triows.App()
    outcome: list[Any] = []

    @app.websocket_route("/d", auto_accept=False)
    async def view(ws: triows.WebSocket) -> None:
        await ws.accept()
        with contextlib.suppress(triows.WebSocketDisconnect):
            await ws.receive()
        try:
            await ws.send("anyone?")
        except triows.WebSocketDisconnect as exc:
            outcome.append(exc.code)
        # Closing a connection the client already left is not an error.
        await ws.close()
        outcome.append(ws.state)

    async with TestClient(app).websocket_connect("/d") as ws:
        await ws.close(4002)
    assert outcome == [4002, triows.ConnectionState.DISCONNECTED]


async def test_transport_send_failure_raises_websocket_disconnect() -> None:
    # The server reports a send to a departed client with OSError (ASGI spec):
    # triows turns it into WebSocketDisconnect, never a silent drop.
    app = triows.App()
    outcome: list[Any] = []

    @app.websocket_route("/")
    async def view(ws: triows.WebSocket) -> None:
        try:
            await ws.send("x")
        except triows.WebSocketDisconnect as exc:
            outcome.append(exc.code)
        outcome.append(ws.state)

    async def send(message: Any) -> None:
        if message["type"] == "websocket.send":
            raise OSError("gone")

    events = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        if events:
            return events.pop()
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    scope = {"type": "websocket", "path": "/", "headers": [], "query_string": b""}
    with trio.fail_after(3):
        await app(scope, receive, send)
    assert outcome == [1006, triows.ConnectionState.DISCONNECTED]


# -- structured concurrency -----------------------------------------------------------


async def test_client_leaving_cancels_sleeping_view_and_runs_finally() -> None:
    app = triows.App()
    started, ended = trio.Event(), trio.Event()

    @app.websocket_route("/sleep")
    async def view(ws: triows.WebSocket) -> None:
        started.set()
        try:
            await trio.sleep(60)
        finally:
            ended.set()

    with trio.fail_after(1):
        async with TestClient(app).websocket_connect("/sleep") as ws:
            await started.wait()
            await ws.close()
        await ended.wait()


async def test_client_leaving_after_unread_messages_cancels_view() -> None:
    # The client sends a few messages (no more than the read-ahead inbox holds),
    # then leaves, while the view never receives: the view is still cancelled.
    # (Behind more unread messages than that, the departure is seen at the view's
    # next receive or send, or the keepalive deadline: see docs/design.md.)
    app = triows.App()
    started, ended = trio.Event(), trio.Event()

    @app.websocket_route("/sleep")
    async def view(ws: triows.WebSocket) -> None:
        started.set()
        try:
            await trio.sleep(60)
        finally:
            ended.set()

    with trio.fail_after(2):
        async with TestClient(app, timeout=1).websocket_connect("/sleep") as ws:
            await started.wait()
            for i in range(READ_AHEAD):
                await ws.send_text(str(i))
            await ws.close()
        await ended.wait()


async def test_view_waiting_on_a_channel_is_cancelled_with_its_tasks() -> None:
    app = triows.App()
    started = trio.Event()
    cleaned: list[str] = []
    never_send, never_receive = trio.open_memory_channel[str](0)

    async def helper() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cleaned.append("helper")

    @app.websocket_route("/ch")
    async def view(ws: triows.WebSocket) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(helper)
                started.set()
                await never_receive.receive()
        finally:
            cleaned.append("view")

    with trio.fail_after(1):
        async with TestClient(app).websocket_connect("/ch") as ws:
            await started.wait()
            await ws.close(1001)
    assert sorted(cleaned) == ["helper", "view"]
    del never_send


async def test_view_sending_in_a_loop_stops_when_client_leaves() -> None:
    app = triows.App()
    outcome: list[str] = []

    @app.websocket_route("/spam")
    async def view(ws: triows.WebSocket) -> None:
        try:
            while True:
                await ws.send("tick")
        except triows.WebSocketDisconnect:
            outcome.append("disconnect")
            raise
        except trio.Cancelled:
            outcome.append("cancelled")
            raise

    with trio.fail_after(1):
        async with TestClient(app).websocket_connect("/spam") as ws:
            assert await ws.receive_text() == "tick"
            await ws.close()
    assert len(outcome) == 1


async def test_disconnect_while_not_receiving_logs_uncaught_codes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = triows.App()
    started = trio.Event()

    @app.websocket_route("/sleep")
    async def view(ws: triows.WebSocket) -> None:
        started.set()
        await trio.sleep_forever()

    with trio.fail_after(1):
        async with TestClient(app).websocket_connect("/sleep") as ws:
            await started.wait()
            await ws.close(4005, "x")
    (record,) = [r for r in caplog.records if r.name == "triows"]
    assert record.levelname == "WARNING" and record.exc_info is None
    assert "close code 4005 (x)" in record.getMessage()


async def test_lifespan_shutdown_closes_open_connections_with_1001() -> None:
    app = triows.App()
    events: list[str] = []
    started = trio.Event()

    @app.provider(scope="app")
    async def resource() -> AsyncIterator[str]:
        events.append("setup")
        yield "r"
        events.append("teardown")

    @app.websocket_route("/long")
    async def view(ws: triows.WebSocket, resource: str) -> None:
        try:
            started.set()
            await trio.sleep_forever()
        finally:
            events.append("view finally")

    codes: list[int] = []
    with trio.fail_after(2):
        async with trio.open_nursery() as nursery, TestClient(app) as client:

            async def connect(task_status: trio.TaskStatus[None]) -> None:
                async with client.websocket_connect("/long") as ws:
                    task_status.started()
                    codes.append(await ws.wait_closed())

            await nursery.start(connect)
            await started.wait()
            # Leaving the TestClient runs the App's lifespan shutdown.
    assert codes == [1001]
    assert events == ["setup", "view finally", "teardown"]
