"""Many idle connections to one server, one broadcast to all of them.

    .venv/bin/python -m benchmarks.scale                         # 2k, 5k, 10k, 19.9k
    .venv/bin/python -m benchmarks.scale --connections 500       # a quick check
    .venv/bin/python -m benchmarks.scale --connections 100000 --workers 7 --redis

For each connection count: starts ``triows run benchmarks.scale_app:app`` (the
native server; with ``--workers N``, N worker processes on one port, and with
``--redis`` a hub on a private redis-server this script starts), opens the idle
connections from several client processes (:mod:`benchmarks.idle_clients`, each
binding its sockets to its own 127.0.0.x source addresses: every source address
has its own range of ephemeral ports), each connection a view holding a Hub
subscription, then publishes one message (``POST /publish``) and waits until
every client received it, then closes every connection.  Reports the time to
open them all, the server's RSS growth per connection (all workers together),
the time from the publish until the last client received the message, the
server's CPU time for the broadcast, and failures (connections not opened,
broadcasts not received, closes not clean).

Loopback only.  The soft limit of open files is raised to the hard one here
(the children inherit it); one process holds at most that many sockets, hence
about 19,900 connections per server process where the hard limit is 20,000.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

from . import idle_clients
from .run import LineReader, cpu_seconds, machine, rss_kib, tail
from .servers._common import start_redis

__all__ = ["Result", "main", "measure"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_COUNTS = "2000,5000,10000,19900"
#: Connections per client process (each keeps well below the file limit).
PER_CLIENT_PROCESS = 5000
#: Source addresses per client process: 127.0.0.<2 + k>.
SOURCES_PER_PROCESS = 2
#: Handshakes in flight at once, over all the client processes: more only
#: queues them in the server's backlog (100,000 connections with 4,000 in flight
#: on a busy 2-core machine: thousands of handshakes timed out).
IN_FLIGHT = 800  # (and at most 200 per client process)
STARTUP_TIMEOUT = 60.0
#: The line ``triows run`` prints once it listens (with --workers, the supervisor's).
SERVING = re.compile(r"^triows: serving \S+ on http://127\.0\.0\.1:(\d+) ", re.M)
#: Opening every connection: at least this long, and 1 s per 100 connections
#: (a busy 2-core machine opened 100,000 at about 200 per second).
OPEN_TIMEOUT = 600.0
DELIVERY_TIMEOUT = 60.0  # the broadcast reaching every client
WARMUP_CONNECTIONS = 50


@attrs.frozen
class Result:
    connections: int
    workers: int
    redis: bool
    opened: int
    open_seconds: float
    rss_baseline_kib: int
    rss_loaded_kib: int
    kib_per_connection: float
    subscribers: int  # as the server counts them (one process: all; workers: -1)
    received: int
    publish_seconds: float  # the POST /publish round trip (one process: every local write)
    to_last_client: float  # from the publish until the last client received it
    server_cpu_broadcast: float  # the server processes' CPU seconds during the broadcast
    closed_cleanly: int
    close_seconds: float
    load_average: float

    @property
    def failures(self) -> int:
        return (
            (self.connections - self.opened)
            + (self.opened - self.received)
            + (self.opened - self.closed_cleanly)
        )


def raise_file_limit() -> int:
    """Raise the soft limit of open files to the hard one; return it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def request(port: int, method: str, path: str) -> dict[str, object]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DELIVERY_TIMEOUT)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {response.status} {body[:200]!r}")
        data: dict[str, object] = json.loads(body)
        return data
    finally:
        connection.close()


def server_pids(pid: int) -> list[int]:
    """``pid`` and its children (the workers of ``--workers``)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [pid]
    with contextlib.suppress(OSError):
        found += [int(p) for p in children.read_text().split()]
    return found


def total(measure: object, pids: Sequence[int]) -> float:
    values = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            values += measure(pid)  # type: ignore[operator]
    return values


@contextlib.contextmanager
def serve(
    workers: int, redis_url: str | None, log: Path, options: Sequence[str]
) -> Iterator[tuple[int, list[int]]]:
    """``triows run benchmarks.scale_app:app [options]``; yields (port, server pids).

    The server binds port 0 and says which port it got (a port probed free here
    and bound later by the server could be taken in between).
    """
    port = 0
    command = [sys.executable, "-m", "triows", "run", "benchmarks.scale_app:app"]
    command += ["--host", "127.0.0.1", "--port", "0", "--backlog", "4096", *options]
    if workers > 1:
        command += ["--workers", str(workers)]
    env = dict(os.environ, TRIOWS_SCALE_REDIS=redis_url or "")
    with log.open("w") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stderr, stderr=stderr)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}:\n{tail(log)}")
            if not port and (found := SERVING.search(log.read_text(errors="replace"))):
                port = int(found.group(1))
            pids = server_pids(process.pid)
            if port and (workers == 1 or len(pids) == workers + 1):
                with contextlib.suppress(OSError, RuntimeError):
                    request(port, "GET", "/stats")
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start in time:\n{tail(log)}")
            time.sleep(0.1)
        pids = server_pids(process.pid)
        yield port, pids if workers == 1 else pids[1:]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


class ClientProcess:
    """One :mod:`benchmarks.idle_clients` process."""

    def __init__(self, port: int, count: int, sources: Sequence[int], concurrency: int) -> None:
        self.count = count
        self.process = idle_clients.spawn(
            port, count, ",".join(map(str, sources)), concurrency=concurrency, greeting=True
        )
        assert self.process.stdout is not None
        self.lines = LineReader(self.process.stdout)

    def expect(self, word: str, timeout: float) -> list[str]:
        line = self.lines.next(time.monotonic() + timeout).split()
        if not line or line[0] != word:
            raise RuntimeError(f"benchmarks.idle_clients answered {line} instead of {word}")
        return line

    def send(self, command: str) -> None:
        idle_clients.tell(self.process, command)

    def stop(self) -> None:
        idle_clients.stop(self.process)


def open_clients(port: int, connections: int) -> list[ClientProcess]:
    processes = max(1, -(-connections // PER_CLIENT_PROCESS))
    clients = []
    for k in range(processes):
        count = connections // processes + (1 if k < connections % processes else 0)
        first = 2 + k * SOURCES_PER_PROCESS
        sources = range(first, first + SOURCES_PER_PROCESS)
        concurrency = min(200, max(10, IN_FLIGHT // processes))
        clients.append(ClientProcess(port, count, sources, concurrency))
    return clients


def measure(
    connections: int,
    workers: int = 1,
    redis_url: str | None = None,
    options: Sequence[str] = (),
) -> Result:
    """One run: open ``connections``, broadcast once, close (``options``: more
    ``triows run`` options)."""
    RESULTS.joinpath("logs").mkdir(parents=True, exist_ok=True)
    log = RESULTS / "logs" / f"scale-{connections}-{workers}.log"
    with serve(workers, redis_url, log, options) as (port, pids):
        warmup = open_clients(port, WARMUP_CONNECTIONS)
        try:
            for client in warmup:
                client.expect("OPEN", OPEN_TIMEOUT)
                client.send("close")
                client.expect("CLOSED", OPEN_TIMEOUT)
        finally:
            for client in warmup:
                client.stop()
        time.sleep(1.0)
        baseline = int(total(rss_kib, pids))
        started = time.monotonic()
        clients = open_clients(port, connections)
        try:
            budget = max(OPEN_TIMEOUT, connections / 100)
            opened = sum(int(c.expect("OPEN", budget)[1]) for c in clients)
            open_seconds = time.monotonic() - started
            time.sleep(1.0)
            loaded = int(total(rss_kib, pids))
            subscribers = -1
            if workers == 1:
                subscribers = int(str(request(port, "GET", "/stats")["subscribers"]))
            cpu0 = total(cpu_seconds, pids)
            published = time.monotonic()
            request(port, "POST", "/publish")
            publish_seconds = time.monotonic() - published
            for client in clients:
                client.send(f"report {DELIVERY_TIMEOUT}")
            reports = [client.expect("RECEIVED", DELIVERY_TIMEOUT + 10) for client in clients]
            cpu = total(cpu_seconds, pids) - cpu0
            received = sum(int(r[1]) for r in reports)
            last = max(float(r[4]) for r in reports)
            for client in clients:
                client.send("close")
            closes = [client.expect("CLOSED", OPEN_TIMEOUT) for client in clients]
        finally:
            for client in clients:
                client.stop()
    return Result(
        connections=connections,
        workers=workers,
        redis=redis_url is not None,
        opened=opened,
        open_seconds=open_seconds,
        rss_baseline_kib=baseline,
        rss_loaded_kib=loaded,
        kib_per_connection=(loaded - baseline) / max(1, opened),
        subscribers=subscribers,
        received=received,
        publish_seconds=publish_seconds,
        to_last_client=max(0.0, last - published),
        server_cpu_broadcast=cpu,
        closed_cleanly=sum(int(c[1]) for c in closes),
        close_seconds=max(float(c[2]) for c in closes),
        load_average=os.getloadavg()[0],
    )


def table(results: Sequence[Result]) -> str:
    lines = [
        "| connections | server processes | opened | time to open all (s) | server RSS per "
        "connection (KiB) | broadcast to the last client (s) | server CPU for the broadcast "
        "(s) | failures | load average |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        processes = f"{r.workers}" + (" + Redis" if r.redis else "")
        lines.append(
            f"| {r.connections:,} | {processes} | {r.opened:,} | {r.open_seconds:.1f} | "
            f"{r.kib_per_connection:.1f} | {r.to_last_client:.2f} | "
            f"{r.server_cpu_broadcast:.2f} | {r.failures} | {r.load_average:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: Sequence[Result], path: Path) -> bool:
    """Memory per connection and broadcast throughput against the connection count."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return False
    counts = [r.connections for r in results]
    figure, (memory, speed) = plt.subplots(1, 2, figsize=(9, 3.4))
    memory.plot(counts, [r.kib_per_connection for r in results], "o-", color="#4c72b0")
    memory.set_title("server RSS per idle connection (KiB)", fontsize=9)
    memory.set_ylim(bottom=0)
    speed.plot(
        counts,
        [r.received / r.to_last_client / 1000 if r.to_last_client else 0 for r in results],
        "o-",
        color="#dd8452",
        label="broadcast deliveries/s (to the last client)",
    )
    speed.plot(
        counts,
        [r.opened / r.open_seconds / 1000 for r in results],
        "s--",
        color="#55a868",
        label="connections opened/s",
    )
    speed.set_title("throughput (thousands per second)", fontsize=9)
    speed.set_ylim(bottom=0)
    speed.legend(fontsize=7)
    for ax in (memory, speed):
        ax.set_xlabel("idle connections", fontsize=8)
        ax.tick_params(labelsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", default=DEFAULT_COUNTS, help="comma-separated counts")
    parser.add_argument("--workers", type=int, default=1, help="server processes (triows run)")
    parser.add_argument("--redis", action="store_true", help="a Redis hub (private redis-server)")
    parser.add_argument(
        "--ping-interval",
        help="the server's --ping-interval (default triows run's: 20 s; 0: no keepalive)",
    )
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--plot", type=Path, help="write the plot (PNG) here")
    args = parser.parse_args(argv)
    limit = raise_file_limit()
    counts = [int(n) for n in args.connections.split(",")]
    if args.workers == 1 and max(counts) > limit - 100:
        parser.error(f"one process holds at most about {limit - 100} connections (ulimit -n)")
    redis = None
    redis_url = None
    if args.redis:
        redis, redis_url = start_redis()
    results = []
    try:
        for count in counts:
            options = [] if args.ping_interval is None else ["--ping-interval", args.ping_interval]
            result = measure(count, args.workers, redis_url, options)
            results.append(result)
            print(table([result]).splitlines()[-1], flush=True)
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait(10)
    print(f"\n{machine()}; soft and hard file limit {limit}\n")
    print(table(results))
    if args.json:
        args.json.write_text(
            json.dumps([attrs.asdict(r) | {"failures": r.failures} for r in results], indent=2)
            + "\n"
        )
    if args.plot and plot(results, args.plot):
        print(f"plot: {args.plot}")
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
