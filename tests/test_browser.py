"""The chat example and the shipped JS client in a real browser (Chromium)."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from typing import Any

import trio

import examples.chat.app
from triows._native._upgrade import UPGRADES

from .browser import chromium
from .chat_pages import (
    ATTACK,
    install_helpers,
    members,
    open_chat,
    say,
    texts,
    two_users_talk,
    wait_for_line,
)
from .conftest import Backend
from .tcp_proxy import TCPProxy, tcp_proxy

#: The docs' screenshot: refreshed only by bash scripts/screenshot
#: (TRIOWS_REFRESH_SCREENSHOT=1), so the suite changes no tracked file.
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "images" / "chat.png"


def fresh_chat_app() -> Any:
    """The chat example's App with a new, empty hub: a new page shows the room's
    recent messages, so each test starts from an empty room."""
    return importlib.reload(examples.chat.app).app


def _chat_in_two_pages(url: str, screenshots: Path) -> None:
    with chromium(ignore_https_errors=url.startswith("https:")) as browser:
        alice, bob = two_users_talk(browser, url, screenshots / "chat.png")
        # Shown as text, never parsed as markup.
        assert alice.query_selector("#messages img") is None
        assert alice.query_selector("#messages b") is None
        assert alice.title() != "pwned"
        assert members(alice) == members(bob) == ["alice", "bob"]
        assert alice.text_content("#status") == "Online as alice"
        lines = texts(alice)
        assert lines == [
            "alice: hello, I am alice",
            "bob: hello, I am bob",
            "alice: hi bob, the deploy went fine",
            "bob: waves",
            f"bob: {ATTACK}",
        ]
        assert alice.query_selector("#messages li.emote") is not None
        # A reload resumes from where the tab joined: the same lines, once each.
        alice.reload()
        alice.wait_for_selector("#status:has-text('Online as alice')")
        alice.wait_for_function(
            f"() => document.querySelectorAll('#messages li').length >= {len(lines)}"
        )
        assert texts(alice) == lines
        # Readable on a phone: nothing wider than the screen.  A new page (its own
        # browser context: no sessionStorage) starts with the recent messages, once.
        phone = open_chat(browser, url, "carol", width=375)
        phone.wait_for_function("() => document.querySelectorAll('#members li').length === 3")
        install_helpers(phone)
        wait_for_line(phone, "carol: hello, I am carol")
        assert texts(phone) == [*lines, "carol: hello, I am carol"]
        assert phone.evaluate("() => document.documentElement.scrollWidth") <= 375
        phone.screenshot(path=str(screenshots / "chat-phone.png"))


async def test_chat_page_in_chromium(backend: Backend, tmp_path: Path) -> None:
    # Chromium offers permessage-deflate: the native backend compresses for it, the
    # hypercorn backend declines it (docs/deployment.md).  Over TLS the page is
    # https:// and its live connection wss://.
    fast, slow = UPGRADES.fast, UPGRADES.websockets
    async with backend.serve(fresh_chat_app()) as served:
        with trio.fail_after(90):
            url = "http" + served.url("/").removeprefix("ws")
            await trio.to_thread.run_sync(_chat_in_two_pages, url, tmp_path)
    # Every Chromium handshake took the native server's fast path (websockets'
    # accept() made no 101).
    assert UPGRADES.websockets == slow
    assert (UPGRADES.fast > fast) == (backend.name != "hypercorn")
    assert (tmp_path / "chat.png").stat().st_size > 1000
    assert (tmp_path / "chat-phone.png").stat().st_size > 1000
    if os.environ.get("TRIOWS_REFRESH_SCREENSHOT") == "1":  # bash scripts/screenshot
        shutil.copyfile(tmp_path / "chat.png", DOCS_SCREENSHOT)


def _drops_in_the_browser(url: str, proxy: TCPProxy, hub: Any) -> None:
    """Alice's page goes through ``proxy``, which cuts her connection while
    messages keep coming: she ends with every line once, in order."""
    with chromium(ignore_https_errors=url.startswith("https:")) as browser:
        alice = open_chat(browser, url, "alice")
        install_helpers(alice)
        alice.evaluate(
            "() => { window.states = []; live.on('state', s => window.states.push(s)); }"
        )
        expected = ["alice: hello, I am alice"]
        for n in range(30):
            line = {"type": "message", "text": f"line {n}", "user": "server", "at": 0}
            trio.from_thread.run(hub.publish, "chat", line)
            expected.append(f"server: line {n}")
            if n % 10 == 4:
                assert trio.from_thread.run_sync(proxy.drop) >= 1
                # While offline, alice speaks: sent once she is back.
                say(alice, f"typed offline {n}")
                expected.append(f"alice: typed offline {n}")
                # Back (a new "open") before the next drop.
                drops = n // 10 + 1
                alice.wait_for_function(
                    f"() => window.states.filter(s => s === 'open').length >= {drops}"
                )
        alice.wait_for_function(
            f"() => window.chatLines().length >= {len(expected)}", timeout=15_000
        )
        lines = texts(alice)
        # Alice's own offline lines may land anywhere after her drop; the server's
        # lines keep their order; nothing is missing and nothing is twice.
        assert sorted(lines) == sorted(expected)
        assert [x for x in lines if x.startswith("server")] == [
            x for x in expected if x.startswith("server")
        ]
        states = alice.evaluate("() => window.states")
        assert states.count("reconnecting") >= 3 and states[-1] == "open"
        assert alice.query_selector("#messages li.note") is None  # no gap was reported


async def test_js_client_resumes_after_drops_in_chromium(backend: Backend) -> None:
    chat_app = fresh_chat_app()
    hub = chat_app.hub
    assert hub is not None
    async with backend.serve(chat_app) as served, tcp_proxy(served.port) as proxy:
        with trio.fail_after(90):
            scheme = "http" if served.ssl_context is None else "https"
            url = f"{scheme}://127.0.0.1:{proxy.port}/"
            await trio.to_thread.run_sync(_drops_in_the_browser, url, proxy, hub)
