"""The command line: ``triows run module:app`` (also ``python -m triows run``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

import trio

from ._app import App
from ._server import serve
from ._serving._shutdown import FORCE, abandoned_tasks

__all__ = ["load_app", "main"]


def load_app(target: str) -> App:
    """Import ``module:attribute`` (attribute defaults to ``app``) from the current directory."""
    module_name, _, attribute = target.partition(":")
    if not module_name:
        raise SystemExit(f"triows: {target!r} is not of the form module:app")
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


async def _run(app: App, target: str, args: argparse.Namespace) -> None:
    scheme = "https" if args.certfile else "http"
    # A second signal forces the shutdown under way (serve() watches this event).
    force = trio.Event()
    FORCE.set(force)
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
                        task_status=task_status,
                    )
                nursery.cancel_scope.cancel()  # served: stop listening for signals

            port = await nursery.start(run_server)
            print(
                f"triows: serving {target} on {scheme}://{args.host}:{port} (Ctrl+C to stop)",
                flush=True,
            )
            async for signum in signals:
                name = signal.Signals(signum).name
                if not serving.cancel_called:
                    print(f"triows: {name}, shutting down ({name} again to force)", flush=True)
                    serving.cancel()
                else:
                    print(f"triows: {name} again, forcing the shutdown", flush=True)
                    force.set()
                    # Cancelled as serve() returns, at once now; else exit regardless.
                    await trio.sleep(FORCED_EXIT_TIMEOUT)
                    _exit_now(1)
    if force.is_set() or abandoned_tasks():
        # Tasks that ignore cancellation still run: trio.run() would wait for them.
        _exit_now(1 if force.is_set() else 0)


def _exit_now(code: int) -> None:
    print("triows: exiting without waiting for tasks that overran the shutdown", flush=True)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


#: After a forced shutdown, how long serve() may take to return before the process exits.
FORCED_EXIT_TIMEOUT = 1.0


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="triows", description="Run a triows App.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve module:app with the embedded server")
    run.add_argument("target", help="the App to serve, as module:attribute (e.g. chat:app)")
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
    args = parser.parse_args(argv)
    if bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")
    if args.backlog < 1:
        parser.error("--backlog must be at least 1")
    if args.ping_interval < 0 or args.ping_timeout <= 0:
        parser.error("--ping-interval must be >= 0 and --ping-timeout > 0")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = load_app(args.target)
    try:
        trio.run(_run, app, args.target, args)
    except (OSError, BaseExceptionGroup) as exc:
        bind_error = _first_os_error(exc)
        if bind_error is None:
            raise
        raise SystemExit(
            f"triows: cannot serve on {args.host}:{args.port}: {bind_error.strerror or bind_error}"
        ) from None


def _first_os_error(exc: BaseException) -> OSError | None:
    """The OSError (a failed bind) inside ``exc``, if that is all it holds."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _first_os_error(exc.exceptions[0])
    return None
