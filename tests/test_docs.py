"""The documentation's code: every snippet runs here, and the site builds.

Every ```python block in ``docs/`` must be a ``--8<--`` include of a file under
``docs/snippets/`` (or ``examples/``) that this module exercises, so no untested
code can reach the docs.  The claims the guide makes in prose about behaviour
(close codes, refusals, error messages) are checked here too.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import importlib.util
import inspect
import itertools
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
import trio_websocket
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from trio_websocket import open_websocket_url

import triows
import triows.testing
from triows import WebSocket, WebSocketDisconnect
from triows.testing import HandshakeRejected, ServerClosed, TestClient, live_server

from .asyncapi_parser import parse_documents, run_script
from .conftest import Backend, Served
from .raw_client import handshake, open_stream
from .redis_server import RedisServer, redis_server

__all__ = ["redis_server"]

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SNIPPETS = DOCS / "snippets"
_counter = itertools.count()

# The snippet files exercised below; the coverage test checks the list is complete.
TESTED_SNIPPETS = {
    "accept_close",
    "asgi_events",
    "asyncapi_app",
    "background",
    "broadcast_send",
    "backends",
    "client",
    "client_closures",
    "concurrency",
    "drain",
    "echo",
    "embedded",
    "errors",
    "expiring_credentials",
    "http_routes",
    "hub_basics",
    "hub_gap",
    "hub_last",
    "hub_overflow",
    "hub_presence",
    "hub_redis",
    "hub_resume",
    "hub_room",
    "inspect_request",
    "iteration",
    "jsonrpc_basics",
    "jsonrpc_cancel",
    "limits",
    "live_client",
    "live_route",
    "message_types",
    "metrics",
    "parameters",
    "providers",
    "providers_connection",
    "proxy",
    "reject",
    "returning_errors",
    "security",
    "sessions",
    "testing_inmemory",
    "testing_live",
    "tls",
    "tracing",
    "typed_errors",
    "typed_messages",
}


def load(name: str) -> ModuleType:
    """Import ``docs/snippets/<name>.py`` afresh (each test gets its own App)."""
    path = SNIPPETS / f"{name}.py"
    module_name = f"_triows_docs_{name}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def snippet_app(name: str) -> triows.App:
    app = load(name).app
    assert isinstance(app, triows.App)
    return app


# -- the docs' own rules ----------------------------------------------------------------

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<info>[^\n]*)$", re.M)
_INCLUDE = re.compile(r'^\s*--8<--\s+"(?P<path>[^"]+)"\s*$')


def _python_blocks(text: str) -> list[str]:
    """The bodies of every ```python (or ```py, ```pycon) fenced block in ``text``."""
    blocks: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        fence = match.group("fence")
        info = match.group("info").strip().lstrip("{").lstrip(".").split()
        language = info[0].lower() if info else ""
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index])
            index += 1
        index += 1
        if language in {"python", "py", "python3", "pycon"}:
            blocks.append("\n".join(body))
    return blocks


def _included_file(block: str) -> str | None:
    """The path a block includes when it is nothing but one snippets include."""
    lines = [line for line in block.splitlines() if line.strip()]
    if len(lines) != 1:
        return None
    match = _INCLUDE.match(lines[0])
    return None if match is None else match.group("path")


def _markdown_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _tested_paths() -> set[str]:
    paths = {f"docs/snippets/{name}.py" for name in TESTED_SNIPPETS}
    paths.update(_tested_example_paths())
    return paths


def _tested_example_paths() -> set[str]:
    # examples/ have their own tests (issue 2); the docs may include them verbatim.
    return {
        str(path.relative_to(ROOT))
        for path in (ROOT / "examples").rglob("*.py")
        if "__pycache__" not in path.parts
    }


def test_fence_parser_finds_untested_code() -> None:
    page = (
        "Intro\n\n```python\nprint('untested')\n```\n\n"
        '```python\n--8<-- "docs/snippets/echo.py"\n```\n\n```bash\ntriows run echo:app\n```\n'
    )
    blocks = _python_blocks(page)
    assert len(blocks) == 2
    assert _included_file(blocks[0]) is None
    assert _included_file(blocks[1]) == "docs/snippets/echo.py"


def test_every_python_block_includes_a_tested_snippet() -> None:
    tested = _tested_paths()
    problems: list[str] = []
    for page in _markdown_pages():
        for block in _python_blocks(page.read_text()):
            included = _included_file(block)
            if included is None:
                problems.append(f"{page.relative_to(ROOT)}: inline code: {block[:60]!r}")
            elif included not in tested:
                problems.append(f"{page.relative_to(ROOT)}: includes untested {included}")
            elif not (ROOT / included).is_file():
                problems.append(f"{page.relative_to(ROOT)}: includes missing {included}")
    assert not problems, "\n".join(problems)


def test_every_snippet_file_is_tested_and_used() -> None:
    on_disk = {path.stem for path in SNIPPETS.glob("*.py")}
    assert on_disk == TESTED_SNIPPETS
    text = "\n".join(page.read_text() for page in _markdown_pages())
    unused = [name for name in sorted(on_disk) if f'"docs/snippets/{name}.py"' not in text]
    assert not unused, f"snippets no page includes: {unused}"


def test_every_public_name_is_documented() -> None:
    reference = (DOCS / "reference.md").read_text()
    everything = "\n".join(page.read_text() for page in _markdown_pages())
    missing = [
        f"triows.{name}"
        for name in triows.__all__
        if f"triows.{name}" not in reference and f"triows.{name}" not in everything
    ]
    missing += [
        f"triows.testing.{name}"
        for name in triows.testing.__all__
        if f"triows.testing.{name}" not in reference and f"triows.testing.{name}" not in everything
    ]
    assert not missing, f"public names without documentation: {missing}"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    assert mkdocs is not None, "mkdocs is not installed: pip install -e '.[test]'"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    built = tmp_path / "site"
    assert (built / "index.html").is_file()
    assert (built / "guide" / "websockets" / "index.html").is_file()
    reference = (built / "reference" / "index.html").read_text()
    # mkdocstrings rendered the docstrings, not just the headings.
    assert "Close the connection with" in reference
    assert "An in-memory client for an App" in reference
    # Snippets were included, not left as include markers.
    guide = (built / "guide" / "websockets" / "index.html").read_text()
    assert "--8&lt;--" not in guide and "--8<--" not in guide
    assert "You said: " in guide


# -- getting started ---------------------------------------------------------------------


async def test_echo() -> None:
    app = snippet_app("echo")
    async with TestClient(app) as client, client.websocket_connect("/echo") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "You said: hi"
        assert await ws.wait_closed() == 1000


async def test_client_against_a_live_echo() -> None:
    app = snippet_app("echo")
    talk = load("client").talk
    async with live_server(app) as server:
        assert await talk(server.url("/echo")) == "You said: hello"


async def test_embedded_serve(capsys: pytest.CaptureFixture[str]) -> None:
    module = load("embedded")
    with trio.fail_after(10):
        await module.main()
    assert capsys.readouterr().out == "You said: ping\n"


async def test_drain(capsys: pytest.CaptureFixture[str]) -> None:
    module = load("drain")
    with trio.fail_after(10):
        await module.main()
    assert capsys.readouterr().out == "welcome\nclosed with 1012 service restart\n"


def test_cli_help_lists_run() -> None:
    # getting-started.md shows `triows run` and `python -m triows run`.
    result = subprocess.run(
        [sys.executable, "-m", "triows", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    for option in (
        "--host",
        "--port",
        "--shutdown-timeout",
        "--max-message-size",
        "--handshake-timeout",
        "--backend",
    ):
        assert option in result.stdout


# -- the WebSocket guide -----------------------------------------------------------------


async def test_route_and_query_parameters() -> None:
    app = snippet_app("parameters")
    async with TestClient(app) as client:
        async with client.websocket_connect(
            "/chat/general", query={"anonymous": "yes"}, headers={"user": "ann"}
        ) as ws:
            await ws.send_json({"text": "hi"})
            assert await ws.receive_json() == {
                "channel": "general",
                "user": "Anonymous",
                "message": {"text": "hi"},
            }
        async with client.websocket_connect("/chat/general", headers={"user": "ann"}) as ws:
            await ws.send_json("hello")
            assert (await ws.receive_json())["user"] == "ann"
        async with client.websocket_connect(
            "/boards/7", query={"page": "2", "color": "green"}
        ) as ws:
            assert await ws.receive_text() == "board 7, page 2, green"
        for path, query, parameter in [
            ("/boards/seven", {"page": "1"}, "board_id"),
            ("/boards/7", {}, "page"),
            ("/boards/7", {"page": "1", "color": "blue"}, "color"),
            ("/chat/general", {"anonymous": "maybe"}, "anonymous"),
        ]:
            with pytest.raises(HandshakeRejected) as refused:
                async with client.websocket_connect(path, query=query):
                    pass
            assert refused.value.status == 400
            assert refused.value.json()["parameter"] == parameter
        with pytest.raises(HandshakeRejected) as refused:
            async with client.websocket_connect("/nowhere"):
                pass
        assert refused.value.status == 403


def test_decoration_time_errors() -> None:
    app = triows.App()

    def sync_view(ws: WebSocket) -> None:
        pass

    with pytest.raises(TypeError, match="async def"):
        app.websocket_route("/sync")(sync_view)
    with pytest.raises(TypeError, match="channel"):

        @app.websocket_route("/chat/{channel}")
        async def missing(ws: WebSocket) -> None:
            pass

    with pytest.raises(ValueError, match="receive_type"):
        app.websocket_route("/x", receive_type="xml")


async def test_inspect_request() -> None:
    app = snippet_app("inspect_request")
    async with (
        TestClient(app) as client,
        client.websocket_connect("/whoami?tag=a&tag=b", headers={"user-agent": "docs"}) as ws,
    ):
        assert await ws.receive_json() == {
            "url": "ws://testserver/whoami?tag=a&tag=b",
            "path": "/whoami",
            "agent": "docs",
            "sort": "newest",
            "tags": ["a", "b"],
        }


async def test_sessions() -> None:
    app = snippet_app("sessions")
    async with TestClient(app) as client:
        async with client.websocket_connect("/me") as ws:
            assert await ws.wait_closed() == 4401
        response = await client.request("POST", "/login", body='{"user": "ann"}')
        cookie = response.headers["set-cookie"].split(";")[0]
        async with client.websocket_connect("/me", headers={"cookie": cookie}) as ws:
            assert await ws.receive_text() == "hello, ann"
        tampered = cookie[:-2] + "xx"
        async with client.websocket_connect("/me", headers={"cookie": tampered}) as ws:
            assert await ws.wait_closed() == 4401


async def test_session_needs_a_secret() -> None:
    app = triows.App()
    seen: list[str] = []

    @app.websocket_route("/s")
    async def view(ws: WebSocket) -> None:
        try:
            ws.session  # noqa: B018
        except RuntimeError as exc:
            seen.append(str(exc))

    async with TestClient(app) as client, client.websocket_connect("/s") as ws:
        await ws.wait_closed()
    assert "session_secret" in seen[0]


async def test_message_types() -> None:
    app = snippet_app("message_types")
    async with TestClient(app) as client:
        async with client.websocket_connect("/sum") as ws:
            await ws.send_json([1, 2, 3])
            assert await ws.receive_text() == '{"sum":6}'  # JSON arrives as text
        async with client.websocket_connect("/shout") as ws:
            await ws.send_bytes(b"hey")
            assert await ws.receive_text() == "HEY"
        async with client.websocket_connect("/mixed") as ws:
            await ws.send_text("ann")
            await ws.send_json({"dark": True})
            await ws.send_bytes(b"abc")
            assert await ws.receive_json() == {"name": "ann", "settings": {"dark": True}, "size": 3}
            assert await ws.receive_bytes() == b"cba"


async def test_typed_messages() -> None:
    app = snippet_app("typed_messages")
    async with TestClient(app).websocket_connect("/chat") as ws:
        await ws.send_json({"type": "join", "name": "ann"})
        await ws.send_json({"type": "say", "text": "hi"})
        assert await ws.receive_json() == {"type": "said", "name": "ann", "text": "hi"}
        await ws.send_json({"type": "shout", "text": "HI"})
        with pytest.raises(ServerClosed) as closed:
            await ws.receive()
    assert closed.value.code == 1007
    assert closed.value.reason.startswith("invalid message at $.type: Invalid value 'shout'")
    with pytest.raises(TypeError, match="cannot be a message type"):
        app.websocket_route("/bad", receive_type=object)


async def test_typed_errors() -> None:
    app = snippet_app("typed_errors")
    async with TestClient(app) as client:
        async with client.websocket_connect("/forgiving") as ws:
            await ws.send_json({"x": 1, "y": "2"})
            assert await ws.receive_json() == {"error": "Expected `int`, got `str`", "field": "$.y"}
            await ws.send_text("{not json")  # not JSON at all: MessageDecodeError, uncaught
            assert await ws.wait_closed() == 1007
        async with client.websocket_connect("/strict") as ws:
            await ws.send_json({"x": 1, "y": 2})
            assert await ws.receive_json() == {"x": 2, "y": 1}
            await ws.send_json({"x": 1})
            with pytest.raises(ServerClosed) as closed:
                await ws.receive()
    assert closed.value.code == 1007
    assert closed.value.reason == "invalid message: Object missing required field `y`"


async def test_asyncapi_page(tmp_path: Path) -> None:
    app = snippet_app("asyncapi_app")
    async with TestClient(app) as client:
        async with client.websocket_connect("/rooms/lobby") as ws:
            await ws.send_json({"type": "join", "name": "ann"})
            await ws.send_json({"type": "say", "text": "hi"})
            assert await ws.receive_json() == {"type": "said", "name": "ann", "text": "hi"}
        served = (await client.get("/asyncapi.json")).json()
        page = await client.get("/api")
    assert '<asyncapi-component\n      schemaUrl="/asyncapi.json"' in page.text
    document = app.asyncapi()
    assert served == app.asyncapi(server=f"ws://{served['servers']['default']['host']}")
    assert document["info"] == {"title": "Chat API", "version": "1.0.0"}
    channel = document["channels"]["chat_room"]
    assert channel["address"] == "/rooms/{room}"
    assert channel["bindings"]["ws"]["query"]["properties"] == {
        "history": {"type": "integer", "default": 20}
    }
    assert sorted(channel["messages"]) == ["Join", "Said", "Say"]
    rename = document["components"]["schemas"]["RenameRequest"]
    assert document["channels"]["rpc"]["messages"]["rename.request"]["payload"] == {
        "$ref": "#/components/schemas/RenameRequest"
    }
    assert list(rename["properties"]["params"]["oneOf"][0]["properties"]) == ["old", "new"]
    assert document["operations"]["rpc.rename"]["reply"]["messages"] == [
        {"$ref": "#/channels/rpc/messages/rename.result"},
        {"$ref": "#/channels/rpc/messages/error"},
    ]
    [result] = (await trio.to_thread.run_sync(parse_documents, {"page": served})).values()
    assert result.parsed and not result.problems, result.problems
    # The TypeScript script, run on the document: the page shows part of its output.
    (tmp_path / "asyncapi.json").write_text(json.dumps(document))
    script = SNIPPETS / "asyncapi_types.mjs"
    types = await trio.to_thread.run_sync(run_script, script, str(tmp_path / "asyncapi.json"))
    text = (DOCS / "guide" / "asyncapi.md").read_text()
    shown = re.findall(r"```ts\n(.*?)```", text, re.S)
    assert len(shown) == 2
    for block in shown:
        assert block in types
    assert "export type ChatRoom = Join | Say;" in types
    assert "export interface Said {\n  type: AnonymousSchema_6;\n  name: string;\n" in types


def _rpc(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        message["params"] = params
    return message


async def test_jsonrpc_basics() -> None:
    app = snippet_app("jsonrpc_basics")
    async with TestClient(app).websocket_connect("/rpc") as ws:
        await ws.send_json(_rpc("add", {"a": 2, "b": 3}))
        assert await ws.receive_json() == {"jsonrpc": "2.0", "result": 5, "id": 1}
        await ws.send_json(_rpc("geometry.midpoint", [{"x": 0, "y": 0}, {"x": 2, "y": 4}], 2))
        assert (await ws.receive_json())["result"] == {"x": 1.0, "y": 2.0}
        await ws.send_json(_rpc("divide", [1, 0], 3))
        assert (await ws.receive_json())["error"] == {
            "code": 4000,
            "message": "division by zero",
            "data": {"b": 0.0},
        }
        await ws.send_json(_rpc("add", {"a": "two"}, 4))
        assert (await ws.receive_json())["error"] == {
            "code": -32602,
            "message": "Invalid params",
            "data": {"field": "params.a", "problem": "Expected `int`, got `str`"},
        }
        await ws.send_json({"jsonrpc": "2.0", "method": "add", "params": [1]})  # notification
        await ws.send_text('[{"jsonrpc": "2.0", "method": "add", "params": [1], "id": 5}, 7]')
        # A batch's answers come in one array, in any order: sorted here (None < 5).
        answers = sorted(await ws.receive_json(), key=lambda a: a["id"] is not None)
        assert answers == [
            {
                "jsonrpc": "2.0",
                "error": {
                    "code": -32600,
                    "message": "Invalid Request",
                    "data": {"problem": "a request must be a JSON object"},
                },
                "id": None,
            },
            {"jsonrpc": "2.0", "result": 1, "id": 5},
        ]


async def test_jsonrpc_cancel(capsys: pytest.CaptureFixture[str]) -> None:
    module = load("jsonrpc_cancel")
    async with TestClient(module.app) as client, client.websocket_connect("/rpc") as ws:
        assert await ws.receive_json() == {
            "jsonrpc": "2.0",
            "method": "welcome",
            "params": {"methods": ["reports.build", "watch"]},
        }
        await ws.send_json(_rpc("reports.build", {"rows": 1000}, "r1"))
        await ws.send_json(_rpc("watch", ["sports"], "w1"))
        assert await ws.receive_json() == {
            "jsonrpc": "2.0",
            "result": "watching sports",
            "id": "w1",
        }
        await ws.send_json({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": "r1"}})
        assert await ws.receive_json() == {
            "jsonrpc": "2.0",
            "error": {"code": -32800, "message": "request cancelled"},
            "id": "r1",
        }
        assert "report stopped after 0 of 1000 rows" in capsys.readouterr().out
        await module.hub.publish("sports", "goal")
        assert await ws.receive_json() == {
            "jsonrpc": "2.0",
            "method": "news",
            "params": {"topic": "sports", "message": "goal"},
        }


async def test_iteration_forms_are_equivalent() -> None:
    app = snippet_app("iteration")
    async with TestClient(app) as client:
        for path in ("/echo", "/echo-longhand"):
            async with client.websocket_connect(path) as ws:
                for word in ("a", "b"):
                    await ws.send_text(word)
                    assert await ws.receive_text() == f"You said: {word}"
                await ws.close(1000)


async def test_asgi_events() -> None:
    app = snippet_app("asgi_events")
    async with TestClient(app) as client:
        async with client.websocket_connect("/echo") as ws:
            await ws.send_text("hi")
            assert await ws.receive_text() == "You said: hi"
            assert await ws.wait_closed() == 1000
        async with client.websocket_connect("/raw") as ws:
            await ws.send_bytes(b"1234")
            assert await ws.receive_text() == "4 received"
            await ws.close(4004)  # the view sees the disconnect event and returns


async def test_errors_close_with_1011_and_reach_the_server() -> None:
    app = snippet_app("errors")
    async with TestClient(app) as client:
        with pytest.raises(ZeroDivisionError):
            async with client.websocket_connect("/divide") as ws:
                await ws.send_json({"a": 1, "b": 2})
                assert await ws.receive_json() == 0.5
                await ws.send_json({"a": 1, "b": 0})
                assert await ws.wait_closed() == triows.status.WS_1011_INTERNAL_ERROR
        with pytest.raises(HandshakeRejected) as refused:
            async with client.websocket_connect("/not-ready"):
                pass
        assert refused.value.status == 500
        # The server keeps serving after both.
        async with client.websocket_connect("/forgiving") as ws:
            await ws.send_text("{not json")
            assert "not valid JSON" in (await ws.receive_json())["error"]
            await ws.send_json([1])
            assert await ws.receive_json() == {"ok": [1]}


async def test_bad_messages_close_with_1003_and_1007() -> None:
    app = snippet_app("message_types")
    async with TestClient(app) as client:
        async with client.websocket_connect("/sum") as ws:
            await ws.send_text("{not json")
            with pytest.raises(ServerClosed) as closed:
                await ws.receive_text()
            assert closed.value.code == triows.status.WS_1007_INVALID_FRAME_PAYLOAD_DATA
        async with client.websocket_connect("/shout") as ws:
            await ws.send_text("text where bytes were expected")
            assert await ws.wait_closed() == triows.status.WS_1003_UNSUPPORTED_DATA


async def test_accept_close() -> None:
    module = load("accept_close")
    async with TestClient(module.app) as client:
        async with client.websocket_connect("/hello") as ws:
            assert await ws.receive_text() == "hello"
            assert await ws.wait_closed() == 1000
        async with client.websocket_connect("/hello-with") as ws:
            assert await ws.receive_text() == "hello"
            assert await ws.wait_closed() == 1000
        async with client.websocket_connect("/maintenance") as ws:
            with pytest.raises(ServerClosed) as closed:
                await ws.receive()
            assert (closed.value.code, closed.value.reason) == (1013, "come back later")
    assert module.log == [
        "accepting",
        "closed",
        "closed normally",
        "a second close() is an error",
    ]


async def test_reject() -> None:
    app = snippet_app("reject")
    async with TestClient(app) as client:
        with pytest.raises(HandshakeRejected) as refused:
            async with client.websocket_connect("/private"):
                pass
        assert refused.value.status == 403
        async with client.websocket_connect("/private", headers={"api-key": "s3kr3t"}) as ws:
            assert await ws.receive_text() == "welcome"
        with pytest.raises(HandshakeRejected) as refused:
            async with client.websocket_connect("/members"):
                pass
        assert (refused.value.status, refused.value.body) == (401, b"log in first")
        async with client.websocket_connect(
            "/members", headers={"authorization": "Bearer let-me-in"}
        ) as ws:
            assert await ws.receive_text() == "hello, member"


async def test_reject_after_accept_says_how_to_fix_it() -> None:
    app = triows.App()

    @app.websocket_route("/late")  # auto_accept=True: already accepted
    async def late(ws: WebSocket) -> None:
        await ws.reject()

    async with TestClient(app) as client:
        with pytest.raises(RuntimeError, match="auto_accept=False"):
            async with client.websocket_connect("/late") as ws:
                assert await ws.wait_closed() == 1011


async def test_returning_errors() -> None:
    app = snippet_app("returning_errors")
    async with TestClient(app) as client:
        async with client.websocket_connect("/dangerous") as ws:
            await ws.send_text("hi")
            assert await ws.receive_text() == "OK"
            await ws.send_text("boom")
            with pytest.raises(ServerClosed) as closed:
                await ws.receive_text()
            assert (closed.value.code, closed.value.reason) == (4003, "you asked for it")
        async with client.websocket_connect("/strict") as ws:
            await ws.send_text("yo")
            assert await ws.wait_closed() == 1008
        # A ClientError is the client's fault: its close_code, never 1011, not re-raised.
        async with client.websocket_connect("/admin") as ws:
            await ws.send_text("status")
            assert await ws.receive_text() == "status: fine"
            await ws.send_text("reboot")
            with pytest.raises(ServerClosed) as closed:
                await ws.receive_text()
            assert (closed.value.code, closed.value.reason) == (4004, "unknown command 'reboot'")
    assert 4003 in triows.status.APPLICATION_CODES


async def test_unsendable_close_codes_are_refused() -> None:
    app = triows.App()
    errors: list[str] = []

    @app.websocket_route("/c")
    async def view(ws: WebSocket) -> None:
        for code in (1006, 999, 5000):
            try:
                await ws.close(code)
            except ValueError as exc:
                errors.append(str(exc))

    async with TestClient(app) as client, client.websocket_connect("/c") as ws:
        assert await ws.wait_closed() == 1000
    assert len(errors) == 3


@pytest.mark.parametrize(
    ("path", "code", "silenced"),
    [
        ("/default", 1000, True),
        ("/default", 1001, True),
        ("/default", 1006, False),
        ("/browsers", 1006, True),
        ("/browsers", 4000, False),
        ("/anything", 4000, True),
        ("/nothing", 1000, False),
    ],
)
async def test_caught_close_codes(
    path: str, code: int, silenced: bool, caplog: pytest.LogCaptureFixture
) -> None:
    app = snippet_app("client_closures")
    async with TestClient(app) as client, client.websocket_connect(path) as ws:
        await ws.send_text("x")
        assert await ws.receive_text() == "x"
        await ws.close(code)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if silenced:
        assert warnings == []
    else:
        assert len(warnings) == 1 and f"close code {code}" in warnings[0]
        assert f"add {code} to caught_close_codes" in warnings[0]


async def test_handling_disconnects_by_hand() -> None:
    module = load("client_closures")
    async with TestClient(module.app) as client, client.websocket_connect("/by-hand") as ws:
        await ws.close(1006, "")
    assert module.log == ["client left with 1006 ''"]


# -- structured concurrency --------------------------------------------------------------


async def test_client_leaving_cancels_a_view_that_is_not_receiving() -> None:
    module = load("concurrency")
    async with TestClient(module.app) as client:
        started = time.monotonic()
        async with client.websocket_connect("/report") as ws:
            assert await ws.receive_text() == "working on it"
            await ws.close(1001)
        assert time.monotonic() - started < 1.0
        assert module.log == ["report cleaned up"]


async def test_shutdown_cancels_views_and_sends_1001() -> None:
    module = load("concurrency")
    app: triows.App = module.app
    async with TestClient(app) as client, client.websocket_connect("/report") as ws:
        assert await ws.receive_text() == "working on it"
        await app.close_connections()
        assert await ws.wait_closed() == triows.status.WS_1001_GOING_AWAY
        assert module.log == ["report cleaned up"]


async def test_shielded_cleanup_runs() -> None:
    module = load("concurrency")
    async with TestClient(module.app) as client, client.websocket_connect("/job") as ws:
        await trio.sleep(0.01)
        await ws.close(1000)
    assert module.log == ["progress saved"]


async def test_unshielded_await_in_finally_is_cancelled() -> None:
    # What concurrency.md warns about: without the shield the cleanup never runs.
    app = triows.App()
    log: list[str] = []

    @app.websocket_route("/job")
    async def job(ws: WebSocket) -> None:
        try:
            await trio.sleep(3600)
        finally:
            try:
                await trio.sleep(0.01)
                log.append("saved")
            except trio.Cancelled:
                log.append("cancelled")
                raise

    async with TestClient(app) as client, client.websocket_connect("/job") as ws:
        await trio.sleep(0.01)
        await ws.close(1000)
    assert log == ["cancelled"]


async def test_per_connection_nursery() -> None:
    app = snippet_app("concurrency")
    async with TestClient(app) as client, client.websocket_connect("/clock?interval=0.01") as ws:
        assert await ws.receive_text() == "tick 1"
        assert await ws.receive_text() == "tick 2"
        await ws.send_text("stop")
        assert await ws.wait_closed() == 1000


async def test_background_tasks_live_in_app_nursery() -> None:
    module = load("background")
    app: triows.App = module.app
    async with TestClient(app) as client:
        await trio.sleep(0.05)
        async with client.websocket_connect("/stats") as ws:
            assert (await ws.receive_json())["heartbeats"] > 1
    stopped = module.stats["heartbeats"]
    await trio.sleep(0.05)
    assert module.stats["heartbeats"] == stopped  # cancelled at shutdown
    with pytest.raises(RuntimeError, match="only open while the App runs"):
        _ = app.nursery


# -- providers, security, HTTP -------------------------------------------------------------


async def test_providers() -> None:
    module = load("providers")
    async with TestClient(module.app) as client:
        async with client.websocket_connect("/sign", query={"name": "ann"}) as ws:
            assert await ws.receive_text() == "ann, you are visitor #1"
        # A provider is never bound from the query string.
        async with client.websocket_connect("/sign", query={"guestbook": "x", "visit": "9"}) as ws:
            assert await ws.receive_text() == "anonymous, you are visitor #2"
    assert module.log == ["visit ended", "visit ended", "guestbook closed with 2 entries"]


async def test_providers_connection() -> None:
    app = snippet_app("providers_connection")
    async with TestClient(app) as client:
        bearer = {"authorization": "Bearer s3cret"}
        async with client.websocket_connect("/hello", headers=bearer) as ws:
            assert await ws.receive_text() == "hello, ann"
        async with client.websocket_connect("/hello") as ws:
            assert await ws.receive_text() == "hello, guest"
        assert (await client.get("/whoami", headers=bearer)).text == "ann"
        # A query parameter never fills the provider's connection.
        assert (await client.get("/whoami", query={"connection": "x"})).text == "guest"


def test_the_connection_parameter_is_refused_where_it_cannot_exist() -> None:
    app = triows.App()
    with pytest.raises(triows.ProviderError, match="only per connection; make it connection"):

        @app.provider(scope="app")
        async def pool(connection: object) -> int:
            return 1

    with pytest.raises(triows.ProviderError, match="cannot be named 'connection'"):

        @app.provider
        async def connection() -> int:
            return 1


def test_provider_cycles_are_refused() -> None:
    app = triows.App()

    @app.provider
    async def first(second: int) -> int:
        return second

    with pytest.raises(triows.ProviderError, match="cycle"):

        @app.provider
        async def second(first: int) -> int:
            return first


async def test_origin_check() -> None:
    app = snippet_app("security")
    async with TestClient(app) as client:
        with pytest.raises(HandshakeRejected) as refused:
            async with client.websocket_connect(
                "/feed", headers={"origin": "https://evil.example"}
            ):
                pass
        assert refused.value.status == 403
        for headers in (
            {"origin": "https://chat.example.com"},  # listed
            {"origin": "http://testserver"},  # same origin as the Host header
            {},  # no Origin: not a browser
        ):
            async with client.websocket_connect("/feed", headers=headers) as ws:
                assert await ws.receive_text() == "welcome"


async def test_message_size_limit_closes_with_1009() -> None:
    app = snippet_app("iteration")
    async with (
        live_server(app, max_message_size=1000) as server,
        open_websocket_url(server.url("/echo")) as connection,
    ):
        await connection.send_message("x" * 2000)
        with pytest.raises(trio_websocket.ConnectionClosed) as closed:
            await connection.get_message()
        reason = closed.value.reason
        assert reason is not None and reason.code == 1009


async def test_http_routes_and_mount() -> None:
    app = snippet_app("http_routes")
    async with TestClient(app) as client:
        page = await client.get("/")
        assert (page.status, page.text) == (200, "<h1>Chat</h1>")
        assert page.headers["content-type"].startswith("text/html")
        api = await client.get("/api/rooms/lobby", query={"limit": "5"})
        assert api.json() == {"room": "lobby", "limit": 5, "posted": None}
        posted = await client.request("POST", "/api/rooms/lobby", body='{"x": 1}')
        assert posted.json()["posted"] == {"x": 1}
        bad = await client.get("/api/rooms/lobby", query={"limit": "many"})
        assert (bad.status, bad.json()["parameter"]) == (400, "limit")
        robots = await client.get("/robots.txt")
        assert robots.headers["cache-control"] == "max-age=3600"
        assert (await client.get("/missing")).status == 404
        assert (await client.request("DELETE", "/")).status == 405
        legacy = await client.get("/legacy/old/page")
        assert legacy.text == "legacy app saw /old/page under /legacy"


# -- testing and deployment ----------------------------------------------------------------


# -- live topics ---------------------------------------------------------------------------


async def test_live_route_snippet() -> None:
    app = snippet_app("live_route")
    async with TestClient(app) as client:
        async with client.websocket_connect("/live?token=token-ann") as ann:
            welcome = await ann.receive_json()
            assert welcome["identity"] == {"key": "ann", "info": {"name": "Ann"}}
            await ann.send_json({"type": "subscribe", "topic": "inbox:ann"})
            assert (await ann.receive_json())["type"] == "subscribed"
            response = await client.request("POST", "/notify/ann")
            message = await ann.receive_json()
            assert message["data"] == {"text": "you have mail"}
            assert message["position"] == response.json()["position"]
            for frame in (
                {"type": "subscribe", "topic": "inbox:bob"},
                {"type": "publish", "topic": "inbox:ann", "id": "1", "data": "x"},
            ):
                await ann.send_json(frame)
                assert (await ann.receive_json())["code"] == "forbidden"
            await ann.send_json({"type": "publish", "topic": "lobby", "id": "2", "data": "hi"})
            assert (await ann.receive_json())["type"] == "ack"
        async with client.websocket_connect("/live") as anonymous:
            assert (await anonymous.receive_json())["identity"] is None
            await anonymous.send_json({"type": "publish", "topic": "lobby", "id": "1", "data": 1})
            assert (await anonymous.receive_json())["code"] == "forbidden"


async def test_live_client_snippet(capsys: pytest.CaptureFixture[str]) -> None:
    app = snippet_app("live_route")
    async with live_server(app) as server:
        with trio.fail_after(10):
            await load("live_client").main(server.url("/live?token=token-ann"))
    lines = capsys.readouterr().out.splitlines()
    assert "hello" in lines
    assert set(lines) <= {"hello", "online: ['ann']"}


async def test_testing_page_examples() -> None:
    inmemory = load("testing_inmemory")
    await inmemory.test_echo()
    await inmemory.test_close_code()
    await inmemory.test_bad_parameter()
    live = load("testing_live")
    await live.test_over_a_real_socket()


async def test_proxy_headers() -> None:
    module = load("proxy")
    async with (
        TestClient(module.proxied) as client,
        client.websocket_connect(
            "/where",
            headers={
                "x-forwarded-for": "203.0.113.9",
                "x-forwarded-proto": "wss",
                "x-forwarded-host": "chat.example.com",
            },
        ) as ws,
    ):
        assert await ws.receive_text() == "wss://chat.example.com from 203.0.113.9"


async def test_tls(tls_certificate: tuple[Path, Path]) -> None:
    cert, key = tls_certificate
    module = load("tls")
    context = ssl.create_default_context(cafile=str(cert))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(module.serve_tls, str(cert), str(key), 0)
        async with open_websocket_url(
            f"wss://127.0.0.1:{port}/secure", ssl_context=context
        ) as connection:
            assert await connection.get_message() == "hello over wss"
        nursery.cancel_scope.cancel()


async def _plain_hypercorn(app: Any, task_status: trio.TaskStatus[int]) -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 0.5

    async def run(task_status: trio.TaskStatus[list[str]]) -> None:
        await hypercorn_serve(app, config, task_status=task_status)

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(run)
        task_status.started(int(binds[0].rsplit(":", 1)[1]))


async def test_plain_hypercorn_reports_client_close_codes_as_1006() -> None:
    # deployment.md: what `hypercorn -k trio` users get without triows.serve.
    app = triows.App()
    seen: list[int] = []
    done = trio.Event()

    @app.websocket_route("/w", caught_close_codes=all)
    async def view(ws: WebSocket) -> None:
        try:
            await ws.receive()
        except WebSocketDisconnect as exc:
            seen.append(exc.code)
            raise
        finally:
            done.set()

    async with trio.open_nursery() as nursery:
        port = await nursery.start(_plain_hypercorn, app)
        async with open_websocket_url(f"ws://127.0.0.1:{port}/w") as connection:
            await connection.aclose(code=4321)
        with trio.fail_after(5):
            await done.wait()
        nursery.cancel_scope.cancel()
    assert seen == [1006]

    # The same view under triows.serve sees the client's own code.
    seen.clear()
    done = trio.Event()
    async with live_server(app) as server:
        async with open_websocket_url(server.url("/w")) as connection:
            await connection.aclose(code=4321)
        with trio.fail_after(5):
            await done.wait()
    assert seen == [4321]


async def test_plain_hypercorn_drops_websockets_at_shutdown() -> None:
    # deployment.md: plain hypercorn keeps them for graceful_timeout, then drops them.
    app = triows.App()
    log: list[str] = []

    @app.websocket_route("/w")
    async def view(ws: WebSocket) -> None:
        try:
            await ws.send("hi")
            await trio.sleep(3600)
        finally:
            log.append("finally")

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 0.3
    stop = trio.Event()

    async def run(task_status: trio.TaskStatus[list[str]]) -> None:
        await hypercorn_serve(
            app,  # type: ignore[arg-type]
            config,
            shutdown_trigger=stop.wait,
            task_status=task_status,
        )

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(run)
        port = int(binds[0].rsplit(":", 1)[1])
        async with open_websocket_url(f"ws://127.0.0.1:{port}/w") as connection:
            assert await connection.get_message() == "hi"
            stop.set()
            with trio.fail_after(5), pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await connection.get_message()
            reason = closed.value.reason
            assert reason is not None and reason.code == 1006
    assert log == ["finally"]


async def test_serve_shutdown_sends_1001_and_a_shielded_goodbye() -> None:
    # concurrency.md: at shutdown the connection is still open in `finally`.
    app = triows.App()

    @app.websocket_route("/w")
    async def view(ws: WebSocket) -> None:
        try:
            await ws.send("hi")
            await trio.sleep(3600)
        finally:
            with trio.CancelScope(shield=True):
                await ws.send("goodbye")

    async with trio.open_nursery() as nursery:
        server_scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[int]) -> None:
            with server_scope:
                await triows.serve(app, port=0, task_status=task_status)

        port = await nursery.start(run)
        async with open_websocket_url(f"ws://127.0.0.1:{port}/w") as connection:
            assert await connection.get_message() == "hi"
            server_scope.cancel()
            assert await connection.get_message() == "goodbye"
            with trio.fail_after(5), pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await connection.get_message()
            reason = closed.value.reason
            assert reason is not None and reason.code == 1001


async def test_failing_provider_refuses_with_500() -> None:
    app = triows.App()
    called: list[str] = []

    @app.provider
    async def database() -> str:
        raise ConnectionError("database down")

    @app.websocket_route("/w")
    async def view(ws: WebSocket, database: str) -> None:
        called.append("view")

    async with TestClient(app) as client:
        with pytest.raises(HandshakeRejected) as refused:
            async with client.websocket_connect("/w"):
                pass
        assert refused.value.status == 500
    assert called == []


# -- broadcast: the hub --------------------------------------------------------------------


async def test_hub_basics_and_message_types() -> None:
    module = load("hub_basics")
    assert await module.main() == [
        "plain text",
        b"\x00\x01",
        {"headline": "hub ships", "tags": ["trio"]},
    ]
    assert await module.in_your_own_nursery() == "hello"
    async with triows.Hub() as hub:
        with pytest.raises(TypeError, match="JSON-able"):
            await hub.publish("news", object())
    with pytest.raises(RuntimeError, match="not running"):
        await hub.publish("news", "after the hub stopped")


def test_hub_defaults_and_idle_subscriber_size() -> None:
    # broadcast.md: max_buffer=100 and drop_oldest by default; SlowConsumer is a
    # ClientError closing with 1008; an idle subscription costs about 150 bytes,
    # its deque (760 bytes) only while messages wait in it.
    hub = triows.Hub()
    assert (hub.max_buffer, hub.on_overflow) == (100, "drop_oldest")
    assert issubclass(triows.SlowConsumer, triows.ClientError)
    assert triows.SlowConsumer.close_code == 1008
    subscription = triows.Subscription("t", 100, "drop_oldest")
    import gc

    def buffers() -> list[object]:
        return [o for o in gc.get_referents(subscription) if isinstance(o, collections.deque)]

    assert buffers() == []
    assert sys.getsizeof(subscription) < 200
    if sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11):
        assert sys.getsizeof(subscription) == 144  # the figure broadcast.md gives
        assert sys.getsizeof(collections.deque()) == 760
    assert subscription.put(triows.Broadcast("m"))
    assert len(buffers()) == 1 and len(subscription) == 1
    assert trio.run(subscription.receive) == "m"
    assert buffers() == []
    with pytest.raises(ValueError, match="redis://"):
        triows.Hub("http://example.com")


async def test_hub_room() -> None:
    app = snippet_app("hub_room")
    async with (
        TestClient(app) as client,
        client.websocket_connect("/room/lobby") as alice,
        client.websocket_connect("/room/lobby") as bob,
        client.websocket_connect("/room/attic") as carol,
    ):
        hub = app.hub
        assert hub is not None
        with trio.fail_after(5):
            while hub.subscriber_count("lobby") < 2:  # noqa: ASYNC110
                await trio.sleep(0.001)
        await alice.send_text("hi")
        assert await alice.receive_text() == "hi"
        assert await bob.receive_text() == "hi"
        await carol.send_text("upstairs")
        assert await carol.receive_text() == "upstairs"
        await bob.send_text("hello")
        assert await alice.receive_text() == "hello"
        assert await bob.receive_text() == "hello"


async def test_broadcast_send() -> None:
    # broadcast.md: send_many sends the batch in order (JSON route); one Broadcast
    # reaches every client, is encoded once, and a departed client is skipped.
    module = load("broadcast_send")
    async with (
        TestClient(module.app) as client,
        client.websocket_connect("/feed") as first,
        client.websocket_connect("/feed") as second,
    ):
        assert await first.receive_json() == {"event": "hello"}
        assert await first.receive_json() == {"event": "clients", "count": 1}
        assert await second.receive_json() == {"event": "hello"}
        assert await second.receive_json() == {"event": "clients", "count": 2}
        assert await module.announce({"price": 1.5}) == 2
        assert await first.receive_text() == '{"price":1.5}'
        assert await second.receive_json() == {"price": 1.5}
        await second.close()
        with trio.fail_after(5):
            while len(module.clients) > 1:  # noqa: ASYNC110
                await trio.sleep(0.001)
        assert await module.announce("still here") == 1
        assert await first.receive_json() == "still here"


async def test_broadcast_send_on_real_servers(backend: Backend) -> None:
    # broadcast.md: announce() tries try_send() first (taken at once on the native
    # server over plain TCP), awaits send() otherwise (TLS, hypercorn): every client
    # gets every message in order, and a cancelled announce() sends nothing.
    module = load("broadcast_send")
    module.clients.clear()
    async with backend.serve(module.app) as served, trio.open_nursery() as nursery:
        first = await nursery.start(_open_client, served)
        second = await nursery.start(_open_client, served)
        for ws in (first, second):
            assert json.loads(await ws.get_message()) == {"event": "hello"}
            await ws.get_message()
        with trio.fail_after(5):
            for n in range(50):
                assert await module.announce(n) == 2
            for ws in (first, second):
                assert [json.loads(await ws.get_message()) for _ in range(50)] == list(range(50))
        with trio.CancelScope() as scope:
            scope.cancel()
            await module.announce("never")
        assert scope.cancelled_caught
        assert await module.announce("last") == 2
        with trio.fail_after(5):
            for ws in (first, second):
                assert json.loads(await ws.get_message()) == "last"
        nursery.cancel_scope.cancel()


async def _open_client(
    served: Served, *, task_status: trio.TaskStatus[trio_websocket.WebSocketConnection]
) -> None:
    async with served.connect("/feed") as ws:
        task_status.started(ws)
        await trio.sleep_forever()


async def test_hub_overflow_policies() -> None:
    module = load("hub_overflow")
    assert await module.drop_oldest() == ([2, 3, 4], 2)
    assert await module.disconnect() == "subscriber to 'n' fell 3 messages behind"


async def test_slow_consumer_in_a_nursery_closes_with_1008() -> None:
    # broadcast.md: uncaught, SlowConsumer closes with 1008, also from a task of a
    # nursery in the view (the room's shape), where it arrives in an ExceptionGroup.
    hub = triows.Hub(max_buffer=2, on_overflow="disconnect")
    app = triows.App(hub=hub)
    subscribed = trio.Event()
    flood = trio.Event()

    async def forward(messages: triows.Subscription, ws: WebSocket) -> None:
        await flood.wait()
        async for message in messages:
            await ws.send(message)

    @app.websocket_route("/slow")
    async def slow(ws: WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("t") as messages, trio.open_nursery() as nursery:
            nursery.start_soon(forward, messages, ws)
            subscribed.set()
            async for _ in ws:
                pass

    async with TestClient(app) as client, client.websocket_connect("/slow") as ws:
        await subscribed.wait()
        for i in range(3):
            await hub.publish("t", str(i))
        flood.set()
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
        assert closed.value.code == 1008
    assert not hub.has_subscribers("t")


async def _wait_connected(hub: triows.Hub) -> None:
    with trio.fail_after(10):
        # Polls the Redis listener's flag; bounded by fail_after.
        while not hub.connected:  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_hub_redis_publish_and_outage(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_URL", redis_server.url)
    module = load("hub_redis")
    hub: triows.Hub = module.hub
    assert hub.url == redis_server.url
    async with TestClient(module.app) as client:
        await _wait_connected(hub)
        async with (
            hub.subscribe("announcements") as announcements,
            client.websocket_connect("/announce") as ws,
        ):
            await ws.send_text("deploy at noon")
            assert await ws.receive_text() == "sent"
            with trio.fail_after(5):
                assert await announcements.receive() == "deploy at noon"
            await trio.to_thread.run_sync(redis_server.stop)
            await ws.send_text("lost")
            with trio.fail_after(10):
                assert await ws.receive_text() == "not delivered, try again shortly"


# -- backends -------------------------------------------------------------------------------


def test_serve_defaults() -> None:
    # backends.md and deployment.md quote these defaults.
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(triows.serve).parameters.items()
    }
    assert defaults["backend"] == "native"
    assert defaults["backlog"] == 1024
    assert (defaults["certfile"], defaults["keyfile"]) == (None, None)
    assert (defaults["ping_interval"], defaults["ping_timeout"]) == (20.0, 20.0)
    assert defaults["handshake_timeout"] == 10.0
    assert defaults["shutdown_timeout"] == 5.0
    assert defaults["max_message_size"] is None  # the App's, 1 MiB by default
    assert triows.App().max_message_size == 1024 * 1024


async def test_native_backend_snippet() -> None:
    module = load("backends")
    async with trio.open_nursery() as nursery:
        server_scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[int]) -> None:
            with server_scope:
                await module.main(task_status=task_status)

        port = await nursery.start(run)
        url = f"ws://127.0.0.1:{port}/echo"
        async with open_websocket_url(url) as connection:
            await connection.send_message("hi")
            assert await connection.get_message() == "hi"
            await connection.send_message("x" * (64 * 1024 + 1))
            with trio.fail_after(5), pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await connection.get_message()
            assert closed.value.reason is not None and closed.value.reason.code == 1009
        async with open_websocket_url(url) as connection:
            await connection.send_message("still here")
            assert await connection.get_message() == "still here"
            server_scope.cancel()
            with trio.fail_after(5), pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await connection.get_message()
            assert closed.value.reason is not None and closed.value.reason.code == 1001


async def _offer_deflate(served: Served) -> str:
    stream = await open_stream(served)
    async with stream:
        await stream.send_all(handshake("/echo", Sec_WebSocket_Extensions=b"permessage-deflate"))
        head = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in head:
                head += await stream.receive_some(4096)
    return head.decode("latin-1").lower()


async def test_compression_is_negotiated_by_the_native_backend_only(backend: Backend) -> None:
    # deployment.md: the hypercorn backend declines permessage-deflate (wsproto
    # inflates a frame before its size is checked: a deflate bomb).
    module = load("backends")
    async with trio.open_nursery() as nursery:
        serve = functools.partial(triows.serve, module.app, port=0, **backend.options())
        served = backend.served(await nursery.start(serve))
        head = await _offer_deflate(served)
        nursery.cancel_scope.cancel()
    assert head.startswith("http/1.1 101")
    negotiated = "sec-websocket-extensions: permessage-deflate" in head
    assert negotiated == (backend.server == "native")


async def test_native_backend_refuses_hypercorn_options() -> None:
    # backends.md: hypercorn's Config options are refused by the native backend.
    with pytest.raises(TypeError, match="h2_max_concurrent_streams"):
        await triows.serve(triows.App(), backend="native", port=0, h2_max_concurrent_streams=5)


# -- benchmarks ------------------------------------------------------------------------------


def test_benchmark_plot_in_docs_is_the_latest() -> None:
    # benchmarks.md shows docs/images/benchmarks.png, a copy of the harness's plot
    # (mkdocs serves only files under docs/): refresh it after a new run with
    # cp benchmarks/results/latest.png docs/images/benchmarks.png
    latest = ROOT / "benchmarks" / "results" / "latest.png"
    copy = DOCS / "images" / "benchmarks.png"
    assert copy.read_bytes() == latest.read_bytes(), (
        "docs/images/benchmarks.png is stale: cp benchmarks/results/latest.png "
        "docs/images/benchmarks.png"
    )


# -- operations: metrics, limits, expiring credentials -------------------------------------


async def test_metrics_snippet() -> None:
    app = snippet_app("metrics")
    async with TestClient(app) as client:
        async with client.websocket_connect("/rooms/lobby") as ws:
            await ws.send_text("hi")
            assert await ws.receive_text() == "lobby: hi"
        with trio.fail_after(5):
            while app.websockets.live:  # noqa: ASYNC110 (counted after the view ends)
                await trio.sleep(0.01)
        response = await client.get("/metrics")
    assert response.status == 200
    text = response.text
    assert 'triows_messages_received_total{route="/rooms/{room}"} 1.0' in text
    assert 'triows_close_codes_total{by="client",code="1000"} 1.0' in text
    assert "/rooms/lobby" not in text  # route patterns, never raw paths


async def test_limits_snippet() -> None:
    app = snippet_app("limits")
    async with TestClient(app) as client:
        async with client.websocket_connect("/typing") as ws:
            for _ in range(6):  # a burst of 5 is allowed, at 2 per second
                await ws.send_text("key")
            for _ in range(5):
                assert await ws.receive_text() == "noted"
            with pytest.raises(ServerClosed) as closed:
                await ws.receive_text()
            assert (closed.value.code, closed.value.reason) == (1008, "message rate exceeded")
        async with client.websocket_connect("/chat") as ws:
            for number in range(40):  # the App's default: a burst of 40
                await ws.send_text(str(number))
                assert await ws.receive_text() == str(number)
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(50):  # every in-memory client has the same address
                await stack.enter_async_context(client.websocket_connect("/chat"))
            with pytest.raises(HandshakeRejected) as refused:
                async with client.websocket_connect("/chat"):
                    pass
            assert refused.value.status == 429


async def test_expiring_credentials_snippet() -> None:
    app = snippet_app("expiring_credentials")
    async with TestClient(app) as client:
        with pytest.raises(HandshakeRejected) as refused:
            async with client.websocket_connect("/feed?token=nonsense"):
                pass
        assert refused.value.status == 403
        async with client.websocket_connect("/feed?token=ada:1") as ws:
            started = trio.current_time()
            await ws.send_json({"type": "refresh", "token": "ada:2"})
            assert await ws.receive_json() == {"type": "refreshed"}
            await ws.send_json({"type": "hello"})
            assert await ws.receive_json() == {"type": "echo", "data": {"type": "hello"}}
            with pytest.raises(ServerClosed) as closed:
                await ws.receive_json()
            assert (closed.value.code, closed.value.reason) == (1008, "credentials expired")
            assert trio.current_time() - started > 1.5  # the refreshed deadline, not the first


TRACED_SESSION = """
import importlib.util, sys, trio
from triows.testing import TestClient

spec = importlib.util.spec_from_file_location("tracing_snippet", sys.argv[1])
snippet = importlib.util.module_from_spec(spec)
spec.loader.exec_module(snippet)
provider = snippet.set_up_tracing()

async def main():
    async with TestClient(snippet.app) as client:
        async with client.websocket_connect("/rooms/lobby") as ws:
            await ws.send_text("hi")
            assert await ws.receive_text() == "lobby: hi"
        with trio.fail_after(5):
            while snippet.app.websockets.live:
                await trio.sleep(0.01)

trio.run(main)
provider.force_flush()
"""


def test_tracing_snippet() -> None:
    # Run apart: the snippet sets the process's global tracer provider, once.
    done = subprocess.run(
        [sys.executable, "-c", TRACED_SESSION, str(SNIPPETS / "tracing.py")],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    spans = {}
    for text in re.findall(r"^\{.*?^\}", done.stdout, re.M | re.S):
        span = json.loads(text)
        spans[span["name"]] = span
    connection, stored = spans["WebSocket /rooms/{room}"], spans["store message"]
    assert connection["attributes"]["http.route"] == "/rooms/{room}"
    assert connection["attributes"]["websocket.close.code"] == 1000
    assert stored["parent_id"] == connection["context"]["span_id"]
