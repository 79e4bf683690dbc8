import functools

import trio
from trio_websocket import open_websocket_url

import triows
from triows import WebSocket

app = triows.App()


@app.websocket_route("/echo")
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(f"You said: {message}")


async def main() -> None:
    async with trio.open_nursery() as nursery:
        # started() reports the bound port: handy with port=0 ("any free port").
        port = await nursery.start(functools.partial(triows.serve, app, port=0))
        async with open_websocket_url(f"ws://127.0.0.1:{port}/echo") as connection:
            await connection.send_message("ping")
            print(await connection.get_message())
        # Cancelling serve() is a graceful shutdown.
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
