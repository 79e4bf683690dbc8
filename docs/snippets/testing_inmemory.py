import pytest

import triows
from triows import WebSocket
from triows.testing import HandshakeRejected, ServerClosed, TestClient

app = triows.App()


@app.websocket_route("/echo/{times}")
async def echo(ws: WebSocket, times: int) -> None:
    async for message in ws:
        await ws.send(message * times)
        if message == "bye":
            await ws.close(4000, "see you")
            return


async def test_echo() -> None:
    # `async with TestClient(app)` runs the App's startup and shutdown.
    async with TestClient(app) as client, client.websocket_connect("/echo/2") as ws:
        await ws.send_text("ha")
        assert await ws.receive_text() == "haha"


async def test_close_code() -> None:
    async with TestClient(app) as client, client.websocket_connect("/echo/1") as ws:
        await ws.send_text("bye")
        assert await ws.receive_text() == "bye"
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
        assert (closed.value.code, closed.value.reason) == (4000, "see you")


async def test_bad_parameter() -> None:
    async with TestClient(app) as client:
        with pytest.raises(HandshakeRejected) as refused:
            async with client.websocket_connect("/echo/twice"):
                pass
        assert refused.value.status == 400
        assert refused.value.json()["parameter"] == "times"
