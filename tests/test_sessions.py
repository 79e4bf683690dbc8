"""Signed-cookie sessions: Starlette-compatible, read-only on WebSockets, never an error."""

from __future__ import annotations

import time
from typing import Any

import itsdangerous
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

import triows
from triows.testing import TestClient

SECRET = "correct horse battery staple"


def _triows_app(**options: Any) -> triows.App:
    app = triows.App(session_secret=SECRET, **options)

    @app.websocket_route("/whoami", send_type="json")
    async def whoami(ws: triows.WebSocket) -> None:
        await ws.send(dict(ws.session))

    @app.route("/login", methods=["POST"])
    async def login(request: triows.Request) -> dict[str, str]:
        request.session["user"] = request.json()["user"]
        return {"ok": "yes"}

    @app.route("/logout", methods=["POST"])
    async def logout(request: triows.Request) -> dict[str, str]:
        request.session.clear()
        return {"ok": "yes"}

    @app.route("/peek")
    async def peek(request: triows.Request) -> dict[str, Any]:
        return dict(request.session)

    return app


def _starlette_app() -> Starlette:
    async def login(request: StarletteRequest) -> JSONResponse:
        request.session["user"] = "from-starlette"
        return JSONResponse({})

    async def peek(request: StarletteRequest) -> JSONResponse:
        return JSONResponse(dict(request.session))

    return Starlette(
        routes=[Route("/login", login), Route("/peek", peek)],
        middleware=[Middleware(SessionMiddleware, secret_key=SECRET)],
    )


def _cookie(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0]


async def _whoami(client: TestClient, cookie: str | None) -> Any:
    headers = {} if cookie is None else {"cookie": cookie}
    async with client.websocket_connect("/whoami", headers=headers) as ws:
        return await ws.receive_json()


async def test_http_login_then_websocket_reads_the_session() -> None:
    client = TestClient(_triows_app())
    response = await client.request("POST", "/login", body='{"user": "alice"}')
    cookie = _cookie(response.headers["set-cookie"])
    assert "httponly" in response.headers["set-cookie"]
    assert "Max-Age=1209600" in response.headers["set-cookie"]
    assert await _whoami(client, cookie) == {"user": "alice"}
    # Unchanged session: no new cookie.
    assert "set-cookie" not in (await client.get("/peek", headers={"cookie": cookie})).headers
    logout = await client.request("POST", "/logout", headers={"cookie": cookie})
    assert "expires=Thu, 01 Jan 1970" in logout.headers["set-cookie"]


async def test_a_starlette_app_sets_the_cookie_and_triows_reads_it() -> None:
    starlette = TestClient(_starlette_app())
    cookie = _cookie((await starlette.get("/login")).headers["set-cookie"])
    assert await _whoami(TestClient(_triows_app()), cookie) == {"user": "from-starlette"}


async def test_triows_sets_the_cookie_and_a_starlette_app_reads_it() -> None:
    response = await TestClient(_triows_app()).request("POST", "/login", body='{"user": "bob"}')
    cookie = _cookie(response.headers["set-cookie"])
    peek = await TestClient(_starlette_app()).get("/peek", headers={"cookie": cookie})
    assert peek.json() == {"user": "bob"}


async def test_bad_cookies_give_an_empty_session() -> None:
    client = TestClient(_triows_app(session_max_age=60))
    good = _cookie(
        (await client.request("POST", "/login", body='{"user": "eve"}')).headers["set-cookie"]
    )
    name, value = good.split("=", 1)
    foreign = itsdangerous.TimestampSigner("another secret").sign(value.split(".")[0]).decode()
    old_signer = itsdangerous.TimestampSigner(SECRET)
    old_signer.get_timestamp = lambda: int(time.time()) - 3600  # type: ignore[method-assign]
    expired = old_signer.sign(value.split(".")[0]).decode()
    for cookie in [
        None,
        f"{name}={value[:-2]}xx",  # tampered signature
        f"{name}={foreign}",  # signed with another secret
        f"{name}={expired}",  # older than max_age
        f"{name}=not-even-base64",
        'session="unterminated',
        "other=1",
    ]:
        assert await _whoami(client, cookie) == {}
    assert await _whoami(client, good) == {"user": "eve"}


async def test_ws_session_is_read_only() -> None:
    app = triows.App(session_secret=SECRET)
    errors: list[BaseException] = []

    @app.websocket_route("/write")
    async def write(ws: triows.WebSocket) -> None:
        try:
            ws.session["x"] = 1  # type: ignore[index]
        except TypeError as exc:
            errors.append(exc)

    async with TestClient(app).websocket_connect("/write") as ws:
        assert await ws.wait_closed() == 1000
    assert len(errors) == 1


async def test_sessions_disabled_say_how_to_enable() -> None:
    app = triows.App()

    @app.websocket_route("/s")
    async def view(ws: triows.WebSocket) -> None:
        ws.session  # noqa: B018

    with pytest.raises(RuntimeError, match=r"App\(session_secret=\.\.\.\)"):
        async with TestClient(app).websocket_connect("/s") as ws:
            await ws.wait_closed()
    with pytest.raises(ValueError, match="non-empty"):
        triows.App(session_secret="")
