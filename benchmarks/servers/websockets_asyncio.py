"""websockets' asyncio server, for reference (not trio); ``--uvloop`` on uvloop's loop."""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ._common import HOST, MESSAGE, announce, parse_go, unavailable

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
            await ws.close(1008, "unknown path")
    except ConnectionClosed:
        pass


async def main() -> None:
    # No keepalive pings, as for the hypercorn servers (their default).
    async with serve(handler, HOST, 0, ping_interval=None) as server:
        announce(server.sockets[0].getsockname()[1])
        await server.serve_forever()


if __name__ == "__main__":
    if "--uvloop" in sys.argv[1:]:
        try:
            import uvloop
        except ImportError:
            unavailable("uvloop is not installed (it is in the bench extra)")
        uvloop.run(main())
    else:
        asyncio.run(main())
