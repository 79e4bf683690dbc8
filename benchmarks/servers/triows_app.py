"""triows, served by ``triows.serve`` (hypercorn) or its native backend.

``--backend native`` calls ``triows.serve(app, backend="native")``; when that
backend does not exist (yet), the server reports ``UNAVAILABLE`` and exits 3,
and the harness leaves it out of the run.
"""

from __future__ import annotations

import argparse
import functools

import trio

import triows
from triows import WebSocket

from ._common import HOST, MESSAGE, announce, parse_go, unavailable

app = triows.App()
subscribers: set[WebSocket] = set()


@app.websocket_route("/echo")
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@app.websocket_route("/sub")
async def sub(ws: WebSocket) -> None:
    subscribers.add(ws)
    try:
        await ws.send("subscribed")
        async for _ in ws:
            pass
    finally:
        subscribers.discard(ws)


@app.websocket_route("/pub")
async def pub(ws: WebSocket) -> None:
    async for command in ws:
        count = parse_go(command)
        for _ in range(count):
            for subscriber in list(subscribers):
                try:
                    await subscriber.send(MESSAGE)
                except Exception:
                    subscribers.discard(subscriber)
        await ws.send(f"done {count}")


@app.websocket_route("/idle")
async def idle(ws: WebSocket) -> None:
    async for _ in ws:
        pass


async def main(backend: str) -> None:
    if backend == "native":
        serve = functools.partial(triows.serve, app, host=HOST, port=0, backend="native")
    else:
        serve = functools.partial(triows.serve, app, host=HOST, port=0)
    async with trio.open_nursery() as nursery:
        try:
            port: int = await nursery.start(serve)
        except (TypeError, ValueError, NotImplementedError) as exc:
            if backend == "native":
                unavailable(f'triows.serve(app, backend="native") failed: {exc}')
            raise
        announce(port)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("hypercorn", "native"), default="hypercorn")
    trio.run(main, parser.parse_args().backend)
