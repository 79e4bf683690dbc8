"""websockets' trio implementation (``websockets.trio.server``, websockets >= 16)."""

from __future__ import annotations

import functools

import trio
from websockets.exceptions import ConnectionClosed
from websockets.trio.server import Server, ServerConnection, serve

from ._common import HOST, MESSAGE, announce, parse_go, run

subscribers: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else ""
    try:
        if path == "/echo":
            async for message in ws:
                await ws.send(message)
        elif path == "/sub":
            subscribers.add(ws)
            try:
                await ws.send("subscribed")
                async for _ in ws:
                    pass
            finally:
                subscribers.discard(ws)
        elif path == "/pub":
            async for command in ws:
                count = parse_go(str(command))
                for _ in range(count):
                    for subscriber in list(subscribers):
                        try:
                            await subscriber.send(MESSAGE)
                        except ConnectionClosed:
                            subscribers.discard(subscriber)
                await ws.send(f"done {count}")
        elif path == "/idle":
            async for _ in ws:
                pass
        else:
            await ws.aclose(1008, "unknown path")  # trio's API: aclose(), not close()
    except ConnectionClosed:
        pass


async def main() -> None:
    async with trio.open_nursery() as nursery:
        # No keepalive pings, as for the hypercorn servers (their default).
        # nursery.start() passes no keyword arguments, and host is keyword-only here.
        start = functools.partial(serve, handler, 0, host=HOST, ping_interval=None)
        server: Server = await nursery.start(start)
        announce(server.listeners[0].socket.getsockname()[1])


if __name__ == "__main__":
    run(main)
