"""The command line: ``triows run module:app`` (also ``python -m triows run``)."""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

import trio

from ._app import App
from ._server import serve

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
    # hypercorn Config attributes; main() refused them with the native backend.
    tls = {"certfile": args.certfile, "keyfile": args.keyfile} if args.certfile else {}
    scheme = "https" if args.certfile else "http"
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                functools.partial(
                    serve,
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
                    backlog=args.backlog,
                    **tls,
                )
            )
            print(
                f"triows: serving {target} on {scheme}://{args.host}:{port} (Ctrl+C to stop)",
                flush=True,
            )
            async for signum in signals:
                print(f"triows: {signal.Signals(signum).name}, shutting down", flush=True)
                break
            nursery.cancel_scope.cancel()


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
        choices=("hypercorn", "native"),
        default="hypercorn",
        help="hypercorn's trio worker (default) or the native trio-socket server",
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
    run.add_argument(
        "--backlog",
        type=int,
        default=1024,
        help="listen backlog: connections queued before the server accepts them (default 1024)",
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
    if args.certfile and args.backend == "native":
        parser.error(
            "the native backend has no TLS: drop --backend native, "
            "or put a TLS-terminating proxy in front of it"
        )
    if args.ping_interval < 0 or args.ping_timeout <= 0:
        parser.error("--ping-interval must be >= 0 and --ping-timeout > 0")
    if args.backlog < 1:
        parser.error("--backlog must be >= 1")
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
