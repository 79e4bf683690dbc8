"""An App with every kind of route the AsyncAPI document describes."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Literal, TypedDict

import attrs
import msgspec
import pydantic

import triows


class Join(msgspec.Struct, tag_field="type", tag="join"):
    """A user joins the room."""

    user: str


class Say(msgspec.Struct, tag_field="type", tag="say"):
    """A user says something."""

    user: str
    text: Annotated[str, msgspec.Meta(max_length=500)]


ChatIn = Join | Say


class Envelope(msgspec.Struct):
    """A tagged union inside a field."""

    body: ChatIn
    sent_at: float


@dataclasses.dataclass
class Said:
    type: Literal["said"]
    user: str
    text: str
    at: float


@attrs.define
class Left:
    type: Literal["left"]
    user: str


ChatOut = Said | Left


class Point(TypedDict):
    x: int
    y: int


class Place(pydantic.BaseModel):
    name: str


class Reading(pydantic.BaseModel):
    """A sensor reading."""

    sensor: str
    value: float
    where: Place | None = None


def other_point() -> type:
    """A second class named Point, of another shape."""

    class Point(msgspec.Struct):
        lat: float
        lon: float

    return Point


def every_route_app() -> triows.App:
    """Untyped routes in each message type, route and query parameters of each
    converter, providers (not parameters), ``**kwargs``, repeated view names, and
    routes the document leaves out (HTTP, a mount)."""
    app = triows.App(title="every route", version="1.2.3", hub=triows.Hub())

    @app.provider(scope="app")
    async def settings() -> dict[str, int]:
        return {"limit": 3}

    @app.provider
    async def user(ws: triows.WebSocket) -> AsyncIterator[str]:
        yield "someone"

    @app.websocket_route("/text")
    async def text(ws: triows.WebSocket) -> None:
        """Echo text.

        Every text message comes back."""

    @app.websocket_route("/json/{room}", value_type="json")
    async def room(
        ws: triows.WebSocket,
        room: str,
        hub: triows.Hub,
        settings: dict[str, int],
        user: str,
        limit: int = 10,
        ratio: float = 0.5,
        verbose: bool = False,
        token: str | None = None,
    ) -> None:
        pass

    @app.websocket_route("/bytes/{id}/{n}/{flag}", value_type="bytes")
    async def blob(ws: triows.WebSocket, id: uuid.UUID, n: int, flag: bool, key: str) -> None:
        pass

    @app.websocket_route("/upload", receive_type="bytes", send_type="json")
    async def upload(ws: triows.WebSocket) -> None:
        pass

    @app.websocket_route("/extra/{name}")
    async def extra(ws: triows.WebSocket, **rest: str) -> None:
        pass

    def second_text() -> None:
        @app.websocket_route("/other-text")
        async def text(ws: triows.WebSocket) -> None:
            pass

    second_text()

    @app.route("/page")
    async def page(request: triows.Request) -> str:
        return "not in the document"

    add_typed_routes(app)
    app.jsonrpc_route("/rpc/{tenant}", rpc_methods())
    app.live_route("/live", message_type=Say)
    app.mount("/mounted", triows.App())
    return app


def add_typed_routes(app: triows.App) -> None:
    """Typed routes: tagged unions of each kind of class, a pydantic model, a list
    of TypedDicts, a second class named Point, a union inside a field, an int."""

    @app.websocket_route("/chat", receive_type=ChatIn, send_type=ChatOut)
    async def chat(ws: triows.WebSocket, user: str) -> None:
        """A typed chat room."""

    @app.websocket_route("/readings", receive_type=Reading, send_type=list[Point])
    async def readings(ws: triows.WebSocket) -> None:
        pass

    @app.websocket_route("/map", value_type=other_point())
    async def map_points(ws: triows.WebSocket) -> None:
        pass

    @app.websocket_route("/count", receive_type="text", send_type=int)
    async def count(ws: triows.WebSocket) -> None:
        pass

    @app.websocket_route("/envelope", value_type=Envelope)
    async def envelope(ws: triows.WebSocket) -> None:
        pass


def rpc_methods() -> triows.JSONRPC:
    """Methods with typed, defaulted, positional and injected parameters, typed and
    unannotated results, a time limit, a dotted name."""
    rpc = triows.JSONRPC()

    @rpc.method
    async def add(a: int, b: int = 0) -> int:
        """Add two integers."""
        return a + b

    @rpc.method("geo.move", timeout=5.0)
    async def move(
        point: Point,
        by: Point,
        tenant: str,
        settings: dict[str, int],
        connection: triows.RPCConnection,
    ) -> Point:
        return {"x": point["x"] + by["x"], "y": point["y"] + by["y"]}

    @rpc.method
    async def join(message: Join) -> list[Said]:
        return []

    @rpc.method
    async def ping():  # type: ignore[no-untyped-def]
        return "pong"

    @rpc.method
    async def forget(key: str) -> None:
        pass

    return rpc


def wire_app() -> triows.App:
    """A typed route that really answers, for checking the wire against the document:
    ``join`` then ``say`` gets ``said``; saying "bye" gets ``left``."""
    app = triows.App(title="wire", version="1")

    @app.websocket_route("/chat", receive_type=ChatIn, send_type=ChatOut)
    async def chat(ws: triows.WebSocket) -> None:
        user = "?"
        async for message in ws:
            if isinstance(message, Join):
                user = message.user
            elif message.text == "bye":
                await ws.send(Left("left", user))
            else:
                await ws.send(Said("said", user, message.text, 1.5))

    return app
