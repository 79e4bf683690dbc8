"""A raw trio-websocket server (``trio_websocket.serve_websocket``), no framework."""

from __future__ import annotations

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
    serve_websocket,
)

from ._common import HOST, MESSAGE, announce, parse_go, run

subscribers: set[WebSocketConnection] = set()


async def handler(request: WebSocketRequest) -> None:
    path = request.path
    if path not in ("/echo", "/sub", "/pub", "/idle"):
        await request.reject(404)
        return
    ws = await request.accept()
    try:
        if path == "/echo":
            while True:
                await ws.send_message(await ws.get_message())
        elif path == "/sub":
            subscribers.add(ws)
            try:
                await ws.send_message("subscribed")
                while True:
                    await ws.get_message()
            finally:
                subscribers.discard(ws)
        elif path == "/pub":
            while True:
                count = parse_go(str(await ws.get_message()))
                for _ in range(count):
                    for subscriber in list(subscribers):
                        try:
                            await subscriber.send_message(MESSAGE)
                        except ConnectionClosed:
                            subscribers.discard(subscriber)
                await ws.send_message(f"done {count}")
        else:
            while True:
                await ws.get_message()
    except ConnectionClosed:
        pass


async def main() -> None:
    async with trio.open_nursery() as nursery:
        server: WebSocketServer = await nursery.start(serve_websocket, handler, HOST, 0, None)
        announce(server.port)


if __name__ == "__main__":
    run(main)
