"""The embedded server: hypercorn's trio worker, in-process, with triows' fixes."""

from __future__ import annotations

import gc
import logging
from typing import Any, Literal

import trio

from ._app import App
from ._hypercorn import serve_hypercorn

__all__ = ["serve"]

logger = logging.getLogger("triows")


async def serve(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    shutdown_timeout: float = 5.0,
    max_message_size: int | None = None,
    ping_interval: float | None = 20.0,
    access_log: bool = False,
    backend: Literal["native", "hypercorn"] = "native",
    ping_timeout: float = 20.0,
    handshake_timeout: float = 10.0,
    certfile: str | None = None,
    keyfile: str | None = None,
    backlog: int = 1024,
    gc_freeze: bool = True,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    **hypercorn_options: Any,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled.

    Use it with ``nursery.start``: the value passed to ``task_status.started()`` is
    the bound TCP port (useful with ``port=0``)::

        port = await nursery.start(functools.partial(triows.serve, app, port=0))

    Runs triows' native trio server (``backend="native"``, the default:
    HTTP/1.1 with keep-alive for HTTP routes, WebSockets with permessage-deflate,
    TLS with ``certfile`` and ``keyfile``) or hypercorn's trio worker in this
    process (``backend="hypercorn"``: HTTP/2, hypercorn's options; see
    docs/deployment.md for the hypercorn defects it does and does not work
    around).  ``backlog`` is the listening socket's accept queue on both.

    Cancellation is a graceful shutdown: new connections are refused, every open
    WebSocket view is cancelled and its client gets close code 1001 (Going Away),
    then hypercorn stops and the App's shutdown runs (app-scoped providers are
    torn down).  This takes at most about ``shutdown_timeout`` seconds, after
    which remaining connections are dropped.  ``max_message_size`` bounds an
    incoming message (1009 past it); ``None`` (the default) takes the App's
    ``max_message_size``, 1 MiB unless set there.  ``handshake_timeout`` bounds
    the wait for a request head, so a client that opens a connection and
    trickles a partial handshake (slowloris) is disconnected after it; on the
    hypercorn backend it is hypercorn's ``keep_alive_timeout``, which also ends
    idle HTTP keep-alive connections.  Keepalive: every ``ping_interval``
    seconds (``None``: never) the server pings each client, and closes one whose
    pong has not come ``ping_timeout`` seconds later (its view sees a disconnect
    with code 1006, reason ``"ping timeout"``, and is cancelled).  Other keyword
    arguments set hypercorn ``Config`` attributes (``backend="hypercorn"``
    only: the native backend refuses them with TypeError).

    ``backlog``: the listen backlog, connections the kernel completes before the
    server accepts them (hypercorn's own default, 100, left a burst of
    handshakes waiting for SYN retries), on both backends.

    ``gc_freeze``: once the App has started, just before serving, collect
    garbage and ``gc.freeze()`` what is left (modules, routes, app-scoped
    providers), so the collector's full passes skip it; ``gc.unfreeze()`` when
    ``serve()`` returns.  Frozen objects are still freed by reference counting;
    only a reference cycle among them outlives its last use.  (``gc.unfreeze()``
    thaws the whole heap: a program that freezes it itself passes False.)

    ``reuse_port``: listen with ``SO_REUSEPORT``, so that several processes
    serve one port (``triows run --workers N``); then a drain
    (:meth:`App.drain`) also stops accepting connections, which the kernel
    gives to the other processes.
    """
    freezer = _HeapFreezer(task_status) if gc_freeze else None
    if freezer is not None:
        task_status = freezer
    try:
        if max_message_size is None:
            max_message_size = getattr(app, "max_message_size", 1024 * 1024)
        if backend not in ("native", "hypercorn"):
            raise ValueError(f"serve() got backend={backend!r}; use 'native' or 'hypercorn'")
        common: dict[str, Any] = {
            "host": host,
            "port": port,
            "shutdown_timeout": shutdown_timeout,
            "max_message_size": max_message_size,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "handshake_timeout": handshake_timeout,
            "access_log": access_log,
            "backlog": backlog,
            "reuse_port": reuse_port,
            "task_status": task_status,
        }
        if backend == "native":
            from ._native import serve_native

            await serve_native(
                app, certfile=certfile, keyfile=keyfile, **common, **hypercorn_options
            )
            return
        if certfile is not None:
            hypercorn_options.update(certfile=certfile, keyfile=keyfile)
        await serve_hypercorn(app, **common, **hypercorn_options)
    finally:
        if freezer is not None and freezer.frozen:
            gc.unfreeze()


class _HeapFreezer(trio.TaskStatus[int]):
    """Passes the port on to ``task_status``, freezing the heap first (see serve())."""

    def __init__(self, task_status: trio.TaskStatus[int]) -> None:
        self._task_status = task_status
        self.frozen = False

    def started(self, value: int | None = None) -> None:
        # Fan-out keeps hundreds of tasks suspended mid-send: each young
        # collection promotes their in-flight objects, which soon triggers a full
        # collection, and a full collection scans the whole heap.  Measured on the
        # Redis hub fan-out benchmark: full collections took 3.1 s of an 8 s run,
        # 0.9 s with the startup heap frozen.
        gc.collect()
        gc.freeze()
        self.frozen = True
        assert value is not None
        self._task_status.started(value)
