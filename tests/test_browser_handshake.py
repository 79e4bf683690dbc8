"""Chromium's handshakes on the native server's fast path, and compressed round trips.

Chromium offers ``permessage-deflate; client_max_window_bits``: the native
server answers it without websockets' ``accept()`` (``UPGRADES`` counts which
path made each 101), and messages of every size then round-trip compressed
both ways.  The hypercorn backend declines the extension (docs/deployment.md).
"""

from __future__ import annotations

import trio

import triows
from triows._native._upgrade import UPGRADES

from .browser import chromium
from .conftest import Backend

PAGE = """<!DOCTYPE html>
<html><head><title>echo</title></head><body><script>
window.got = [];
window.extensions = null;
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
window.ws = new WebSocket(scheme + location.host + "/echo");
ws.onopen = () => { window.extensions = ws.extensions; };
ws.onmessage = (event) => { window.got.push(event.data); };
</script></body></html>"""

#: What the page sends and gets back: short, long and compressible, non-ASCII, random-ish.
MESSAGES = [
    "hi",
    "ping " * 20_000,
    "é" * 5_000,
    '{"n": 1}',
    "".join(chr(33 + n * 7919 % 90) for n in range(3000)),
]


def _echoes_in_chromium(url: str) -> tuple[str, list[str]]:
    """Open the page, send MESSAGES once open: what it negotiated and got back."""
    with chromium(ignore_https_errors=url.startswith("https:")) as browser:
        page = browser.new_page()
        page.set_default_timeout(20_000)
        page.goto(url)
        page.wait_for_function("() => window.extensions !== null")
        for message in MESSAGES:
            page.evaluate("(message) => window.ws.send(message)", message)
        page.wait_for_function(f"() => window.got.length === {len(MESSAGES)}")
        return str(page.evaluate("() => window.extensions")), list(
            page.evaluate("() => window.got")
        )


async def test_chromium_handshakes_on_the_fast_path_and_round_trips_compressed(
    backend: Backend,
) -> None:
    app = triows.App()

    @app.route("/")
    async def index(request: triows.Request) -> str:
        return PAGE

    @app.websocket_route("/echo")
    async def echo(ws: triows.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    fast, slow = UPGRADES.fast, UPGRADES.websockets
    with trio.fail_after(90):
        async with backend.serve(app) as served:
            url = "http" + served.url("/").removeprefix("ws")
            extensions, got = await trio.to_thread.run_sync(_echoes_in_chromium, url)
    assert got == MESSAGES
    assert UPGRADES.websockets == slow  # no handshake needed websockets' accept()
    if backend.name == "hypercorn":
        assert extensions == ""
        assert UPGRADES.fast == fast
    else:
        assert extensions == (
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; "
            "client_max_window_bits=12"
        )
        assert UPGRADES.fast == fast + 1
