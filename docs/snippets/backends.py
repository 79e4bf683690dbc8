import trio

import triows
from triows import WebSocket

app = triows.App(max_message_size=64 * 1024)  # 1009 past 64 KiB, on either backend


@app.websocket_route("/echo")
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def main(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    await triows.serve(
        app,
        backend="native",  # the default; or "hypercorn"
        port=0,
        ping_interval=20.0,  # ping every client every 20 s (None: never)
        ping_timeout=20.0,  # close one whose pong is 20 s late: its view sees 1006
        handshake_timeout=10.0,  # a request head must arrive within 10 s
        shutdown_timeout=5.0,  # views get 5 s at shutdown (clients get 1001)
        backlog=1024,  # connections the kernel queues before they are accepted
        # certfile="cert.pem", keyfile="key.pem",  # TLS: wss:// and https://
        task_status=task_status,  # started(port)
    )


if __name__ == "__main__":
    trio.run(main)
