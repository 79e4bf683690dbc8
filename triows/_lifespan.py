"""Running an ASGI app's lifespan, as a server does.

Three drivers of lifespans live in triows, all this one: the native backend runs
the App's, the TestClient runs the App's, and the App runs the lifespan of each
app given to ``App.mount`` inside its own.
Both call the app with a ``lifespan`` scope in a nursery, send
``lifespan.startup`` and later ``lifespan.shutdown``, and wait for each answer.
As the ASGI spec asks of servers, an app that raises before answering its
startup (or returns, or answers something else) is taken to have no lifespan,
and is served all the same.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ._types import ASGIApp, Message

__all__ = ["ANSWER_TIMEOUT", "Lifespan"]

logger = logging.getLogger("triows")

#: How long an app may take to answer its startup or shutdown (hypercorn's default).
ANSWER_TIMEOUT = 60.0


class Lifespan:
    """The lifespan of ``app``, called ``name`` in errors and logs ("the App")."""

    def __init__(
        self, app: ASGIApp, state: dict[str, Any], name: str, *, timeout: float | None = None
    ) -> None:
        self.app = app
        #: How long the app may take to answer its startup or its shutdown.
        self.timeout = ANSWER_TIMEOUT if timeout is None else timeout
        #: The server's lifespan state, shared so the app's requests see what it stores.
        self.state = state
        self.name = name
        #: Whether the app answered its startup (False: it has no lifespan, or stopped).
        self.running = False
        self._to_app, self._app_inbox = trio.open_memory_channel[Message](1)
        self._app_outbox, self._from_app = trio.open_memory_channel[Message](1)

    async def startup(self, nursery: trio.Nursery) -> None:
        """Start the app's lifespan in ``nursery``; RuntimeError if its startup failed.

        Returns at once, with :attr:`running` False, for an app without a lifespan.
        """
        nursery.start_soon(self._run)
        await self._to_app.send({"type": "lifespan.startup"})
        reply = await self._reply()
        if reply is None:
            return
        if reply["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"{self.name} failed to start: {reply.get('message', '')}")
        if reply["type"] != "lifespan.startup.complete":
            logger.warning(
                "%s answered the lifespan startup with %r; serving it as an app without a lifespan",
                self.name,
                reply["type"],
            )
            return
        self.running = True

    async def shutdown(self) -> None:
        """Run the app's shutdown; RuntimeError if it failed.  Nothing if it never started."""
        if not self.running:
            return
        self.running = False
        await self._to_app.send({"type": "lifespan.shutdown"})
        reply = await self._reply()
        if reply is not None and reply["type"] == "lifespan.shutdown.failed":
            raise RuntimeError(f"{self.name} failed to shut down: {reply.get('message', '')}")

    async def _reply(self) -> Message | None:
        try:
            with trio.fail_after(self.timeout):
                return await self._from_app.receive()
        except trio.EndOfChannel:
            return None  # the app returned or raised without answering
        except trio.TooSlowError:
            raise RuntimeError(
                f"{self.name} did not answer its lifespan event within {self.timeout:g} s"
            ) from None

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        async with self._app_outbox:
            try:
                await self.app(scope, self._app_inbox.receive, self._app_outbox.send)
            except Exception as exc:
                if self.running:
                    logger.exception("the lifespan of %s failed", self.name)
                else:
                    logger.debug("%s has no lifespan (%r)", self.name, exc)
