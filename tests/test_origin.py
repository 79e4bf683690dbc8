"""Origin checks against Cross-Site WebSocket Hijacking."""

from __future__ import annotations

import pytest
from trio_websocket import ConnectionRejected

import triows
from triows.testing import HandshakeRejected, TestClient

from .conftest import Backend


def _app(**options: list[str]) -> triows.App:
    app = triows.App(**options)  # type: ignore[arg-type]

    @app.websocket_route("/ws")
    async def view(ws: triows.WebSocket) -> None:
        await ws.send("welcome")

    return app


@pytest.mark.parametrize(
    ("allowed", "origin", "accepted"),
    [
        (None, None, True),  # not a browser: no Origin header
        (None, "http://testserver", True),  # same origin
        (None, "HTTP://TestServer/", True),  # case and trailing slash do not matter
        (None, "http://evil.example", False),
        (None, "http://testserver.evil.example", False),
        (None, "null", False),  # sandboxed iframes and file: pages
        (["https://app.example"], "https://app.example", True),
        (["https://app.example"], "https://other.example", False),
        (["*"], "http://evil.example", True),
    ],
)
async def test_origin_policy(allowed: list[str] | None, origin: str | None, accepted: bool) -> None:
    app = _app() if allowed is None else _app(allowed_origins=allowed)
    headers = {} if origin is None else {"origin": origin}
    client = TestClient(app)
    if accepted:
        async with client.websocket_connect("/ws", headers=headers) as ws:
            assert await ws.receive_text() == "welcome"
    else:
        with pytest.raises(HandshakeRejected) as refused:
            async with client.websocket_connect("/ws", headers=headers):
                pass
        assert refused.value.status == 403


async def test_forged_cross_origin_handshake_over_real_sockets(backend: Backend) -> None:
    async with backend.serve(_app()) as served:
        with pytest.raises(ConnectionRejected) as refused:
            async with served.connect("/ws", extra_headers=[(b"Origin", b"http://evil.example")]):
                pass
        assert refused.value.status_code == 403
        scheme = "http" if served.ssl_context is None else "https"
        same = f"{scheme}://127.0.0.1:{served.port}"
        async with served.connect("/ws", extra_headers=[(b"Origin", same.encode())]) as ws:
            assert await ws.get_message() == "welcome"
