import trio

import triows
from triows import WebSocket

app = triows.App()


@app.websocket_route("/secure")
async def secure(ws: WebSocket) -> None:
    await ws.send(f"hello over {ws.url.scheme}")


async def serve_tls(
    certfile: str,
    keyfile: str,
    port: int = 8443,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    # TLS on the native server (the default); backend="hypercorn" takes the same two.
    await triows.serve(app, port=port, certfile=certfile, keyfile=keyfile, task_status=task_status)
