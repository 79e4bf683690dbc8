"""The worker's side of ``triows run``: readiness, draining on SIGHUP, dying with the supervisor.

A process started by the supervisor (``triows run --workers N``, see
``triows._supervisor``) is an ordinary ``triows run`` with a hidden
``--worker-of PID:FD`` option: it serves with ``reuse_port=True``, writes one
line to the pipe ``FD`` once it listens (the supervisor's readiness signal),
and receives SIGTERM if the supervisor ``PID`` dies (``PR_SET_PDEATHSIG``), so
that no worker outlives it.  Any ``triows run`` drains on SIGHUP: new
handshakes get 503, open WebSockets 1012 in jittered batches over
``--drain-seconds``, then the process shuts down and exits with status 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from typing import Final

import attrs
import trio

from ._app import App
from ._serving._logs import logger

__all__ = ["PR_SET_PDEATHSIG", "WorkerOf", "announce", "die_with_parent", "drain_on_sighup"]

#: prctl(2): the signal a process gets when its parent dies.
PR_SET_PDEATHSIG: Final = 1


@attrs.frozen
class WorkerOf:
    """``--worker-of PID:FD``: the supervisor's pid and the readiness pipe's write end."""

    supervisor: int
    ready_fd: int

    @classmethod
    def parse(cls, text: str) -> WorkerOf:
        pid, _, fd = text.partition(":")
        try:
            return cls(int(pid), int(fd))
        except ValueError:
            raise ValueError(
                f"--worker-of got {text!r}: it takes PID:FD (set by the supervisor of "
                "triows run --workers; not for use by hand)"
            ) from None

    def __str__(self) -> str:
        return f"{self.supervisor}:{self.ready_fd}"


def die_with_parent(parent: int | None = None) -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (``PR_SET_PDEATHSIG``).

    With ``parent``: if that process is already gone (it died before the
    request took effect), exit at once.  Elsewhere than Linux, nothing happens.
    The signal follows the parent *thread*: call it in a child whose parent
    forked it from a thread that lives as long as the parent (its main thread).
    """
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def announce(target: str, url: str, worker: WorkerOf | None) -> None:
    """Say that the server listens: the serving line, or, in a worker, its own line
    and the readiness signal on the supervisor's pipe."""
    if worker is None:
        print(f"triows: serving {target} on {url} (Ctrl+C to stop)", flush=True)
        return
    # One write: the workers share the supervisor's output, and print() writes the
    # line and its end separately, which could glue two workers' lines together.
    sys.stdout.write(f"triows: worker {os.getpid()} serving {target} on {url}\n")
    sys.stdout.flush()
    try:
        with contextlib.suppress(BrokenPipeError):  # the supervisor is gone: SIGTERM follows
            os.write(worker.ready_fd, b"ready\n")
    finally:
        os.close(worker.ready_fd)


async def drain_on_sighup(
    app: App,
    serving: trio.CancelScope,
    seconds: float,
    timeout: float,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """On SIGHUP, drain ``app`` (``App.drain``) and then cancel ``serving``: the
    shutdown that follows closes what is left with 1001.  A later SIGHUP is ignored.
    Cancellation (the end of ``triows run``) stops the drain where it is."""
    with trio.open_signal_receiver(signal.SIGHUP) as hangups:
        task_status.started()
        async for _ in hangups:
            break
        print(
            f"triows: SIGHUP, draining: 1012 to every client over {seconds:g} s, then exit",
            flush=True,
        )
        await app.drain(seconds, timeout)
        logger.info("drained: shutting down")
        serving.cancel()
        # Until the shutdown ends, SIGHUP stays queued here (not the default: exit).
        await trio.sleep_forever()
