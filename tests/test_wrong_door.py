"""Knocking at the wrong door: a WebSocket to a path without a WebSocket route (none
at all, or an HTTP route), a view registered with the wrong decorator, a page from
an origin the App does not allow.  Each is a clear refusal or a clear error, one log
line, and the server stays healthy; on every backend and in memory."""

from __future__ import annotations

import logging

import pytest
import trio
from trio_websocket import ConnectionRejected

import triows
from triows.testing import HandshakeRejected, TestClient

from .conftest import Backend

NO_ROUTE = b"no WebSocket route for this URL\n"
HTTP_ROUTE = b"this URL is an HTTP route, not a WebSocket route\n"


def _app(**options: object) -> triows.App:
    app = triows.App(**options)  # type: ignore[arg-type]

    @app.route("/page")
    async def page(request: triows.Request) -> str:
        return "<p>a page</p>"

    @app.websocket_route("/echo")
    async def echo(ws: triows.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    return app


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every WARNING or worse, from any logger (the server's included)."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# -- a path without a WebSocket route ----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "why"),
    [
        ("/nowhere", NO_ROUTE, "no WebSocket route matches it"),
        ("/page", HTTP_ROUTE, "an HTTP route (@app.route) serves it, no WebSocket route does"),
    ],
)
async def test_a_handshake_without_a_websocket_route_gets_403_with_a_reason(
    backend: Backend, caplog: pytest.LogCaptureFixture, path: str, body: bytes, why: str
) -> None:
    with trio.fail_after(10):
        async with backend.serve(_app()) as served:
            caplog.clear()
            with pytest.raises(ConnectionRejected) as refused:
                async with served.connect(path):
                    pass
            assert refused.value.status_code == 403
            assert refused.value.body == body
            headers = dict(refused.value.headers)
            assert headers[b"content-type"] == b"text/plain; charset=utf-8"
            (line,) = _warnings(caplog)  # logged once
            assert line.startswith(f"refused a WebSocket handshake to {path!r} from 127.0.0.1:")
            assert line.endswith(f"with 403: {why}")
            # The server is fine: the real route still serves.
            async with served.connect("/echo") as ws:
                await ws.send_message("still here")
                assert await ws.get_message() == "still here"


@pytest.mark.parametrize(("path", "body"), [("/nowhere", NO_ROUTE), ("/page", HTTP_ROUTE)])
async def test_a_handshake_without_a_websocket_route_in_memory(
    caplog: pytest.LogCaptureFixture, path: str, body: bytes
) -> None:
    client = TestClient(_app())
    with pytest.raises(HandshakeRejected) as refused:
        async with client.websocket_connect(path):
            pass
    assert (refused.value.status, refused.value.body) == (403, body)
    (line,) = _warnings(caplog)
    assert f"to {path!r} from " in line
    assert (await client.get("/page")).status == 200
    assert (await client.get("/echo")).status == 426  # HTTP to a WebSocket route: clear too


# -- a view registered with the wrong decorator ----------------------------------------------


def test_a_websocket_view_registered_as_an_http_route_is_refused_at_registration() -> None:
    app = triows.App()
    with pytest.raises(TypeError) as wrong:

        @app.route("/chat")
        async def chat(ws: triows.WebSocket) -> None:
            await ws.send("hi")

    assert str(wrong.value) == (
        "test_a_websocket_view_registered_as_an_http_route_is_refused_at_registration."
        "<locals>.chat() takes a WebSocket: it is a WebSocket view; "
        "register it with @app.websocket_route('/chat'), not @app.route"
    )


def test_an_http_view_registered_as_a_websocket_route_is_refused_at_registration() -> None:
    app = triows.App()
    with pytest.raises(TypeError, match=r"page\(\) takes a Request: it is an HTTP view; "):

        @app.websocket_route("/page")
        async def page(request: triows.Request) -> str:
            return "hi"

    with pytest.raises(TypeError, match=r"register it with @app\.route\('/page'\)"):

        @app.websocket_route("/page")
        async def page2(request: triows.Request) -> str:
            return "hi"


# -- an origin the App does not allow --------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "suggested"),
    [
        (None, ["http://evil.example"]),
        (["https://app.example"], ["http://evil.example", "https://app.example"]),
    ],
)
async def test_an_origin_refusal_logs_the_origin_and_the_setting_that_allows_it(
    backend: Backend,
    caplog: pytest.LogCaptureFixture,
    allowed: list[str] | None,
    suggested: list[str],
) -> None:
    origin = [(b"Origin", b"http://evil.example")]
    with trio.fail_after(10):
        async with backend.serve(_app(allowed_origins=allowed)) as served:
            caplog.clear()
            with pytest.raises(ConnectionRejected) as refused:
                async with served.connect("/echo", extra_headers=origin):
                    pass
            assert refused.value.status_code == 403
        (line,) = _warnings(caplog)
        assert line.startswith("refused a cross-origin WebSocket handshake to /echo from ")
        assert line.endswith(
            f"(Origin 'http://evil.example'); App(allowed_origins={suggested!r}) would allow it"
        )
        # The setting the line suggests does allow it.
        async with (
            backend.serve(_app(allowed_origins=suggested)) as served,
            served.connect("/echo", extra_headers=origin) as ws,
        ):
            await ws.send_message("allowed now")
            assert await ws.get_message() == "allowed now"
