"""examples/rpc.py: the typed JSON-RPC API and its trio client, whose abandoned
call cancels the server's work; in memory and on every server."""

from __future__ import annotations

import pytest
import trio

from examples import rpc
from triows.testing import TestClient

from .conftest import Backend


@pytest.fixture(autouse=True)
def fresh_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rpc, "report_endings", [])


async def test_the_api_in_memory() -> None:
    async with TestClient(rpc.app).websocket_connect("/rpc") as ws:
        await ws.send_json({"jsonrpc": "2.0", "method": "quotes.get", "params": ["TRIO"], "id": 1})
        assert await ws.receive_json() == {
            "jsonrpc": "2.0",
            "result": {"symbol": "TRIO", "price": 12.5},
            "id": 1,
        }
        order = {"order": {"symbol": "ASGI", "quantity": 2}}
        await ws.send_json({"jsonrpc": "2.0", "method": "orders.place", "params": order, "id": 2})
        assert await ws.receive_json() == {
            "jsonrpc": "2.0",
            "method": "orders.accepted",
            "params": {"symbol": "ASGI"},
        }
        receipt = (await ws.receive_json())["result"]
        assert receipt["total"] == 6.5 and receipt["quantity"] == 2
        bad = {"order": {"symbol": "ASGI", "quantity": 0}}
        await ws.send_json({"jsonrpc": "2.0", "method": "orders.place", "params": bad, "id": 3})
        answer = await ws.receive_json()
        assert answer["error"]["code"] == -32602
        assert answer["error"]["data"] == {
            "field": "params.order.quantity",
            "problem": "Expected `int` >= 1",
        }
        await ws.send_json({"jsonrpc": "2.0", "method": "quotes.get", "params": ["X"], "id": 4})
        assert (await ws.receive_json())["error"] == {
            "code": 4004,
            "message": "unknown symbol",
            "data": {"symbol": "X"},
        }


async def test_the_trio_client_cancels_the_slow_call(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rpc, "REPORT_STEP", 0.05)
    with trio.fail_after(10):
        async with (
            backend.serve(rpc.app) as served,
            rpc.connect(served.url("/rpc"), served.ssl_context) as client,
        ):
            report = await client.call("reports.build", {"symbols": ["TRIO"]})
            assert report == {"TRIO": 12.5}
            with trio.move_on_after(0.1) as gave_up:
                await client.call("reports.build", [["TRIO", "ASGI", "TRIO", "ASGI"]])
            assert gave_up.cancelled_caught
            # The server cancelled the handler: the next call on the connection
            # is answered after its finally block ran.
            assert (await client.call("quotes.get", ["ASGI"]))["price"] == 3.25
            assert rpc.report_endings == ["done", "cancelled"]  # before the client left
            with pytest.raises(rpc.RemoteError) as unknown:
                await client.call("quotes.get", ["NOPE"])
            assert unknown.value.code == 4004
    assert rpc.report_endings == ["done", "cancelled"]


async def test_main_runs_against_a_live_server(capsys: pytest.CaptureFixture[str]) -> None:
    from triows.testing import live_server

    with trio.fail_after(10):
        async with live_server(rpc.app) as server:
            await rpc.main(server.url("/rpc"))
    out = capsys.readouterr().out
    assert "quote: {'symbol': 'TRIO', 'price': 12.5}" in out
    assert "after orders.accepted" in out
    assert "gave up on the report" in out
    assert rpc.report_endings == ["cancelled"]
