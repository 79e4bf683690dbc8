"""``triows run --workers N``: a supervisor and N worker processes on one port.

The supervisor reserves the port (a socket bound with ``SO_REUSEPORT``, never
listening: the port stays its own between two workers), then starts N workers,
each an ordinary ``triows run`` with ``--worker-of PID:FD``
(``triows._worker``): it listens with ``SO_REUSEPORT`` and writes one line on
the pipe ``FD`` once it does.  Then the supervisor

* restarts a worker that exits on its own, after a delay that doubles while
  workers keep dying young (``RESTART_DELAY`` up to ``MAX_RESTART_DELAY``), so
  a crash loop does not spin;
* on SIGINT/SIGTERM sends that signal to every worker (each closes its clients
  with 1001; a second signal forces them, as for ``triows run`` alone), waits
  for them within their shutdown bound, kills what is left, and exits: status
  0 if every worker ended cleanly, 1 otherwise;
* on SIGHUP restarts the workers one by one: a new worker starts and, once it
  listens, the old one drains (SIGHUP: 1012 to its clients, spread over
  ``--drain-seconds``) and exits; a new worker that fails to start ends the
  rolling restart, and the old workers keep serving.

Workers run in their own process group (a Ctrl+C in a terminal reaches the
supervisor only, which forwards it) and get SIGTERM if the supervisor dies
(``PR_SET_PDEATHSIG``).  With N > 1 the supervisor creates a temporary
directory for prometheus-client's multiprocess mode, sets
``PROMETHEUS_MULTIPROC_DIR`` to it in every worker, drops the live gauges of
each worker that exits (``mark_process_dead``), and removes it at exit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from typing import Final

import attrs
import trio

from ._serving._listen import reuse_port_sockets
from ._serving._logs import logger
from ._worker import WorkerOf

__all__ = ["MAX_RESTART_DELAY", "RESTART_DELAY", "Supervisor", "WorkerFailed", "supervise"]

#: Seconds before restarting a worker that exited; doubled while workers die young.
RESTART_DELAY: Final = 0.5
#: The longest delay before restarting a worker.
MAX_RESTART_DELAY: Final = 30.0
#: A worker that lived this long (seconds) was not crash-looping: the delay resets.
STABLE_AFTER: Final = 10.0
#: Seconds a new worker has to listen (imports, the App's startup) before it is killed.
STARTUP_TIMEOUT: Final = 60.0
#: Seconds past a worker's own shutdown bound before the supervisor kills it.
KILL_MARGIN: Final = 2.0


class WorkerFailed(Exception):
    """A worker exited, or timed out, before it listened."""


@attrs.define(eq=False)
class Worker:
    """One worker process, watched through its pidfd."""

    process: subprocess.Popen[bytes]
    started: float
    exited: trio.Event = attrs.field(factory=trio.Event)

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        """Send ``signum`` unless the process has already been reaped."""
        if not self.exited.is_set():
            self.process.send_signal(signum)


@attrs.define(eq=False)
class Slot:
    """Worker number ``index``: the process serving it now, replaced under ``lock``."""

    index: int
    worker: Worker | None = None
    lock: trio.Lock = attrs.field(factory=trio.Lock)


@attrs.define(eq=False)
class Supervisor:
    """Runs N workers of ``command`` (``triows run`` arguments) on ``host:port``."""

    #: The worker's command line without ``--port`` and ``--worker-of``.
    command: list[str]
    count: int
    host: str
    port: int
    #: Seconds from SIGTERM to the end of a worker's shutdown (its own bound).
    shutdown_bound: float
    #: Seconds a draining worker takes, at most, before its shutdown starts.
    drain_bound: float
    url: str = ""
    slots: list[Slot] = attrs.field(factory=list)
    alive: set[Worker] = attrs.field(factory=set)
    stopping: bool = False
    #: The signal forwarded at shutdown (SIGINT or SIGTERM).
    stop_signal: int = signal.SIGTERM
    stopped: trio.Event = attrs.field(factory=trio.Event)
    roll_requested: trio.Event = attrs.field(factory=trio.Event)
    clean: bool = True
    env: dict[str, str] = attrs.field(factory=lambda: dict(os.environ))
    _nursery: trio.Nursery | None = None

    async def run(self, target: str, scheme: str) -> int:
        """Serve until SIGINT/SIGTERM; the exit status."""
        if not hasattr(os, "pidfd_open"):
            raise SystemExit("triows: --workers needs Linux (pidfd_open, SO_REUSEPORT)")
        try:
            reserved = reuse_port_sockets(self.host, self.port)
        except OSError as exc:
            raise SystemExit(
                f"triows: cannot serve on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        self.port = reserved[0].getsockname()[1]
        metrics_dir = tempfile.mkdtemp(prefix="triows-metrics-") if self.count > 1 else None
        if metrics_dir is not None:
            self.env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        try:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._on_signals, signals)
                    await self._serve(target, scheme)
                    nursery.cancel_scope.cancel()
        finally:
            for sock in reserved:
                sock.close()
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
        return 0 if self.clean else 1

    async def _serve(self, target: str, scheme: str) -> None:
        assert self._nursery is not None
        self.slots = [Slot(index) for index in range(self.count)]
        try:
            async with trio.open_nursery() as starting:
                for slot in self.slots:
                    starting.start_soon(self._first_start, slot)
        except* WorkerFailed as group:
            if not self.stopping:  # (a signal during the start stops the workers too)
                logger.error("%s: stopping", group.exceptions[0])
                self.clean = False
                self.stopping = True
                self.stopped.set()
                for worker in list(self.alive):
                    worker.signal(signal.SIGTERM)
        if not self.stopping:
            host = f"[{self.host}]" if ":" in self.host else self.host
            _say(f"triows: serving {target} on {scheme}://{host}:{self.port} (Ctrl+C to stop)")
            pids = ", ".join(str(slot.worker.pid) for slot in self.slots if slot.worker)
            _say(f"triows: {self.count} workers (pids {pids}); SIGHUP restarts them one by one")
            for slot in self.slots:
                self._nursery.start_soon(self._keep, slot)
            self._nursery.start_soon(self._roll_on_request)
        await self.stopped.wait()
        await self._wait_for_workers()

    async def _first_start(self, slot: Slot) -> None:
        slot.worker = await self.start(slot)

    # -- workers ---------------------------------------------------------------------

    async def start(self, slot: Slot) -> Worker:
        """Start a worker for ``slot``; return once it listens.

        Raises WorkerFailed if it exits first, or does not listen within
        ``STARTUP_TIMEOUT`` (it is killed then)."""
        assert self._nursery is not None
        read_end, write_end = os.pipe()
        try:
            argv = [
                *self.command,
                "--port",
                str(self.port),
                "--worker-of",
                str(WorkerOf(os.getpid(), write_end)),
            ]
            # From this (the main) thread: PR_SET_PDEATHSIG follows the thread that forks.
            process = subprocess.Popen(  # noqa: ASYNC220 (see above; it takes milliseconds)
                argv, pass_fds=(write_end,), env=self.env, process_group=0, stdin=subprocess.DEVNULL
            )
        finally:
            os.close(write_end)
        worker = Worker(process, trio.current_time())
        self.alive.add(worker)
        self._nursery.start_soon(self._watch, worker)
        ready = b""
        async with trio.lowlevel.FdStream(read_end) as pipe:
            with trio.move_on_after(STARTUP_TIMEOUT) as waiting:
                while chunk := await pipe.receive_some():
                    ready += chunk
        if ready == b"ready\n":
            return worker
        timed_out = waiting.cancelled_caught
        with trio.move_on_after(0 if timed_out else KILL_MARGIN):
            await worker.exited.wait()  # it closed the pipe: it is exiting
        worker.signal(signal.SIGKILL)
        await worker.exited.wait()
        why = (
            f"it did not listen within {STARTUP_TIMEOUT:g} s"
            if timed_out
            else f"it exited with status {worker.process.returncode}"
        )
        raise WorkerFailed(f"worker {slot.index} (pid {worker.pid}) did not start: {why}")

    async def _watch(self, worker: Worker) -> None:
        """Wait for the worker to exit (its pidfd becomes readable), reap it."""
        pidfd = os.pidfd_open(worker.pid)
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)
        worker.process.wait()
        self.alive.discard(worker)
        _forget_metrics(worker.pid, self.env.get("PROMETHEUS_MULTIPROC_DIR"))
        worker.exited.set()

    async def _keep(self, slot: Slot) -> None:
        """Restart ``slot``'s worker whenever it exits on its own."""
        delay = RESTART_DELAY
        while not self.stopping:
            worker = slot.worker
            assert worker is not None
            await worker.exited.wait()
            async with slot.lock:
                if self.stopping or slot.worker is not worker:
                    continue  # shutting down, or replaced by a rolling restart
                lived = trio.current_time() - worker.started
                delay = RESTART_DELAY if lived >= STABLE_AFTER else delay
                slot.worker = await self._restart(slot, worker, delay)
                delay = min(2 * delay, MAX_RESTART_DELAY)

    async def _restart(self, slot: Slot, worker: Worker, delay: float) -> Worker:
        logger.error(
            "worker %d (pid %d) exited with status %s: restarting it in %.1f s",
            slot.index,
            worker.pid,
            worker.process.returncode,
            delay,
        )
        while True:
            await trio.sleep(delay)
            if self.stopping:
                return worker
            try:
                new = await self.start(slot)
            except WorkerFailed as exc:
                delay = min(2 * delay, MAX_RESTART_DELAY)
                logger.error("%s: trying again in %.1f s", exc, delay)
                continue
            logger.info("worker %d restarted (pid %d)", slot.index, new.pid)
            return new

    # -- rolling restart ---------------------------------------------------------------

    async def _roll_on_request(self) -> None:
        while True:
            await self.roll_requested.wait()
            self.roll_requested = trio.Event()  # a SIGHUP from now on: one more round
            await self.roll()

    async def roll(self) -> None:
        """Replace every worker, one at a time: start the new one, then drain the old."""
        for slot in self.slots:
            async with slot.lock:
                if self.stopping:
                    return
                try:
                    new = await self.start(slot)
                except WorkerFailed as exc:
                    logger.error("rolling restart stopped: %s; the other workers keep serving", exc)
                    return
                old, slot.worker = slot.worker, new
            if old is None:
                continue
            logger.info(
                "worker %d: pid %d replaces pid %d, which drains", slot.index, new.pid, old.pid
            )
            old.signal(signal.SIGHUP)
            with trio.move_on_after(self.drain_bound + self.shutdown_bound + KILL_MARGIN):
                await old.exited.wait()
            if not old.exited.is_set():
                logger.error("worker pid %d overran its drain: killing it", old.pid)
                old.signal(signal.SIGKILL)
                await old.exited.wait()
        if not self.stopping:
            _say(f"triows: rolling restart done ({self.count} workers)")

    # -- signals and the end ----------------------------------------------------------

    async def _on_signals(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                if not self.stopping:
                    _say(f"triows: SIGHUP, restarting the {self.count} workers one by one")
                    self.roll_requested.set()
                continue
            if self.stopping:
                _say(f"triows: {name} again, forcing the workers' shutdown")
                for worker in list(self.alive):
                    worker.signal(signum)
                continue
            _say(f"triows: {name}, stopping the workers ({name} again to force)")
            await self._stop(signum)

    async def _stop(self, signum: int) -> None:
        self.stopping = True
        self.stop_signal = signum
        for worker in list(self.alive):
            worker.signal(signum)
        self.stopped.set()
        await trio.lowlevel.checkpoint()

    async def _wait_for_workers(self) -> None:
        """Every worker's exit, within its shutdown bound; past it, kill."""
        with trio.move_on_after(self.shutdown_bound + KILL_MARGIN):
            while self.alive:
                await next(iter(self.alive)).exited.wait()
        for worker in list(self.alive):
            logger.error("worker pid %d overran its shutdown: killing it", worker.pid)
            worker.signal(signal.SIGKILL)
            self.clean = False
        while self.alive:
            await next(iter(self.alive)).exited.wait()
        for slot in self.slots:
            self.clean &= _clean_exit(slot.worker, self.stop_signal)


def _forget_metrics(pid: int, directory: str | None) -> None:
    """A worker exited: drop its live gauges from the multiprocess metrics
    (prometheus-client's ``mark_process_dead``; without the extra, no worker wrote any)."""
    if directory is None:
        return
    try:
        from prometheus_client import multiprocess
    except ImportError:
        return
    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def _clean_exit(worker: Worker | None, stop_signal: int) -> bool:
    """Did ``worker`` end as asked: status 0, or killed by the signal forwarded
    before it had set up its handlers?"""
    if worker is None:
        return True
    status = worker.process.returncode
    return status == 0 or status == -stop_signal


def _say(line: str) -> None:
    """Print ``line`` in one write: the workers share this output."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def supervise(args: argparse.Namespace, argv: Sequence[str], shutdown_bound: float) -> int:
    """``triows run --workers N``: run the supervisor (``argv``: the command line's
    arguments, each worker's too; ``shutdown_bound``: a worker's); the exit status."""
    supervisor = Supervisor(
        [sys.executable, "-m", "triows", *argv],
        args.workers,
        args.host,
        args.port,
        shutdown_bound=shutdown_bound,
        drain_bound=args.drain_seconds + args.shutdown_timeout,
    )
    scheme = "https" if args.certfile else "http"
    return trio.run(supervisor.run, args.target, scheme)
