import functools

import trio
from trio_websocket import ConnectionClosed, open_websocket_url

import triows
from triows import WebSocket

app = triows.App()


@app.websocket_route("/feed")
async def feed(ws: WebSocket) -> None:
    await ws.send("welcome")
    async for _ in ws:
        pass


async def client(url: str, task_status: trio.TaskStatus[None]) -> None:
    async with open_websocket_url(url) as connection:
        print(await connection.get_message())
        task_status.started()
        try:
            await connection.get_message()
        except ConnectionClosed as closed:
            assert closed.reason is not None
            # 1012 (Service Restart): reconnect, after a short random delay.
            print("closed with", closed.reason.code, closed.reason.reason)


async def main() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(functools.partial(triows.serve, app, port=0))
        async with trio.open_nursery() as clients:
            await clients.start(client, f"ws://127.0.0.1:{port}/feed")
            # New handshakes now get 503; open WebSockets get 1012, spread over 2 s.
            await app.drain(seconds=2.0)
        nursery.cancel_scope.cancel()  # then the usual shutdown


if __name__ == "__main__":
    trio.run(main)
