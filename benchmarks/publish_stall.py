"""How long one ``Hub.publish()`` holds the event loop, by number of idle subscribers.

    .venv/bin/python -m benchmarks.publish_stall [--subscribers 500,2000] [--backend both]

On ``triows.serve``'s backends a publish writes the message to every idle
subscriber's socket itself, without yielding (see docs/guide/broadcast.md):
fast, but the loop is held for the whole loop over the subscribers.  This
serves a hub in-process on loopback, opens raw subscriber connections that
stay idle (so they cost no CPU during the measurement), publishes a 32-byte
message five times and reports the median time of the ``publish()`` call and
the time per subscriber.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import time

import trio

import triows
from triows import testing

from .run import raise_fd_limit

HANDSHAKE = (
    "GET /sub HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def measure(backend: str, subscribers: int) -> float:
    """Median seconds of one publish() to ``subscribers`` idle subscribers."""
    hub = triows.Hub()
    app = triows.App(hub=hub)
    forwarding: list[int] = []

    @app.websocket_route("/sub", caught_close_codes=(1000, 1001, 1006))
    async def sub(ws: triows.WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("bench") as messages:
            forwarding.append(1)
            await messages.forward(ws)

    async with testing.live_server(app, backend=backend) as server:
        streams: list[trio.SocketStream] = []
        try:
            for _ in range(subscribers):
                stream = await trio.open_tcp_stream("127.0.0.1", server.port)
                key = base64.b64encode(os.urandom(16)).decode()
                await stream.send_all(HANDSHAKE.format(key=key).encode())
                streams.append(stream)
            with trio.fail_after(60):
                while len(forwarding) < subscribers:  # noqa: ASYNC110 - bounded above
                    await trio.sleep(0.01)
            await trio.sleep(0.2)
            times = []
            for _ in range(5):
                started = time.perf_counter()
                await hub.publish("bench", "x" * 32)
                times.append(time.perf_counter() - started)
                await trio.sleep(0.2)  # let every socket drain between rounds
            return statistics.median(times)
        finally:
            for stream in streams:
                await stream.aclose()


async def main(backends: list[str], counts: list[int]) -> None:
    raise_fd_limit(2 * max(counts))  # both ends of every connection are in this process
    print("| backend | subscribers | publish() (ms) | per subscriber (us) |")
    print("|---|---|---|---|")
    for backend in backends:
        for count in counts:
            seconds = await measure(backend, count)
            print(f"| {backend} | {count} | {seconds * 1e3:.1f} | {seconds / count * 1e6:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", default="500,2000")
    parser.add_argument("--backend", choices=("hypercorn", "native", "both"), default="both")
    arguments = parser.parse_args()
    chosen = ["hypercorn", "native"] if arguments.backend == "both" else [arguments.backend]
    trio.run(main, chosen, [int(n) for n in arguments.subscribers.split(",")])
