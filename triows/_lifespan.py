"""A mounted ASGI app's lifespan, run inside the App's own.

The App answers the server's lifespan itself; for each app given to
``App.mount`` it plays the server's part: it calls the app with a ``lifespan``
scope in the App's nursery, sends ``lifespan.startup`` during the App's startup
and ``lifespan.shutdown`` during its shutdown, and waits for each answer.  As
the ASGI spec asks of servers, an app that raises before answering the startup
(or returns, or answers something else) is taken to have no lifespan, and is
mounted all the same.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ._types import ASGIApp, Message

__all__ = ["ANSWER_TIMEOUT", "MountedLifespan"]

logger = logging.getLogger("triows")

#: How long a mounted app may take to answer its startup or shutdown (hypercorn's
#: default for the top-level app).
ANSWER_TIMEOUT = 60.0


class MountedLifespan:
    """The lifespan of the app mounted at ``prefix``."""

    def __init__(self, prefix: str, app: ASGIApp, state: dict[str, Any]) -> None:
        self.prefix = prefix
        self.app = app
        #: The server's lifespan state, shared so the app's requests see what it stores.
        self.state = state
        #: Whether the app answered its startup (False: it has no lifespan).
        self.running = False
        self._to_app, self._app_inbox = trio.open_memory_channel[Message](1)
        self._app_outbox, self._from_app = trio.open_memory_channel[Message](1)

    async def startup(self, nursery: trio.Nursery) -> None:
        """Start the app's lifespan in ``nursery``; RuntimeError if its startup failed."""
        nursery.start_soon(self._run)
        await self._to_app.send({"type": "lifespan.startup"})
        reply = await self._reply()
        if reply is None:
            return
        if reply["type"] == "lifespan.startup.failed":
            raise RuntimeError(
                f"the app mounted at {self.prefix!r} failed to start: {reply.get('message', '')}"
            )
        if reply["type"] != "lifespan.startup.complete":
            logger.warning(
                "the app mounted at %r answered the lifespan startup with %r; "
                "treating it as an app without a lifespan",
                self.prefix,
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
            raise RuntimeError(
                f"the app mounted at {self.prefix!r} failed to shut down: "
                f"{reply.get('message', '')}"
            )

    async def _reply(self) -> Message | None:
        try:
            with trio.fail_after(ANSWER_TIMEOUT):
                return await self._from_app.receive()
        except trio.EndOfChannel:
            return None  # the app returned or raised without answering
        except trio.TooSlowError:
            raise RuntimeError(
                f"the app mounted at {self.prefix!r} did not answer its lifespan event "
                f"within {ANSWER_TIMEOUT:g} s"
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
                    logger.exception("the lifespan of the app mounted at %r failed", self.prefix)
                else:
                    logger.debug("the app mounted at %r has no lifespan (%r)", self.prefix, exc)
