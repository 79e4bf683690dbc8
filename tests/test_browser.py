"""The chat page in a real browser: two pages, one room, HTML shown as text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from examples.chat.app import app as chat_app
from triows.testing import live_server

from .browser import chromium

#: The docs' screenshot: refreshed only with TRIOWS_REFRESH_SCREENSHOT=1, so the
#: suite changes no tracked file.
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "images" / "chat.png"


def _two_pages_chat(url: str, screenshot: Path) -> None:
    with chromium() as browser:
        alice = browser.new_page()
        bob = browser.new_page()
        for page in (alice, bob):
            page.set_default_timeout(10_000)
            page.goto(url)
        alice.fill("#user", "alice")
        bob.fill("#user", "bob")
        # Wait until both sockets are open: a message sent before would be history.
        for page in (alice, bob):
            page.wait_for_function("() => ws.readyState === WebSocket.OPEN")

        alice.fill("#text", "hello bob")
        alice.click("#submit")
        bob.wait_for_selector("#messages li:has-text('alice: hello bob')")

        attack = "<img src=x onerror=\"document.title='pwned'\"><b>bold</b>"
        bob.fill("#text", attack)
        bob.press("#text", "Enter")
        item = alice.wait_for_selector("#messages li:nth-child(2)")
        assert item is not None
        # Shown as text, never parsed as markup.
        assert item.text_content() == f"bob: {attack}"
        assert alice.query_selector("#messages img") is None
        assert alice.query_selector("#messages b") is None
        assert alice.title() != "pwned"

        alice.screenshot(path=str(screenshot))


@pytest.mark.parametrize("backend", ["hypercorn", "native"])
async def test_chat_page_in_chromium(backend: str, tmp_path: Path) -> None:
    # Chromium offers permessage-deflate: both backends compress for it.
    screenshot = tmp_path / "chat.png"
    if os.environ.get("TRIOWS_REFRESH_SCREENSHOT") == "1":
        screenshot = DOCS_SCREENSHOT
    async with live_server(chat_app, backend=backend) as server:
        with trio.fail_after(60):
            url = server.url("/", scheme="http")
            await trio.to_thread.run_sync(_two_pages_chat, url, screenshot)
    assert screenshot.stat().st_size > 1000
