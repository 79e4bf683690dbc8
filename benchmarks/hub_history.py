"""The hub's history and presence, measured: resume catch-up, presence churn, publish cost.

    .venv/bin/python -m benchmarks.hub_history [--repeats 5] [--redis] [--quick]

- **resume**: 1,000 messages are in a topic's history; a subscription with
  ``since=`` the position before them receives all 1,000 (``receive()`` in a
  loop), and a WebSocket client of the native server gets all 1,000 through
  ``Subscription.forward``.  Time from ``subscribe()`` (or the client's connect)
  to the last message.
- **presence**: a room of 1,000 members, each also watching the room
  (``presence_changes``: 1,000 watchers), while members leave and new ones join
  at a steady rate (churn).  Reports the process's CPU time per second of
  churn, the batches each watcher got per second, and the CPU time of the same
  room without churn, in the same repeat.
- **publish**: publishes per second to a topic with 10 draining subscribers,
  history off (``history=0``) and on (``history=1000``), alternating within each
  repeat; the ratio is paired per repeat.

Everything runs in this process on one trio loop (the WebSocket client too, on
loopback), so the numbers are the hub's own costs, comparable with each other
in one run, not a server's throughput (that is benchmarks/run.py).  ``--redis``
adds the same scenarios through a private redis-server.
"""

from __future__ import annotations

import argparse
import atexit
import statistics
import time
from collections.abc import Callable
from typing import Any

import trio

import triows
from triows import testing

TOPIC = "bench"
MESSAGE = "hub message 0123456789abcdefghij"  # 32 bytes of text


def make_hub(url: str | None, **options: Any) -> triows.Hub:
    # history=0 is passed as no argument, so this also runs against a triows
    # without history (a before/after comparison of the publish path).
    return triows.Hub(url, **{k: v for k, v in options.items() if v})


async def resume_receive(url: str | None, count: int) -> float:
    """Seconds for a subscription with since= to receive ``count`` replayed messages."""
    async with make_hub(url, history=count) as hub:
        start = await hub.publish(TOPIC, "start")
        for _ in range(count):
            await hub.publish(TOPIC, MESSAGE)
        began = time.perf_counter()
        async with hub.subscribe(TOPIC, since=start) as messages:
            assert messages.recovered
            for _ in range(count):
                await messages.receive()
        return time.perf_counter() - began


async def resume_websocket(count: int) -> float:
    """Seconds from a client's connect to its ``count``-th replayed message (native)."""
    from trio_websocket import open_websocket_url

    hub = triows.Hub(history=count)
    app = triows.App(hub=hub)

    @app.websocket_route("/live")
    async def live(ws: triows.WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe(TOPIC, since=ws.query_parameters["since"]) as messages:
            await messages.forward(ws)

    async with testing.live_server(app, backend="native") as server:
        start = await hub.publish(TOPIC, "start")
        for _ in range(count):
            await hub.publish(TOPIC, MESSAGE)
        began = time.perf_counter()
        async with open_websocket_url(server.url(f"/live?since={start}")) as ws:
            for _ in range(count):
                await ws.get_message()
            return time.perf_counter() - began


async def presence_churn(
    url: str | None, members: int, seconds: float, rate: float
) -> dict[str, float]:
    """CPU seconds per second with and without churn, and batches per watcher per second."""
    batches = 0
    async with (
        make_hub(url, presence_interval=1.0) as hub,
        trio.open_nursery() as nursery,
    ):

        async def member(key: str, ready: trio.Event, leave: trio.Event) -> None:
            async with hub.presence(TOPIC, key, {"name": key}):
                ready.set()
                await leave.wait()

        async def watcher(task_status: trio.TaskStatus[None]) -> None:
            nonlocal batches
            async with hub.presence_changes(TOPIC) as changes:
                task_status.started()
                async for _ in changes:
                    batches += 1

        present: list[trio.Event] = []
        for n in range(members):
            ready, leave = trio.Event(), trio.Event()
            nursery.start_soon(member, f"user{n}", ready, leave)
            await ready.wait()
            present.append(leave)
        for _ in range(members):
            await nursery.start(watcher)
        await trio.sleep(1.5)  # the joins are reported

        async def window(churn: bool) -> tuple[float, int]:
            nonlocal batches
            batches = 0
            cpu = time.process_time()
            deadline = trio.current_time() + seconds
            n = len(present)
            while trio.current_time() < deadline:
                if churn:  # one member leaves, a new one joins
                    present.pop(0).set()
                    ready, leave = trio.Event(), trio.Event()
                    nursery.start_soon(member, f"user{n}", ready, leave)
                    n += 1
                    present.append(leave)
                await trio.sleep(1 / rate)
            return time.process_time() - cpu, batches

        idle_cpu, _ = await window(churn=False)
        churn_cpu, churn_batches = await window(churn=True)
        nursery.cancel_scope.cancel()
    return {
        "idle_cpu_per_s": idle_cpu / seconds,
        "churn_cpu_per_s": churn_cpu / seconds,
        "batches_per_watcher_per_s": churn_batches / members / seconds,
    }


async def publish_rate(url: str | None, history: int, count: int, subscribers: int) -> float:
    """Publishes per second to ``subscribers`` draining subscriptions."""
    async with make_hub(url, history=history) as hub, trio.open_nursery() as nursery:
        done = trio.Semaphore(0)

        async def drain(task_status: trio.TaskStatus[None]) -> None:
            async with hub.subscribe(TOPIC, max_buffer=count + 1) as messages:
                task_status.started()
                for _ in range(count):
                    await messages.receive()
            done.release()

        for _ in range(subscribers):
            await nursery.start(drain)
        began = time.perf_counter()
        for _ in range(count):
            await hub.publish(TOPIC, MESSAGE)
        for _ in range(subscribers):
            await done.acquire()
        return count / (time.perf_counter() - began)


def median_range(values: list[float], fmt: Callable[[float], str]) -> str:
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"


async def run(args: argparse.Namespace) -> None:
    engines: list[tuple[str, str | None]] = [("memory", None)]
    if args.redis:
        from .servers._common import start_redis

        process, redis_url = start_redis()
        atexit.register(process.kill)
        engines.append(("redis", redis_url))
    quick = args.quick
    count, members = (100, 50) if quick else (1000, 1000)
    print(f"{args.repeats} repeat(s); medians (min-max)\n")

    ms: Callable[[float], str] = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
    for name, url in engines:
        samples = [await resume_receive(url, count) for _ in range(args.repeats)]
        print(f"resume catch-up, {count} messages, {name}: {median_range(samples, ms)}")
    samples = [await resume_websocket(count) for _ in range(args.repeats)]
    print(
        f"resume catch-up, {count} messages, memory, to a WebSocket client: "
        f"{median_range(samples, ms)}"
    )

    for name, url in engines:
        results = [
            await presence_churn(url, members, 1.0 if quick else 4.0, 100.0)
            for _ in range(args.repeats)
        ]
        pct: Callable[[float], str] = lambda v: f"{v * 100:.1f} %"  # noqa: E731
        per: Callable[[float], str] = lambda v: f"{v:.2f}"  # noqa: E731
        print(
            f"presence, {members} members and watchers, 100 leaves+joins/s, {name}: "
            f"CPU {median_range([r['churn_cpu_per_s'] for r in results], pct)} of a core "
            f"(idle room: {median_range([r['idle_cpu_per_s'] for r in results], pct)}); "
            f"batches per watcher per second "
            f"{median_range([r['batches_per_watcher_per_s'] for r in results], per)}"
        )

    for name, url in engines:
        n = (200 if quick else 20_000) if url is None else (100 if quick else 2_000)
        ratios, offs, ons = [], [], []
        for repeat in range(args.repeats):
            order = (0, 1000) if repeat % 2 == 0 else (1000, 0)
            rates = {h: await publish_rate(url, h, n, 10) for h in order}
            offs.append(rates[0])
            ons.append(rates[1000])
            ratios.append(rates[1000] / rates[0])
        rate: Callable[[float], str] = lambda v: f"{v:,.0f}/s"  # noqa: E731
        print(
            f"publish to 10 subscribers, {name}: history off {median_range(offs, rate)}, "
            f"history=1000 {median_range(ons, rate)}; on/off "
            f"{median_range(ratios, lambda v: f'{v:.2f}')}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--redis", action="store_true", help="also through a redis-server")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    trio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
