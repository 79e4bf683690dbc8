"""The documents describe the wire: real messages fit their messages' schemas.

Messages are recorded from real conversations (in memory, through the TestClient)
with a typed route, with the JSON-RPC example (results, errors, a server
notification, a cancelled call, a batch) and with a live route (every frame type
but ``gap``), then each is checked with Ajv against the payload schema of the
message the document says it is.  Messages the server refuses (bad params) must
not fit, and mismatched pairings prove the check can fail.
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
from .live_apps import Frames, live_app

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
    batch = [
        {"jsonrpc": "2.0", "id": 20, "method": "quotes.get", "params": {"symbol": "ASGI"}},
        {"jsonrpc": "2.0", "method": "quotes.get", "params": {"symbol": "TRIO"}},
        {"jsonrpc": "2.0", "id": 21, "method": "quotes.get", "params": {"symbol": "NOPE"}},
    ]
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
            await ws.send_json(batch)
            batch_reply = await ws.receive_json()
    assert sorted(reply["id"] for reply in batch_reply) == [20, 21]  # none for the notification
    method_of = {r["id"]: r["method"] for r in requests + refused + [unknown]}
    samples: list[Sample] = [(message("rpc", f"{r['method']}.request"), r) for r in requests]
    samples.append((message("rpc", "cancelRequest"), cancel))
    samples.append((message("rpc", "batch"), batch))
    samples.append((message("rpc", "batchReply"), batch_reply))
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
    negative: list[Sample] = [(message("rpc", f"{r['method']}.request"), r) for r in refused]
    wrong_result = {"jsonrpc": "2.0", "id": 1, "result": {"symbol": 1, "price": "high"}}
    negative.append((message("rpc", "quotes.get.result"), wrong_result))
    negative.append((message("rpc", "batchReply"), []))  # an empty batch is no batch
    negative.append((message("rpc", "batch"), [*batch, refused[0]]))
    results = await trio.to_thread.run_sync(check_messages, app.asyncapi(), samples + negative)
    fits = results[: len(samples)]
    assert fits == [None] * len(samples), json.dumps(list(zip(samples, fits, strict=True)))
    assert all(r is not None for r in results[len(samples) :]), results[len(samples) :]


class Recorder:
    """Every frame a live client sent and received, with the message it should be."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.samples: list[Sample] = []
        self.frames = Frames(self._receive)

    async def _receive(self) -> str:
        raw: str = await self.ws.receive_text()
        frame = json.loads(raw)
        self.samples.append((message("live", frame["type"]), frame))
        return raw

    async def send(self, frame: dict[str, Any]) -> None:
        self.samples.append((message("live", frame["type"]), frame))
        await self.ws.send_json(frame)


async def test_live_protocol_frames_fit_the_document() -> None:
    app = live_app()
    async with (
        TestClient(app) as client,
        client.websocket_connect("/live?user=ann") as ann_ws,
        client.websocket_connect("/live?user=bob") as bob_ws,
    ):
        ann, bob = Recorder(ann_ws), Recorder(bob_ws)
        assert (await ann.frames.next())["type"] == "welcome"
        assert (await bob.frames.next())["type"] == "welcome"
        await ann.send({"type": "subscribe", "topic": "room", "presence": True})
        first = await ann.frames.until(type="subscribed")
        await ann.frames.until(type="presence")
        await bob.send({"type": "subscribe", "topic": "room", "presence": True, "since": None})
        await bob.frames.until(type="subscribed")
        await ann.frames.until(type="presence_change")
        publish = {"type": "publish", "topic": "room", "id": "p1", "data": {"text": "hi"}}
        await ann.send(publish)
        await ann.frames.until(type="ack")
        await ann.send(publish)
        assert (await ann.frames.until(type="ack"))["duplicate"] is True
        await bob.frames.until(type="message")
        await ann.send({"type": "unsubscribe", "topic": "room"})
        await ann.frames.until(type="unsubscribed")
        await ann.send({"type": "unsubscribe", "topic": "room"})
        await ann.frames.until(type="error", code="not_subscribed")
        await ann.send({"type": "subscribe", "topic": "room", "since": first["position"]})
        assert (await ann.frames.until(type="subscribed"))["recovered"] is True
        await ann.frames.until(type="message")  # the one published since
        await ann.send({"type": "subscribe", "topic": "private"})
        await ann.frames.until(type="error", code="forbidden")
        await ann.send({"type": "subscribe", "topic": "other", "since": "garbage"})
        await ann.frames.until(type="error", code="invalid_position")
        await ann_ws.send_json({"type": "shout", "topic": "room"})
        bad = await ann.frames.until(type="error", code="bad_message")
    samples = ann.samples + bob.samples
    kinds = {key.rpartition("/")[2] for key, _ in samples}
    assert kinds == {
        "welcome", "subscribe", "subscribed", "presence", "presence_change", "publish",
        "ack", "message", "unsubscribe", "unsubscribed", "error",
    }  # fmt: skip
    negative: list[Sample] = [
        (message("live", "subscribe"), {"type": "subscribe", "topic": ""}),
        (message("live", "publish"), {"type": "publish", "topic": "room"}),  # no id
        (message("live", "ack"), bad),
    ]
    results = await trio.to_thread.run_sync(check_messages, app.asyncapi(), samples + negative)
    fits = results[: len(samples)]
    assert fits == [None] * len(samples), json.dumps(list(zip(samples, fits, strict=True)))
    assert all(r is not None for r in results[len(samples) :]), results[len(samples) :]
