"""Driving the chat example's page in Chromium (tests/test_browser.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: An HTML attack as a chat message: it must be shown as text.
ATTACK = "<img src=x onerror=\"document.title='pwned'\"><b>bold</b>"


def open_chat(browser: Any, url: str, name: str, *, width: int = 900) -> Any:
    """A page of the chat at ``url``, joined as ``name`` (it said hello)."""
    page = browser.new_page()
    page.set_viewport_size({"width": width, "height": 640})
    page.set_default_timeout(10_000)
    page.goto(url)
    page.wait_for_selector("#status[data-state='open']")
    page.fill("#user", name)
    say(page, f"hello, I am {name}")
    page.wait_for_selector(f"#status:has-text('Online as {name}')")
    return page


def say(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.click("#submit")


def texts(page: Any) -> list[str]:
    """The chat lines the page shows, as "user: text"."""
    result: list[str] = page.eval_on_selector_all(
        "#messages li:not(.note)",
        "items => items.map(li => li.querySelector('.who').textContent + ': '"
        " + li.querySelector('.text').textContent)",
    )
    return result


def members(page: Any) -> list[str]:
    result: list[str] = page.eval_on_selector_all(
        "#members li", "items => items.map(li => li.textContent)"
    )
    return result


def wait_for_line(page: Any, line: str) -> None:
    page.wait_for_function("line => window.chatLines().includes(line)", arg=line)


def install_helpers(page: Any) -> None:
    page.evaluate(
        "() => { window.chatLines = () => Array.from("
        "document.querySelectorAll('#messages li:not(.note)'), li => "
        "li.querySelector('.who').textContent + ': ' + li.querySelector('.text').textContent); }"
    )


def two_users_talk(browser: Any, url: str, screenshot: Path | None = None) -> tuple[Any, Any]:
    """Alice and Bob join, talk (an HTML attack included); optionally a screenshot."""
    alice = open_chat(browser, url, "alice")
    bob = open_chat(browser, url, "bob")
    for page in (alice, bob):
        install_helpers(page)
    say(alice, "hi bob, the deploy went fine")
    wait_for_line(bob, "alice: hi bob, the deploy went fine")
    say(bob, "/me waves")
    say(bob, ATTACK)
    wait_for_line(alice, f"bob: {ATTACK}")
    alice.wait_for_function("() => document.querySelectorAll('#members li').length === 2")
    if screenshot is not None:
        alice.screenshot(path=str(screenshot))
    return alice, bob
