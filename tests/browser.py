"""Headless Chromium for the page tests: Debian's chromium driven by Playwright.

The browser is Debian's ``chromium`` package (installed by the README's test
command); Playwright drives it through ``executable_path`` and downloads nothing.
A missing browser fails the test loudly; it never skips.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium(*, ignore_https_errors: bool = False) -> Iterator[Browser]:
    """A headless Chromium with a fresh, throw-away profile (blocking API: use in a thread).

    ``ignore_https_errors``: accept the native-tls backend's self-signed certificate
    (for https:// pages and their wss:// connections).
    """
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail(
            "chromium is not installed: run the README's test command (bash scripts/test), "
            "which installs Debian's chromium"
        )
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context: Any = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            args=CHROMIUM_ARGS,
            headless=True,
            ignore_https_errors=ignore_https_errors,
        )
        try:
            yield context
        finally:
            context.close()
