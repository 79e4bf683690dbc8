"""The live route's fan-out against a hand-written hub route, on the native server.

    .venv/bin/python -m benchmarks.live_fanout [--clients 200] [--messages 500] [--repeats 5]

One App serves two routes on one in-memory Hub with history: ``/plain``
subscribes and ``Subscription.forward``s each message as it is (a 32-byte text),
and ``app.live_route("/live")``, whose clients send a ``subscribe`` frame and
receive each message in a ``message`` frame (topic, position, data: about 100
bytes).  The clients run in a separate process (picows, callbacks, C frame
parsing) so that this process's CPU time is the server's.  For each route in
turn, within each repeat: ``--clients`` connections subscribe, the server
publishes ``--messages`` messages as fast as ``hub.publish()`` returns, and the
clock stops when every client has every message.  Reported: the server's CPU
time per delivered message and the wall time of the round, medians over the
repeats, and the live/plain ratio paired per repeat.  Buffers are large enough
that neither route drops or lags.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import trio

import triows
from triows import testing

TOPIC = "bench"
MESSAGE = "hub message 0123456789abcdefghij"  # 32 bytes of text


def make_app(messages: int) -> triows.App:
    hub = triows.Hub(history=messages, max_buffer=2 * messages)
    app = triows.App(hub=hub)

    @app.websocket_route("/plain", caught_close_codes=all)
    async def plain(ws: triows.WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe(TOPIC) as subscription:
            await ws.send("subscribed")
            await subscription.forward(ws)

    app.live_route("/live")
    return app


async def one_round(
    app: triows.App, port: int, path: str, clients: int, messages: int
) -> tuple[float, float]:
    """(server CPU seconds per delivered message, wall seconds) for one round."""
    hub = app.hub
    assert hub is not None
    command = [sys.executable, "-m", "benchmarks.live_fanout", "--client", "--port", str(port)]
    command += ["--path", path, "--clients", str(clients), "--messages", str(messages)]
    process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE)
    assert process.stdout is not None
    lines = LineReader(process.stdout)
    try:
        with trio.fail_after(120):
            assert await lines.next() == "READY"
            start, cpu = time.monotonic(), time.process_time()
            for _ in range(messages):
                await hub.publish(TOPIC, MESSAGE)
            done = await lines.next()
            used = time.process_time() - cpu
            assert done.startswith("DONE "), done
            end = float(done.split()[1])
            await process.wait()
    finally:
        process.kill()
        await process.wait()
    return used / (clients * messages), end - start


class LineReader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def next(self) -> str:
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some()
            if not chunk:
                raise EOFError(f"the client process ended: {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode().strip()


async def bench(clients: int, messages: int, repeats: int) -> None:
    app = make_app(messages)
    results: dict[str, list[tuple[float, float]]] = {"/plain": [], "/live": []}
    async with testing.live_server(app) as server:
        for repeat in range(repeats):
            for path in ("/plain", "/live") if repeat % 2 == 0 else ("/live", "/plain"):
                results[path].append(await one_round(app, server.port, path, clients, messages))
    print(f"{clients} clients x {messages} messages, {repeats} repeats (medians)")
    for path, rounds in results.items():
        cpu = statistics.median(r[0] for r in rounds) * 1e6
        wall = statistics.median(r[1] for r in rounds)
        rate = clients * messages / wall
        print(
            f"  {path:7} server CPU {cpu:6.2f} us/delivery   round {wall:6.3f} s   {rate:9.0f} deliveries/s"
        )
    ratios = [
        live[0] / plain[0] for live, plain in zip(results["/live"], results["/plain"], strict=True)
    ]
    print(f"  live / plain server CPU per delivery, paired: {statistics.median(ratios):.2f}x "
          f"(repeats: {', '.join(f'{r:.2f}' for r in ratios)})")  # fmt: skip


# -- the client process (asyncio, picows) ---------------------------------------------------


async def clients_main(port: int, path: str, clients: int, messages: int) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    loop = asyncio.get_running_loop()
    ready, done = loop.create_future(), loop.create_future()
    state = {"subscribed": 0, "received": 0}
    target = clients * messages

    class Listener(WSListener):
        def __init__(self) -> None:
            self.subscribed = False

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type != WSMsgType.TEXT:
                return
            if not self.subscribed:
                text = frame.get_payload_as_utf8_text()
                if text == "subscribed" or '"subscribed"' in text:
                    self.subscribed = True
                    state["subscribed"] += 1
                    if state["subscribed"] == clients:
                        ready.set_result(None)
                elif '"welcome"' in text:
                    subscribe = {"type": "subscribe", "topic": TOPIC}
                    transport.send(WSMsgType.TEXT, json.dumps(subscribe).encode())
                return
            state["received"] += 1
            if state["received"] == target:
                done.set_result(time.monotonic())

    transports = []
    for _ in range(clients):
        transport, _ = await ws_connect(Listener, f"ws://127.0.0.1:{port}{path}")
        transports.append(transport)
    await asyncio.wait_for(ready, 30)
    print("READY", flush=True)
    finished = await asyncio.wait_for(done, 120)
    print(f"DONE {finished}", flush=True)
    for transport in transports:
        transport.disconnect(graceful=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/live", help=argparse.SUPPRESS)
    args: Any = parser.parse_args(argv)
    if args.client:
        asyncio.run(clients_main(args.port, args.path, args.clients, args.messages))
    else:
        trio.run(bench, args.clients, args.messages, args.repeats)


if __name__ == "__main__":
    main()
