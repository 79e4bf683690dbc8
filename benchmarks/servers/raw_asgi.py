"""The reference: a framework-free ASGI app under hypercorn's trio worker.

Also servable by hand: ``hypercorn -k trio benchmarks.servers.raw_asgi:app``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ._common import MESSAGE, parse_go, run, serve_on_hypercorn

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

subscribers: set[Send] = set()


async def echo(receive: Receive, send: Send) -> None:
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes")})


async def sub(receive: Receive, send: Send) -> None:
    await send({"type": "websocket.accept"})
    subscribers.add(send)
    try:
        await send({"type": "websocket.send", "text": "subscribed"})
        while (await receive())["type"] == "websocket.receive":
            pass
    finally:
        subscribers.discard(send)


async def pub(receive: Receive, send: Send) -> None:
    await send({"type": "websocket.accept"})
    event = {"type": "websocket.send", "text": MESSAGE}
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        count = parse_go(message["text"])
        for _ in range(count):
            for subscriber in list(subscribers):
                try:
                    await subscriber(event)
                except Exception:
                    subscribers.discard(subscriber)
        await send({"type": "websocket.send", "text": f"done {count}"})


async def idle(receive: Receive, send: Send) -> None:
    await send({"type": "websocket.accept"})
    while (await receive())["type"] == "websocket.receive":
        pass


ROUTES = {"/echo": echo, "/sub": sub, "/pub": pub, "/idle": idle}


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind == "http":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not found"})
        return
    await receive()  # websocket.connect
    view = ROUTES.get(scope["path"])
    if view is None:
        await send({"type": "websocket.close", "code": 1000})
        return
    await view(receive, send)


if __name__ == "__main__":
    run(serve_on_hypercorn, app)
