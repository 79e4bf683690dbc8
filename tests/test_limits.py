"""Limits: a message rate per connection, connections per process and per client
address, and credentials that expire (ws.expire_at); in memory and on every server."""

from __future__ import annotations

import datetime
import math
from contextlib import AsyncExitStack

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected

import triows
from triows import WebSocket, WebSocketDisconnect
from triows.testing import HandshakeRejected, ServerClosed, TestClient

from .conftest import Backend
from .raw_client import upgraded


def code_of(closed: ConnectionClosed) -> int:
    assert closed.reason is not None
    return closed.reason.code


def reason_of(closed: ConnectionClosed) -> str | None:
    assert closed.reason is not None
    return closed.reason.reason


async def settled(app: triows.App) -> None:
    """Wait (bounded) until every connection has ended and been released."""
    with trio.fail_after(5):
        # Released in the server's finally, after the view ended: no event to wait on.
        while app.websockets.live:  # noqa: ASYNC110
            await trio.sleep(0.01)
    limits = app.websockets.limits
    assert limits is None or (limits.open, limits.per_ip) == (0, {})


# -- message rate ------------------------------------------------------------------------


def rate_app(**options: float) -> tuple[triows.App, list[tuple[int, str]]]:
    app = triows.App(**options)  # type: ignore[arg-type]
    departures: list[tuple[int, str]] = []

    @app.websocket_route("/limited", max_messages_per_second=0.2, max_burst=3)
    async def limited(ws: WebSocket) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except WebSocketDisconnect as gone:
            departures.append((gone.code, gone.reason))

    @app.websocket_route("/default")
    async def default(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @app.websocket_route("/unlimited", max_messages_per_second=math.inf)
    async def unlimited(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    return app, departures


async def test_a_client_over_its_rate_is_closed_with_1008_and_the_view_sees_it() -> None:
    app, departures = rate_app()
    async with TestClient(app) as client, client.websocket_connect("/limited") as ws:
        for number in range(3):  # the burst
            await ws.send_text(str(number))
            assert await ws.receive_text() == str(number)
        await ws.send_text("one too many")
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (1008, "message rate exceeded")
    assert departures == [(1008, "message rate exceeded")]
    await settled(app)


async def test_the_rate_limit_on_every_server(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    app, departures = rate_app()
    async with backend.serve(app) as served, served.connect("/limited") as ws:
        for number in range(4):
            await ws.send_message(str(number))
        for number in range(3):
            assert await ws.get_message() == str(number)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert code_of(closed.value) == 1008
        assert reason_of(closed.value) == "message rate exceeded"
        await settled(app)
    assert departures == [(1008, "message rate exceeded")]
    assert "closed with 1008: message rate exceeded" in caplog.text


async def test_tokens_come_back_at_the_rate() -> None:
    app = triows.App()

    @app.websocket_route("/limited", max_messages_per_second=20, max_burst=1)
    async def limited(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async with TestClient(app) as client, client.websocket_connect("/limited") as ws:
        for number in range(5):  # one message every 60 ms: under 20 per second
            await ws.send_text(str(number))
            assert await ws.receive_text() == str(number)
            await trio.sleep(0.06)


async def test_the_app_default_and_lifting_it_per_route() -> None:
    app, _ = rate_app(max_messages_per_second=0.2, max_burst=2)
    async with TestClient(app) as client:
        async with client.websocket_connect("/default") as ws:
            for number in range(3):
                await ws.send_text(str(number))
            assert [await ws.receive_text() for _ in range(2)] == ["0", "1"]
            with pytest.raises(ServerClosed) as closed:
                await ws.receive_text()
            assert closed.value.code == 1008
        async with client.websocket_connect("/unlimited") as ws:
            for number in range(50):
                await ws.send_text(str(number))
                assert await ws.receive_text() == str(number)


async def test_no_limit_by_default() -> None:
    app, _ = rate_app()
    async with TestClient(app) as client, client.websocket_connect("/default") as ws:
        for number in range(200):
            await ws.send_text(str(number))
        for number in range(200):
            assert await ws.receive_text() == str(number)


def test_bad_rate_settings_are_refused() -> None:
    app = triows.App()
    with pytest.raises(ValueError, match="max_burst needs max_messages_per_second"):
        app.websocket_route("/x", max_burst=3)
    with pytest.raises(ValueError, match="max_messages_per_second must be positive"):
        app.websocket_route("/x", max_messages_per_second=0)
    with pytest.raises(ValueError, match="max_burst must be at least 1"):
        triows.App(max_messages_per_second=5, max_burst=0)
    with pytest.raises(ValueError, match="max_connections must be at least 1"):
        triows.App(max_connections=0)
    with pytest.raises(ValueError, match="max_connections_per_ip must be at least 1"):
        triows.App(max_connections_per_ip=-1)


# -- connections per process and per address ---------------------------------------------


def connections_app(**options: int) -> triows.App:
    app = triows.App(**options)  # type: ignore[arg-type]

    @app.websocket_route("/wait")
    async def wait(ws: WebSocket) -> None:
        await ws.send("hello")
        async for _ in ws:
            pass

    @app.websocket_route("/crash")
    async def crash(ws: WebSocket) -> None:
        raise RuntimeError("the view crashed")

    @app.websocket_route("/refuse", auto_accept=False)
    async def refuse(ws: WebSocket) -> None:
        await ws.reject(401)

    return app


async def test_max_connections_refuses_with_503_and_releases() -> None:
    app = connections_app(max_connections=2)
    async with TestClient(app, raise_server_exceptions=False) as client:
        async with AsyncExitStack() as stack:
            for _ in range(2):
                ws = await stack.enter_async_context(client.websocket_connect("/wait"))
                assert await ws.receive_text() == "hello"
            with pytest.raises(HandshakeRejected) as refused:
                async with client.websocket_connect("/wait"):
                    pass
            assert refused.value.status == 503
            assert "max_connections=2" in refused.value.json()["detail"]
        await settled(app)
        # Every way a connection ends releases it: a crash, a refusal, the client.
        for path in ("/crash", "/refuse", "/crash", "/refuse"):
            with pytest.raises((HandshakeRejected, ServerClosed)):
                async with client.websocket_connect(path) as ws:
                    await ws.receive_text()
        await settled(app)
        async with client.websocket_connect("/wait") as ws:
            assert await ws.receive_text() == "hello"
    await settled(app)


async def test_max_connections_per_ip_refuses_with_429() -> None:
    app = connections_app(max_connections_per_ip=1)
    async with TestClient(app) as client, client.websocket_connect("/wait") as ws:
        assert await ws.receive_text() == "hello"
        with pytest.raises(HandshakeRejected) as refused:
            async with client.websocket_connect("/wait"):
                pass
        assert refused.value.status == 429
    await settled(app)


async def test_connection_limits_on_every_server(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    app = connections_app(max_connections=2, max_connections_per_ip=1)
    async with backend.serve(app) as served:
        async with served.connect("/wait") as ws:
            assert await ws.get_message() == "hello"
            with pytest.raises(ConnectionRejected) as refused:
                async with served.connect("/wait"):
                    pass
            assert refused.value.status_code == 429  # one address: the per-IP limit first
        await settled(app)
        async with served.connect("/wait") as ws:
            assert await ws.get_message() == "hello"
        # A crash and a refusal release their slot as well.
        with pytest.raises(ConnectionClosed):
            async with served.connect("/crash") as ws:
                await ws.get_message()
        with pytest.raises(ConnectionRejected):
            async with served.connect("/refuse"):
                pass
        await settled(app)
        # The shutdown's close releases what is still open.
        async with served.connect("/wait") as ws:
            assert await ws.get_message() == "hello"
            await app.close_connections(5)
            await settled(app)
    assert "max_connections_per_ip=1" in caplog.text


async def test_a_client_that_drops_releases_its_slot(backend: Backend) -> None:
    app = connections_app(max_connections=1)
    async with backend.serve(app) as served:
        for _ in range(3):
            async with upgraded(served, "/wait"):
                pass  # the TCP connection closes without a close frame
            await settled(app)


# -- credentials that expire -------------------------------------------------------------


def expiring_app() -> tuple[triows.App, list[str]]:
    app = triows.App()
    events: list[str] = []

    @app.provider
    async def user(connection: WebSocket) -> str:
        seconds = float(connection.query_parameters.get("valid", "0.3"))
        connection.expire_at(trio.current_time() + seconds)
        return "ada"

    @app.websocket_route("/feed", receive_type="json")
    async def feed(ws: WebSocket, user: str) -> None:
        try:
            async for message in ws:
                ws.expire_at(trio.current_time() + message["extend"])
                await ws.send("extended")
        finally:
            events.append("finally")

    @app.websocket_route("/clock")
    async def clock(ws: WebSocket) -> None:
        ws.expire_at(datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=0.2))
        await trio.sleep_forever()

    return app, events


async def test_expired_credentials_cancel_the_view_and_close_with_1008() -> None:
    app, events = expiring_app()
    async with TestClient(app) as client, client.websocket_connect("/feed") as ws:
        started = trio.current_time()
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
        assert (closed.value.code, closed.value.reason) == (1008, "credentials expired")
        assert 0.1 < trio.current_time() - started < 3  # the deadline: 0.3 s after the provider ran
    assert events == ["finally"]


async def test_expire_at_again_extends_the_deadline() -> None:
    app, _ = expiring_app()
    async with TestClient(app) as client, client.websocket_connect("/feed") as ws:
        started = trio.current_time()
        await ws.send_json({"extend": 0.6})
        assert await ws.receive_text() == "extended"
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
        assert closed.value.code == 1008
        assert trio.current_time() - started > 0.45  # not at the first deadline (0.3 s)


async def test_a_datetime_deadline_and_one_already_past() -> None:
    app, _ = expiring_app()
    async with TestClient(app) as client:
        async with client.websocket_connect("/clock") as ws:
            with pytest.raises(ServerClosed) as closed:
                await ws.receive_text()
            assert closed.value.reason == "credentials expired"
        # Expired before the handshake was answered: refused with 403.
        with pytest.raises(HandshakeRejected) as refused:
            async with client.websocket_connect("/feed?valid=-1"):
                pass
        assert refused.value.status == 403
        assert refused.value.json() == {"detail": "credentials expired"}


async def test_expire_at_on_every_server(backend: Backend) -> None:
    app, events = expiring_app()
    async with backend.serve(app) as served, served.connect("/feed") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert code_of(closed.value) == 1008
        assert reason_of(closed.value) == "credentials expired"
    assert events == ["finally"]


async def test_expire_at_errors() -> None:
    app = triows.App()
    failures: list[str] = []

    @app.websocket_route("/naive")
    async def naive(ws: WebSocket) -> None:
        for deadline in (datetime.datetime(2030, 1, 1), "tomorrow"):
            try:
                ws.expire_at(deadline)  # type: ignore[arg-type]
            except (ValueError, TypeError) as exc:
                failures.append(str(exc))

    async with TestClient(app) as client, client.websocket_connect("/naive") as ws:
        with pytest.raises(ServerClosed):
            await ws.receive_text()
    assert "timezone-aware" in failures[0]
    assert "datetime or a trio clock time" in failures[1]
