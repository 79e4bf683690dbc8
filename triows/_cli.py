"""The command line: ``triows run module:app`` (also ``python -m triows run``) and
``triows asyncapi module:app``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from typing import NoReturn

import trio

from . import __version__
from ._app import App
from ._asyncapi import document_json
from ._reload import run_with_reload
from ._server import serve
from ._serving._shutdown import FORCE, OVERRUNS
from ._supervisor import supervise
from ._target import module_name as _module_name
from ._worker import WorkerOf, announce, die_with_parent, drain_on_sighup

__all__ = ["load_app", "main"]

logger = logging.getLogger("triows")


def load_app(target: str) -> App:
    """Import ``module:attribute`` (attribute defaults to ``app``) from the current directory.

    The module may be given as a file path under the current directory (``echo.py:app``).
    """
    module_text, _, attribute = target.partition(":")
    if not module_text:
        raise SystemExit(f"triows: {target!r} is not of the form module:app")
    module_name = _module_name(module_text)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise SystemExit(f"triows: cannot import {module_name!r}: {exc}") from None
        raise
    obj: object = module
    for part in (attribute or "app").split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SystemExit(
                f"triows: module {module_name!r} has no attribute {attribute or 'app'!r}"
            ) from None
    if not isinstance(obj, App):
        raise SystemExit(f"triows: {target} is a {type(obj).__name__}, not a triows.App")
    return obj


async def _run(app: App, target: str, args: argparse.Namespace) -> int:
    """Serve until a signal, then shut down; the process's exit status."""
    scheme = "https" if args.certfile else "http"
    # A second signal forces the shutdown under way (serve() watches this event);
    # the server lists what overran its shutdown in ``overruns``.
    force = trio.Event()
    FORCE.set(force)
    overruns: list[str] = []
    OVERRUNS.set(overruns)
    serving = trio.CancelScope()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def run_server(task_status: trio.TaskStatus[int]) -> None:
                with serving:
                    await serve(
                        app,
                        host=args.host,
                        port=args.port,
                        shutdown_timeout=args.shutdown_timeout,
                        max_message_size=args.max_message_size,
                        handshake_timeout=args.handshake_timeout,
                        access_log=args.access_log,
                        backend=args.backend,
                        ping_interval=args.ping_interval or None,
                        ping_timeout=args.ping_timeout,
                        gc_freeze=args.gc_freeze,
                        certfile=args.certfile,
                        keyfile=args.keyfile,
                        backlog=args.backlog,
                        reuse_port=args.worker_of is not None,
                        task_status=task_status,
                    )
                nursery.cancel_scope.cancel()  # served: stop listening for signals

            drain = (app, serving, args.drain_seconds, args.shutdown_timeout)
            await nursery.start(drain_on_sighup, *drain)
            port = await nursery.start(run_server)
            announce(target, f"{scheme}://{args.host}:{port}", args.worker_of)
            # Cancelled as soon as serve() returns: past the bound, it overran.
            await _shut_down_on_signals(signals, serving, force, _bound(args))
            _exit_overrun(len(overruns) or len(app.websockets.live), forced=force.is_set())
    return 1 if force.is_set() else 0


async def _shut_down_on_signals(
    signals: AsyncIterator[int], serving: trio.CancelScope, force: trio.Event, bound: float
) -> None:
    """Shut down gracefully on the first signal, force it on a second one; return at
    the bound, or :data:`SETTLE_AFTER_FORCE` seconds after a forced shutdown."""
    async for signum in signals:
        name = signal.Signals(signum).name
        print(f"triows: {name}, shutting down ({name} again to force)", flush=True)
        serving.cancel()
        break
    with trio.move_on_after(bound):
        async for signum in signals:
            name = signal.Signals(signum).name
            print(f"triows: {name} again, forcing the shutdown", flush=True)
            force.set()
            await trio.sleep(SETTLE_AFTER_FORCE)
            break
    # serve() may have returned just now: its cancellation of this task comes first.
    await trio.lowlevel.checkpoint()


def _bound(args: argparse.Namespace) -> float:
    """Seconds from the first signal to the end of serve()'s shutdown, whatever clients
    do, unless a view ignores cancellation (docs/deployment.md, Graceful shutdown), and
    a moment for the server's own WARNINGs about such views."""
    timeout: float = args.shutdown_timeout
    stages = 2 if args.backend == "native" else 3  # hypercorn: its views', then 2 x more
    return stages * timeout + 1 + SETTLE_AFTER_FORCE


def _exit_overrun(views: int, *, forced: bool) -> NoReturn:
    """serve() did not return in time: a view ignores cancellation.  Exit now, with 1."""
    logger.error(
        "%d view(s) overran the %sshutdown: exiting with status 1 without waiting for them",
        views,
        "forced " if forced else "",
    )
    # trio.run() waits for every task, and a trio task cannot be killed: a view that
    # shields itself from cancellation would keep this process alive.  Only here, at
    # the process boundary, is not waiting sound: the server has closed every
    # connection; flush what was logged and printed, and leave.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


#: After a forced shutdown, how long serve() may take to return before the process exits.
SETTLE_AFTER_FORCE = 0.5


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="triows", description="Run a triows App.")
    parser.add_argument("--version", action="version", version=f"triows {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve module:app with the embedded server")
    run.add_argument(
        "target", help="the App to serve, as module:attribute (e.g. chat:app, or chat.py:app)"
    )
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=8000, help="port to bind (default 8000; 0: any)")
    run.add_argument(
        "--shutdown-timeout", type=float, default=5.0, help="grace period at shutdown, seconds"
    )
    run.add_argument(
        "--max-message-size",
        type=int,
        default=None,
        help="largest message, bytes (default: the App's max_message_size, 1 MiB)",
    )
    run.add_argument(
        "--handshake-timeout",
        type=float,
        default=10.0,
        help="seconds a client has to send its request head",
    )
    run.add_argument(
        "--backend",
        choices=("native", "hypercorn"),
        default="native",
        help="triows' own trio server (default) or hypercorn's trio worker (HTTP/2)",
    )
    run.add_argument(
        "--backlog",
        type=int,
        default=1024,
        help="the listening socket's queue of connections not yet accepted (default 1024)",
    )
    run.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        help="seconds between keepalive pings (default 20; 0: no pings)",
    )
    run.add_argument(
        "--ping-timeout",
        type=float,
        default=20.0,
        help="seconds a client has to answer a ping before it is disconnected (default 20)",
    )
    run.add_argument("--certfile", help="TLS certificate chain (PEM): serve wss:// and https://")
    run.add_argument("--keyfile", help="the certificate's private key (PEM)")
    run.add_argument(
        "--no-gc-freeze",
        dest="gc_freeze",
        action="store_false",
        help="do not gc.freeze() the startup heap (see triows.serve)",
    )
    run.add_argument("--access-log", action="store_true", help="log each handshake and request")
    run.add_argument(
        "--reload",
        action="store_true",
        help="development: restart when a .py file under the current directory changes "
        "(needs the extra triows[reload])",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        help="serve with N worker processes on one port under a supervisor (Linux)",
    )
    run.add_argument(
        "--drain-seconds",
        type=float,
        default=10.0,
        help="on SIGHUP, close clients with 1012 spread over this many seconds (default 10)",
    )
    run.add_argument("--worker-of", type=WorkerOf.parse, help=argparse.SUPPRESS)
    asyncapi = commands.add_parser("asyncapi", help="print module:app's AsyncAPI document")
    asyncapi.add_argument("target", help="the App to describe, as module:attribute")
    asyncapi.add_argument("--title", help="the API's title (default: the App's title)")
    asyncapi.add_argument(
        "--version", dest="api_version", help="the API's version (default: the App's version)"
    )
    asyncapi.add_argument("--server", help="the server to name, as a ws:// or wss:// URL")
    args = parser.parse_args(argv)
    if args.command == "asyncapi":
        app = load_app(args.target)
        try:
            text = document_json(
                app, title=args.title, version=args.api_version, server=args.server
            )
        except ValueError as exc:  # a --server that is not a WebSocket URL
            parser.error(str(exc))
        print(text)
        return
    if bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")
    if args.backlog < 1:
        parser.error("--backlog must be at least 1")
    if args.ping_interval < 0 or args.ping_timeout <= 0:
        parser.error("--ping-interval must be >= 0 and --ping-timeout > 0")
    if (args.workers is not None and args.workers < 1) or args.drain_seconds < 0:
        parser.error("--workers must be at least 1 and --drain-seconds >= 0")
    if args.reload and args.workers is not None:
        parser.error("--reload and --workers do not go together (--reload is for development)")
    if args.worker_of is not None:
        die_with_parent(args.worker_of.supervisor)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.reload:
        given = sys.argv[1:] if argv is None else argv
        raise SystemExit(run_with_reload(given, stop_timeout=_bound(args) + 2))
    app = load_app(args.target)
    if args.workers is not None and args.worker_of is None:
        raise SystemExit(supervise(args, sys.argv[1:] if argv is None else argv, _bound(args)))
    try:
        status = trio.run(_run, app, args.target, args)
    except (OSError, BaseExceptionGroup) as exc:
        bind_error = _first_os_error(exc)
        if bind_error is None:
            raise
        raise SystemExit(
            f"triows: cannot serve on {args.host}:{args.port}: {bind_error.strerror or bind_error}"
        ) from None
    if status:
        raise SystemExit(status)  # a forced shutdown


def _first_os_error(exc: BaseException) -> OSError | None:
    """The OSError (a failed bind) inside ``exc``, if that is all it holds."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _first_os_error(exc.exceptions[0])
    return None
