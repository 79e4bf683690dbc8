"""What runs for an App's lifetime: its ASGI lifespan, ``app.nursery`` and its hooks.

Startup opens, in order: the App's nursery (``app.nursery``, and the ASGI
adapter's :class:`~triows._asgi.Pumps` task in it), the hub, the app-scoped
providers, the lifespans of mounted apps, then the ``on_startup`` hooks.
Shutdown closes the open WebSockets (1001), then unwinds the same stack in
reverse: ``on_shutdown`` hooks, mounted apps, the nursery's tasks cancelled,
providers torn down, the hub stopped.  Every path, a cancellation included,
unwinds in the lifespan's own task.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import trio

from ._asgi import Pumps
from ._endpoints import Mount, WebSocketEndpoints
from ._lifespan import Lifespan
from ._providers import ProviderRegistry
from ._types import Message, Receive, Scope, Send
from .hub import Hub

__all__ = ["AppRuntime"]

logger = logging.getLogger("triows")

Hook = Callable[[], Awaitable[None]]


class AppRuntime:
    """The App's lifetime: the ASGI lifespan, its nursery, hooks and pumps."""

    def __init__(
        self,
        hub: Hub | None,
        providers: ProviderRegistry,
        mounts: list[Mount],
        websockets: WebSocketEndpoints,
    ) -> None:
        self.hub = hub
        self.providers = providers
        self.mounts = mounts
        self.websockets = websockets
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        #: ``app.nursery`` while the App runs, else None.
        self.nursery: trio.Nursery | None = None
        #: The ASGI adapter's pump starter while the App runs, else None.
        self.pumps: Pumps | None = None

    async def lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI ``lifespan`` scope: startup, run, shutdown."""
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        self.websockets.started()
        # Replies go out after the nursery block: closing the stack cancels the
        # nursery, and nothing can be awaited inside a cancelled scope.
        reply: Message = {"type": "lifespan.shutdown.complete"}
        async with trio.open_nursery() as nursery:
            stack = AsyncExitStack()
            try:
                try:
                    await self._start(scope, nursery, stack)
                except Exception as exc:
                    logger.exception("triows: startup failed")
                    reply = {"type": "lifespan.startup.failed", "message": _describe(exc)}
                    with trio.CancelScope(shield=True):
                        await stack.aclose()
                else:
                    await send({"type": "lifespan.startup.complete"})
                    message = await receive()
                    try:
                        # serve() closed them already: views left overran it.
                        closed = self.websockets.closing is not None
                        await self.websockets.close_all(0 if closed else 5.0)
                        await stack.aclose()
                    except Exception as exc:
                        logger.exception("triows: shutdown failed")
                        reply = {"type": "lifespan.shutdown.failed", "message": _describe(exc)}
            finally:
                # Every path (a cancellation too) unwinds here, in this task: the
                # stack (app.nursery, providers, hub) in reverse order, then this nursery.
                try:
                    await stack.aclose()
                finally:
                    self._close_nursery(nursery)
                    # Shut down, not closed for good: the same App may be served
                    # again (a test's next TestClient, a server without lifespan).
                    self.websockets.started()
        await send(reply)

    async def _start(self, scope: Scope, nursery: trio.Nursery, stack: AsyncExitStack) -> None:
        # App-scoped providers may use app.nursery and the hub: open them
        # first.  At shutdown the background tasks are cancelled before the
        # providers are torn down and the hub stops, so a publisher never
        # finds the hub gone.
        self.nursery = nursery
        self.pumps = Pumps(nursery)
        nursery.start_soon(self.pumps.run)
        if self.hub is not None:
            await stack.enter_async_context(self.hub)
        await self.providers.start_app(stack)
        stack.callback(self._close_nursery, nursery)
        state = scope.setdefault("state", {})
        for mount in self.mounts:
            mounted = Lifespan(mount.app, state, f"the app mounted at {mount.prefix!r}")
            stack.push_async_callback(mounted.shutdown)
            await mounted.startup(nursery)
        for hook in self.startup_hooks:
            await hook()
        for hook in reversed(self.shutdown_hooks):
            stack.push_async_callback(hook)

    def _close_nursery(self, nursery: trio.Nursery) -> None:
        self.nursery = self.pumps = None
        nursery.cancel_scope.cancel()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
