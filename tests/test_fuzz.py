"""Fuzzing with hypothesis (issue 4): client input never gets 1011, never hangs.

Route patterns, path and query values, headers and message payloads are thrown
at an App through the in-memory TestClient, and a handful at a real server on
both backends.  Every connection must end in a handshake refusal (4xx), an
accepted exchange, or a close with a client-error code; never 1011 or HTTP 500,
never a hang (trio.fail_after), and no task may outlive its connection.
Example counts are bounded so the module runs in well under 30 s.
"""

from __future__ import annotations

import json
import string
from typing import Any

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, ConnectionRejected

import triows
from triows.testing import HandshakeRejected, ServerClosed, TestClient

from .conftest import Backend
from .echo_apps import echo_app

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Close codes a client's input may earn: normal, or one of the client-error codes.
CLIENT_CODES = {1000, 1002, 1003, 1007, 1008, 1009}


def fuzz_app() -> triows.App:
    app = echo_app()  # /text, /bytes and /json echo routes

    @app.websocket_route("/items/{item_id}")
    async def item(
        ws: triows.WebSocket, item_id: int, verbose: bool = False, limit: float = 1.0
    ) -> None:
        await ws.send(f"{item_id} {verbose} {limit}")

    @app.websocket_route("/users/{name}/rooms/{room}")
    async def room(ws: triows.WebSocket, name: str, room: str, tag: str) -> None:
        await ws.send(json.dumps([name, room, tag]))

    @app.websocket_route("/headers")
    async def headers(ws: triows.WebSocket) -> None:
        await ws.send(json.dumps(sorted(ws.headers.keys())))

    return app


APP = fuzz_app()

# Anything a path segment or query value might carry, percent-decoded already.
texts = st.text(
    alphabet=st.characters(exclude_categories=["Cs"]),
    max_size=40,
)
segments = st.one_of(
    texts,
    st.integers().map(str),
    st.sampled_from(["", "0", "-1", "1e309", "nan", "inf", "true", "..", "%00", "/"]),
)
paths = st.one_of(
    st.builds(lambda s: f"/items/{s}", segments),
    st.builds(lambda a, b: f"/users/{a}/rooms/{b}", segments, segments),
    st.builds("/".join, st.lists(segments, max_size=5)),
)
queries = st.dictionaries(
    st.one_of(st.sampled_from(["verbose", "limit", "tag", "x", "", "verbose[]"]), texts),
    segments,
    max_size=4,
)
header_names = st.text(
    alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=20
)
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)
header_lists = st.lists(st.tuples(header_names, header_values), max_size=8)
payloads = st.one_of(
    texts,
    st.binary(max_size=200),
    st.builds(
        json.dumps,
        st.recursive(
            st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | texts,
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
            max_leaves=10,
        ),
    ),
)


async def _exchange(
    client: TestClient,
    path: str,
    query: dict[str, str],
    headers: list[tuple[str, str]],
    messages: list[str | bytes],
) -> None:
    """One connection; asserts its outcome is never a server error."""
    try:
        async with client.websocket_connect(path, query=query, headers=headers) as ws:
            for message in messages:
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                else:
                    await ws.send_text(message)
            try:
                # Each route answers once per message (or once, for the others):
                # read that many replies, or until the App closes.
                for _ in range(max(len(messages), 1)):
                    await ws.receive()
            except ServerClosed as closed:
                assert closed.code in CLIENT_CODES, closed
            except TimeoutError:
                pass  # an echo route with nothing to echo: the client leaves with 1000
    except HandshakeRejected as rejected:
        assert rejected.status in (400, 403), rejected


def _task_count() -> int:
    """Every task in this trio run."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    count, pending = 0, [root]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


async def _checked(coro: Any) -> None:
    """Run one exchange; bounded in time; no task left behind."""
    before = _task_count()
    with trio.fail_after(5):
        await coro
    assert _task_count() <= before, "a task outlived its connection"


@FUZZ
@given(path=paths, query=queries, headers=header_lists)
async def test_handshake_values_never_cause_a_server_error(
    path: str, query: dict[str, str], headers: list[tuple[str, str]]
) -> None:
    client = TestClient(APP, timeout=0.3)
    await _checked(_exchange(client, path, query, headers, []))


@FUZZ
@given(
    route=st.sampled_from(["/text", "/json", "/bytes"]),
    messages=st.lists(payloads, min_size=1, max_size=4),
)
async def test_payloads_never_cause_a_server_error(route: str, messages: list[str | bytes]) -> None:
    client = TestClient(APP, timeout=0.3)
    await _checked(_exchange(client, route, {}, [], messages))


# A route pattern is the developer's input, not the client's; still, compiling one
# must either work or fail at decoration time with a clear error, and a compiled
# one must route any path without crashing.
pattern_parts = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-._~", min_size=1, max_size=8),
    st.builds(lambda n: "{" + n + "}", st.sampled_from(["a", "b", "c"])),
    st.sampled_from(["{", "}", "{}", "{1x}", "{a:int}", "*", ""]),
)


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(pattern_parts, min_size=1, max_size=4), path=paths)
async def test_route_patterns_compile_or_fail_at_decoration(parts: list[str], path: str) -> None:
    pattern = "/" + "/".join(parts)
    names = {p[1:-1] for p in parts if p.startswith("{") and p.endswith("}") and len(p) > 2}
    app = triows.App()
    params = ", ".join(f"{n}: str" for n in sorted(names) if n.isidentifier())
    namespace: dict[str, Any] = {}
    exec(f"async def view(ws, {params}):\n    await ws.send('ok')", namespace)
    try:
        app.websocket_route(pattern)(namespace["view"])
    except (ValueError, TypeError):
        return  # refused at decoration time, with an error
    client = TestClient(app, timeout=0.3)
    await _checked(_exchange(client, path, {}, [], []))


# -- a handful over real sockets -----------------------------------------------------------


async def test_fuzzed_input_over_real_sockets(backend: Backend) -> None:
    """The same strategies, a few examples, against a real server per backend."""
    inputs = st.tuples(
        st.sampled_from(["/text", "/json", "/bytes", "/items/x", "/items/7", "/nope"]),
        st.lists(payloads, min_size=1, max_size=3),
    )
    examples: list[tuple[str, list[str | bytes]]] = []

    @settings(max_examples=15, deadline=None, database=None)
    @given(inputs)
    def collect(example: tuple[str, list[str | bytes]]) -> None:
        examples.append(example)

    collect()
    with trio.fail_after(30):
        async with backend.serve(APP) as served:
            for path, messages in examples:
                try:
                    async with served.connect(path) as ws:
                        for message in messages:
                            await ws.send_message(message)
                        with trio.move_on_after(0.2):
                            while True:
                                await ws.get_message()
                except ConnectionClosed as closed:
                    assert closed.reason is not None
                    assert closed.reason.code in CLIENT_CODES, (path, messages, closed.reason)
                except ConnectionRejected as rejected:
                    assert rejected.status_code in (400, 403), (path, rejected)
            # ...and the server still serves.
            async with served.connect("/text") as ws:
                await ws.send_message("ok")
                assert await ws.get_message() == "ok"
