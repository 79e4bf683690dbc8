"""triows: ``triows.serve`` on its native server or hypercorn, or plain hypercorn.

``--backend native`` calls ``triows.serve(app, backend="native")`` (the default
backend), ``--backend hypercorn`` ``triows.serve(app, backend="hypercorn")``,
and ``--backend plain-hypercorn`` serves the App exactly as
``hypercorn -k trio module:app`` does (no triows code inside hypercorn: the App's
ASGI adapter only).

The plain serial loop of ``/pub`` sends one :class:`triows.Broadcast` (the
triows way to send one message to many clients: framed once), with an
``await ws.send()`` per subscriber: each a cancel point, and a schedule point
only when the server has to wait or once a millisecond (as websockets'
``await ws.send()`` on asyncio yields to the event loop only when the socket's
buffer is full).  ``--fanout try-send`` hands it to ``ws.try_send()`` first (no
yield at all when the server takes it at once, the documented use) and awaits
``ws.send()`` only when it cannot, with one checkpoint per broadcast.
``--fanout hub`` serves ``/sub`` and ``/pub`` through an in-process
:class:`triows.Hub` (each subscriber's view forwards its own bounded
subscription with ``Subscription.forward``) instead of the serial loop; ``--fanout redis`` through a
Redis hub, with a private ``redis-server`` this process starts on a free
loopback port (Debian's redis-server must be installed).
``--metrics`` counts for Prometheus (``App(metrics=True)``): what metrics cost.

Every route catches every client close code (``caught_close_codes=all``): the
peers' views end quietly on any departure too (Starlette's catch
WebSocketDisconnect, the raw app returns on any ``websocket.disconnect``), and
under plain hypercorn every client's close arrives as 1006, which
docs/deployment.md tells users to catch on routes served that way.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import sys
from typing import Literal

import msgspec
import trio

import triows
from triows import WebSocket

from ._common import HOST, MESSAGE, announce, parse_go, run, serve_on_hypercorn, start_redis

#: ``--metrics``, read before the routes below are registered on the App.
METRICS = "--metrics" in sys.argv[1:]
#: ``--fanout try-send``: the serial loop tries ``ws.try_send()`` before awaiting.
TRY_SEND = "try-send" in sys.argv[1:]
app = triows.App(metrics=METRICS)
subscribers: set[WebSocket] = set()
hub: triows.Hub | None = None
#: A subscription's buffer: above one round's burst, so nothing is dropped.
HUB_BUFFER = 1024


@app.on_startup
async def start_hub() -> None:
    # The hub (chosen on the command line) runs in the App's nursery, for its lifetime.
    if hub is not None:
        await app.nursery.start(hub.run)


@app.websocket_route("/echo", caught_close_codes=all)
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


class Chat(msgspec.Struct):
    """The typed echo's message (benchmarks.typed_echo): a small struct."""

    user: str
    seq: int
    text: str


@app.websocket_route("/typed", value_type=Chat, caught_close_codes=all)
async def typed(ws: WebSocket) -> None:
    # receive() decodes and validates into a Chat; send() encodes it back.
    async for message in ws:
        await ws.send(message)


rpc = triows.JSONRPC()


@rpc.method
async def echo_chat(message: Chat) -> Chat:
    # The typed echo as a JSON-RPC call (benchmarks.typed_echo): a task per call.
    return message


app.jsonrpc_route("/rpc", rpc, caught_close_codes=all)


@app.websocket_route("/sub", caught_close_codes=all)
async def sub(ws: WebSocket) -> None:
    if hub is not None:
        async with hub.subscribe("bench", max_buffer=HUB_BUFFER) as messages:
            await ws.send("subscribed")
            await messages.forward(ws)
    subscribers.add(ws)
    try:
        await ws.send("subscribed")
        async for _ in ws:
            pass
    finally:
        subscribers.discard(ws)


@app.websocket_route("/pub", caught_close_codes=all)
async def pub(ws: WebSocket) -> None:
    async for command in ws:
        count = parse_go(command)
        if hub is not None:
            for _ in range(count):
                await hub.publish("bench", MESSAGE)
            await ws.send(f"done {count}")
            continue
        message = triows.Broadcast(MESSAGE)  # framed once for every subscriber
        for _ in range(count):
            if TRY_SEND:
                await broadcast_without_yielding(message)
                continue
            for subscriber in list(subscribers):
                try:
                    await subscriber.send(message)
                except Exception:
                    subscribers.discard(subscriber)
        await ws.send(f"done {count}")


async def broadcast_without_yielding(message: triows.Broadcast) -> None:
    """``--fanout try-send``: ``ws.try_send()`` first, ``await ws.send()`` only for a
    subscriber whose server cannot take the message at once; one checkpoint per
    broadcast instead of one per subscriber."""
    for subscriber in list(subscribers):
        try:
            if not subscriber.try_send(message):
                await subscriber.send(message)
        except Exception:
            subscribers.discard(subscriber)
    await trio.lowlevel.checkpoint()  # the publisher stays cancellable


@app.websocket_route("/idle", caught_close_codes=all)
async def idle(ws: WebSocket) -> None:
    async for _ in ws:
        pass


async def main(backend: str, fanout: str) -> None:
    global hub
    if fanout == "hub":
        hub = triows.Hub()
    elif fanout == "redis":
        redis, url = start_redis()
        atexit.register(redis.kill)
        hub = triows.Hub(url)
    if backend == "plain-hypercorn":
        await serve_on_hypercorn(app)
        return
    server: Literal["native", "hypercorn"] = "native" if backend == "native" else "hypercorn"
    serve = functools.partial(triows.serve, app, host=HOST, port=0, backend=server)
    async with trio.open_nursery() as nursery:
        port: int = await nursery.start(serve)
        announce(port)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--backend", choices=("native", "hypercorn", "plain-hypercorn"), default="native"
    )
    parser.add_argument(
        "--fanout", choices=("serial", "try-send", "hub", "redis"), default="serial"
    )
    parser.add_argument("--metrics", action="store_true", help="App(metrics=True)")
    arguments = parser.parse_args()
    run(main, arguments.backend, arguments.fanout)
