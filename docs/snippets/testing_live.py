import pytest
import trio_websocket
from trio_websocket import open_websocket_url

import triows
from triows import WebSocket
from triows.testing import live_server

app = triows.App()


@app.websocket_route("/echo")
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        if message == "quit":
            await ws.close(4001, "bye")
            return
        await ws.send(f"You said: {message}")


async def test_over_a_real_socket() -> None:
    async with live_server(app) as server, open_websocket_url(server.url("/echo")) as connection:
        await connection.send_message("hi")
        assert await connection.get_message() == "You said: hi"
        await connection.send_message("quit")
        with pytest.raises(trio_websocket.ConnectionClosed) as closed:
            await connection.get_message()
        reason = closed.value.reason
        assert reason is not None and reason.code == 4001
