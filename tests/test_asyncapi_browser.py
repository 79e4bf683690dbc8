"""The docs' API page in a real browser: AsyncAPI's web component renders the
document the App serves.

The page loads the component and its styles from unpkg.com; here the browser gets
them from the pinned npm packages (tests/asyncapi/node_modules) instead, so the
test needs no network and renders exactly the pinned versions.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import trio

import triows
from triows.testing import live_server

from .asyncapi_parser import NODE_MODULES, ensure_installed
from .browser import chromium

ROOT = Path(__file__).resolve().parent.parent
UNPKG = {
    "https://unpkg.com/@asyncapi/web-component@2.6.5/lib/asyncapi-web-component.js": (
        NODE_MODULES / "@asyncapi/web-component/lib/asyncapi-web-component.js",
        "text/javascript",
    ),
    "https://unpkg.com/@asyncapi/react-component@2.6.5/styles/default.min.css": (
        NODE_MODULES / "@asyncapi/react-component/styles/default.min.css",
        "text/css",
    ),
}


def snippet_app() -> triows.App:
    path = ROOT / "docs" / "snippets" / "asyncapi_app.py"
    spec = importlib.util.spec_from_file_location("_triows_asyncapi_page", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    app = module.app
    assert isinstance(app, triows.App)
    return app


def _render(url: str, screenshot: Path) -> str:
    """Open the page; the text the component rendered."""
    requested: list[str] = []

    def from_node_modules(route: Any) -> None:
        requested.append(route.request.url)
        found = UNPKG.get(route.request.url)
        if found is None:
            route.abort()
        else:
            route.fulfill(path=str(found[0]), content_type=found[1])

    with chromium() as browser:
        page = browser.new_page()
        page.route("https://unpkg.com/**", from_node_modules)
        page.set_default_timeout(20_000)
        page.goto(url)
        page.wait_for_selector("text=Chat API")
        page.wait_for_selector("text=rename")
        page.screenshot(path=str(screenshot), full_page=True)
        # The component renders into its shadow root.
        text: str = page.locator("asyncapi-component").evaluate(
            "element => (element.shadowRoot || element).textContent"
        )
    assert sorted(requested) == sorted(UNPKG), requested
    return text


async def test_the_web_component_renders_the_served_document(tmp_path: Path) -> None:
    await trio.to_thread.run_sync(ensure_installed)
    app = snippet_app()
    screenshot = tmp_path / "api.png"
    async with live_server(app) as server:
        with trio.fail_after(90):
            url = server.url("/api", scheme="http")
            text = await trio.to_thread.run_sync(_render, url, screenshot)
    # The info, the server the page was fetched from, each operation, the schemas.
    assert f"Chat API\xa01.0.0application/jsonServersws://127.0.0.1:{server.port}/" in text
    for shown in (
        "RECEIVE /rooms/{room}",
        "SEND /rooms/{room}",
        "Operation IDchat_room.receive",
        "Accepts one of the following messages:#0JoinTake a name in the room.",
        "historyintegerDefault value:20",
        "REPLY /rpc",
        "Call renameRename a room; false if the new name is taken.",
        "object [RenameRequest]",
        "Cancel a call",
        "Server notification",
    ):
        assert shown in text, shown
    assert screenshot.stat().st_size > 10_000
