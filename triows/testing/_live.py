"""A real server on a free loopback port, for tests with real clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

__all__ = ["LiveServer", "live_server"]


@attrs.frozen
class LiveServer:
    """A real server started by :func:`live_server`."""

    host: str
    port: int

    def url(self, path: str = "/", scheme: str = "ws") -> str:
        """The URL of ``path`` on this server (``ws://127.0.0.1:PORT/path``)."""
        return f"{scheme}://{self.host}:{self.port}{path}"


@asynccontextmanager
async def live_server(
    app: Any, *, host: str = "127.0.0.1", **serve_options: Any
) -> AsyncIterator[LiveServer]:
    """Serve ``app`` with :func:`triows.serve` on a free loopback port for a block.

    Leaving the block shuts the server down gracefully (clients get 1001) and
    waits for it to stop.  Use a real client such as trio-websocket against
    ``server.url("/path")``.  ``serve_options`` go to ``serve()``; ``gc_freeze``
    defaults to False here (a test process starts many servers, and each freeze
    costs a full garbage collection).
    """
    from .._server import serve

    serve_options.setdefault("gc_freeze", False)

    error: Exception | None = None
    async with trio.open_nursery() as nursery:
        server_scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[int]) -> None:
            with server_scope:
                await serve(app, host=host, port=0, task_status=task_status, **serve_options)

        port: int = await nursery.start(run)
        try:
            yield LiveServer(host, port)
        except Exception as exc:
            # Raised below, outside the nursery, so tests see it unwrapped.
            error = exc
        finally:
            server_scope.cancel()
    if error is not None:
        raise error
