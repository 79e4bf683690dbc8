"""Hardening of the core: cookies, mounted apps' Origin, nested JSON, exact routes.

Each attack runs in memory (the TestClient) and, where it is about the wire, over
real sockets on every backend of the ``backend`` fixture (native, native-tls, hypercorn).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

import itsdangerous
import pytest
import trio
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute as StarletteWebSocketRoute
from starlette.websockets import WebSocket as StarletteWebSocket
from trio_websocket import ConnectionClosed, ConnectionRejected

import triows
from triows.testing import HandshakeRejected, TestClient

from .conftest import Backend, Served
from .raw_client import handshake, http_get, open_stream

SECRET = "correct horse battery staple"

#: A quoted cookie value of backslashes: what makes http.cookies' unquoting quadratic.
BACKSLASHES = '"' + "\\" * 60_000 + '"'


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def _raw_handshake(served: Served, path: str, **headers: bytes) -> bytes:
    """Send a hand-made handshake for ``path``; the response head (status line first)."""
    stream = await open_stream(served)
    async with stream:
        await stream.send_all(handshake(path, **headers))
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            response += chunk
    return response


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


# -- 3. cookie parsing in linear time ---------------------------------------------------


def _session_app() -> triows.App:
    app = triows.App(session_secret=SECRET)

    @app.websocket_route("/whoami", send_type="json")
    async def whoami(ws: triows.WebSocket) -> None:
        await ws.send(dict(ws.session))

    return app


def _session_cookie(session: str = "eyJ1c2VyIjogImFsaWNlIn0=") -> str:
    """A valid signed cookie value holding ``{"user": "alice"}`` (base64 JSON)."""
    return itsdangerous.TimestampSigner(SECRET).sign(session).decode()


async def _whoami(client: TestClient, cookie: str) -> Any:
    async with client.websocket_connect("/whoami", headers={"cookie": cookie}) as ws:
        return await ws.receive_json()


@pytest.mark.parametrize(
    ("cookie", "session"),
    [
        (f"session={BACKSLASHES}", {}),
        (f"other={BACKSLASHES}; session={_session_cookie()}", {"user": "alice"}),
        ("\\" * 60_000, {}),
    ],
    ids=["quoted-session", "quoted-other-cookie", "unnamed"],
)
async def test_a_60kb_backslash_cookie_is_parsed_in_linear_time(
    cookie: str, session: dict[str, str]
) -> None:
    client = TestClient(_session_app())
    # CPU seconds (app and client run in this process): what a quadratic parse
    # burns, whatever share of the CPU a loaded machine gives this test.
    start = time.process_time()
    got = await _whoami(client, cookie)
    elapsed = time.process_time() - start
    assert got == session
    assert elapsed < 0.5, f"parsing the cookie took {elapsed:.2f} CPU s"
    # A normal session still loads, quoted or not, last cookie of the name winning.
    assert await _whoami(client, f"session={_session_cookie()}") == {"user": "alice"}
    assert await _whoami(client, f'a=1; session="{_session_cookie()}"') == {"user": "alice"}
    assert await _whoami(client, f"session=x; session={_session_cookie()}") == {"user": "alice"}


async def test_an_oversized_session_cookie_is_ignored_with_a_debug_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="triows")
    blob = base64.b64encode(json.dumps({"blob": "x" * 7000}).encode()).decode()
    big = _session_cookie(blob)
    assert len(big) > 8 * 1024
    assert await _whoami(TestClient(_session_app()), f"session={big}") == {}
    assert [r.levelno for r in caplog.records if "session cookie" in r.getMessage()] == [
        logging.DEBUG
    ]


async def test_backslash_cookies_do_not_freeze_the_server(backend: Backend) -> None:
    # The native backend takes header lines of up to 8 KiB: twenty such handshakes
    # at once froze the event loop for seconds before.
    cookie = b'session="' + b"\\" * 8_000 + b'"'
    responses: list[bytes] = []
    async with backend.serve(_session_app()) as served:

        async def one() -> None:
            responses.append(await _raw_handshake(served, "/whoami", Cookie=cookie))

        # CPU seconds, as above (the server runs in this process too).
        start = time.process_time()
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(one)
    elapsed = time.process_time() - start
    assert [_status(r) for r in responses] == [101] * 20
    assert elapsed < 1.0, f"twenty handshakes took {elapsed:.2f} CPU s"


# -- 8. the Origin check covers mounted apps ---------------------------------------------


def _mounted_app(seen: list[str]) -> triows.App:
    async def endpoint(websocket: StarletteWebSocket) -> None:
        seen.append(websocket.scope["path"])
        await websocket.accept()
        await websocket.send_text("legacy")
        await websocket.close()

    app = triows.App()
    app.mount("/legacy", Starlette(routes=[StarletteWebSocketRoute("/ws", endpoint)]))
    return app


async def test_a_cross_origin_handshake_to_a_mounted_app_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []
    client = TestClient(_mounted_app(seen))
    with pytest.raises(HandshakeRejected) as refused:
        async with client.websocket_connect(
            "/legacy/ws", headers={"origin": "http://evil.example"}
        ):
            pass
    assert refused.value.status == 403
    assert seen == []
    warnings = [r for r in caplog.records if "cross-origin" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert (
        warnings[0]
        .getMessage()
        .startswith("refused a cross-origin WebSocket handshake to /legacy/ws from ")
    )
    async with client.websocket_connect(
        "/legacy/ws", headers={"origin": "http://testserver"}
    ) as ws:
        assert await ws.receive_text() == "legacy"
    assert seen == ["/ws"]  # the mounted app saw the handshake this time


async def test_a_cross_origin_handshake_to_a_mounted_app_over_real_sockets(
    backend: Backend,
) -> None:
    seen: list[str] = []
    with trio.fail_after(10):
        async with backend.serve(_mounted_app(seen)) as served:
            with pytest.raises(ConnectionRejected) as refused:
                async with served.connect(
                    "/legacy/ws", extra_headers=[(b"Origin", b"http://evil.example")]
                ):
                    pass
            assert refused.value.status_code == 403
            assert seen == []
            scheme = "http" if served.ssl_context is None else "https"
            same = f"{scheme}://127.0.0.1:{served.port}".encode()
            async with served.connect("/legacy/ws", extra_headers=[(b"Origin", same)]) as ws:
                assert await ws.get_message() == "legacy"


# -- 10. deeply nested JSON ---------------------------------------------------------------

DEEP_JSON = "[" * 5000 + "]" * 5000


def _json_app() -> triows.App:
    app = triows.App()

    @app.websocket_route("/typed", receive_type="json")
    async def typed(ws: triows.WebSocket) -> None:
        await ws.receive()

    @app.websocket_route("/untyped")
    async def untyped(ws: triows.WebSocket) -> None:
        await ws.receive_json()

    @app.websocket_route("/send", send_type="json")
    async def send(ws: triows.WebSocket) -> None:
        value: list[Any] = []
        for _ in range(5000):
            value = [value]
        for sender in (ws.send_json, ws.send):
            try:
                await sender(value)
            except ValueError as exc:
                await ws.send_text(f"ValueError: {exc}")

    return app


@pytest.mark.parametrize("path", ["/typed", "/untyped"])
async def test_deeply_nested_json_closes_with_1007(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with TestClient(_json_app()).websocket_connect(path) as ws:
        await ws.send_text(DEEP_JSON)
        assert await ws.wait_closed() == 1007
    assert _errors(caplog) == []


async def test_sending_a_deeply_nested_value_raises_value_error() -> None:
    async with TestClient(_json_app()).websocket_connect("/send") as ws:
        for _ in range(2):
            message = await ws.receive_text()
            assert message.startswith("ValueError: ")
            assert "nested too deeply" in message


@pytest.mark.parametrize("path", ["/typed", "/untyped"])
async def test_deeply_nested_json_over_real_sockets(
    backend: Backend, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(10):
        async with (
            backend.serve(_json_app()) as served,
            served.connect(path) as ws,
        ):
            await ws.send_message(DEEP_JSON)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
    reason = closed.value.reason
    assert reason is not None
    assert reason.code == 1007
    assert _errors(caplog) == []


# -- 15. exact route matching ------------------------------------------------------------


def _routes_app() -> triows.App:
    app = triows.App()

    @app.websocket_route("/text")
    async def text(ws: triows.WebSocket) -> None:
        await ws.send("text")

    @app.websocket_route("/p/{n}")
    async def number(ws: triows.WebSocket, n: int) -> None:
        await ws.send(repr(n))

    @app.websocket_route("/name/{name}")
    async def name(ws: triows.WebSocket, name: str) -> None:
        await ws.send(name)

    @app.route("/h/{n}")
    async def page(request: triows.Request, n: int) -> str:
        return repr(n)

    @app.route("/h")
    async def home(request: triows.Request) -> str:
        return "home"

    async def sub(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"mounted"})

    app.mount("/sub", sub)
    return app


#: Paths that end in (or hold) a control character: no route may match them.
WEBSOCKET_PATHS = ["/text\n", "/p/7\n", "/p/7\r\n", "/p/\n7", "/name/a\tb", "/text\x00"]
HTTP_PATHS = ["/h\n", "/h/7\n", "/sub\n", "/sub\n/x"]


@pytest.mark.parametrize("path", WEBSOCKET_PATHS)
async def test_a_newline_in_the_path_matches_no_websocket_route(path: str) -> None:
    with pytest.raises(HandshakeRejected) as refused:
        async with TestClient(_routes_app()).websocket_connect(path):
            pass
    assert refused.value.status == 403


@pytest.mark.parametrize("path", HTTP_PATHS)
async def test_a_newline_in_the_path_matches_no_http_route(path: str) -> None:
    assert (await TestClient(_routes_app()).get(path)).status == 404


async def test_exact_paths_still_match() -> None:
    client = TestClient(_routes_app())
    for path, expected in [("/text", "text"), ("/p/7", "7"), ("/name/a b", "a b")]:
        async with client.websocket_connect(path) as ws:
            assert await ws.receive_text() == expected
    assert (await client.get("/h/7")).text == "7"
    assert (await client.get("/sub/x")).text == "mounted"


async def test_a_percent_encoded_newline_over_real_sockets(backend: Backend) -> None:
    with trio.fail_after(10):
        async with backend.serve(_routes_app()) as served:
            for path in ["/text%0a", "/p/7%0a", "/p/7%0d%0a", "/name/a%09b"]:
                assert _status(await _raw_handshake(served, path)) == 403, path
            for path in ["/h%0a", "/h/7%0a", "/sub%0a"]:
                response = await http_get(served, path)
                assert response.startswith(b"HTTP/1.1 404"), (path, response[:40])
            assert _status(await _raw_handshake(served, "/p/7")) == 101
            assert _status(await _raw_handshake(served, "/name/a%20b")) == 101
