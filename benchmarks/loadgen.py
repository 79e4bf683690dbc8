"""The load generator: a separate asyncio process driving one server.

Run by :mod:`benchmarks.run` as::

    python -m benchmarks.loadgen SCENARIO --port PORT --params JSON [--client picows|websockets]

It talks to the harness with lines on stdout: ``MARK start`` / ``MARK end`` around
the measured window (the harness samples the server's CPU time there; a window
lasts ``duration`` seconds, and in ``--quick`` runs also until it has counted
``min_count`` operations, see :meth:`Window.measure`),
``WAIT <tag>`` when the harness must measure something before the run goes on
(the harness answers with a line on stdin), and finally ``RESULT <json>`` with
``value`` (the scenario's metric) and ``client_cpu_pct`` (this process's CPU time
over the measured window's wall time, 100 = one core saturated).

The client of the echo, handshake and memory scenarios is picows (callbacks,
C frame handling) when it is installed, else websockets' asyncio client.  The
fan-out and the paced latency scenarios, and the handshakes with a given
request head (``head``: a browser's, or the plain one), use raw sockets whatever the client
(:mod:`benchmarks.raw_load`: messages counted in C, so the load generator's CPU
per delivery stays far below the server's).  Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs

from . import raw_load

__all__ = ["SCENARIOS", "main"]

SCENARIOS = ("echo", "fanout", "handshakes", "memory", "echo-latency", "fanout-latency")

#: The echo scenario's message: 32 bytes of text.
PAYLOAD = b"echo message 0123456789abcdefghi"
assert len(PAYLOAD) == 32

CONNECT_TIMEOUT = 30.0  # opening all the connections of a scenario
CLOSE_TIMEOUT = 10.0  # closing them
#: How long a window with ``min_count`` waits past its duration for its operations.
WINDOW_TIMEOUT = 30.0

T = TypeVar("T")


@attrs.define
class Params:
    """Scenario sizes; the harness passes them as JSON."""

    connections: int = 50  # echo connections, fan-out subscribers, idle connections
    duration: float = 3.0  # measured window (echo, handshakes), seconds
    warmup: float = 1.0  # unmeasured run before the window, seconds
    messages: int = 200  # broadcasts in the measured fan-out round
    concurrency: int = 50  # simultaneous handshakes (churn workers, connection setup)
    path: str = "/echo"  # the echo scenario's route
    payload: str = PAYLOAD.decode()  # the echo scenario's text message
    rate: float = 0.0  # paced scenarios: echo messages, or broadcasts, per second
    #: handshakes: "" for the client's own handshake, else a raw-socket head of
    #: raw_load.HEADS ("plain", "chromium", "firefox").
    head: str = ""
    #: echo, handshakes: the window also lasts until it has counted this many
    #: operations (the quick sizes: 1); 0, the full sizes: exactly ``duration``.
    min_count: int = 0


@attrs.define
class Window:
    """Wall time, this process's CPU time and a counter at the start of a window."""

    count: int
    wall: float = attrs.field(factory=time.perf_counter)
    cpu: float = attrs.field(factory=time.process_time)

    @classmethod
    def open(cls, count: int) -> Window:
        print("MARK start", flush=True)
        return cls(count)

    @classmethod
    async def measure(cls, count: Callable[[], int], p: Params) -> dict[str, float]:
        """The measured window over the counter ``count()``: ``p.duration`` seconds,
        then, if ``p.min_count``, until the window has counted that many.

        A window of the quick sizes is short (0.3 s): on a loaded machine the server
        or this process can get no CPU for all of it, and count nothing.  So the
        quick sizes ask for at least one operation, and the value stays the count
        over the window's wall time.  It fails (RuntimeError) if none comes within
        ``WINDOW_TIMEOUT``.  At ``min_count`` 0 (the full sizes) the window is
        ``p.duration`` exactly, as before.
        """
        window = cls.open(count())
        await asyncio.sleep(p.duration)
        if p.min_count:
            deadline = time.perf_counter() + WINDOW_TIMEOUT
            while count() - window.count < p.min_count:
                if time.perf_counter() > deadline:
                    raise RuntimeError(
                        f"the measured window counted {count() - window.count} operations "
                        f"in {p.duration + WINDOW_TIMEOUT:.1f} s (min_count {p.min_count}): "
                        "the server did no work, see its log"
                    )
                # Polling, not an event: the per-operation path stays as it is at
                # the full sizes (no check per message), and this runs only here.
                await asyncio.sleep(0.01)
        return window.close(count())

    def close(self, count: int) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        print("MARK end", flush=True)
        return {
            "value": (count - self.count) / wall,
            "count": count - self.count,
            "seconds": wall,
            "client_cpu_pct": 100.0 * cpu / wall,
        }


async def churn(handshake: Callable[[], Awaitable[None]], p: Params) -> dict[str, float]:
    """``p.concurrency`` workers repeat ``handshake`` (open, then close): count them."""
    state = {"count": 0, "running": True}

    async def worker() -> None:
        while state["running"]:
            await handshake()
            state["count"] += 1

    workers = asyncio.gather(*(worker() for _ in range(p.concurrency)))
    try:
        await asyncio.sleep(p.warmup)
        result = await Window.measure(lambda: state["count"], p)
        state["running"] = False
        await asyncio.wait_for(workers, CLOSE_TIMEOUT)
    finally:
        workers.cancel()
    return result


async def wait_for_harness(tag: str) -> None:
    """Print ``WAIT tag`` and block until the harness answers on stdin."""
    print(f"WAIT {tag}", flush=True)
    line = await asyncio.wait_for(asyncio.to_thread(sys.stdin.readline), 60.0)
    if not line:
        raise RuntimeError("the harness went away")


async def gather_bounded(
    factories: list[Callable[[], Awaitable[T]]], concurrency: int, timeout: float
) -> list[T]:
    """Run the coroutine factories, at most ``concurrency`` at a time, within ``timeout``."""
    limit = asyncio.Semaphore(concurrency)

    async def one(factory: Callable[[], Awaitable[T]]) -> T:
        async with limit:
            return await factory()

    return await asyncio.wait_for(asyncio.gather(*(one(f) for f in factories)), timeout)


# -- picows --------------------------------------------------------------------------------


class PicowsClient:
    """Callback-based picows client: no task or future per message."""

    def __init__(self, url: str) -> None:
        import picows

        self.picows = picows
        self.url = url

    async def _connect(
        self, path: str, listener: Callable[[], Any], n: int, p: Params
    ) -> list[Any]:
        url = self.url + path

        async def one() -> Any:
            transport, _ = await self.picows.ws_connect(listener, url)
            return transport

        return await gather_bounded([one] * n, p.concurrency, CONNECT_TIMEOUT)

    async def _close_all(self, transports: list[Any]) -> None:
        for transport in transports:
            transport.send_close(self.picows.WSCloseCode.OK)
        waits = [t.wait_disconnected() for t in transports]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), CLOSE_TIMEOUT)
        except TimeoutError:
            for transport in transports:
                transport.disconnect(graceful=False)

    def _listener(self, on_text: Callable[[Any, Any], None] | None = None) -> Callable[[], Any]:
        from picows import WSFrame, WSListener, WSMsgType, WSTransport

        text, close = WSMsgType.TEXT, WSMsgType.CLOSE

        class Listener(WSListener):
            def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                kind = frame.msg_type
                if kind == text:
                    if on_text is not None:
                        on_text(transport, frame)
                elif kind == close:
                    transport.disconnect()

        return Listener

    async def echo(self, p: Params) -> dict[str, float]:
        state = {"count": 0, "running": True}
        send_text = self.picows.WSMsgType.TEXT
        payload = p.payload.encode()

        def on_text(transport: Any, frame: Any) -> None:
            state["count"] += 1
            if state["running"]:
                transport.send(send_text, payload)

        transports = await self._connect(p.path, self._listener(on_text), p.connections, p)
        for transport in transports:
            transport.send(send_text, payload)
        await asyncio.sleep(p.warmup)
        result = await Window.measure(lambda: state["count"], p)
        state["running"] = False
        await self._close_all(transports)
        return result

    async def handshakes(self, p: Params) -> dict[str, float]:
        picows = self.picows
        url = self.url + "/idle"
        listener = self._listener()

        async def handshake() -> None:
            transport, _ = await picows.ws_connect(listener, url)
            transport.send_close(picows.WSCloseCode.OK)
            await transport.wait_disconnected()

        return await churn(handshake, p)

    async def memory(self, p: Params) -> dict[str, float]:
        listener = self._listener()
        await self._close_all(await self._connect("/idle", listener, 20, p))
        await wait_for_harness("baseline")
        transports = await self._connect("/idle", listener, p.connections, p)
        await wait_for_harness("loaded")
        await self._close_all(transports)
        return {"value": float(len(transports))}


# -- websockets (fallback) -----------------------------------------------------------------


class WebsocketsClient:
    """websockets' asyncio client: the fallback when picows is not installed."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def _connect(self, path: str, n: int, p: Params) -> list[Any]:
        from websockets.asyncio.client import connect

        url = self.url + path

        async def one() -> Any:
            return await connect(url, compression=None, ping_interval=None, max_queue=None)

        return await gather_bounded([one] * n, p.concurrency, CONNECT_TIMEOUT)

    async def _close_all(self, connections: list[Any]) -> None:
        await asyncio.wait_for(asyncio.gather(*(c.close() for c in connections)), CLOSE_TIMEOUT)

    async def echo(self, p: Params) -> dict[str, float]:
        state = {"count": 0, "running": True}
        text = p.payload

        async def loop(ws: Any) -> None:
            while state["running"]:
                await ws.send(text)
                await ws.recv()
                state["count"] += 1

        connections = await self._connect(p.path, p.connections, p)
        loops = asyncio.gather(*(loop(ws) for ws in connections))
        await asyncio.sleep(p.warmup)
        result = await Window.measure(lambda: state["count"], p)
        state["running"] = False
        await asyncio.wait_for(loops, CLOSE_TIMEOUT)
        await self._close_all(connections)
        return result

    async def handshakes(self, p: Params) -> dict[str, float]:
        from websockets.asyncio.client import connect

        url = self.url + "/idle"

        async def handshake() -> None:
            async with connect(url, compression=None, ping_interval=None):
                pass

        return await churn(handshake, p)

    async def memory(self, p: Params) -> dict[str, float]:
        await self._close_all(await self._connect("/idle", 20, p))
        await wait_for_harness("baseline")
        connections = await self._connect("/idle", p.connections, p)
        await wait_for_harness("loaded")
        await self._close_all(connections)
        return {"value": float(len(connections))}


def default_client() -> str:
    """``picows`` when it is installed, else ``websockets``."""
    try:
        import picows  # noqa: F401
    except ImportError:
        return "websockets"
    return "picows"


async def run(scenario: str, port: int, params: Params, client_name: str) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{port}"
    client = PicowsClient(url) if client_name == "picows" else WebsocketsClient(url)
    scenarios: dict[str, Callable[[Params], Awaitable[dict[str, float]]]] = {
        "echo": client.echo,
        "fanout": functools.partial(raw_load.fanout, url),
        "handshakes": (
            functools.partial(raw_load.handshakes, url) if params.head else client.handshakes
        ),
        "memory": client.memory,
        "echo-latency": functools.partial(raw_load.echo_latency, url),
        "fanout-latency": functools.partial(raw_load.fanout_latency, url),
    }
    result: dict[str, Any] = dict(await scenarios[scenario](params))
    result["client"] = client_name
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--params", default="{}", help="Params fields as a JSON object")
    parser.add_argument("--client", choices=("picows", "websockets"), default=default_client())
    args = parser.parse_args()
    params = Params(**json.loads(args.params))
    result = asyncio.run(run(args.scenario, args.port, params, args.client))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
