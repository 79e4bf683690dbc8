"""``App.asyncapi()``: the document's structure, its HTTP path and ``triows asyncapi``.

The document's validity for the official parser is tested in test_asyncapi_parser.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio

import triows
from examples import echo, ticker
from triows._asyncapi._schemas import Components
from triows.testing import TestClient

from .asyncapi_apps import every_route_app
from .conftest import Backend, Served

ROOT = Path(__file__).resolve().parent.parent


def resolve(document: dict[str, Any], ref: str) -> Any:
    """Follow a local ``$ref`` (a JSON Pointer) in ``document``."""
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(value: Any) -> list[str]:
    """Every ``$ref`` in ``value``."""
    if isinstance(value, dict):
        found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return found + [r for item in value.values() for r in refs(item)]
    if isinstance(value, list):
        return [r for item in value for r in refs(item)]
    return []


def payload(document: dict[str, Any], message: dict[str, Any]) -> Any:
    """A message's payload schema, its ``$ref`` followed."""
    schema = message["payload"]
    return resolve(document, schema["$ref"]) if "$ref" in schema else schema


def messages_of(document: dict[str, Any], operation: str) -> list[dict[str, Any]]:
    return [resolve(document, ref["$ref"]) for ref in document["operations"][operation]["messages"]]


# -- the document ---------------------------------------------------------------------


def test_info_comes_from_the_app_and_can_be_overridden() -> None:
    app = every_route_app()
    document = app.asyncapi()
    assert document["asyncapi"] == "3.0.0"
    assert document["info"] == {"title": "every route", "version": "1.2.3"}
    assert "servers" not in document
    other = app.asyncapi(title="Other", version="2.0", description="About it.")
    assert other["info"] == {"title": "Other", "version": "2.0", "description": "About it."}
    assert triows.App().asyncapi()["info"] == {"title": "triows app", "version": "0.1.0"}


def test_every_websocket_route_is_a_channel_and_nothing_else() -> None:
    document = every_route_app().asyncapi()
    addresses = {cid: channel["address"] for cid, channel in document["channels"].items()}
    assert addresses == {
        "text": "/text",
        "room": "/json/{room}",
        "blob": "/bytes/{id}/{n}/{flag}",
        "upload": "/upload",
        "extra": "/extra/{name}",
        "text_2": "/other-text",  # a second view named "text" gets a unique id
        "chat": "/chat",
        "readings": "/readings",
        "map_points": "/map",
        "count": "/count",
        "envelope": "/envelope",
        "rpc_tenant": "/rpc/{tenant}",
        "live": "/live",
    }
    assert (
        document["channels"]["text"]["description"]
        == "Echo text.\n\nEvery text message comes back."
    )
    special = ("rpc_tenant", "live")  # JSON-RPC and live routes: tested below
    plain = {
        name: op
        for name, op in document["operations"].items()
        if name.partition(".")[0] not in special
    }
    assert sorted(plain) == sorted(
        f"{cid}.{action}"
        for cid in addresses
        if cid not in special
        for action in ("receive", "send")
    )
    for name, operation in plain.items():
        channel_id = name.rpartition(".")[0]
        assert operation["action"] == name.rpartition(".")[2]
        assert operation["channel"] == {"$ref": f"#/channels/{channel_id}"}
    for ref in refs(document):
        resolve(document, ref)  # every reference resolves


def test_untyped_messages_carry_their_content_type() -> None:
    document = every_route_app().asyncapi()
    [text] = messages_of(document, "text.receive")
    assert text["contentType"] == "text/plain" and text["payload"] == {"type": "string"}
    assert messages_of(document, "text.send") == [text]
    [binary] = messages_of(document, "blob.send")
    assert binary["contentType"] == "application/octet-stream"
    assert binary["payload"] == {"type": "string", "format": "binary"}
    [received] = messages_of(document, "upload.receive")
    [sent] = messages_of(document, "upload.send")
    assert received == binary
    assert sent["contentType"] == "application/json" and sent["payload"] == {}
    assert sorted(document["channels"]["upload"]["messages"]) == ["bytes", "json"]


def test_typed_messages_have_json_schemas_in_components() -> None:
    document = every_route_app().asyncapi()
    schemas = document["components"]["schemas"]
    # A tagged union is one message per member, each a named schema.
    received = messages_of(document, "chat.receive")
    assert [m["name"] for m in received] == ["Join", "Say"]
    say = received[1]
    assert say["contentType"] == "application/json"
    assert say["summary"] == "A user says something."
    assert say["payload"] == {"$ref": "#/components/schemas/Say"}
    assert schemas["Say"]["properties"]["type"] == {"enum": ["say"]}
    assert schemas["Say"]["properties"]["text"] == {"type": "string", "maxLength": 500}
    # Dataclass and attrs members of a union dispatched on a Literal `type` field.
    sent = messages_of(document, "chat.send")
    assert [m["name"] for m in sent] == ["Said", "Left"]
    assert schemas["Left"]["required"] == ["type", "user"]
    # A pydantic model, with its nested model moved into components too.
    [reading] = messages_of(document, "readings.receive")
    assert reading["payload"] == {"$ref": "#/components/schemas/Reading"}
    assert {"$ref": "#/components/schemas/Place"} in schemas["Reading"]["properties"]["where"][
        "anyOf"
    ]
    # An unnamed type (list of a TypedDict) is described inline, named after the type.
    [points] = messages_of(document, "readings.send")
    assert points["name"] == "list_Point"
    assert points["payload"] == {"type": "array", "items": {"$ref": "#/components/schemas/Point"}}
    assert schemas["Point"]["properties"] == {"x": {"type": "integer"}, "y": {"type": "integer"}}
    # A second class named Point, of another shape, gets its own name.
    [other] = messages_of(document, "map_points.receive")
    assert other["payload"] == {"$ref": "#/components/schemas/Point_2"}
    assert set(schemas["Point_2"]["properties"]) == {"lat", "lon"}
    # A tagged union inside a field: AsyncAPI's discriminator is the property's name.
    [envelope] = messages_of(document, "envelope.receive")
    body = schemas[envelope["payload"]["$ref"].rpartition("/")[2]]["properties"]["body"]
    assert body == {
        "anyOf": [{"$ref": "#/components/schemas/Join"}, {"$ref": "#/components/schemas/Say"}],
        "discriminator": "type",
    }
    # Typed one way, untyped the other.
    [text] = messages_of(document, "count.receive")
    [number] = messages_of(document, "count.send")
    assert text["contentType"] == "text/plain"
    assert number == {
        "name": "int",
        "contentType": "application/json",
        "payload": {"type": "integer"},
    }


def test_route_parameters_are_channel_parameters() -> None:
    channels = every_route_app().asyncapi()["channels"]
    assert "parameters" not in channels["text"]
    assert channels["room"]["parameters"] == {
        "room": {"description": "a path segment (a string; no '/')"}
    }
    blob = channels["blob"]["parameters"]
    assert list(blob) == ["id", "n", "flag"]
    assert "an integer" in blob["n"]["description"]
    assert "a boolean" in blob["flag"]["description"]
    # A {name} the view takes through **kwargs is still a parameter of the address.
    assert list(channels["extra"]["parameters"]) == ["name"]


def test_query_parameters_are_websocket_bindings_without_providers() -> None:
    channels = every_route_app().asyncapi()["channels"]
    query = channels["room"]["bindings"]["ws"]["query"]
    assert channels["room"]["bindings"]["ws"]["bindingVersion"] == "0.1.0"
    assert query["type"] == "object"
    assert "required" not in query
    # hub, settings (app scope) and user (connection scope) are providers: not listed.
    assert query["properties"] == {
        "limit": {"type": "integer", "default": 10},
        "ratio": {"type": "number", "default": 0.5},
        "verbose": {
            "type": "boolean",
            "description": "true/false, 1/0, yes/no or on/off, in any case",
            "default": False,
        },
        "token": {"type": "string"},
    }
    blob = channels["blob"]["bindings"]["ws"]["query"]
    assert blob == {
        "type": "object",
        "properties": {"key": {"type": "string"}},
        "required": ["key"],
    }
    assert "bindings" not in channels["text"]
    assert "bindings" not in channels["extra"]


def test_server_names_a_websocket_url() -> None:
    app = every_route_app()
    document = app.asyncapi(server="wss://example.com:8443/api/")
    assert document["servers"] == {
        "default": {"host": "example.com:8443", "protocol": "wss", "pathname": "/api"}
    }
    with pytest.raises(ValueError, match=r"server='http://example.com' is not a WebSocket URL"):
        app.asyncapi(server="http://example.com")


def test_each_call_builds_a_new_document() -> None:
    app = every_route_app()
    first = app.asyncapi()
    first["channels"].clear()
    assert app.asyncapi()["channels"]


# -- shared schemas ---------------------------------------------------------------------


def test_components_hoist_definitions_and_rewrite_references() -> None:
    components = Components()
    point = {"type": "object", "properties": {"x": {"type": "integer"}}}
    schema = {"$ref": "#/$defs/Line"}
    definitions = {"Line": {"type": "array", "items": {"$ref": "#/$defs/Point"}}, "Point": point}
    assert components.add(schema, definitions) == {"$ref": "#/components/schemas/Line"}
    assert schema == {"$ref": "#/$defs/Line"}  # the input is not modified
    assert definitions["Line"]["items"] == {"$ref": "#/$defs/Point"}
    assert components.schemas == {
        "Line": {"type": "array", "items": {"$ref": "#/components/schemas/Point"}},
        "Point": point,
    }
    # The same definition again is stored once.
    assert components.add({"$ref": "#/$defs/Point"}, {"Point": point}) == {
        "$ref": "#/components/schemas/Point"
    }
    # A different definition under a taken name gets the next free name, and the
    # references inside its own schema follow it.
    other = {"type": "string"}
    result = components.add(
        {"anyOf": [{"$ref": "#/$defs/Point"}, {"$ref": "#/$defs/Generic[int]"}]},
        {"Point": other, "Generic[int]": {"$ref": "#/$defs/Point"}},
    )
    assert result == {
        "anyOf": [
            {"$ref": "#/components/schemas/Point_2"},
            {"$ref": "#/components/schemas/Generic_int_"},
        ]
    }
    assert components.schemas["Point_2"] == other
    assert components.schemas["Generic_int_"] == {"$ref": "#/components/schemas/Point_2"}
    # OpenAPI's discriminator object (msgspec's, pydantic's) is AsyncAPI's property name.
    union = {
        "anyOf": [{"$ref": "#/$defs/Line"}],
        "discriminator": {"propertyName": "type", "mapping": {"line": "#/$defs/Line"}},
    }
    assert components.add(union, {}) == {
        "anyOf": [{"$ref": "#/components/schemas/Line"}],
        "discriminator": "type",
    }


# -- over HTTP --------------------------------------------------------------------------


async def test_asyncapi_path_serves_the_document_in_memory() -> None:
    app = triows.App(title="served", version="3", asyncapi_path="/asyncapi.json")

    @app.websocket_route("/late", value_type="json")
    async def late(ws: triows.WebSocket) -> None:
        pass

    async with TestClient(app) as client:
        response = await client.get("/asyncapi.json")
        assert response.status == 200
        assert response.headers["content-type"] == "application/json"
        document = response.json()
        # Built per request: a route registered after App() is in it.
        assert document["channels"]["late"]["address"] == "/late"
        assert document["info"] == {"title": "served", "version": "3"}
        server = document["servers"]["default"]
        assert document == app.asyncapi(server=f"ws://{server['host']}")
        assert (await client.request("POST", "/asyncapi.json")).status == 405
        # A Host header that is not a plain host[:port] is not echoed as the server.
        odd = await client.get("/asyncapi.json", headers={"host": "a b/<x>"})
        assert "servers" not in odd.json()


async def http_get(served: Served, path: str) -> tuple[bytes, bytes]:
    """GET ``path`` (over TLS when the server has it) with ``Connection: close``:
    the response's head and body."""
    parts = urlsplit(served.url_base)
    assert parts.hostname is not None and parts.port is not None
    stream: trio.abc.Stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    if served.ssl_context is not None:
        # https_compatible: the server may close without a TLS close_notify.
        stream = trio.SSLStream(
            stream, served.ssl_context, server_hostname=parts.hostname, https_compatible=True
        )
    async with stream:
        head = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n"
        await stream.send_all(head.encode())
        raw = b""
        while chunk := await stream.receive_some(65536):
            raw += chunk
    head_bytes, _, body = raw.partition(b"\r\n\r\n")
    return head_bytes, body


async def test_asyncapi_path_serves_the_document_over_sockets(backend: Backend) -> None:
    app = triows.App(title="served", asyncapi_path="/docs/asyncapi.json")

    @app.websocket_route("/echo")
    async def echo_view(ws: triows.WebSocket) -> None:
        pass

    with trio.fail_after(10):
        async with backend.serve(app) as served:
            head, body = await http_get(served, "/docs/asyncapi.json")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-type: application/json" in head.lower()
    document = json.loads(body)
    # The server named is the one the document was fetched from: wss:// over TLS.
    netloc = urlsplit(served.url_base).netloc
    scheme = "wss" if served.ssl_context is not None else "ws"
    assert document["servers"] == {"default": {"host": netloc, "protocol": scheme}}
    assert document == app.asyncapi(server=f"{scheme}://{netloc}")


# -- triows asyncapi ---------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "triows", "asyncapi", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_prints_the_document_as_json() -> None:
    for target in ("examples.echo:app", "examples/echo.py:app"):
        done = run_cli(target)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == echo.app.asyncapi()
    done = run_cli(
        "examples.ticker:app", "--title", "Ticker", "--version", "9", "--server", "ws://h:1"
    )
    assert done.returncode == 0, done.stderr
    expected = ticker.app.asyncapi(title="Ticker", version="9", server="ws://h:1")
    assert json.loads(done.stdout) == expected


def test_cli_errors_name_the_problem() -> None:
    done = run_cli("examples.echo:app", "--server", "http://example.com")
    assert done.returncode == 2
    assert "server='http://example.com' is not a WebSocket URL" in done.stderr
    done = run_cli("examples.echo:nothing")
    assert done.returncode == 1
    assert "has no attribute 'nothing'" in done.stderr


NIL = uuid.UUID(int=0)


def test_defaults_that_are_not_json_values_are_left_out() -> None:
    app = triows.App()

    @app.websocket_route("/limits")
    async def limits(
        ws: triows.WebSocket, top: float = float("inf"), since: uuid.UUID = NIL
    ) -> None:
        pass

    query = app.asyncapi()["channels"]["limits"]["bindings"]["ws"]["query"]
    assert query["properties"] == {
        "top": {"type": "number"},
        "since": {"type": "string", "format": "uuid"},
    }
    json.dumps(app.asyncapi(), allow_nan=False)  # strict JSON throughout


# -- JSON-RPC routes ----------------------------------------------------------------------


def test_jsonrpc_route_is_one_channel_with_an_operation_per_method() -> None:
    document = every_route_app().asyncapi()
    channel = document["channels"]["rpc_tenant"]
    assert channel["address"] == "/rpc/{tenant}"
    assert list(channel["parameters"]) == ["tenant"]
    assert "bindings" not in channel  # a JSON-RPC route takes no query parameters
    assert "batch" in channel["description"] and "$/cancelRequest" in channel["description"]
    operations = {
        name.partition(".")[2]: operation
        for name, operation in document["operations"].items()
        if name.startswith("rpc_tenant.")
    }
    assert list(operations) == [
        "add",
        "geo.move",
        "join",
        "ping",
        "forget",
        "batch",
        "cancelRequest",
        "notifications",
    ]
    add = operations["add"]
    assert add["action"] == "receive"
    assert add["description"].startswith("Add two integers.\n\nErrors triows may answer with:")
    [request] = messages_of(document, "rpc_tenant.add")
    reply = [resolve(document, ref["$ref"]) for ref in add["reply"]["messages"]]
    assert add["reply"]["channel"] == {"$ref": "#/channels/rpc_tenant"}
    assert [m["name"] for m in [request, *reply]] == ["add.request", "add.result", "error"]
    assert payload(document, request)["properties"]["method"] == {"const": "add"}
    assert payload(document, reply[0])["properties"]["result"] == {"type": "integer"}
    error = payload(document, reply[1])["properties"]["error"]
    assert error["required"] == ["code", "message"]
    for code in (-32700, -32600, -32601, -32602, -32603, -32800, -32001):
        assert str(code) in reply[1]["description"]
    assert operations["cancelRequest"]["action"] == "receive"
    # A batch: an array of any requests (cancelRequest too), answered by an array.
    [batch] = messages_of(document, "rpc_tenant.batch")
    requests = payload(document, batch)["items"]["anyOf"]
    assert requests[0] == {"$ref": "#/components/schemas/AddRequest"}
    assert requests[-1] == {"$ref": "#/components/schemas/CancelRequest"}
    assert request["payload"] == requests[0]  # the same schema, shared
    batch_reply = operations["batch"]["reply"]["messages"]
    assert [ref["$ref"].rpartition("/")[2] for ref in batch_reply] == ["batchReply", "error"]
    [notification] = messages_of(document, "rpc_tenant.notifications")
    assert operations["notifications"]["action"] == "send"
    assert payload(document, notification)["required"] == ["jsonrpc", "method"]


def test_jsonrpc_params_by_name_and_by_position() -> None:
    document = every_route_app().asyncapi()
    messages = document["channels"]["rpc_tenant"]["messages"]
    add = payload(document, messages["add.request"])
    assert add["required"] == ["jsonrpc", "method", "params"]
    by_name, by_position = add["properties"]["params"]["oneOf"]
    assert by_name == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    assert by_position["items"] == [{"type": "integer"}, {"type": "integer"}]
    assert (by_position["minItems"], by_position["maxItems"]) == (1, 2)
    # Injected parameters (route value, provider, connection) are not params.
    move = payload(document, messages["geo.move.request"])["properties"]["params"]["oneOf"][0]
    assert list(move["properties"]) == ["point", "by"]
    assert move["properties"]["point"] == {"$ref": "#/components/schemas/Point"}
    move_description = document["operations"]["rpc_tenant.geo.move"]["description"]
    assert (
        "-32001 'request timed out'" in move_description and "Time limit: 5 s." in move_description
    )
    assert "-32001" not in document["operations"]["rpc_tenant.add"]["description"]
    # No params at all: params may be left out, or be {} or [].
    ping = payload(document, messages["ping.request"])
    assert ping["required"] == ["jsonrpc", "method"]
    assert ping["properties"]["params"]["oneOf"][1] == {"type": "array", "maxItems": 0}
    assert payload(document, messages["ping.result"])["properties"]["result"] == {}
    join = payload(document, messages["join.result"])["properties"]["result"]
    assert join == {"type": "array", "items": {"$ref": "#/components/schemas/Said"}}


# -- live routes ---------------------------------------------------------------------------


def test_live_route_is_the_live_protocol() -> None:
    document = every_route_app().asyncapi()
    channel = document["channels"]["live"]
    assert channel["address"] == "/live"
    assert "live protocol (version 1" in channel["description"]
    operations = {
        name.partition(".")[2]: operation
        for name, operation in document["operations"].items()
        if name.startswith("live.")
    }
    assert list(operations) == ["subscribe", "unsubscribe", "publish", "frames"]
    replies = {
        name: [ref["$ref"].rpartition("/")[2] for ref in op["reply"]["messages"]]
        for name, op in operations.items()
        if "reply" in op
    }
    assert replies == {
        "subscribe": ["subscribed", "error"],
        "unsubscribe": ["unsubscribed", "error"],
        "publish": ["ack", "error"],
    }
    assert operations["frames"]["action"] == "send"
    pushed = [m["payload"]["properties"]["type"] for m in messages_of(document, "live.frames")]
    assert pushed == [
        {"const": kind} for kind in ("welcome", "message", "gap", "presence", "presence_change")
    ]
    # The route's message_type is the schema of a publish's data.
    [publish] = messages_of(document, "live.publish")
    schema = resolve(document, publish["payload"]["$ref"])
    assert schema["properties"]["data"] == {"$ref": "#/components/schemas/Say"}
    assert schema["required"] == ["type", "topic", "id"]
    error = channel["messages"]["error"]["payload"]["properties"]["code"]
    assert "not_subscribed" in error["enum"] and "unavailable" in error["enum"]
