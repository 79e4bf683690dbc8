"""The App that ``tests/test_wire_fuzz.py`` serves in a real ``triows run`` process.

Run as ``triows run tests.fuzz_app:app``: echo routes for each message type and an
HTTP route that reads its body, with a small ``max_message_size`` (64 KiB) so that
the fuzzer's longest frames (up to 70000 bytes) run into the limit.
"""

from __future__ import annotations

import triows
from tests.echo_apps import echo_app

__all__ = ["MAX_MESSAGE_SIZE", "app"]

#: The largest message a client may send to this App, in bytes.
MAX_MESSAGE_SIZE = 64 * 1024

app = echo_app(max_message_size=MAX_MESSAGE_SIZE)  # /text, /json, /bytes


@app.route("/body", methods=("GET", "POST", "PUT", "DELETE"))
async def body(request: triows.Request) -> dict[str, object]:
    return {"method": request.method, "length": len(request.body)}


@app.route("/")
async def index(request: triows.Request) -> str:
    return "<p>fuzz</p>"
