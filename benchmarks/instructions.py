"""Instructions per operation of each ASGI app, counted by valgrind: steady where clocks swing.

    .venv/bin/python -m benchmarks.instructions [--servers raw-asgi,starlette,triows]
        [--scenarios handshake,echo,fanout] [--quick] [--out FILE.json]

The wall-clock harness (``benchmarks.run``) cannot tell apart two apps whose cost
differs by 2 % under hypercorn: its repeats swing by 5-10 % on a shared machine.
This counts instead.  Each app (the harness's raw ASGI reference, Starlette, the
triows App through its ASGI adapter: the three ``benchmarks/servers`` modules)
runs in one process against a minimal in-process ASGI server: memory channels
for ``receive()``, and a ``send()`` that is one trio checkpoint (a schedule point,
as hypercorn's is).  For each app and scenario, two processes run under
``valgrind --tool=callgrind`` with the same start and warm-up, then 0 or N
operations; the difference of their instruction counts over N is the cost of one
operation in the app, trio's scheduling of it, and the stand-in server (the same
for every app, so the differences between rows are the apps' own).

* ``handshake``: a connection to ``/idle`` (16 at a time): ``websocket.connect``,
  the app's accept, then the client's ``websocket.disconnect`` with 1000;
* ``echo``: one text message on one ``/echo`` connection, received and sent back;
* ``fanout``: one delivery of a ``/pub`` broadcast to 50 ``/sub`` subscribers;
* ``hypercorn-fanout`` and ``hypercorn-handshake`` (only when asked for: 10-15
  minutes each): through real hypercorn (``hypercorn -k trio``'s worker, as the
  harness serves each app) and real sockets, driven by the harness's load
  generator, the server process on a clock :data:`SLOWDOWN` times slower too: its
  instructions in a smaller and a larger run, their difference over the
  operations between them (the runs' start and end cancel out).  The fan-out's
  runs are 100 and 500 broadcasts to 50 subscribers; the handshakes' 10 s and
  40 s of 16 clients opening and closing connections (the load generator's count).

What it leaves out: hypercorn's own work.  On real sockets under hypercorn the raw
app's server process takes about 2.97M instructions per handshake, 540k per echoed
message and 222k per fan-out delivery (against about 134k, 148k and 37k here), so
a difference here is diluted that much there; the ``hypercorn-`` scenarios measure
two of them directly.  Valgrind runs Python about 50 times slower, so a timer
that fires every 50 ms would fire 50 times more often per operation than at full
speed (the App's :class:`~triows._asgi._pumps.Pumps` looks: 8k instructions per
echoed message counted that way, a few dozen at full speed); the child runs trio
with a clock :data:`SLOWDOWN` times slower
(:class:`~benchmarks.servers._common.SlowClock`), so they fire about as often per
operation as they would; so do the served scenarios' servers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from .servers import SERVERS
from .servers._common import CLOCK_SLOWDOWN, SlowClock

__all__ = ["APPS", "SCENARIOS", "count", "main"]

ROOT = Path(__file__).resolve().parent.parent
#: Server name (as in benchmarks.servers) -> the module whose ``app`` is measured.
APPS = {
    "raw-asgi": "benchmarks.servers.raw_asgi",
    "starlette": "benchmarks.servers.starlette_app",
    "triows": "benchmarks.servers.triows_app",
}
SCENARIOS = ("handshake", "echo", "fanout")
#: Not run by default (10-15 minutes): the fan-out through real hypercorn and sockets.
SERVED = ("hypercorn-fanout", "hypercorn-handshake")
#: The harness's server spec (benchmarks.servers) each app is served by, for SERVED.
SERVED_AS = {"raw-asgi": "raw-asgi", "starlette": "starlette", "triows": "triows-plain-hypercorn"}
#: Operations per scenario: (full, --quick).
OPERATIONS = {"handshake": (1600, 32), "echo": (4000, 100), "fanout": (10000, 500)}
#: hypercorn-fanout: broadcasts to 50 subscribers in the smaller and the larger run
#: (full, --quick).
SERVED_BROADCASTS = {False: (100, 500), True: (5, 20)}
#: hypercorn-handshake: the measured window of the smaller and the larger run, seconds.
SERVED_SECONDS = {False: (10, 40), True: (2, 6)}
WARMUP = 200
CONCURRENCY = 16
SUBSCRIBERS = 50
#: How much slower Python runs under callgrind (about 50-65 times on the 2-core
#: development machine): the child's and the served servers' trio clocks run this much slower.
SLOWDOWN = 50

Event = dict[str, Any]
App = Callable[[Event, Callable[[], Awaitable[Event]], Callable[[Event], Awaitable[None]]], Any]


# -- the stand-in server (runs in the child process) ----------------------------------


def _scope(path: str) -> Event:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"sec-websocket-version", b"13")],
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}},
    }


@attrs.define
class Connection:
    """One WebSocket connection of the stand-in server: the app runs in its own task."""

    app: App
    path: str
    #: Called with each text the app sends (``websocket.send``).
    on_text: Callable[[str], None] = lambda text: None
    #: ``websocket.disconnect`` right after the app accepts (a handshake's client).
    leave_after_accept: bool = False
    inbox: trio.MemorySendChannel[Event] = attrs.field(init=False)
    outbox: trio.MemoryReceiveChannel[Event] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.inbox, self.outbox = trio.open_memory_channel[Event](1000)
        self.inbox.send_nowait({"type": "websocket.connect"})

    async def send(self, event: Event) -> None:
        await trio.lowlevel.checkpoint()  # a server's send is a schedule point
        kind = event["type"]
        if kind == "websocket.accept" and self.leave_after_accept:
            self.inbox.send_nowait({"type": "websocket.disconnect", "code": 1000})
        elif kind == "websocket.send":
            self.on_text(event["text"])

    def put(self, text: str) -> None:
        self.inbox.send_nowait({"type": "websocket.receive", "text": text})

    def leave(self) -> None:
        self.inbox.send_nowait({"type": "websocket.disconnect", "code": 1000})

    async def run(self) -> None:
        await self.app(_scope(self.path), self.outbox.receive, self.send)


async def lifespan(app: App, task_status: trio.TaskStatus[None]) -> None:
    """The app's lifespan, started; it runs until cancelled."""
    to_app, from_server = trio.open_memory_channel[Event](2)
    to_server, from_app = trio.open_memory_channel[Event](2)
    to_app.send_nowait({"type": "lifespan.startup"})
    async with trio.open_nursery() as nursery:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        nursery.start_soon(app, scope, from_server.receive, to_server.send)
        started = await from_app.receive()
        if started["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"lifespan startup failed: {started}")
        task_status.started()
        await trio.sleep_forever()


async def handshakes(app: App, n: int) -> None:
    async def worker(count: int) -> None:
        for _ in range(count):
            await Connection(app, "/idle", leave_after_accept=True).run()

    async with trio.open_nursery() as nursery:
        for i in range(CONCURRENCY):
            nursery.start_soon(worker, n // CONCURRENCY + (i < n % CONCURRENCY))


async def echoes(app: App, n: int) -> None:
    echoed = trio.Semaphore(0, max_value=1)
    connection = Connection(app, "/echo", on_text=lambda text: echoed.release())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        for _ in range(n):
            connection.put("echo message 0123456789abcdefghi")
            await echoed.acquire()
        connection.leave()


async def deliveries(app: App, n: int) -> None:
    """A warm-up broadcast round, then ``n`` deliveries (``n // 50`` broadcasts)."""
    subscribed, done = trio.Event(), trio.Semaphore(0, max_value=1)
    delivered = [0]

    def on_subscriber_text(text: str) -> None:
        delivered[0] += 1
        if delivered[0] == SUBSCRIBERS:  # each has its "subscribed"
            subscribed.set()

    def on_publisher_text(text: str) -> None:
        if text.startswith("done"):
            done.release()

    subscribers = [Connection(app, "/sub", on_text=on_subscriber_text) for _ in range(SUBSCRIBERS)]
    publisher = Connection(app, "/pub", on_text=on_publisher_text)
    rounds = n // SUBSCRIBERS
    async with trio.open_nursery() as nursery:
        for connection in subscribers:
            nursery.start_soon(connection.run)
        await subscribed.wait()
        nursery.start_soon(publisher.run)
        for count in (WARMUP // SUBSCRIBERS, rounds):
            if count:
                publisher.put(f"go {count}")
                await done.acquire()
        for connection in (*subscribers, publisher):
            connection.leave()
    expected = SUBSCRIBERS * (1 + WARMUP // SUBSCRIBERS + rounds)
    if delivered[0] != expected:
        raise RuntimeError(f"{delivered[0]} deliveries, expected {expected}")


RUNNERS = {"handshake": handshakes, "echo": echoes, "fanout": deliveries}


async def child(module: str, scenario: str, n: int) -> None:
    """The child process: the same start and warm-up, then ``n`` operations."""
    app: App = importlib.import_module(module).app
    run = RUNNERS[scenario]
    async with trio.open_nursery() as nursery:
        await nursery.start(lifespan, app)
        if scenario != "fanout":  # (the fan-out warms up within its one run)
            await run(app, WARMUP)
        await run(app, n)
        nursery.cancel_scope.cancel()


# -- the harness ------------------------------------------------------------------------


def count(server: str, scenario: str, n: int) -> int:
    """Instructions of one child process (callgrind's total), running ``n`` operations."""
    command = [
        _valgrind(),
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--child",
        APPS[server],
        scenario,
        str(n),
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{server} {scenario} {n}: exit {done.returncode}\n{done.stderr[-3000:]}"
        )
    return _refs(server, done.stderr, done.returncode)


def _valgrind() -> str:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed (Debian: apt-get install valgrind)")
    return valgrind


def _refs(server: str, stderr: str, returncode: int) -> int:
    found = re.search(r"I\s+refs:\s+([\d,]+)", stderr)
    if found is None:
        raise RuntimeError(f"{server}: exit {returncode}, no instruction count\n{stderr[-3000:]}")
    return int(found.group(1).replace(",", ""))


def count_served(server: str, load: str, params: Mapping[str, float]) -> tuple[int, int]:
    """Instructions of a server process (hypercorn's trio worker serving the app, under
    callgrind, on a :class:`~benchmarks.servers._common.SlowClock`) through one run of
    the harness's load generator (``benchmarks.loadgen LOAD``), and the operations
    the load generator counted."""
    spec = next(spec for spec in SERVERS if spec.name == SERVED_AS[server])
    command = [_valgrind(), "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, "-m", spec.module, *spec.args]
    environment = {**os.environ, CLOCK_SLOWDOWN: str(SLOWDOWN)}
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True,
            stdin=subprocess.DEVNULL, env=environment,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # valgrind: about a minute to start
            if not line.startswith("PORT "):
                raise RuntimeError(f"{server} did not start: {line!r}")
            generator = [sys.executable, "-m", "benchmarks.loadgen", load]
            generator += ["--port", line.split()[1], "--params", json.dumps(params)]
            done = subprocess.run(
                generator, cwd=ROOT, capture_output=True, text=True, timeout=1800,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            result = re.search(r"^RESULT (.*)$", done.stdout, re.MULTILINE)
            if done.returncode != 0 or result is None:
                raise RuntimeError(f"load generator failed: {done.stdout}{done.stderr}")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(120)
        errors.seek(0)
        counted = int(json.loads(result.group(1))["count"])
        return _refs(server, errors.read(), process.returncode), counted


def per_operation_served(server: str, scenario: str, quick: bool) -> float:
    """Instructions per operation under real hypercorn: the difference of a smaller
    and a larger run over the difference of the operations between them."""
    if scenario == "hypercorn-fanout":
        broadcasts = SERVED_BROADCASTS[quick]
        sizes = [{"connections": 50, "messages": m, "concurrency": 50} for m in broadcasts]
        runs = [count_served(server, "fanout", size) for size in sizes]
        # Deliveries: a warm-up round of m // 20 (at least 1) broadcasts, then m.
        operations = [50 * (m + max(1, m // 20)) for m in broadcasts]
    else:
        seconds = SERVED_SECONDS[quick]
        sizes = [{"concurrency": 16, "warmup": 1, "duration": d} for d in seconds]
        runs = [count_served(server, "handshakes", size) for size in sizes]
        operations = [counted for _, counted in runs]
    (small, _), (large, _) = runs
    return (large - small) / (operations[1] - operations[0])


def per_operation(server: str, scenario: str, n: int) -> float:
    """Instructions per operation: (count(n) - count(0)) / n."""
    return (count(server, scenario, n) - count(server, scenario, 0)) / n


def table(results: dict[str, dict[str, float]], servers: list[str]) -> str:
    header = "| scenario | " + " | ".join(servers) + " |"
    lines = [header, "|---" * (len(servers) + 1) + "|"]
    for scenario, row in results.items():
        reference = row.get("raw-asgi")
        cells = []
        for server in servers:
            value = row[server]
            ratio = f" ({value / reference:.2f}x raw)" if reference and server != "raw-asgi" else ""
            cells.append(f"{value / 1000:,.1f}k{ratio}")
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=",".join(APPS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="few operations (a smoke test)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--child", nargs=3, metavar=("MODULE", "SCENARIO", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        module, scenario, n = args.child
        trio.run(child, module, scenario, int(n), clock=SlowClock(SLOWDOWN))
        return
    servers = [name for name in args.servers.split(",") if name]
    scenarios = [name for name in args.scenarios.split(",") if name]
    for name in servers:
        if name not in APPS:
            parser.error(f"unknown server {name!r}; known: {', '.join(APPS)}")
    for name in scenarios:
        if name not in (*SCENARIOS, *SERVED):
            parser.error(f"unknown scenario {name!r}; known: {', '.join((*SCENARIOS, *SERVED))}")
    results: dict[str, dict[str, float]] = {}
    for scenario in scenarios:
        results[scenario] = {}
        for server in servers:
            if scenario in SERVED:
                results[scenario][server] = per_operation_served(server, scenario, args.quick)
            else:
                n = OPERATIONS[scenario][1 if args.quick else 0]
                results[scenario][server] = per_operation(server, scenario, n)
            print(f"{scenario} {server}: {results[scenario][server]:,.0f} instructions", flush=True)
    print()
    print(table(results, servers))
    if args.out is not None:
        args.out.write_text(json.dumps({"servers": servers, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
