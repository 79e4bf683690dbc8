from collections.abc import AsyncIterator

import attrs

import triows
from triows import WebSocket

app = triows.App()
log: list[str] = []


@attrs.define
class Visit:
    number: int


@app.provider(scope="app")
async def guestbook() -> AsyncIterator[list[str]]:
    entries: list[str] = []  # created once, at startup
    yield entries
    log.append(f"guestbook closed with {len(entries)} entries")  # at shutdown


@app.provider
async def visit(guestbook: list[str]) -> AsyncIterator[Visit]:
    # One per connection; providers may depend on other providers.
    yield Visit(number=len(guestbook) + 1)
    log.append("visit ended")  # after the view, even if it failed


@app.websocket_route("/sign")
async def sign(ws: WebSocket, guestbook: list[str], visit: Visit, name: str = "anonymous") -> None:
    guestbook.append(name)
    await ws.send(f"{name}, you are visitor #{visit.number}")
