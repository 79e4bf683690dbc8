"""The live route's test app, and helpers to read its frames."""

from __future__ import annotations

import json
from typing import Any

import trio

import triows
from triows import LiveIdentity

TIMEOUT = 5.0


def live_app(
    *, history: int = 100, max_buffer: int = 100, max_topics: int = 100, url: str | None = None
) -> triows.App:
    """A live route at /live (on Redis at ``url`` if given): ``?user=`` names the
    client; topics starting with ``private`` are refused, ``readonly`` refuses
    publishes, ``nopresence`` refuses presence."""
    hub = triows.Hub(url, history=history, max_buffer=max_buffer, presence_interval=0.05)
    app = triows.App(hub=hub)

    def authorize(ws: triows.WebSocket, topic: str, action: str) -> bool:
        if topic.startswith("private"):
            return False
        if action == "publish":
            return topic != "readonly"
        if action == "presence":
            return topic != "nopresence"
        return True

    async def identify(ws: triows.WebSocket) -> LiveIdentity | None:
        await trio.lowlevel.checkpoint()
        user = ws.query_parameters.get("user")
        return None if user is None else LiveIdentity(user, {"name": user.title()})

    app.live_route("/live", hub, authorize=authorize, identify=identify, max_topics=max_topics)
    return app


class Frames:
    """Reads a live connection's frames, keeping the ones a test did not ask for yet."""

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self.seen: list[dict[str, Any]] = []

    async def next(self) -> dict[str, Any]:
        with trio.fail_after(TIMEOUT):
            raw = await self._receive()
        frame: dict[str, Any] = json.loads(raw)
        return frame

    async def until(self, **fields: Any) -> dict[str, Any]:
        """The first frame (kept earlier, or next) with these fields; others are kept."""
        for index, frame in enumerate(self.seen):
            if all(frame.get(k) == v for k, v in fields.items()):
                return self.seen.pop(index)
        while True:
            frame = await self.next()
            if all(frame.get(k) == v for k, v in fields.items()):
                return frame
            self.seen.append(frame)

    async def messages(self, topic: str, count: int) -> list[dict[str, Any]]:
        return [await self.until(type="message", topic=topic) for _ in range(count)]
