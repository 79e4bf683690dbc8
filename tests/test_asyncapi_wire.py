"""The documents describe the wire: real messages fit their messages' schemas.

Messages are recorded from real conversations (in memory, through the TestClient)
with a typed route and with the JSON-RPC example (results, errors, a server
notification, a cancelled call), then each is checked with Ajv against the payload
schema of the message the document says it is.  Messages the server refuses (bad
params) must not fit, and a mismatched pairing proves the check can fail.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from examples import rpc as rpc_example
from triows.testing import TestClient

from .asyncapi_apps import wire_app
from .asyncapi_parser import check_messages

Sample = tuple[str, Any]


def message(channel: str, key: str) -> str:
    return f"#/channels/{channel}/messages/{key}"


async def test_typed_route_messages_fit_the_document() -> None:
    app = wire_app()
    sent: list[Sample] = []
    received: list[Any] = []
    async with TestClient(app).websocket_connect("/chat") as ws:
        for value in (
            {"type": "join", "user": "ann"},
            {"type": "say", "user": "ann", "text": "hi"},
            {"type": "say", "user": "ann", "text": "bye"},
        ):
            sent.append((message("chat", "Join" if value["type"] == "join" else "Say"), value))
            await ws.send_json(value)
        with trio.fail_after(5):
            received = [await ws.receive_json(), await ws.receive_json()]
    assert [m["type"] for m in received] == ["said", "left"]
    samples = [
        *sent,
        (message("chat", "Said"), received[0]),
        (message("chat", "Left"), received[1]),
        # What must not fit: a Said checked as a Left, a Say without its text.
        (message("chat", "Left"), received[0]),
        (message("chat", "Say"), {"type": "say", "user": "ann"}),
    ]
    results = await trio.to_thread.run_sync(check_messages, app.asyncapi(), samples)
    assert results[:-2] == [None] * (len(samples) - 2), results
    assert results[-2] is not None and results[-1] is not None


async def test_jsonrpc_messages_fit_the_document(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rpc_example, "REPORT_STEP", 30.0)  # the report waits for its cancel
    monkeypatch.setattr(rpc_example, "report_endings", [])
    app = rpc_example.app
    requests: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "id": 1, "method": "quotes.get", "params": {"symbol": "TRIO"}},
        {
            "jsonrpc": "2.0",
            "id": "two",
            "method": "orders.place",
            "params": [{"symbol": "TRIO", "quantity": 2}],
        },
        {"jsonrpc": "2.0", "id": 3, "method": "quotes.get", "params": ["NOPE"]},
        {"jsonrpc": "2.0", "id": 4, "method": "reports.build", "params": {"symbols": ["TRIO"]}},
    ]
    cancel = {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 4}}
    refused: list[
        dict[str, Any]
    ] = [  # answered with errors; the document must not accept them either
        {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "orders.place",
            "params": {"order": {"symbol": "TRIO", "quantity": 0}},
        },
        {
            "jsonrpc": "2.0",
            "id": 6,
            "method": "quotes.get",
            "params": {"symbol": "TRIO", "extra": 1},
        },
        {"jsonrpc": "2.0", "id": 7, "method": "quotes.get", "params": [1]},
    ]
    unknown: dict[str, Any] = {"jsonrpc": "2.0", "id": 8, "method": "nothing.here"}
    replies: list[dict[str, Any]] = []
    # No lifespan: the example's App is shared with its own tests, and a lifespan's
    # shutdown leaves an App refusing connections until it starts again.
    async with TestClient(app).websocket_connect("/rpc") as ws:
        with trio.fail_after(10):
            for request in requests + refused + [unknown]:
                await ws.send_json(request)
            # quotes (2), order (1 notification + 1 result), refused (3), unknown (1)
            while len(replies) < 8:
                replies.append(await ws.receive_json())
            await ws.send_json(cancel)
            replies.append(await ws.receive_json())
    method_of = {r["id"]: r["method"] for r in requests + refused + [unknown]}
    samples: list[Sample] = [(message("rpc", f"{r['method']}.request"), r) for r in requests]
    samples.append((message("rpc", "cancelRequest"), cancel))
    for reply in replies:
        if "method" in reply:
            samples.append((message("rpc", "notification"), reply))
        elif "error" in reply:
            samples.append((message("rpc", "error"), reply))
        else:
            samples.append((message("rpc", f"{method_of[reply['id']]}.result"), reply))
    kinds = sorted(key.rpartition("/")[2] for key, _ in samples)
    assert kinds.count("error") == 6  # 4004, three -32602, -32601, -32800
    assert "notification" in kinds and "orders.place.result" in kinds
    codes = sorted(r["error"]["code"] for r in replies if "error" in r)
    assert codes == [-32800, -32602, -32602, -32602, -32601, 4004]
    negative = [(message("rpc", f"{r['method']}.request"), r) for r in refused]
    wrong_result = {"jsonrpc": "2.0", "id": 1, "result": {"symbol": 1, "price": "high"}}
    negative.append((message("rpc", "quotes.get.result"), wrong_result))
    results = await trio.to_thread.run_sync(check_messages, app.asyncapi(), samples + negative)
    fits = results[: len(samples)]
    assert fits == [None] * len(samples), json.dumps(list(zip(samples, fits, strict=True)))
    assert all(r is not None for r in results[len(samples) :]), results[len(samples) :]
