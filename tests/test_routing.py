"""Routes: {name} segments, conversion, query binding, refusals, decoration errors."""

from __future__ import annotations

from typing import Any

import pytest

import triows
from triows.testing import HandshakeRejected, TestClient


def upper(value: str) -> str:
    """A converter: any callable taking a string works as an annotation."""
    return value.upper()


def _echo_params_app() -> tuple[triows.App, list[dict[str, Any]]]:
    app = triows.App()
    calls: list[dict[str, Any]] = []

    @app.websocket_route("/items/{item_id}/{ratio}/{flag}/{name}", send_type="json")
    async def item(ws: triows.WebSocket, item_id: int, ratio: float, flag: bool, name: str) -> None:
        calls.append({"item_id": item_id, "ratio": ratio, "flag": flag, "name": name})
        await ws.send([item_id, ratio, flag, name])

    return app, calls


async def test_route_segments_convert_by_annotation() -> None:
    app, calls = _echo_params_app()
    async with TestClient(app).websocket_connect("/items/42/2.5/yes/bob") as ws:
        assert await ws.receive_json() == [42, 2.5, True, "bob"]
    assert calls == [{"item_id": 42, "ratio": 2.5, "flag": True, "name": "bob"}]
    assert type(calls[0]["item_id"]) is int
    assert type(calls[0]["ratio"]) is float


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("YeS", True),
        ("on", True),
        ("On", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("NO", False),
        ("off", False),
        ("OFF", False),
    ],
)
async def test_bool_values_any_case(raw: str, expected: bool) -> None:
    app = triows.App()
    seen: list[bool] = []

    @app.websocket_route("/b/{value}")
    async def view(ws: triows.WebSocket, value: bool, q: bool = not expected) -> None:
        seen.append(value)
        seen.append(q)

    async with TestClient(app).websocket_connect(f"/b/{raw}", query={"q": raw}) as ws:
        assert await ws.wait_closed() == 1000
    assert seen == [expected, expected]


async def test_callable_annotation_converts() -> None:
    app = triows.App()

    @app.websocket_route("/u/{word}")
    async def view(ws: triows.WebSocket, word: upper, tag: upper = "none") -> None:  # type: ignore[valid-type]
        await ws.send(f"{word}:{tag}")

    async with TestClient(app).websocket_connect("/u/hello", query={"tag": "x"}) as ws:
        assert await ws.receive_text() == "HELLO:X"


async def test_query_binding_defaults_and_required() -> None:
    app = triows.App()

    @app.websocket_route("/q", send_type="json")
    async def view(
        ws: triows.WebSocket, page: int, size: int = 10, anonymous: bool = False, name: str = "?"
    ) -> None:
        await ws.send({"page": page, "size": size, "anonymous": anonymous, "name": name})

    client = TestClient(app)
    async with client.websocket_connect("/q?page=3") as ws:
        assert await ws.receive_json() == {
            "page": 3,
            "size": 10,
            "anonymous": False,
            "name": "?",
        }
    async with client.websocket_connect(
        "/q", query={"page": "1", "size": "5", "anonymous": "on", "name": "al"}
    ) as ws:
        assert await ws.receive_json() == {
            "page": 1,
            "size": 5,
            "anonymous": True,
            "name": "al",
        }


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/items/notanint/1.0/true/x", "item_id"),
        ("/items/1/notafloat/true/x", "ratio"),
        ("/items/1/1.0/maybe/x", "flag"),
    ],
)
async def test_bad_route_value_refuses_with_400_naming_it(path: str, parameter: str) -> None:
    app, calls = _echo_params_app()
    with pytest.raises(HandshakeRejected) as info:
        async with TestClient(app).websocket_connect(path):
            pass
    assert info.value.status == 400
    assert info.value.headers["content-type"] == "application/json"
    assert info.value.json()["parameter"] == parameter
    assert parameter in info.value.json()["detail"] or parameter == info.value.json()["parameter"]
    assert calls == []


async def test_missing_or_bad_query_parameter_refuses_with_400() -> None:
    app = triows.App()
    calls: list[int] = []

    @app.websocket_route("/q")
    async def view(ws: triows.WebSocket, page: int, verbose: bool = False) -> None:
        calls.append(page)

    client = TestClient(app)
    with pytest.raises(HandshakeRejected) as missing:
        async with client.websocket_connect("/q"):
            pass
    assert missing.value.status == 400
    assert missing.value.json()["parameter"] == "page"
    assert "missing" in missing.value.json()["detail"]

    with pytest.raises(HandshakeRejected) as bad:
        async with client.websocket_connect("/q?page=2&verbose=perhaps"):
            pass
    assert bad.value.status == 400
    assert bad.value.json()["parameter"] == "verbose"
    assert calls == []


async def test_no_route_refuses_with_403() -> None:
    app = triows.App()

    @app.websocket_route("/here")
    async def view(ws: triows.WebSocket) -> None:
        pass

    with pytest.raises(HandshakeRejected) as info:
        async with TestClient(app).websocket_connect("/elsewhere"):
            pass
    assert info.value.status == 403


async def test_http_only_route_refuses_websocket_with_403() -> None:
    app = triows.App()

    @app.route("/page")
    async def page(request: triows.Request) -> str:
        return "<p>hi</p>"

    client = TestClient(app)
    with pytest.raises(HandshakeRejected) as info:
        async with client.websocket_connect("/page"):
            pass
    assert info.value.status == 403
    assert (await client.get("/page")).status == 200


async def test_first_matching_route_wins_and_segments_do_not_cross_slashes() -> None:
    app = triows.App()

    @app.websocket_route("/a/{x}")
    async def one(ws: triows.WebSocket, x: str) -> None:
        await ws.send(f"one:{x}")

    @app.websocket_route("/a/{x}/{y}")
    async def two(ws: triows.WebSocket, x: str, y: str) -> None:
        await ws.send(f"two:{x}:{y}")

    client = TestClient(app)
    async with client.websocket_connect("/a/1") as ws:
        assert await ws.receive_text() == "one:1"
    async with client.websocket_connect("/a/1/2") as ws:
        assert await ws.receive_text() == "two:1:2"


# -- decoration-time errors ----------------------------------------------------------


def test_sync_view_raises_type_error() -> None:
    app = triows.App()
    with pytest.raises(TypeError, match="async def"):

        @app.websocket_route("/sync")
        def view(ws: triows.WebSocket) -> None:
            pass


def test_sync_http_view_raises_type_error() -> None:
    app = triows.App()
    with pytest.raises(TypeError):

        @app.route("/sync")
        def view(request: triows.Request) -> str:
            return ""


@pytest.mark.parametrize("argument", ["receive_type", "send_type", "value_type"])
def test_unknown_message_type_raises_value_error(argument: str) -> None:
    app = triows.App()
    with pytest.raises(ValueError, match=argument):
        app.websocket_route("/x", **{argument: "xml"})  # type: ignore[arg-type]


def test_route_parameter_missing_from_signature_names_it() -> None:
    app = triows.App()
    with pytest.raises(TypeError, match="channel"):

        @app.websocket_route("/chat/{channel}")
        async def view(ws: triows.WebSocket) -> None:
            pass


def test_unknown_annotation_name_raises_value_error() -> None:
    app = triows.App()
    namespace: dict[str, Any] = {}
    exec(
        "async def view(ws, n: 'NoSuchType'):\n    pass\n",
        namespace,
    )
    with pytest.raises(ValueError, match="NoSuchType"):
        app.websocket_route("/x/{n}")(namespace["view"])


def test_unconvertible_annotation_raises_value_error() -> None:
    app = triows.App()
    with pytest.raises(ValueError):

        @app.websocket_route("/x/{n}")
        async def view(ws: triows.WebSocket, n: int | str) -> None:
            pass


def test_pattern_must_start_with_slash() -> None:
    app = triows.App()
    with pytest.raises(ValueError):
        app.websocket_route("chat")


async def test_a_converter_defined_next_to_the_view_is_found() -> None:
    # This module uses `from __future__ import annotations`: annotations are
    # strings, and `Slug` exists only in this function's locals.
    class Slug(str):
        def __new__(cls, value: str) -> Slug:
            return super().__new__(cls, value.lower().replace(" ", "-"))

    app = triows.App()

    @app.websocket_route("/post/{slug}")
    async def post(ws: triows.WebSocket, slug: Slug, title: Slug | None = None) -> None:
        await ws.send(f"{type(slug).__name__}:{slug}|{title}")

    async with (
        TestClient(app) as client,
        client.websocket_connect("/post/Hello World", query={"title": "A B"}) as ws,
    ):
        assert await ws.receive_text() == "Slug:hello-world|a-b"


def test_an_unknown_annotation_still_says_which_name() -> None:
    app = triows.App()
    with pytest.raises(ValueError, match="unknown type name in annotations: name 'Nowhere'"):

        @app.websocket_route("/x")
        async def view(ws: triows.WebSocket, value: Nowhere) -> None:  # type: ignore[name-defined]  # noqa: F821
            pass
