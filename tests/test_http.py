"""Minimal HTTP: @app.route return types, 404, 405, app.mount."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import triows
from triows import WebSocket
from triows.testing import TestClient

from .conftest import Backend
from .raw_client import http_get, open_stream


def _app() -> triows.App:
    app = triows.App()

    @app.route("/html")
    async def html(request: triows.Request) -> str:
        return "<h1>hi</h1>"

    @app.route("/bytes")
    async def raw(request: triows.Request) -> bytes:
        return b"\x00\x01"

    @app.route("/dict")
    async def as_dict(request: triows.Request) -> dict[str, Any]:
        return {"a": 1}

    @app.route("/list")
    async def as_list(request: triows.Request) -> list[int]:
        return [1, 2]

    @app.route("/response")
    async def response(request: triows.Request) -> triows.Response:
        return triows.Response("teapot", 418, {"X-Custom": "yes"})

    @app.route("/echo/{n}", methods=["POST"])
    async def echo(request: triows.Request, n: int, flag: bool = False) -> dict[str, Any]:
        return {
            "method": request.method,
            "n": n,
            "flag": flag,
            "body": request.body.decode(),
            "json": request.json(),
            "header": request.headers["X-Thing"],
            "query": dict(request.query_parameters),
            "path": request.url.path,
        }

    return app


async def test_return_types() -> None:
    client = TestClient(_app())
    html = await client.get("/html")
    assert (html.status, html.text) == (200, "<h1>hi</h1>")
    assert html.headers["content-type"].startswith("text/html")
    raw = await client.get("/bytes")
    assert raw.body == b"\x00\x01"
    assert raw.headers["content-type"] == "application/octet-stream"
    for path, expected in (("/dict", {"a": 1}), ("/list", [1, 2])):
        response = await client.get(path)
        assert response.headers["content-type"] == "application/json"
        assert response.json() == expected
    custom = await client.get("/response")
    assert (custom.status, custom.text, custom.headers["x-custom"]) == (418, "teapot", "yes")


async def test_request_attributes() -> None:
    client = TestClient(_app())
    response = await client.request(
        "POST", "/echo/5?flag=on", body='{"k": [1]}', headers={"X-Thing": "t"}
    )
    assert response.json() == {
        "method": "POST",
        "n": 5,
        "flag": True,
        "body": '{"k": [1]}',
        "json": {"k": [1]},
        "header": "t",
        "query": {"flag": "on"},
        "path": "/echo/5",
    }


async def test_bad_parameter_is_400() -> None:
    response = await TestClient(_app()).request("POST", "/echo/x")
    assert response.status == 400
    assert response.json()["parameter"] == "n"


async def test_unknown_path_is_404() -> None:
    assert (await TestClient(_app()).get("/nope")).status == 404


async def test_wrong_method_is_405_with_allow() -> None:
    client = TestClient(_app())
    response = await client.get("/echo/1")
    assert response.status == 405
    assert "POST" in response.headers["allow"]
    assert (await client.request("POST", "/html")).status == 405


async def test_head_is_served_for_get_routes_without_body() -> None:
    response = await TestClient(_app()).request("HEAD", "/html")
    assert response.status == 200
    assert response.body == b""


async def test_view_error_gives_500_and_reraises() -> None:
    app = triows.App()

    @app.route("/boom")
    async def boom(request: triows.Request) -> str:
        raise ZeroDivisionError

    response = await TestClient(app, raise_server_exceptions=False).get("/boom")
    assert response.status == 500


async def _sub_app(scope: Any, receive: Any, send: Any) -> None:
    """A tiny foreign ASGI app that reports what it was given."""
    if scope["type"] == "http":
        body = f"{scope['root_path']}|{scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": f"sub:{scope['path']}"})
        await send({"type": "websocket.close", "code": 1000})


async def test_mount_hands_over_a_prefix() -> None:
    app = _app()
    app.mount("/sub", _sub_app)
    client = TestClient(app)
    assert (await client.get("/sub/x/y")).text == "/sub|/x/y"
    assert (await client.get("/sub")).text == "/sub|/"
    # A path that merely starts with the same letters is not under the prefix.
    assert (await client.get("/subway")).status == 404
    assert (await client.get("/html")).status == 200
    async with client.websocket_connect("/sub/ws") as ws:
        assert await ws.receive_text() == "sub:/ws"


async def test_http_over_real_socket_and_websocket_next_to_it(backend: Backend) -> None:
    app = _app()
    app.mount("/sub", _sub_app)

    @app.websocket_route("/ws")
    async def ws_view(ws: triows.WebSocket) -> None:
        await ws.send("ws")

    with trio.fail_after(5):
        async with backend.serve(app) as served:
            started = trio.current_time()
            data = await http_get(served, "/sub/page")
            # Connection: close ends the connection at once (not after the server's
            # 2 s linger for unread input; over TLS there is no half-close to end it).
            assert trio.current_time() - started < 1.5
            assert data.startswith(b"HTTP/1.1 200")
            assert b"/sub|/page" in data
            async with served.connect("/ws") as ws:
                assert await ws.get_message() == "ws"


# -- a mounted app's lifespan -------------------------------------------------------------


def _lifespan_app(events: list[str], *, fail: str | None = None) -> Any:
    """A foreign ASGI app with a lifespan that records it, and serves its state over HTTP."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                phase = message["type"].removeprefix("lifespan.")
                events.append(f"mounted {phase}")
                if fail == phase:
                    await send({"type": f"lifespan.{phase}.failed", "message": "no database"})
                    return
                if phase == "startup":
                    scope["state"]["pool"] = "ready"
                await send({"type": f"lifespan.{phase}.complete"})
                if phase == "shutdown":
                    return
        elif scope["type"] == "http":
            body = scope["state"].get("pool", "missing").encode()
            length = (b"content-length", str(len(body)).encode())
            await send({"type": "http.response.start", "status": 200, "headers": [length]})
            await send({"type": "http.response.body", "body": body})

    return app


def _hooked_app(events: list[str]) -> triows.App:
    app = triows.App()

    @app.on_startup
    async def started() -> None:
        events.append("app startup hook")

    @app.on_shutdown
    async def stopping() -> None:
        events.append("app shutdown hook")

    return app


async def test_a_mounted_apps_lifespan_runs_inside_the_apps() -> None:
    events: list[str] = []
    app = _hooked_app(events)
    app.mount("/db", _lifespan_app(events))
    async with TestClient(app) as client:
        assert events == ["mounted startup", "app startup hook"]
        # The state the mounted app stored at startup reaches its requests.
        assert (await client.get("/db/pool")).text == "ready"
    assert events[2:] == ["app shutdown hook", "mounted shutdown"]


async def test_a_mounted_triows_app_gets_its_providers_and_hooks() -> None:
    child = triows.App()
    events: list[str] = []

    @child.provider(scope="app")
    async def greeting() -> AsyncIterator[str]:
        events.append("child provider")
        yield "hello from the child"
        events.append("child provider closed")

    @child.websocket_route("/hi")
    async def hi(ws: WebSocket, greeting: str) -> None:
        await ws.send(greeting)

    app = triows.App()
    app.mount("/child", child)
    async with TestClient(app) as client, client.websocket_connect("/child/hi") as ws:
        assert await ws.receive_text() == "hello from the child"
    assert events == ["child provider", "child provider closed"]


async def test_a_mounted_apps_failed_startup_fails_the_apps() -> None:
    events: list[str] = []
    app = _hooked_app(events)
    app.mount("/db", _lifespan_app(events, fail="startup"))
    with pytest.raises(RuntimeError, match="'/db' failed to start: no database"):
        async with TestClient(app):
            pass
    assert events == ["mounted startup"]  # the App's own hooks never ran


async def test_a_mounted_apps_failed_shutdown_is_reported() -> None:
    events: list[str] = []
    app = _hooked_app(events)
    app.mount("/db", _lifespan_app(events, fail="shutdown"))
    with pytest.raises(RuntimeError, match="'/db' failed to shut down: no database"):
        async with TestClient(app):
            pass


async def test_a_mounted_app_without_a_lifespan_is_served_all_the_same() -> None:
    # _sub_app returns on the lifespan scope; this one raises, as the ASGI spec allows.
    async def http_only(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "only HTTP here"
        await _sub_app(scope, receive, send)

    events: list[str] = []
    app = _hooked_app(events)
    app.mount("/sub", _sub_app)
    app.mount("/strict", http_only)
    async with TestClient(app) as client:
        assert (await client.get("/sub/x")).text == "/sub|/x"
        assert (await client.get("/strict/y")).text == "/strict|/y"
    assert events == ["app startup hook", "app shutdown hook"]


async def test_a_mounted_starlette_app_runs_its_lifespan() -> None:
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.requests import Request as StarletteRequest
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        events.append("starlette startup")
        yield {"answer": "42"}
        events.append("starlette shutdown")

    async def answer(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse(request.state.answer)

    app = triows.App()
    app.mount("/s", Starlette(routes=[Route("/answer", answer)], lifespan=lifespan))
    async with TestClient(app) as client:
        assert (await client.get("/s/answer")).text == "42"
    assert events == ["starlette startup", "starlette shutdown"]


async def test_mounted_lifespans_under_every_server(backend: Backend) -> None:
    events: list[str] = []
    app = _hooked_app(events)
    app.mount("/db", _lifespan_app(events))
    with trio.fail_after(10):
        async with backend.serve(app) as served:
            assert (await http_get(served, "/db/pool")).endswith(b"\r\n\r\nready")
    assert events == [
        "mounted startup",
        "app startup hook",
        "app shutdown hook",
        "mounted shutdown",
    ]


async def test_a_failed_startup_stops_every_server(backend: Backend) -> None:
    events: list[str] = []
    app = triows.App()
    app.mount("/db", _lifespan_app(events, fail="startup"))
    with trio.fail_after(10), pytest.raises(BaseException) as raised:
        async with backend.serve(app):
            pass
    assert "failed to start: no database" in _messages(raised.value)
    assert events == ["mounted startup"]


def _messages(exc: BaseException) -> str:
    """Every message in an exception, its groups and causes."""
    parts = [str(exc)]
    if isinstance(exc, BaseExceptionGroup):
        parts += [_messages(inner) for inner in exc.exceptions]
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None:
            parts.append(_messages(linked))
    return " | ".join(parts)


async def test_a_mounted_app_that_never_answers_fails_the_startup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from triows import _lifespan

    monkeypatch.setattr(_lifespan, "ANSWER_TIMEOUT", 0.2)

    async def silent(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await trio.sleep_forever()  # takes the startup and never answers

    app = triows.App()
    app.mount("/silent", silent)
    with trio.fail_after(5), pytest.raises(RuntimeError, match=r"did not answer .* within 0\.2 s"):
        async with TestClient(app):
            pass


async def test_a_client_leaving_mid_body_runs_no_view_and_gets_no_answer() -> None:
    # An ASGI server reports the departure as http.disconnect before the body's
    # end: the view must not run on a truncated body, and nothing is sent.
    app = triows.App()
    ran: list[bytes] = []

    @app.route("/data", methods=["POST"])
    async def data(request: triows.Request) -> str:
        ran.append(request.body)
        return "ok"

    events: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"part", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return events.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/data", "headers": [], "query_string": b""}
    with trio.fail_after(2):
        await app(scope, receive, send)
    assert ran == [] and sent == []


def test_deeply_nested_json_in_a_body_is_a_value_error() -> None:
    request = triows.Request({"type": "http"}, b"[" * 5000 + b"]" * 5000)
    with pytest.raises(ValueError, match="nested too deeply"):
        request.json()


async def test_head_requests_get_heads_only_and_keep_the_connection(backend: Backend) -> None:
    # A HEAD answered by a 404 (or any response with a body) sends no body; the
    # native server used to fail on it ("Too much data for declared Content-Length").
    app = triows.App()

    @app.route("/")
    async def index(request: triows.Request) -> str:
        return "hello world"

    with trio.fail_after(10):
        async with backend.serve(app) as server:
            stream = await open_stream(server)
            async with stream:
                for path in ("/nope", "/", "/nope"):
                    request = f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                    await stream.send_all(request.encode())
                    head = b""
                    while b"\r\n\r\n" not in head:
                        chunk = await stream.receive_some(4096)
                        assert chunk, head
                        head += chunk
                    status = b"404" if path == "/nope" else b"200"
                    assert head.startswith(b"HTTP/1.1 " + status), head
                    assert head.endswith(b"\r\n\r\n"), head  # nothing after the head
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                response = b""
                while b"hello world" not in response:
                    chunk = await stream.receive_some(4096)
                    assert chunk, response
                    response += chunk
                assert response.startswith(b"HTTP/1.1 200")
