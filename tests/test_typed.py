"""Typed messages: receive_type/send_type/value_type given a type (issue 13).

In memory (TestClient) and over real sockets (every backend): validated
instances in, instances out, precise errors and close codes for bad input.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, TypedDict

import attrs
import msgspec
import pydantic
import pytest
import trio
import trio_websocket

import triows
from triows._typed import codec_for, json_schemas
from triows.testing import ServerClosed, TestClient

from .conftest import Backend


class Point(msgspec.Struct):
    x: int
    y: int


@dataclasses.dataclass
class Join:
    type: Literal["join"]
    name: str


@attrs.define
class Say:
    type: Literal["say"]
    text: str


class Leave(TypedDict):
    type: Literal["leave"]
    reason: str


class Ping(msgspec.Struct, tag_field="type", tag="ping"):
    seq: int


class Profile(pydantic.BaseModel):
    type: Literal["profile"] = "profile"
    age: int


Event = Join | Say | Leave | Ping | Profile


def typed_app() -> triows.App:
    app = triows.App()

    @app.websocket_route("/point", value_type=Point)
    async def point(ws: triows.WebSocket) -> None:
        async for p in ws:
            assert isinstance(p, Point)
            await ws.send(Point(p.y, p.x))

    @app.websocket_route("/event", receive_type=Event, send_type=Event)
    async def event(ws: triows.WebSocket) -> None:
        while True:
            try:
                message = await ws.receive()
            except triows.MessageValidationError as exc:
                await ws.send({"error": str(exc), "path": exc.path})
                continue
            await ws.send({"got": type(message).__name__})

    @app.websocket_route("/profile", value_type=Profile)
    async def profile(ws: triows.WebSocket) -> None:
        p = await ws.receive()
        assert isinstance(p, Profile)
        await ws.send(Profile(age=p.age + 1))

    return app


async def test_a_struct_route_receives_and_sends_instances() -> None:
    async with TestClient(typed_app()).websocket_connect("/point") as ws:
        await ws.send_text('{"x": 1, "y": 2}')
        assert await ws.receive_json() == {"x": 2, "y": 1}
        await ws.send_bytes(b'{"x": 3, "y": 4}')  # JSON in a binary frame is read too
        assert await ws.receive_json() == {"x": 4, "y": 3}


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ({"type": "join", "name": "ann"}, "Join"),
        ({"type": "say", "text": "hi"}, "Say"),
        ({"type": "leave", "reason": "bye"}, "dict"),  # a TypedDict is a dict
        ({"type": "ping", "seq": 1}, "Ping"),
        ({"type": "profile", "age": 3}, "Profile"),
    ],
)
async def test_a_tagged_union_dispatches_on_type(sent: dict[str, Any], expected: str) -> None:
    async with TestClient(typed_app()).websocket_connect("/event") as ws:
        await ws.send_json(sent)
        assert await ws.receive_json() == {"got": expected}


@pytest.mark.parametrize(
    ("sent", "path", "problem"),
    [
        ({"type": "join", "name": 5}, "$.name", "Expected `str`, got `int`"),
        ({"type": "nope"}, "$.type", "expected one of 'join', 'say'"),
        ({"name": "ann"}, "$", "missing required field `type`"),
        ({"type": "profile", "age": "old"}, "$.age", "valid integer"),
        ([1, 2], "$", "Expected `object`"),
    ],
)
async def test_a_view_may_catch_validation_errors(sent: Any, path: str, problem: str) -> None:
    async with TestClient(typed_app()).websocket_connect("/event") as ws:
        await ws.send_json(sent)
        answer = await ws.receive_json()
        assert answer["path"] == path
        assert problem in answer["error"]
        # The connection carries on.
        await ws.send_json({"type": "join", "name": "ann"})
        assert await ws.receive_json() == {"got": "Join"}


async def test_uncaught_validation_error_closes_1007_naming_the_field() -> None:
    async with TestClient(typed_app()).websocket_connect("/point") as ws:
        await ws.send_text('{"x": 1, "y": "two"}')
        with pytest.raises(ServerClosed) as closed:
            await ws.receive()
    assert closed.value.code == 1007
    assert closed.value.reason == "invalid message at $.y: Expected `int`, got `str`"


async def test_invalid_json_still_raises_message_decode_error() -> None:
    app = triows.App()
    errors: list[Exception] = []

    @app.websocket_route("/p", value_type=Point)
    async def view(ws: triows.WebSocket) -> None:
        try:
            await ws.receive()
        except triows.BadMessage as exc:
            errors.append(exc)
            raise

    async with TestClient(app).websocket_connect("/p") as ws:
        await ws.send_text("{not json")
        assert await ws.wait_closed() == 1007
    assert type(errors[0]) is triows.MessageDecodeError


async def test_a_long_field_path_still_fits_the_close_reason() -> None:
    key = "k" * 200
    Long = msgspec.defstruct("Long", [(key, int)])
    app = triows.App()

    @app.websocket_route("/d", receive_type=Long)
    async def view(ws: triows.WebSocket) -> None:
        await ws.receive()

    async with TestClient(app).websocket_connect("/d") as ws:
        await ws.send_json({key: "x"})
        with pytest.raises(ServerClosed) as closed:
            await ws.receive()
    assert closed.value.code == 1007
    assert len(closed.value.reason.encode()) <= 123
    assert closed.value.reason.startswith("invalid message at $.kkkk")


async def test_pydantic_model_route() -> None:
    async with TestClient(typed_app()).websocket_connect("/profile") as ws:
        await ws.send_json({"age": 41})
        assert await ws.receive_json() == {"type": "profile", "age": 42}


async def test_send_takes_plain_json_values_and_refuses_others() -> None:
    app = triows.App()

    @app.websocket_route("/s", send_type=Point)
    async def view(ws: triows.WebSocket) -> None:
        await ws.send({"plain": [1, 2]})
        with pytest.raises(TypeError, match="cannot send a object"):
            await ws.send(object())
        await ws.send(Join("join", "ann"))

    async with TestClient(app).websocket_connect("/s") as ws:
        assert await ws.receive_json() == {"plain": [1, 2]}
        assert await ws.receive_json() == {"type": "join", "name": "ann"}


class NotAMessage:
    pass


@dataclasses.dataclass
class Untagged:
    name: str


@pytest.mark.parametrize("argument", ["receive_type", "send_type", "value_type"])
@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (NotAMessage, "NotAMessage"),
        (list[NotAMessage], "NotAMessage"),
        (Join | Untagged, "Untagged"),
        (Join | Say | Join.__class__, "type"),
    ],
)
def test_unsupported_types_are_refused_at_decoration(argument: str, bad: Any, named: str) -> None:
    app = triows.App()
    with pytest.raises(TypeError, match=argument) as refused:
        app.websocket_route("/x", **{argument: bad})
    assert named in str(refused.value)


@pytest.mark.parametrize(("bad", "name"), [(str, "text"), (bytes, "bytes")])
def test_str_and_bytes_point_to_the_message_type_names(bad: type, name: str) -> None:
    with pytest.raises(TypeError, match=f"pass receive_type='{name}'"):
        triows.App().websocket_route("/x", receive_type=bad)


def test_duplicate_tags_are_refused() -> None:
    @dataclasses.dataclass
    class OtherJoin:
        type: Literal["join", "enter"]

    with pytest.raises(TypeError, match="two members have type='join'"):
        codec_for(Join | OtherJoin)


def test_annotated_unions_and_pydantic_discriminated_unions() -> None:
    codec = codec_for(Annotated[Join | Say, "a note"])
    assert codec.decode('{"type": "say", "text": "x"}') == Say("say", "x")

    class A(pydantic.BaseModel):
        type: Literal["a"]

    class B(pydantic.BaseModel):
        type: Literal["b"]
        n: int

    union = Annotated[A | B, pydantic.Field(discriminator="type")]
    assert codec_for(union).decode('{"type": "b", "n": 2}') == B(type="b", n=2)
    with pytest.raises(triows.MessageValidationError) as bad:
        codec_for(union).decode('{"type": "b", "n": "x"}')
    assert bad.value.path == "$.b.n"  # pydantic names the union's branch


def test_json_schemas_of_every_kind() -> None:
    schemas, components = json_schemas([Point, Event, int, Profile])
    assert schemas[0] == {"$ref": "#/components/schemas/Point"}
    assert schemas[2] == {"type": "integer"}
    assert schemas[3] == {"$ref": "#/components/schemas/Profile"}
    refs = [choice.get("$ref") for choice in schemas[1]["anyOf"]]
    assert refs == [
        f"#/components/schemas/{n}" for n in ("Join", "Say", "Leave", "Ping", "Profile")
    ]
    assert components["Point"]["required"] == ["x", "y"]
    assert components["Join"]["properties"]["type"] == {"enum": ["join"]}
    assert components["Profile"]["properties"]["age"]["type"] == "integer"
    # The whole document is JSON.
    msgspec.json.encode(components)
    other, _ = json_schemas([Point], ref_template="#/$defs/{name}")
    assert other == [{"$ref": "#/$defs/Point"}]


# -- real sockets ------------------------------------------------------------------------


async def test_typed_routes_over_real_sockets(backend: Backend) -> None:
    with trio.fail_after(10):
        async with backend.serve(typed_app()) as served:
            async with served.connect("/point") as ws:
                await ws.send_message('{"x": 5, "y": 6}')
                assert msgspec.json.decode(await ws.get_message()) == {"x": 6, "y": 5}
            async with served.connect("/event") as ws:
                await ws.send_message('{"type": "say", "text": 3}')
                answer = msgspec.json.decode(await ws.get_message())
                assert answer["path"] == "$.text"
                await ws.send_message('{"type": "ping", "seq": 1}')
                assert msgspec.json.decode(await ws.get_message()) == {"got": "Ping"}
            async with served.connect("/point") as ws:
                await ws.send_message('{"x": "one", "y": 6}')
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await ws.get_message()
                reason = closed.value.reason
                assert reason is not None
                assert reason.code == 1007
                assert reason.reason == ("invalid message at $.x: Expected `int`, got `str`")
            # The server is still healthy.
            async with served.connect("/point") as ws:
                await ws.send_message('{"x": 1, "y": 2}')
                assert msgspec.json.decode(await ws.get_message()) == {"x": 2, "y": 1}


async def test_json_nested_too_deeply_closes_1007_not_1011() -> None:
    app = triows.App()

    @app.websocket_route("/deep", receive_type=list[Any])
    async def view(ws: triows.WebSocket) -> None:
        await ws.receive()

    async with TestClient(app).websocket_connect("/deep") as ws:
        await ws.send_text("[" * 100_000 + "]" * 100_000)
        with pytest.raises(ServerClosed) as closed:
            await ws.receive()
    assert closed.value.code == 1007
    assert "nested too deeply" in closed.value.reason
