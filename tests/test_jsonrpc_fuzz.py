"""Fuzzing a JSON-RPC route (issue 13): any text message is answered, never kills
the connection, and every answer is a well-formed JSON-RPC response."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import triows
from triows import JSONRPC
from triows.testing import TestClient

FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: The id of the call that ends each example; the fuzzer does not make it up.
FINAL = "final ping \u2603"
#: Every error code this app may answer with.
CODES = {-32700, -32600, -32601, -32602, -32603, -32800, 4000}


class Point(msgspec.Struct):
    x: int
    y: int


def fuzz_app() -> triows.App:
    rpc = JSONRPC()

    @rpc.method
    async def add(a: int, b: int = 0) -> int:
        return a + b

    @rpc.method
    async def echo(value: Any) -> Any:
        return value

    @rpc.method("geo.flip")
    async def flip(p: Point) -> Point:
        return Point(p.y, p.x)

    @rpc.method
    async def fail(code: int = 0) -> None:
        if code:
            raise triows.RPCError(4000, "refused", {"code": code})
        raise RuntimeError("boom")

    app = triows.App()
    app.jsonrpc_route("/rpc", rpc)
    return app


APP = fuzz_app()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
names = st.sampled_from(["add", "echo", "geo.flip", "fail", "$/cancelRequest", "nope", "rpc.x"])
param_names = st.sampled_from(["a", "b", "value", "p", "code", "id", "x"])
requests = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.just("2.0") | json_values,
        "method": names | json_values,
        "params": st.dictionaries(param_names, json_values, max_size=3)
        | st.lists(json_values, max_size=3)
        | json_values,
        "id": st.integers() | st.text(max_size=4) | st.none() | json_values,
    },
)
messages = st.one_of(
    requests.map(json.dumps),
    st.lists(requests, max_size=4).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=20),
)


def _check_response(response: Any) -> None:
    assert isinstance(response, dict), response
    assert response["jsonrpc"] == "2.0"
    assert "id" in response
    if "error" in response:
        assert "result" not in response
        assert response["error"]["code"] in CODES, response
        assert isinstance(response["error"]["message"], str)
        if response["error"]["code"] == -32603:
            # Nothing of the exception reaches the client.
            assert response["error"] == {"code": -32603, "message": "Internal error"}
    else:
        assert "result" in response


@FUZZ
@given(sent=st.lists(messages, min_size=1, max_size=5))
async def test_any_text_is_answered_and_the_connection_lives(sent: list[str]) -> None:
    async with TestClient(APP, timeout=2.0).websocket_connect("/rpc") as ws:
        for message in sent:
            await ws.send_text(message)
        final = {"jsonrpc": "2.0", "method": "add", "params": [1, 1], "id": FINAL}
        await ws.send_json(final)
        while True:
            answer = json.loads(await ws.receive_text())
            for response in answer if isinstance(answer, list) else [answer]:
                _check_response(response)
            if isinstance(answer, dict) and answer["id"] == FINAL:
                assert answer["result"] == 2
                break
