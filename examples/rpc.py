"""A typed JSON-RPC API, with a slow method that a client cancels.

Run the server:  ``triows run examples.rpc:app``  (JSON-RPC at ``ws://127.0.0.1:8000/rpc``)
Run the client:  ``python -m examples.rpc ws://127.0.0.1:8000/rpc``  (needs trio-websocket:
the ``client`` extra)

The client gets a quote, places an order (the server notifies it before
answering), then asks for a report it gives up on after half a second: leaving
the ``trio.move_on_after`` block sends ``$/cancelRequest``, the server cancels
the report's handler (its ``finally`` block runs) and answers -32800.
"""

from __future__ import annotations

import itertools
import json
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import trio

import triows
from triows import JSONRPC, RPCConnection, RPCError

if TYPE_CHECKING:
    from trio_websocket import WebSocketConnection

# -- the API ---------------------------------------------------------------------------


class Quote(msgspec.Struct):
    symbol: str
    price: float


class Order(msgspec.Struct):
    symbol: str
    quantity: Annotated[int, msgspec.Meta(gt=0)]


class Receipt(msgspec.Struct):
    order_id: int
    symbol: str
    quantity: int
    total: float


PRICES = {"TRIO": 12.5, "ASGI": 3.25}
#: Seconds the report spends per symbol (tests shorten it).
REPORT_STEP = 1.0
#: How each report ended: "done" or "cancelled" (for the tests and the server's log).
report_endings: list[str] = []
_order_ids = itertools.count(1)

rpc = JSONRPC()


def _price(symbol: str) -> float:
    try:
        return PRICES[symbol]
    except KeyError:
        raise RPCError(4004, "unknown symbol", {"symbol": symbol}) from None


@rpc.method("quotes.get")
async def get_quote(symbol: str) -> Quote:
    return Quote(symbol, _price(symbol))


@rpc.method("orders.place", timeout=5.0)
async def place_order(order: Order, connection: RPCConnection) -> Receipt:
    price = _price(order.symbol)
    await connection.notify("orders.accepted", {"symbol": order.symbol})
    return Receipt(next(_order_ids), order.symbol, order.quantity, price * order.quantity)


@rpc.method("reports.build", timeout=30.0)
async def build_report(symbols: list[str]) -> dict[str, float]:
    ending = "cancelled"
    try:
        report = {}
        for symbol in symbols:
            await trio.sleep(REPORT_STEP)  # slow work: a cancellation lands here
            report[symbol] = _price(symbol)
        ending = "done"
        return report
    finally:
        report_endings.append(ending)


app = triows.App()
app.jsonrpc_route("/rpc", rpc, max_concurrent=4)

# -- a trio client ---------------------------------------------------------------------


class RemoteError(Exception):
    """The server answered a call with a JSON-RPC error."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error['code']}: {error['message']}")
        self.code: int = error["code"]
        self.data: Any = error.get("data")


class RPCClient:
    """Calls over one WebSocket; a cancelled call sends ``$/cancelRequest``."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.notifications: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}

    async def call(self, method: str, params: Any = None) -> Any:
        """Call ``method``; cancel the surrounding scope to cancel it on the server too."""
        id = next(self._ids)
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[id] = send
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
        if params is not None:
            request["params"] = params
        await self.ws.send_message(json.dumps(request))
        answered = False
        try:
            response = await receive.receive()
            answered = True
        finally:
            del self._waiting[id]
            if not answered:
                # Cancelled (a timeout, the user gave up): stop the server's work.
                cancel = {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": id}}
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await self.ws.send_message(json.dumps(cancel))
        if "error" in response:
            raise RemoteError(response["error"])
        return response["result"]

    async def read(self) -> None:
        """Route responses to their calls; keep the server's notifications."""
        async for raw in self._messages():
            message = json.loads(raw)
            waiting = self._waiting.get(message.get("id"))
            if waiting is not None:
                waiting.send_nowait(message)
            elif "method" in message:
                self.notifications.append(message)

    async def _messages(self) -> AsyncIterator[str | bytes]:
        from trio_websocket import ConnectionClosed

        while True:
            try:
                yield await self.ws.get_message()
            except ConnectionClosed:
                return


@asynccontextmanager
async def connect(url: str, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[RPCClient]:
    """An RPCClient on a new connection to ``url``, its reader running alongside."""
    from trio_websocket import open_websocket_url

    async with (
        open_websocket_url(url, ssl_context=ssl_context) as ws,
        trio.open_nursery() as nursery,
    ):
        client = RPCClient(ws)
        nursery.start_soon(client.read)
        yield client
        nursery.cancel_scope.cancel()


async def main(url: str) -> None:
    async with connect(url) as client:
        print("quote:", await client.call("quotes.get", {"symbol": "TRIO"}))
        receipt = await client.call("orders.place", {"order": {"symbol": "TRIO", "quantity": 3}})
        print("receipt:", receipt, "after", client.notifications[-1]["method"])
        with trio.move_on_after(0.5):
            await client.call("reports.build", [["TRIO", "ASGI"]])
        print("gave up on the report: the server cancelled it")


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/rpc")
