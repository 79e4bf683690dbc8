"""``serve(backend="hypercorn")``: hypercorn's trio worker in this process (interim)."""

from __future__ import annotations

import logging
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from .._app import App

__all__ = ["serve_hypercorn"]


async def serve_hypercorn(
    app: App,
    *,
    host: str,
    port: int,
    shutdown_timeout: float,
    max_message_size: int,
    ping_interval: float | None,
    handshake_timeout: float,
    access_log: bool,
    task_status: trio.TaskStatus[int],
    **hypercorn_options: Any,
) -> None:
    """Run ``app`` on hypercorn until cancelled; cancellation is a graceful shutdown."""
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.websocket_max_message_size = max_message_size
    config.websocket_ping_interval = ping_interval
    config.graceful_timeout = shutdown_timeout
    config.keep_alive_timeout = handshake_timeout
    config.accesslog = logging.getLogger("triows.access") if access_log else None
    for name, value in hypercorn_options.items():
        if not hasattr(config, name):
            raise TypeError(
                f"serve() got an unknown option {name!r} (not a hypercorn Config field)"
            )
        setattr(config, name, value)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        server_scope = trio.CancelScope(shield=True)

        async def run_server(task_status: trio.TaskStatus[list[str]]) -> None:
            with server_scope:
                await hypercorn_serve(
                    app,  # type: ignore[arg-type]
                    config,
                    shutdown_trigger=stop.wait,
                    task_status=task_status,
                )

        try:
            binds: list[str] = await nursery.start(run_server)
            task_status.started(int(binds[0].rsplit(":", 1)[1]))
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(shutdown_timeout):
                    await app.close_connections(shutdown_timeout)
                stop.set()
                server_scope.deadline = trio.current_time() + 2 * shutdown_timeout + 1
