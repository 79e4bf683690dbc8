"""``triows run --reload``: serve in a child process, restart it when the code changes.

For development.  The supervisor (this module, in the ``triows`` process) watches
the Python files under the current directory with watchfiles (the extra
``triows[reload]``) and runs the server as a child process, ``python -m triows run``
with the same arguments but ``--reload``.  When a ``.py`` file changes, it sends
the child SIGINT (the graceful shutdown: open WebSockets get 1001), waits for it,
and starts a new one, which imports the new code.  A child that exits by itself
(a syntax error in the file just saved) is restarted at the next change.

The child runs in its own process group, so the terminal's Ctrl+C reaches only the
supervisor, which passes each signal on once: a first SIGINT or SIGTERM shuts the
child down gracefully, a second forces it, as without ``--reload``.  The
supervisor's exit status is the child's.  If the child outlives its shutdown bound
after a change, it is killed (SIGKILL) before the next one starts.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

__all__ = ["child_arguments", "run_with_reload"]

logger = logging.getLogger("triows")

#: The option that asks for this supervisor; never passed on to the child.
OPTION = "--reload"
#: Seconds a restarted child has to exit after SIGKILL before the supervisor gives up.
KILL_WAIT = 5.0

MISSING = (
    "triows: --reload needs watchfiles, which is not installed: "
    "pip install 'triows[reload]' (in a checkout: pip install -e '.[reload]')"
)


def child_arguments(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--reload`` (or the unambiguous prefix argparse accepted)."""
    return [a for a in argv if not (len(a) > 2 and OPTION.startswith(a))]


def run_with_reload(argv: Sequence[str], *, stop_timeout: float) -> int:
    """Serve ``triows ARGV`` (without ``--reload``) in a child process, restarted on
    every change of a ``.py`` file under the current directory; return its exit status.

    ``stop_timeout``: seconds a child has to exit after SIGINT when the code changed
    (its own shutdown bound, and a margin) before it is killed.  Raises SystemExit
    naming the extra ``triows[reload]`` when watchfiles is missing.
    """
    try:
        import watchfiles  # noqa: F401  (only checks that the extra is installed)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "watchfiles":
            raise
        raise SystemExit(MISSING) from None
    command = [sys.executable, "-m", "triows", *child_arguments(argv)]
    return trio.run(_supervise, command, Path.cwd(), stop_timeout)


async def _supervise(command: list[str], root: Path, stop_timeout: float) -> int:
    from watchfiles import PythonFilter, awatch

    # One line per restart is ours; watchfiles' own "N changes detected" would repeat it.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    print(f"triows: reloading on changes to the .py files under {root}", flush=True)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            changes_in, changes = trio.open_memory_channel[list[str]](math.inf)
            # awatch waits for file events in a thread that a cancellation does not
            # interrupt; the thread checks this event between steps (50 ms).
            stop = trio.Event()

            async def watch() -> None:
                async for batch in awatch(root, watch_filter=PythonFilter(), stop_event=stop):
                    changes_in.send_nowait(sorted(_relative(path, root) for _, path in batch))

            nursery.start_soon(watch)
            try:
                return await _serve_until_a_signal(command, changes, signals, stop_timeout)
            finally:
                stop.set()
                nursery.cancel_scope.cancel()


async def _serve_until_a_signal(
    command: list[str],
    changes: trio.MemoryReceiveChannel[list[str]],
    signals: Any,
    stop_timeout: float,
) -> int:
    """Run the child, restart it on each change; pass signals on; its final status."""
    child: trio.Process | None = await _start(command)
    while True:
        event = await _next_event(child, changes, signals)
        if isinstance(event, int):  # a signal: pass it on, then the second one too
            if child is None or child.returncode is not None:
                return 0 if child is None else _status(child)
            return await _stop_on_signals(child, event, signals)
        if event is None:  # the child exited by itself
            assert child is not None
            print(
                f"triows: the server exited with status {child.returncode}; "
                "restarting at the next change",
                flush=True,
            )
            child = None
            continue
        print(f"triows: {', '.join(event)} changed, restarting", flush=True)
        if child is not None:
            await _stop(child, stop_timeout)
        # A burst of saves restarts the child once.
        while True:
            try:
                changes.receive_nowait()
            except trio.WouldBlock:
                break
        child = await _start(command)


async def _next_event(
    child: trio.Process | None, changes: trio.MemoryReceiveChannel[list[str]], signals: Any
) -> int | list[str] | None:
    """The first of: a signal (its number), a change (the files), the child's exit (None)."""
    result: list[int | list[str] | None] = []
    async with trio.open_nursery() as nursery:

        async def first(event: int | list[str] | None) -> None:
            result.append(event)
            nursery.cancel_scope.cancel()

        async def on_signal() -> None:
            async for signum in signals:
                await first(signum)

        async def on_change() -> None:
            await first(await changes.receive())

        async def on_exit() -> None:
            assert child is not None
            await child.wait()
            await first(None)

        nursery.start_soon(on_signal)
        nursery.start_soon(on_change)
        if child is not None and child.returncode is None:
            nursery.start_soon(on_exit)
    return result[0]


async def _start(command: list[str]) -> trio.Process:
    # Its own process group: the terminal's Ctrl+C reaches the supervisor only, and
    # the child gets each signal once, from the supervisor.
    return await trio.lowlevel.open_process(command, stdin=subprocess.DEVNULL, process_group=0)


async def _stop(child: trio.Process, timeout: float) -> None:
    """SIGINT (the graceful shutdown); SIGKILL past ``timeout``; wait for the exit."""
    if child.returncode is None:
        child.send_signal(signal.SIGINT)
    with trio.move_on_after(timeout):
        await child.wait()
        return
    print(f"triows: the server did not stop within {timeout:g} s; killing it", flush=True)
    child.kill()
    with trio.move_on_after(KILL_WAIT):
        await child.wait()


async def _stop_on_signals(child: trio.Process, first: int, signals: Any) -> int:
    """Pass ``first`` on to the child, and every later signal; its exit status."""
    child.send_signal(first)
    async with trio.open_nursery() as nursery:

        async def pass_on() -> None:
            async for signum in signals:
                if child.returncode is None:
                    child.send_signal(signum)

        nursery.start_soon(pass_on)
        await child.wait()
        nursery.cancel_scope.cancel()
    return _status(child)


def _status(child: trio.Process) -> int:
    """The child's exit status as a shell reports it (128 + N when killed by signal N)."""
    code = child.returncode or 0
    return 128 - code if code < 0 else code


def _relative(path: str, root: Path) -> str:
    try:
        return os.path.relpath(path, root)
    except ValueError:
        return path
