"""Quick echo comparison of triows' two backends, robust to a busy machine.

    .venv/bin/python -m benchmarks.native_vs_hypercorn [--seconds 5] [--connections 50]

For each backend (alternating, ``--repeats`` times) it starts the triows echo app
of ``benchmarks.servers.triows_app`` as its own process, drives it with the
harness's load generator (picows when installed: 50 connections echoing
32-byte text), and reports messages per second and the server's CPU time per
message (from /proc), which stays meaningful when other processes share the
cores.  The full harness is ``python -m benchmarks.run``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from .run import loadgen_measured


def run_once(
    backend: str,
    seconds: float,
    connections: int,
    server_args: tuple[str, ...] = (),
    **echo: str,
) -> tuple[float, float]:
    """One echo run: (messages per second, server CPU seconds per message).

    ``server_args``: more options for the server (``--metrics``).  ``echo``: the
    load generator's ``path`` and ``payload`` (default ``/echo``, 32 bytes).
    """
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.servers.triows_app", "--backend", backend, *server_args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = None
        for line in server.stdout:
            if line.startswith("PORT"):
                port = int(line.split()[1])
                break
        if port is None:
            raise RuntimeError(f"{backend}: the server did not announce its port")
        params = json.dumps({"connections": connections, "duration": seconds, **echo})
        result, cpu = loadgen_measured("echo", port, params, server.pid)
        rate = float(result["value"])
        cpu_per_message = cpu / max(rate * seconds, 1)
        return rate, cpu_per_message
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"hypercorn": [], "native": []}
    for _ in range(args.repeats):
        for backend in results:
            rate, cpu = run_once(backend, args.seconds, args.connections)
            results[backend].append((rate, cpu))
            print(f"{backend:10} {rate:10,.0f} msg/s  {cpu * 1e6:6.1f} us CPU/msg", flush=True)
    print()
    med = {
        b: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v))
        for b, v in results.items()
    }
    for backend, (rate, cpu) in med.items():
        print(f"median {backend:10} {rate:10,.0f} msg/s  {cpu * 1e6:6.1f} us CPU/msg")
    (hr, hc), (nr, nc) = med["hypercorn"], med["native"]
    print(f"native / hypercorn: {nr / hr:.2f}x msg/s, {hc / nc:.2f}x less CPU per message")


if __name__ == "__main__":
    main()
