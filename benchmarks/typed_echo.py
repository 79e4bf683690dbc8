"""What typed messages cost: echo of a small struct vs plain text echo, same run.

    .venv/bin/python -m benchmarks.typed_echo [--seconds 4] [--connections 50] [--repeats 3]

Issue 13's budget: receive + validate + send of a small struct adds at most 10 %
to the echo benchmark's time per message on the native server.  Both routes of
``benchmarks.servers.triows_app`` get the same 41-byte JSON text from the
harness's load generator: ``/echo`` sends it back as text, ``/typed``
(``value_type=Chat``, a msgspec Struct) decodes and validates it into a
``Chat`` and encodes that back.  Runs alternate; the ratio of the server's CPU
time per message (from /proc, meaningful when other processes share the
cores) and of messages per second is paired within each repeat, and the
median of the ratios is printed.
"""

from __future__ import annotations

import argparse
import json
import statistics

from .native_vs_hypercorn import run_once

PAYLOAD = json.dumps({"user": "ann", "seq": 12, "text": "hi there"}, separators=(",", ":"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", choices=("native", "hypercorn"), default="native")
    args = parser.parse_args()
    cpu_ratios: list[float] = []
    rate_ratios: list[float] = []
    for _ in range(args.repeats):
        runs = {}
        for path in ("/echo", "/typed"):
            rate, cpu = run_once(
                args.backend, args.seconds, args.connections, path=path, payload=PAYLOAD
            )
            runs[path] = rate, cpu
            print(f"{path:7} {rate:10,.0f} msg/s  {cpu * 1e6:6.2f} us CPU/msg", flush=True)
        (echo_rate, echo_cpu), (typed_rate, typed_cpu) = runs["/echo"], runs["/typed"]
        cpu_ratios.append(typed_cpu / echo_cpu)
        rate_ratios.append(echo_rate / typed_rate)
    print()
    cpu = statistics.median(cpu_ratios)
    rate = statistics.median(rate_ratios)
    print(f"typed / echo, server CPU time per message: {cpu:.3f} (+{(cpu - 1) * 100:.1f} %)")
    print(f"typed / echo, wall time per message:       {rate:.3f} (+{(rate - 1) * 100:.1f} %)")


if __name__ == "__main__":
    main()
