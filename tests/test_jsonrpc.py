"""JSON-RPC 2.0 over a WebSocket (issue 13): the whole specification, concurrency,
cancellation, timeouts, providers and notifications; in memory and on every server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import attrs
import msgspec
import pytest
import trio
import trio_websocket

import triows
from triows import JSONRPC, RPCConnection, RPCError
from triows._jsonrpc import jsonrpc_route_of
from triows.testing import TestClient

from .conftest import Backend


class Point(msgspec.Struct):
    x: int
    y: int


@attrs.define
class State:
    """What the methods of one test app report to the test."""

    started: trio.Event = attrs.field(factory=trio.Event)
    release: trio.Event = attrs.field(factory=trio.Event)
    finally_ran: list[str] = attrs.field(factory=list)
    #: Set when the last running slow() call has run its finally block.
    idle: trio.Event = attrs.field(factory=trio.Event)
    running: int = 0
    most_running: int = 0


def make_app(state: State, max_concurrent: int = 16) -> triows.App:
    rpc = JSONRPC()

    @rpc.method
    async def add(a: int, b: int = 0) -> int:
        return a + b

    @rpc.method("geo.move")
    async def move(point: Point, by: int = 1) -> Point:
        return Point(point.x + by, point.y + by)

    @rpc.method
    async def slow(name: str) -> str:
        state.running += 1
        state.most_running = max(state.most_running, state.running)
        try:
            state.started.set()
            await state.release.wait()
            return name
        finally:
            state.running -= 1
            state.finally_ran.append(name)
            if state.running == 0:
                state.idle.set()

    @rpc.method("limited", timeout=0.05)
    async def limited() -> None:
        try:
            await trio.sleep_forever()
        finally:
            state.finally_ran.append("limited")

    @rpc.method
    async def fail() -> None:
        raise RuntimeError("the database password is hunter2")

    @rpc.method
    async def refuse(why: str) -> None:
        raise RPCError(4001, "refused", {"why": why})

    @rpc.method
    async def whoami(user: str, room: str, connection: RPCConnection) -> dict[str, str]:
        return {"user": user, "room": room, "path": connection.websocket.path}

    @rpc.method
    async def shout(connection: RPCConnection, text: str) -> None:
        await connection.notify("heard", {"text": text.upper()})

    @rpc.method
    async def anything(value: Any) -> Any:
        return value

    app = triows.App()

    @app.provider
    async def user() -> AsyncIterator[str]:
        yield "ann"

    app.jsonrpc_route("/rpc/{room}", rpc, max_concurrent=max_concurrent)
    return app


def request(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        message["params"] = params
    return message


def error(code: int, message: str, id: Any, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "error": body, "id": id}


async def call(ws: Any, message: Any) -> Any:
    await ws.send_json(message)
    return await ws.receive_json()


async def test_calls_by_name_and_by_position() -> None:
    async with TestClient(make_app(State())).websocket_connect("/rpc/lobby") as ws:
        assert await call(ws, request("add", {"a": 1, "b": 2})) == {
            "jsonrpc": "2.0",
            "result": 3,
            "id": 1,
        }
        assert (await call(ws, request("add", [5], id="x")))["result"] == 5
        moved = await call(ws, request("geo.move", {"point": {"x": 1, "y": 2}, "by": 2}, 7))
        assert moved == {"jsonrpc": "2.0", "result": {"x": 3, "y": 4}, "id": 7}
        assert (await call(ws, request("anything", [[1, {"a": None}]], None)))["result"] == [
            1,
            {"a": None},
        ]


async def test_providers_route_values_connection_and_server_notifications() -> None:
    async with TestClient(make_app(State())).websocket_connect("/rpc/lobby") as ws:
        answer = await call(ws, request("whoami"))
        assert answer["result"] == {"user": "ann", "room": "lobby", "path": "/rpc/lobby"}
        await ws.send_json(request("shout", {"text": "hi"}, 2))
        assert await ws.receive_json() == {
            "jsonrpc": "2.0",
            "method": "heard",
            "params": {"text": "HI"},
        }
        assert await ws.receive_json() == {"jsonrpc": "2.0", "result": None, "id": 2}


async def test_notifications_get_no_response_even_when_wrong() -> None:
    async with TestClient(make_app(State())).websocket_connect("/rpc/r") as ws:
        for notification in (
            {"jsonrpc": "2.0", "method": "add", "params": [1, 2]},
            {"jsonrpc": "2.0", "method": "nope"},
            {"jsonrpc": "2.0", "method": "add", "params": {"a": "x"}},
            {"jsonrpc": "2.0", "method": "fail"},
            {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 99}},
        ):
            await ws.send_json(notification)
        # The next message the client gets is the answer to this call.
        assert (await call(ws, request("add", [1, 1], 5)))["result"] == 2


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("{not json", error(-32700, "Parse error", None)),
        ("[]", error(-32600, "Invalid Request", None, {"problem": "empty batch"})),
        (
            "1",
            error(-32600, "Invalid Request", None, {"problem": "a request must be a JSON object"}),
        ),
        (
            '{"jsonrpc": "2.0", "method": "add", "id": {"a": 1}}',
            error(
                -32600,
                "Invalid Request",
                None,
                {"problem": "id must be a string, a number or null"},
            ),
        ),
        (
            '{"jsonrpc": "1.0", "method": "add", "id": 3}',
            error(-32600, "Invalid Request", 3, {"problem": 'jsonrpc must be exactly "2.0"'}),
        ),
        (
            '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
            error(-32600, "Invalid Request", None, {"problem": "method must be a string"}),
        ),
        (
            '{"jsonrpc": "2.0", "method": "add", "params": "bar", "id": 4}',
            error(
                -32600, "Invalid Request", 4, {"problem": "params must be an object or an array"}
            ),
        ),
        (
            '{"jsonrpc": "2.0", "method": "nope", "id": 5}',
            error(-32601, "Method not found", 5, {"method": "nope"}),
        ),
        (
            '{"jsonrpc": "2.0", "method": "add", "params": {"a": "one"}, "id": 6}',
            error(
                -32602,
                "Invalid params",
                6,
                {"field": "params.a", "problem": "Expected `int`, got `str`"},
            ),
        ),
        (
            '{"jsonrpc": "2.0", "method": "geo.move", "params": [{"x": 1, "y": "2"}], "id": 7}',
            error(
                -32602,
                "Invalid params",
                7,
                {"field": "params[0].y", "problem": "Expected `int`, got `str`"},
            ),
        ),
        (
            '{"jsonrpc": "2.0", "method": "add", "params": {}, "id": 8}',
            error(
                -32602,
                "Invalid params",
                8,
                {"field": "params.a", "problem": "missing required parameter"},
            ),
        ),
        (
            '{"jsonrpc": "2.0", "method": "add", "params": {"a": 1, "c": 2}, "id": 9}',
            error(
                -32602,
                "Invalid params",
                9,
                {"field": "params.c", "problem": "unexpected parameter"},
            ),
        ),
        (
            '{"jsonrpc": "2.0", "method": "add", "params": [1, 2, 3], "id": 10}',
            error(
                -32602,
                "Invalid params",
                10,
                {"field": "params", "problem": "add takes at most 2 parameters, got 3"},
            ),
        ),
        (
            # A provider is not a parameter the client can give.
            '{"jsonrpc": "2.0", "method": "whoami", "params": {"user": "eve"}, "id": 11}',
            error(
                -32602,
                "Invalid params",
                11,
                {"field": "params.user", "problem": "unexpected parameter"},
            ),
        ),
    ],
)
async def test_bad_input_is_answered_and_the_connection_lives(sent: str, expected: Any) -> None:
    async with TestClient(make_app(State())).websocket_connect("/rpc/r") as ws:
        await ws.send_text(sent)
        answer = await ws.receive_json()
        if expected["error"]["code"] == -32700:
            assert answer["error"]["data"]["problem"].startswith("JSON is malformed")
            del answer["error"]["data"]
        assert answer == expected
        assert (await call(ws, request("add", [2, 2], 12)))["result"] == 4


async def test_internal_errors_do_not_leak_and_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with TestClient(make_app(State())).websocket_connect("/rpc/r") as ws:
        with caplog.at_level(logging.ERROR, logger="triows"):
            answer = await call(ws, request("fail", id=3))
        assert answer == error(-32603, "Internal error", 3)
        assert (await call(ws, request("add", [1], 4)))["result"] == 1
    lines = [r for r in caplog.records if "JSON-RPC" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].getMessage() == (
        "JSON-RPC /rpc/r: method fail failed in a call (id 3): RuntimeError; "
        "the client got -32603 Internal error"
    )
    assert lines[0].exc_info is not None  # the traceback is in the server's log only


async def test_application_errors() -> None:
    async with TestClient(make_app(State())).websocket_connect("/rpc/r") as ws:
        answer = await call(ws, request("refuse", {"why": "busy"}))
        assert answer == error(4001, "refused", 1, {"why": "busy"})


async def test_batches() -> None:
    async with TestClient(make_app(State())).websocket_connect("/rpc/r") as ws:
        await ws.send_json(
            [
                request("add", [1, 2], 1),
                {"jsonrpc": "2.0", "method": "add", "params": [7]},  # notification
                request("nope", None, 2),
                {"foo": "boo"},
                request("refuse", ["x"], 3),
            ]
        )
        answers = await ws.receive_json()
        assert sorted(answers, key=lambda a: str(a["id"])) == [
            {"jsonrpc": "2.0", "result": 3, "id": 1},
            error(-32601, "Method not found", 2, {"method": "nope"}),
            error(4001, "refused", 3, {"why": "x"}),
            error(-32600, "Invalid Request", None, {"problem": 'jsonrpc must be exactly "2.0"'}),
        ]
        await ws.send_text("[1, 2]")
        assert (
            await ws.receive_json()
            == [
                error(
                    -32600, "Invalid Request", None, {"problem": "a request must be a JSON object"}
                )
            ]
            * 2
        )
        # A batch of notifications only: nothing comes back.
        await ws.send_json([{"jsonrpc": "2.0", "method": "add", "params": [1]}])
        assert (await call(ws, request("add", [3], 4)))["result"] == 3


async def test_cancel_request_cancels_the_handler() -> None:
    state = State()
    async with TestClient(make_app(state)).websocket_connect("/rpc/r") as ws:
        await ws.send_json(request("slow", ["a"], "s1"))
        await state.started.wait()
        await ws.send_json({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": "s1"}})
        assert await ws.receive_json() == error(-32800, "request cancelled", "s1")
        assert state.finally_ran == ["a"]
        # The id is free again, and the connection is fine.
        state.release.set()
        assert (await call(ws, request("slow", ["b"], "s1")))["result"] == "b"


async def test_timeout() -> None:
    state = State()
    async with TestClient(make_app(state)).websocket_connect("/rpc/r") as ws:
        with trio.fail_after(5):
            assert await call(ws, request("limited", id=1)) == error(-32001, "request timed out", 1)
        assert state.finally_ran == ["limited"]


async def test_concurrency_is_bounded_and_waiting_calls_can_be_cancelled() -> None:
    state = State()
    async with TestClient(make_app(state, max_concurrent=2)).websocket_connect("/rpc/r") as ws:
        for n in range(4):
            await ws.send_json(request("slow", [f"c{n}"], n))
        # Cancelling the last, still waiting, is answered at once: all four were read.
        await ws.send_json({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 3}})
        assert await ws.receive_json() == error(-32800, "request cancelled", 3)
        assert state.running == 2  # the third waits for a slot
        state.release.set()
        answers = {(await ws.receive_json())["id"] for _ in range(3)}
        assert answers == {0, 1, 2}
        assert state.most_running == 2
        assert "c3" not in state.finally_ran  # a waiting call never started


async def test_duplicate_running_id_is_refused() -> None:
    state = State()
    async with TestClient(make_app(state)).websocket_connect("/rpc/r") as ws:
        await ws.send_json(request("slow", ["a"], 1))
        await state.started.wait()
        answer = await call(ws, request("slow", ["b"], 1))
        assert answer["error"]["code"] == -32600
        state.release.set()
        assert (await ws.receive_json())["result"] == "a"


async def test_client_leaving_cancels_every_call() -> None:
    state = State()
    async with TestClient(make_app(state)) as client:
        async with client.websocket_connect("/rpc/r") as ws:
            for n in range(3):
                await ws.send_json(request("slow", [f"l{n}"], n))
            # Answered after the three calls started (tasks start in order).
            assert (await call(ws, request("add", [1], 9)))["result"] == 1
            assert state.running == 3
            await ws.close()
        with trio.fail_after(5):
            await state.idle.wait()
    assert sorted(state.finally_ran) == ["l0", "l1", "l2"]
    assert state.running == 0


async def test_binary_frame_closes_with_1003() -> None:
    async with TestClient(make_app(State())).websocket_connect("/rpc/r") as ws:
        await ws.send_bytes(b'{"jsonrpc": "2.0", "method": "add", "params": [1], "id": 1}')
        assert await ws.wait_closed() == 1003


def test_registration_errors() -> None:
    rpc = JSONRPC()

    def sync(a: int) -> int:
        return a

    with pytest.raises(TypeError, match="async def"):
        rpc.method(sync)  # type: ignore[type-var]

    async def star(*args: int) -> None:
        pass

    with pytest.raises(TypeError, match=r"\*args is not supported"):
        rpc.method(star)

    async def ok(a: int) -> int:
        return a

    rpc.method(ok)
    with pytest.raises(ValueError, match="already registered"):
        rpc.method(ok)
    with pytest.raises(ValueError, match="reserved"):
        rpc.method("rpc.discover")(ok)
    with pytest.raises(ValueError, match="timeout"):
        rpc.method("t", timeout=0)

    class Opaque:
        pass

    async def needs(thing: Opaque) -> None:
        pass

    rpc.method(needs)
    app = triows.App()
    with pytest.raises(TypeError, match="parameter 'thing' is neither a provider"):
        app.jsonrpc_route("/rpc", rpc)

    @app.provider
    async def thing() -> Opaque:
        return Opaque()

    app.jsonrpc_route("/rpc", rpc)  # now a provider
    with pytest.raises(TypeError, match="receive_type"):
        app.jsonrpc_route("/other", rpc, receive_type="json")
    with pytest.raises(ValueError, match="max_concurrent"):
        app.jsonrpc_route("/other", rpc, max_concurrent=0)


def test_methods_describe_themselves() -> None:
    app = make_app(State())
    route = app.websockets.routes[0]
    served = jsonrpc_route_of(route.view)
    assert served is not None and served.max_concurrent == 16
    methods = served.rpc.methods
    move = methods["geo.move"]
    schema, components = move.params_schema()
    assert schema == {
        "type": "object",
        "properties": {
            "point": {"$ref": "#/components/schemas/Point"},
            "by": {"type": "integer"},
        },
        "required": ["point"],
    }
    assert components["Point"]["required"] == ["x", "y"]
    assert move.result_schema() == ({"$ref": "#/components/schemas/Point"}, components)
    assert methods["whoami"].params_schema(injected={"user", "room"})[0]["properties"] == {}
    assert -32001 in methods["limited"].errors
    assert -32001 not in methods["add"].errors
    with pytest.raises(TypeError):
        methods["new"] = move  # type: ignore[index]


# -- real sockets ------------------------------------------------------------------------


async def test_jsonrpc_over_real_sockets(backend: Backend) -> None:
    state = State()
    with trio.fail_after(10):
        async with backend.serve(make_app(state)) as served:
            async with served.connect("/rpc/hall") as ws:
                await ws.send_message(msgspec.json.encode(request("whoami")).decode())
                answer = msgspec.json.decode(await ws.get_message())
                assert answer["result"]["room"] == "hall"
                await ws.send_message(msgspec.json.encode(request("slow", ["x"], 2)).decode())
                await state.started.wait()
                cancel = {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 2}}
                await ws.send_message(msgspec.json.encode(cancel).decode())
                answer = msgspec.json.decode(await ws.get_message())
                assert answer == error(-32800, "request cancelled", 2)
                await ws.send_message(b"\x00")
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason is not None
                assert closed.value.reason.code == 1003
            assert state.finally_ran == ["x"]
            # The server is healthy; many calls in flight answer concurrently, each
            # response written by its own task.
            async with served.connect("/rpc/hall") as ws:
                for n in range(50):
                    await ws.send_message(msgspec.json.encode(request("add", [n, n], n)).decode())
                answers = [msgspec.json.decode(await ws.get_message()) for _ in range(50)]
                assert sorted((a["id"], a["result"]) for a in answers) == [
                    (n, 2 * n) for n in range(50)
                ]


async def test_on_connect_hooks_start_background_notifications() -> None:
    rpc = JSONRPC()
    hub = triows.Hub()
    app = triows.App(hub=hub)
    ended = trio.Event()

    @rpc.on_connect
    async def greet(connection: RPCConnection, room: str) -> None:
        await connection.notify("welcome", {"room": room})

    @rpc.on_connect
    async def follow(connection: RPCConnection, hub: triows.Hub, room: str) -> None:
        async def forward(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                async with hub.subscribe(room) as messages:
                    task_status.started()
                    async for message in messages:
                        await connection.notify("news", message)
            finally:
                ended.set()

        await connection.nursery.start(forward)

    @rpc.method
    async def ping() -> str:
        return "pong"

    app.jsonrpc_route("/rooms/{room}", rpc)
    async with TestClient(app) as client:
        async with client.websocket_connect("/rooms/blue") as ws:
            assert await ws.receive_json() == {
                "jsonrpc": "2.0",
                "method": "welcome",
                "params": {"room": "blue"},
            }
            await hub.publish("blue", {"text": "hello"})
            assert (await ws.receive_json())["params"] == {"text": "hello"}
            assert (await call(ws, request("ping")))["result"] == "pong"
        with trio.fail_after(5):
            await ended.wait()  # the client left: the forwarding task is cancelled


def test_hooks_and_route_parameters_are_checked_at_registration() -> None:
    rpc = JSONRPC()

    @rpc.on_connect
    async def hook(connection: RPCConnection, token: str) -> None:
        pass

    with pytest.raises(TypeError, match="hook hook\\(\\): parameter 'token'"):
        triows.App().jsonrpc_route("/rpc", rpc)

    other = JSONRPC()

    @other.method
    async def get(item: int) -> int:
        return item

    with pytest.raises(TypeError, match="route parameter 'item' arrives as a str"):
        triows.App().jsonrpc_route("/items/{item}", other)


async def test_pydantic_models_as_params_and_results() -> None:
    import pydantic

    class User(pydantic.BaseModel):
        name: str
        age: int

    rpc = JSONRPC()

    @rpc.method
    async def older(user: User, years: int = 1) -> User:
        return User(name=user.name, age=user.age + years)

    app = triows.App()
    app.jsonrpc_route("/rpc", rpc)
    async with TestClient(app).websocket_connect("/rpc") as ws:
        answer = await call(ws, request("older", {"user": {"name": "ann", "age": 41}}))
        assert answer["result"] == {"name": "ann", "age": 42}
        answer = await call(ws, request("older", [{"name": "ann", "age": "old"}], 2))
        assert answer["error"]["data"] == {
            "field": "params[0].age",
            "problem": "Input should be a valid integer, unable to parse string as an integer",
        }
    schema, components = rpc.methods["older"].params_schema()
    assert schema["properties"]["user"] == {"$ref": "#/components/schemas/User"}
    assert components["User"]["required"] == ["name", "age"]


async def test_a_failing_provider_refuses_the_handshake_with_500() -> None:
    from triows.testing import HandshakeRejected

    rpc = JSONRPC()

    @rpc.method
    async def whoami(user: str) -> str:
        return user

    app = triows.App()

    @app.provider
    async def user() -> str:
        raise RuntimeError("the user store is down")

    app.jsonrpc_route("/rpc", rpc)
    with pytest.raises(HandshakeRejected) as refused:
        async with TestClient(app).websocket_connect("/rpc"):
            pass  # pragma: no cover
    assert refused.value.status == 500


async def test_route_options_apply_to_jsonrpc_routes() -> None:
    rpc = JSONRPC()

    @rpc.method
    async def ping() -> str:
        return "pong"

    app = triows.App()
    app.jsonrpc_route("/rpc", rpc, max_messages_per_second=0.001, max_burst=2)
    async with TestClient(app).websocket_connect("/rpc") as ws:
        for id in range(2):
            assert (await call(ws, request("ping", id=id)))["result"] == "pong"
        await ws.send_json(request("ping", id=3))  # past the burst: the rate limit's close
        assert await ws.wait_closed() == 1008


async def test_json_nested_too_deeply_is_a_parse_error() -> None:
    async with TestClient(make_app(State())).websocket_connect("/rpc/r") as ws:
        await ws.send_text("[" * 100_000 + "]" * 100_000)
        answer = await ws.receive_json()
        assert answer["error"]["code"] == -32700
        assert "recursion" in answer["error"]["data"]["problem"]
        assert (await call(ws, request("add", [1], 2)))["result"] == 1
