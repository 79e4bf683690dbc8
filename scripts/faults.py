"""Fault harness (issue 12): resumable topics across drops, rolling restarts, a Redis restart.

    .venv/bin/python scripts/faults.py [--seconds 60] [--clients 40] [--topics 4]
                                       [--workers 2] [--rate 50]

Everything runs on loopback, every wait is bounded:

* a redis-server (append-only file, so a restart keeps the history) and
  ``triows run scripts.faults_app:app --workers N``: the live route
  (``App.live_route``) on a Redis hub with history;
* publishers: one per topic, publishing 1, 2, 3... at ``--rate`` messages per
  second (a ``--payload``-byte padding each), retrying while Redis is down;
* ``--clients`` clients of the shipped trio client (``triows.client``), each
  following one topic, through a TCP proxy the harness controls; a client that
  loses its connection, whatever the reason, reconnects with backoff and jitter
  and resumes from the last position it received;
* faults, in turn, until ``--seconds`` have passed: network drops (the proxy
  cuts a third of the connections without a close frame), slow readers (the
  proxy stops forwarding to a third of the clients for ``--stall`` seconds), a
  rolling restart of every worker (SIGHUP: 1012 to their clients), and a Redis
  restart;
* then the publishers stop, and every client must reach its topic's last
  message within ``--settle`` seconds.

Per client it checks that every message came exactly once and in order, or
after an explicit gap signal (the client's ``Gap`` event): a duplicate, a
message out of order or a gap without the signal is a failure, and so is a
client that never caught up.  Prints one line per client and a summary, and
exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faults_proxy import Proxy
from faults_servers import RedisProcess, ServerProcess

import triows
import triows.client
from triows.hub import HubUnavailable

ROOT = Path(__file__).resolve().parent.parent
#: When the harness started (trio clock), for the times in the report.
_STARTED = [0.0]


def _now() -> float:
    return trio.current_time() - _STARTED[0]


@attrs.define(eq=False)
class Client:
    """One subscriber of ``topic``: what it received, and every anomaly."""

    number: int
    topic: str
    #: The sequence numbers its topic's publisher had to retry (see :class:`Publisher`).
    retried: set[int]
    last: int = 0
    position: str | None = None
    delivered: int = 0
    gap_signals: int = 0
    gapped: int = 0
    duplicates: int = 0
    disordered: int = 0
    silent_gaps: int = 0
    #: A retried publish seen twice (at two positions): the first attempt had reached Redis.
    republished: int = 0
    connects: int = 0
    failed_connects: int = 0
    codes: collections.Counter[int] = attrs.field(factory=collections.Counter)
    gap_pending: bool = False
    #: Each anomaly: what, and when (seconds since the harness started).
    anomalies: list[str] = attrs.field(factory=list)
    ready: trio.Event = attrs.field(factory=trio.Event)
    progressed: trio.Event = attrs.field(factory=trio.Event)

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.disordered or self.silent_gaps)

    def take(self, position: str | None, data: dict[str, Any]) -> None:
        """Check one message against the sequence so far."""
        sequence = int(data["seq"])
        if sequence == self.last + 1:
            pass
        elif sequence == self.last and sequence in self.retried and position != self.position:
            self.republished += 1
            self.position = position
            self.anomalies.append(f"{sequence} republished at {_now():.2f}")
            return
        elif sequence <= self.last:
            if sequence == self.last:
                self.duplicates += 1
            else:
                self.disordered += 1
            self.anomalies.append(
                f"{sequence} after {self.last} at {_now():.2f} "
                f"(position {position}, previous {self.position})"
            )
            return
        elif self.gap_pending:
            self.gapped += sequence - self.last - 1
        else:
            self.silent_gaps += 1
            self.anomalies.append(f"{sequence} after {self.last} at {_now():.2f}")
        self.gap_pending = False
        self.last = sequence
        self.position = position
        self.delivered += 1
        self.progressed.set()

    def on_state(self, state: str, detail: dict[str, Any]) -> None:
        """The live client's connection states: count connections and close codes."""
        if state == "open":
            self.connects += 1
        elif state == "reconnecting":
            reason = str(detail.get("reason", ""))
            if reason.startswith("HTTP") or "Error" in reason:
                self.failed_connects += 1  # refused, reset, or a refused handshake
            else:
                self.codes[int(detail.get("code", 1006))] += 1

    async def run(self, port: int) -> None:
        """Follow the topic with the trio live client (it reconnects and resumes)."""
        url = f"ws://127.0.0.1:{port}/live"
        connecting = triows.client.connect(
            url, min_delay=0.05, max_delay=1.0, connect_timeout=5.0, on_state=self.on_state
        )
        async with connecting as live, live.subscribe(self.topic) as topic:
            self.ready.set()
            async for event in topic:
                if isinstance(event, triows.client.Message):
                    self.take(event.position, event.data)
                elif isinstance(event, triows.client.Gap):
                    self.gap_signals += 1
                    self.gap_pending = True
                    self.anomalies.append(f"gap ({event.reason}) at {_now():.2f}")

    def line(self, final: int) -> str:
        verdict = "ok" if self.ok and self.last == final else "FAIL"
        codes = ",".join(f"{code}x{n}" for code, n in sorted(self.codes.items()))
        return (
            f"client {self.number:3d} {self.topic}: {verdict} delivered={self.delivered} "
            f"last={self.last}/{final} gap_signals={self.gap_signals} gapped={self.gapped} "
            f"dup={self.duplicates} disorder={self.disordered} silent_gaps={self.silent_gaps} "
            f"connects={self.connects} failed_connects={self.failed_connects} closes={codes}"
            + (f" anomalies: {'; '.join(self.anomalies[:5])}" if self.anomalies else "")
        )


@attrs.define(eq=False)
class Publisher:
    topic: str
    rate: float
    payload: str
    sent: int = 0
    retries: int = 0
    stopping: bool = False
    #: Sequence numbers whose publish raised HubUnavailable at least once.  Retried,
    #: such a message can appear twice if the failed attempt had in fact reached
    #: Redis (the reply was lost with the connection).
    retried: set[int] = attrs.field(factory=set)

    async def run(self, hub: triows.Hub) -> None:
        """Publish 1, 2, 3... at ``rate`` per second; retry one that Redis refused."""
        period = 1 / self.rate
        next_at = trio.current_time()
        while not self.stopping:
            message = {"seq": self.sent + 1, "pad": self.payload}
            # A message is retried until published, even once stopping: the last
            # one is then known to be published.
            while True:
                try:
                    await hub.publish(self.topic, message)
                    break
                except HubUnavailable:
                    self.retries += 1
                    self.retried.add(self.sent + 1)
                    await trio.sleep(0.05)
            self.sent += 1
            next_at += period
            await trio.sleep_until(max(next_at, trio.current_time()))


@attrs.define
class Report:
    clients: list[Client]
    finals: dict[str, int]
    faults: list[str]
    seconds: float
    retries: int
    #: The server's ERROR lines (a view that crashed: its client saw 1011).
    server_errors: list[str]

    @property
    def failures(self) -> list[str]:
        return [
            client.line(self.finals[client.topic])
            for client in self.clients
            if not client.ok or client.last != self.finals[client.topic]
        ]

    def summary(self) -> str:
        total = sum(client.delivered for client in self.clients)
        signals = sum(client.gap_signals for client in self.clients)
        codes: collections.Counter[int] = collections.Counter()
        for client in self.clients:
            codes.update(client.codes)
        return (
            f"{len(self.clients)} clients, {sum(self.finals.values())} messages published "
            f"({self.retries} publish retries), {total} delivered in {self.seconds:.1f} s; "
            f"faults: {', '.join(self.faults)}; closes: {dict(sorted(codes.items()))}; "
            f"gap signals: {signals}; republished after an ambiguous publish failure: "
            f"{sum(client.republished for client in self.clients)}; "
            f"server ERROR lines: {len(self.server_errors)}; failures: {len(self.failures)}"
        )


async def run(
    *,
    seconds: float = 12.0,
    clients: int = 12,
    topics: int = 3,
    workers: int = 2,
    rate: float = 50.0,
    payload: int = 2048,
    stall: float = 3.0,
    settle: float = 15.0,
    drain_seconds: float = 1.0,
    faults: str = "drop,stall,roll,redis",
    log: Callable[[str], None] = print,
) -> Report:
    """Run the harness; return what every client saw (see the module's docstring)."""
    _STARTED[0] = trio.current_time()
    names = [f"topic-{index}" for index in range(topics)]
    publishers = [Publisher(name, rate, "x" * payload) for name in names]
    everyone = [
        Client(number, names[number % topics], publishers[number % topics].retried)
        for number in range(clients)
    ]
    kinds = faults.split(",")
    if unknown := set(kinds) - set(FAULTS):
        raise ValueError(f"unknown faults {sorted(unknown)}: choose among {', '.join(FAULTS)}")
    injected: list[str] = []
    with tempfile.TemporaryDirectory(prefix="triows-faults-") as directory:
        async with RedisProcess.started(Path(directory)) as redis:
            history = int(rate * (seconds + settle) * 2) + 1000
            env = {"TRIOWS_FAULTS_REDIS": redis.url, "TRIOWS_FAULTS_HISTORY": str(history)}
            serving = ServerProcess.started(ROOT, workers, drain_seconds, env)
            async with serving as server, Proxy.serving(server.port) as proxy:
                started = time.monotonic()
                injector = Injector(proxy, server, redis, injected, kinds, stall, log)
                await _exercise(everyone, publishers, injector, seconds, settle, history)
                elapsed = time.monotonic() - started
                errors = _errors(server.lines)
    finals = {publisher.topic: publisher.sent for publisher in publishers}
    retries = sum(publisher.retries for publisher in publishers)
    return Report(everyone, finals, injected, elapsed, retries, errors)


async def _exercise(
    everyone: list[Client],
    publishers: list[Publisher],
    injector: Injector,
    seconds: float,
    settle: float,
    history: int,
) -> None:
    async with trio.open_nursery() as clients:
        for client in everyone:
            clients.start_soon(client.run, injector.proxy.port)
        with trio.fail_after(30):
            for client in everyone:
                await client.ready.wait()
        hub = _hub(injector.redis.url, history)
        async with hub as publisher_hub, trio.open_nursery() as publishing:
            for publisher in publishers:
                publishing.start_soon(publisher.run, publisher_hub)
            await injector.run(seconds)
            for publisher in publishers:
                publisher.stopping = True  # (a publish under way completes)
        finals = {publisher.topic: publisher.sent for publisher in publishers}
        with trio.move_on_after(settle):
            for client in everyone:
                while client.last < finals[client.topic] and client.ok:
                    client.progressed = trio.Event()
                    await client.progressed.wait()
        clients.cancel_scope.cancel()


@asynccontextmanager
async def _hub(url: str, history: int) -> AsyncIterator[triows.Hub]:
    # The same history as the workers' hubs: a hub with history=0 writes no Stream.
    async with triows.Hub(url, history=history) as hub:
        yield hub


FAULTS = ("drop", "stall", "roll", "redis")


@attrs.define(eq=False)
class Injector:
    """Injects the chosen faults in turn, and notes each one with its time."""

    proxy: Proxy
    server: ServerProcess
    redis: RedisProcess
    injected: list[str]
    kinds: list[str]
    stall: float
    log: Callable[[str], None]

    async def run(self, seconds: float) -> None:
        """Inject the faults in turn until ``seconds`` have passed (at least one round)."""
        ends = trio.current_time() + seconds
        rounds = 0
        while rounds == 0 or trio.current_time() < ends:
            rounds += 1
            for kind in self.kinds:
                await trio.sleep(1.0)
                began = _now()
                what = await self.inject(kind)
                self.injected.append(f"{what} at {began:.2f}-{_now():.2f}")
                self.log(f"faults: {self.injected[-1]}")

    async def inject(self, kind: str) -> str:
        if kind == "drop":
            return f"drop {self.proxy.drop(1 / 3)}"
        if kind == "stall":
            return f"stall {await self.proxy.stall(1 / 3, self.stall)} for {self.stall:g} s"
        if kind == "roll":
            await self.server.roll()
            return "rolling restart"
        await self.redis.restart()
        return "redis restart"


def _errors(lines: list[str]) -> list[str]:
    """Each ERROR line of the server's output, with the traceback lines after it."""
    errors: list[str] = []
    for line in lines:
        if line.startswith("ERROR"):
            errors.append(line)
        elif errors and not line.startswith(("INFO", "WARNING", "DEBUG", "triows:", "hub:")):
            errors[-1] += "\n" + line
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--topics", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=50.0, help="messages/s per topic")
    parser.add_argument("--payload", type=int, default=2048, help="padding bytes per message")
    parser.add_argument("--stall", type=float, default=3.0, help="a slow reader's pause (s)")
    parser.add_argument("--settle", type=float, default=30.0)
    parser.add_argument("--drain-seconds", type=float, default=2.0)
    parser.add_argument("--faults", default=",".join(FAULTS), help="which, in turn")
    args = parser.parse_args()
    options = {name: value for name, value in vars(args).items()}

    async def bounded() -> Report:
        with trio.fail_after(args.seconds + args.settle + 300):
            return await run(**options)

    report = trio.run(bounded)
    for client in report.clients:
        print(client.line(report.finals[client.topic]))
    for line in report.server_errors[:10]:
        print("server:", line)
    print(report.summary())
    raise SystemExit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
