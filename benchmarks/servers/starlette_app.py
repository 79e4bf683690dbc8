"""Starlette's WebSocket routes under hypercorn's trio worker."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ._common import MESSAGE, parse_go, run, serve_on_hypercorn

subscribers: set[WebSocket] = set()


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except WebSocketDisconnect:
        pass


async def sub(ws: WebSocket) -> None:
    await ws.accept()
    subscribers.add(ws)
    try:
        await ws.send_text("subscribed")
        while True:
            await ws.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        subscribers.discard(ws)


async def pub(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            count = parse_go(await ws.receive_text())
            for _ in range(count):
                for subscriber in list(subscribers):
                    try:
                        await subscriber.send_text(MESSAGE)
                    except Exception:
                        subscribers.discard(subscriber)
            await ws.send_text(f"done {count}")
    except WebSocketDisconnect:
        pass


async def idle(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.receive_text()
    except WebSocketDisconnect:
        pass


app = Starlette(
    routes=[
        WebSocketRoute("/echo", echo),
        WebSocketRoute("/sub", sub),
        WebSocketRoute("/pub", pub),
        WebSocketRoute("/idle", idle),
    ]
)

if __name__ == "__main__":
    run(serve_on_hypercorn, app)
