"""Cross-Site WebSocket Hijacking, with a real cross-origin page in Chromium.

A page served from one server (one origin) opens a WebSocket to another server
(another port: another origin).  By default triows refuses that handshake; with
the page's origin in ``allowed_origins`` it accepts it.
"""

from __future__ import annotations

import trio

import triows
from triows.testing import live_server

from .browser import chromium

PAGE = """<!DOCTYPE html>
<html><head><title>waiting</title></head><body><script>
const ws = new WebSocket("%s");
ws.onmessage = (event) => { document.title = "message: " + event.data; };
ws.onclose = (event) => { if (!document.title.startsWith("message")) {
    document.title = "closed: " + event.code; } };
</script></body></html>"""


def _target(**options: list[str]) -> triows.App:
    app = triows.App(**options)  # type: ignore[arg-type]

    @app.websocket_route("/ws")
    async def ws(ws: triows.WebSocket) -> None:
        await ws.send("welcome")

    return app


def _page_app(target_url: list[str]) -> triows.App:
    app = triows.App()

    @app.route("/")
    async def index(request: triows.Request) -> str:
        return PAGE % target_url[0]

    return app


def _title_after_load(url: str) -> str:
    with chromium() as browser:
        page = browser.new_page()
        page.set_default_timeout(10_000)
        page.goto(url)
        page.wait_for_function("() => document.title !== 'waiting'")
        return str(page.title())


async def _visit(allow_page_origin: bool) -> str:
    # The page's server starts first, so that its origin is known to the target.
    target_url: list[str] = []
    async with live_server(_page_app(target_url)) as page_server:
        page_url = page_server.url("/", scheme="http")
        allowed = [page_url.rstrip("/")] if allow_page_origin else []
        async with live_server(_target(allowed_origins=allowed)) as server:
            target_url.append(server.url("/ws"))
            with trio.fail_after(60):
                return await trio.to_thread.run_sync(_title_after_load, page_url)


async def test_a_cross_origin_page_cannot_open_a_websocket_by_default() -> None:
    # The browser reports a refused handshake as an abnormal closure (1006).
    assert await _visit(allow_page_origin=False) == "closed: 1006"


async def test_allowed_origins_lets_a_listed_page_in() -> None:
    assert await _visit(allow_page_origin=True) == "message: welcome"
