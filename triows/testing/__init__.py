"""Testing helpers: an in-memory, trio-native client for your App.

No sockets and no server: the client calls the App as an ASGI server would, so
tests are fast and deterministic.  Every wait has a timeout, so a broken view
fails the test instead of hanging it::

    from triows.testing import TestClient

    async def test_echo():
        async with TestClient(app) as client:          # runs startup/shutdown
            async with client.websocket_connect("/echo") as ws:
                await ws.send_text("hi")
                assert await ws.receive_text() == "You said: hi"

Exceptions raised by the App are re-raised in the test when the connection or
request ends (``raise_server_exceptions=False`` turns that off).
"""

from ._client import TestClient, TestResponse
from ._live import LiveServer, live_server
from ._websocket import HandshakeRejected, ServerClosed, TestWebSocket

__all__ = [
    "HandshakeRejected",
    "LiveServer",
    "ServerClosed",
    "TestClient",
    "TestResponse",
    "TestWebSocket",
    "live_server",
]
