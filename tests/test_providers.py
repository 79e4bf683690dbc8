"""Providers: connection and app scope, functions and generators, dependencies, cycles."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.lowlevel

import triows
from triows.testing import HandshakeRejected, TestClient


async def test_connection_provider_function_one_value_per_connection() -> None:
    app = triows.App()
    made: list[int] = []

    @app.provider
    async def counter() -> int:
        made.append(len(made) + 1)
        return made[-1]

    @app.websocket_route("/c")
    async def view(ws: triows.WebSocket, counter: int) -> None:
        await ws.send(str(counter))

    client = TestClient(app)
    for expected in ("1", "2"):
        async with client.websocket_connect("/c") as ws:
            assert await ws.receive_text() == expected
    assert made == [1, 2]


async def test_generator_provider_teardown_runs_after_view() -> None:
    app = triows.App()
    events: list[str] = []

    @app.provider
    async def resource() -> AsyncIterator[str]:
        events.append("setup")
        yield "res"
        events.append("teardown")

    @app.websocket_route("/r")
    async def view(ws: triows.WebSocket, resource: str) -> None:
        events.append(f"view {resource}")

    async with TestClient(app).websocket_connect("/r") as ws:
        assert await ws.wait_closed() == 1000
    assert events == ["setup", "view res", "teardown"]


async def test_generator_teardown_runs_when_view_raises() -> None:
    app = triows.App()
    events: list[str] = []

    @app.provider
    async def resource() -> AsyncIterator[str]:
        try:
            yield "res"
        finally:
            events.append("teardown")

    @app.websocket_route("/r")
    async def view(ws: triows.WebSocket, resource: str) -> None:
        raise KeyError("oops")

    with pytest.raises(KeyError):
        async with TestClient(app).websocket_connect("/r") as ws:
            assert await ws.wait_closed() == 1011
    assert events == ["teardown"]


async def test_generator_teardown_code_after_yield_runs_on_error() -> None:
    # Code after a bare `yield` (no try/finally) is teardown too, even on error.
    app = triows.App()
    events: list[str] = []

    @app.provider
    async def resource() -> AsyncIterator[str]:
        yield "res"
        events.append("after yield")

    @app.websocket_route("/r")
    async def view(ws: triows.WebSocket, resource: str) -> None:
        raise KeyError

    with pytest.raises(KeyError):
        async with TestClient(app).websocket_connect("/r"):
            pass
    assert events == ["after yield"]


async def test_generator_teardown_runs_when_client_leaves() -> None:
    app = triows.App()
    events: list[str] = []
    started = trio.Event()

    @app.provider
    async def resource() -> AsyncIterator[str]:
        yield "res"
        await trio.lowlevel.checkpoint()  # teardown may await even though the view was cancelled
        events.append("teardown")

    @app.websocket_route("/r")
    async def view(ws: triows.WebSocket, resource: str) -> None:
        started.set()
        await trio.sleep_forever()

    with trio.fail_after(2):
        async with TestClient(app).websocket_connect("/r") as ws:
            await started.wait()
            await ws.close()
    assert events == ["teardown"]


async def test_app_scoped_provider_shared_and_torn_down_at_shutdown() -> None:
    app = triows.App()
    events: list[str] = []

    @app.provider(scope="app")
    async def clients() -> AsyncIterator[set[str]]:
        events.append("startup")
        yield set()
        events.append("shutdown")

    @app.websocket_route("/join/{name}")
    async def join(ws: triows.WebSocket, name: str, clients: set[str]) -> None:
        clients.add(name)
        await ws.send(",".join(sorted(clients)))

    async with TestClient(app) as client:
        assert events == ["startup"]
        async with client.websocket_connect("/join/a") as ws:
            assert await ws.receive_text() == "a"
        async with client.websocket_connect("/join/b") as ws:
            assert await ws.receive_text() == "a,b"
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


async def test_app_scoped_function_provider() -> None:
    app = triows.App()
    calls: list[int] = []

    @app.provider(scope="app")
    async def config() -> dict[str, int]:
        calls.append(1)
        return {"limit": 3}

    @app.websocket_route("/c", send_type="json")
    async def view(ws: triows.WebSocket, config: dict[str, int]) -> None:
        await ws.send(config)

    async with TestClient(app) as client:
        for _ in range(2):
            async with client.websocket_connect("/c") as ws:
                assert await ws.receive_json() == {"limit": 3}
    assert calls == [1]


async def test_providers_depend_on_providers() -> None:
    app = triows.App()
    events: list[str] = []

    @app.provider(scope="app")
    async def database() -> AsyncIterator[str]:
        events.append("db up")
        yield "db"
        events.append("db down")

    @app.provider
    async def session(database: str) -> AsyncIterator[str]:
        events.append("session open")
        yield f"session({database})"
        events.append("session close")

    @app.provider
    async def repository(session: str, database: str) -> str:
        return f"repo[{session},{database}]"

    @app.websocket_route("/r")
    async def view(ws: triows.WebSocket, repository: str) -> None:
        await ws.send(repository)

    async with TestClient(app) as client, client.websocket_connect("/r") as ws:
        assert await ws.receive_text() == "repo[session(db),db]"
    assert events == ["db up", "session open", "session close", "db down"]


def test_cycle_is_an_error_at_registration() -> None:
    app = triows.App()

    @app.provider
    async def a(b: int) -> int:
        return b

    with pytest.raises(triows.ProviderError, match="cycle"):

        @app.provider
        async def b(a: int) -> int:
            return a

    # The failed registration left no trace: a fresh `b` without the cycle works.
    async def fresh(c: int = 0) -> int:
        return c

    fresh.__name__ = "b"
    app.provider(fresh)
    assert "b" in app.providers


def test_self_dependency_is_a_cycle() -> None:
    app = triows.App()
    with pytest.raises(triows.ProviderError):

        @app.provider
        async def me(me: int) -> int:
            return me


async def test_missing_dependency_fails_at_startup() -> None:
    app = triows.App()

    @app.provider(scope="app")
    async def thing(nothing_registered: int) -> int:
        return nothing_registered

    with pytest.raises(RuntimeError, match="nothing_registered"):
        async with TestClient(app):
            pass


async def test_app_provider_cannot_depend_on_connection_provider() -> None:
    app = triows.App()

    @app.provider
    async def per_connection() -> int:
        return 1

    @app.provider(scope="app")
    async def shared(per_connection: int) -> int:
        return per_connection

    with pytest.raises(RuntimeError, match="per_connection"):
        async with TestClient(app):
            pass


def test_sync_provider_is_a_type_error() -> None:
    app = triows.App()
    with pytest.raises(TypeError):

        @app.provider
        def not_async() -> int:
            return 1


async def test_provider_is_never_bound_from_query_string() -> None:
    app = triows.App()

    @app.provider
    async def user() -> str:
        return "from-provider"

    @app.websocket_route("/u")
    async def view(ws: triows.WebSocket, user: str) -> None:
        await ws.send(user)

    async with TestClient(app).websocket_connect("/u?user=attacker") as ws:
        assert await ws.receive_text() == "from-provider"


async def test_provider_dependency_is_never_bound_from_query_string() -> None:
    app = triows.App()

    @app.provider
    async def role() -> str:
        return "guest"

    @app.provider
    async def permissions(role: str) -> str:
        return f"perms-of-{role}"

    @app.websocket_route("/p")
    async def view(ws: triows.WebSocket, permissions: str) -> None:
        await ws.send(permissions)

    async with TestClient(app).websocket_connect("/p?role=admin&permissions=all") as ws:
        assert await ws.receive_text() == "perms-of-guest"


async def test_provider_registered_after_route_is_injected() -> None:
    app = triows.App()

    @app.websocket_route("/late")
    async def view(ws: triows.WebSocket, late: list[str]) -> None:
        await ws.send(late[0])

    @app.provider
    async def late() -> list[str]:
        return ["injected"]

    async with TestClient(app).websocket_connect("/late") as ws:
        assert await ws.receive_text() == "injected"


async def test_provider_failure_before_accept_gives_500() -> None:
    app = triows.App()
    called: list[bool] = []

    @app.provider
    async def broken() -> int:
        raise LookupError("no")

    @app.websocket_route("/b")
    async def view(ws: triows.WebSocket, broken: int) -> None:
        called.append(True)

    with pytest.raises(HandshakeRejected) as info:
        async with TestClient(app, raise_server_exceptions=False).websocket_connect("/b"):
            pass
    assert info.value.status == 500
    assert called == []


async def test_http_route_gets_providers() -> None:
    app = triows.App()
    events: list[str] = []

    @app.provider
    async def greeting() -> AsyncIterator[str]:
        yield "hello"
        events.append("teardown")

    @app.route("/g")
    async def page(request: triows.Request, greeting: str) -> str:
        return greeting

    response = await TestClient(app).get("/g?greeting=evil")
    assert response.text == "hello"
    assert events == ["teardown"]
