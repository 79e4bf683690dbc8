"""What one ``Hub.publish()`` to many idle subscribers does to the event loop.

    .venv/bin/python -m benchmarks.publish_stall [--subscribers 500,2000,10000] [--backend both]

On ``triows.serve``'s backends a publish writes the message to every idle
subscriber's socket itself (see docs/guide/broadcast.md): fast, and since a
long delivery works in bounded chunks with a checkpoint between them, other
tasks still run while it goes on.  This serves a hub in-process on loopback,
opens idle subscriber connections from a separate process
(:mod:`benchmarks.idle_clients`, so 10,000 subscribers fit in the file limit),
and publishes a 32-byte message five times.  For each publish it measures:

- the time the ``publish()`` call takes (the delivery to every local subscriber),
  and the CPU time the loop's thread spent meanwhile (steadier than the wall
  time on a busy machine);
- the **scheduling delay** of another task: a task sleeping 1 ms at a time
  records how late each wake-up is, and the table shows the worst wake-up
  during the publish (and the worst one while idle, for comparison: on a busy
  machine the operating system's preemption shows there), and the most CPU
  time the loop's thread spent between two of its wake-ups (how long the loop
  was held, without the preemption);
- the time from the publish until the last client received the message.

It reports the medians over the five publishes.  ``--one-pass`` makes every
delivery take the small-topic path (one pass, no checkpoint), as every delivery
did before chunking: run both, alternating, to compare.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import attrs
import trio

import triows
from triows import testing
from triows.hub import _delivery

from . import idle_clients
from .run import raise_fd_limit

ROOT = Path(__file__).resolve().parent.parent
#: The ticker's period: how often the other task wants to run.
TICK = 0.001
ROUNDS = 5


@attrs.frozen
class Stall:
    subscribers: int
    publish: float  # seconds, median
    publish_cpu: float  # the loop thread's CPU seconds during the publish, median
    worst_delay: float  # the worst wake-up delay during a publish, median over rounds
    worst_cpu: float  # the most loop CPU between two wake-ups during a publish, median
    idle_delay: float  # the worst wake-up delay while nothing is published
    last_client: float  # publish start to the last client's arrival, median


class Ticker:
    """A task that wants to run every TICK seconds: how late does it wake up?

    Besides the lateness (wall time, which includes the time this process was
    preempted by others on a busy machine), it records the CPU time the event
    loop's thread used between two of its wake-ups: how long the loop was busy
    with other tasks, whatever else the machine does.
    """

    def __init__(self) -> None:
        self.wakeups: list[tuple[float, float, float]] = []  # (deadline, lateness, cpu)

    async def run(self) -> None:
        cpu = time.thread_time()
        while True:
            deadline = trio.current_time() + TICK
            await trio.sleep_until(deadline)
            now = time.thread_time()
            self.wakeups.append((deadline, trio.current_time() - deadline, now - cpu))
            cpu = now

    def worst(self, start: float, end: float) -> tuple[float, float]:
        """The worst lateness and loop CPU between wake-ups due in [start, end]."""
        window = [(late, cpu) for when, late, cpu in self.wakeups if start <= when <= end]
        return max((w[0] for w in window), default=0.0), max((w[1] for w in window), default=0.0)


class Clients:
    """The idle subscribers, in a child process (benchmarks.idle_clients)."""

    def __init__(self, port: int, count: int) -> None:
        self.process = idle_clients.spawn(port, count, "2,3")

    async def line(self, timeout: float = 120.0) -> list[str]:
        assert self.process.stdout is not None
        with trio.fail_after(timeout):
            text = await trio.to_thread.run_sync(
                self.process.stdout.readline, abandon_on_cancel=True
            )
        if not text:
            raise RuntimeError("benchmarks.idle_clients ended early")
        return text.split()

    def send(self, command: str) -> None:
        idle_clients.tell(self.process, command)

    def stop(self) -> None:
        idle_clients.stop(self.process)


async def measure(backend: str, subscribers: int) -> Stall:
    """Five publishes to ``subscribers`` idle subscribers."""
    hub = triows.Hub()
    app = triows.App(hub=hub)
    forwarding: list[int] = []

    @app.websocket_route("/sub", caught_close_codes=(1000, 1001, 1006))
    async def sub(ws: triows.WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("bench") as messages:
            forwarding.append(1)
            await messages.forward(ws)

    ticker = Ticker()
    async with testing.live_server(app, backend=backend) as server, trio.open_nursery() as nursery:
        clients = Clients(server.port, subscribers)
        try:
            opened = await clients.line()
            if opened[0] != "OPEN" or int(opened[2]):
                raise RuntimeError(f"not every subscriber connected: {opened}")
            with trio.fail_after(60):
                while len(forwarding) < subscribers:  # noqa: ASYNC110 - bounded above
                    await trio.sleep(0.01)
            nursery.start_soon(ticker.run)
            idle_start = trio.current_time()
            await trio.sleep(0.5)
            idle, _ = ticker.worst(idle_start, trio.current_time())
            publishes, cpus, worst, worst_cpu, last = [], [], [], [], []
            for _ in range(ROUNDS):
                start, wall, cpu0 = trio.current_time(), time.monotonic(), time.thread_time()
                await hub.publish("bench", "x" * 32)
                publishes.append(trio.current_time() - start)
                cpus.append(time.thread_time() - cpu0)
                clients.send("report 30")
                received = await clients.line()
                if int(received[1]) != int(received[2]):
                    raise RuntimeError(f"a subscriber missed the message: {received}")
                last.append(float(received[4]) - wall)
                late, cpu = ticker.worst(start, start + publishes[-1] + TICK)
                worst.append(late)
                worst_cpu.append(cpu)
                await trio.sleep(0.2)  # let every socket drain between rounds
            clients.send("close")
            await clients.line()
        finally:
            clients.stop()
            nursery.cancel_scope.cancel()
    return Stall(
        subscribers,
        statistics.median(publishes),
        statistics.median(cpus),
        statistics.median(worst),
        statistics.median(worst_cpu),
        idle,
        statistics.median(last),
    )


async def main(backends: list[str], counts: list[int]) -> None:
    raise_fd_limit(max(counts))
    print(
        "| backend | subscribers | publish() (ms) | its CPU (ms) | per subscriber (us) | worst scheduling "
        "delay during it (ms) | idle (ms) | loop CPU between two wake-ups (ms) | "
        "to the last client (ms) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for backend in backends:
        for count in counts:
            s = await measure(backend, count)
            print(
                f"| {backend} | {count} | {s.publish * 1e3:.1f} | {s.publish_cpu * 1e3:.1f} | "
                f"{s.publish / count * 1e6:.2f} | {s.worst_delay * 1e3:.1f} | "
                f"{s.idle_delay * 1e3:.1f} | {s.worst_cpu * 1e3:.1f} | "
                f"{s.last_client * 1e3:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", default="500,2000,10000")
    parser.add_argument("--backend", choices=("hypercorn", "native", "both"), default="both")
    parser.add_argument(
        "--one-pass",
        action="store_true",
        help="for comparison: deliver in one pass without checkpoints, as before chunking",
    )
    arguments = parser.parse_args()
    if arguments.one_pass:
        _delivery.DELIVERY_CHUNK = 10**9  # every delivery takes the small-topic path
    chosen = ["hypercorn", "native"] if arguments.backend == "both" else [arguments.backend]
    trio.run(main, chosen, [int(n) for n in arguments.subscribers.split(",")])
