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
#: The same message as a JSON-RPC call (``--rpc``); one call at a time per connection.
CALL = json.dumps(
    {"jsonrpc": "2.0", "method": "echo_chat", "params": [json.loads(PAYLOAD)], "id": 1},
    separators=(",", ":"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", choices=("native", "hypercorn"), default="native")
    parser.add_argument(
        "--rpc", action="store_true", help="also the same message as a JSON-RPC call (/rpc)"
    )
    args = parser.parse_args()
    routes = {"/echo": PAYLOAD, "/typed": PAYLOAD} | ({"/rpc": CALL} if args.rpc else {})
    cpu_ratios: dict[str, list[float]] = {path: [] for path in routes if path != "/echo"}
    rate_ratios: dict[str, list[float]] = {path: [] for path in cpu_ratios}
    for _ in range(args.repeats):
        runs = {}
        for path, payload in routes.items():
            rate, cpu = run_once(
                args.backend, args.seconds, args.connections, path=path, payload=payload
            )
            runs[path] = rate, cpu
            print(f"{path:7} {rate:10,.0f} msg/s  {cpu * 1e6:6.2f} us CPU/msg", flush=True)
        echo_rate, echo_cpu = runs["/echo"]
        for path in cpu_ratios:
            cpu_ratios[path].append(runs[path][1] / echo_cpu)
            rate_ratios[path].append(echo_rate / runs[path][0])
    print()
    for path in cpu_ratios:
        name = path.strip("/")
        cpu = statistics.median(cpu_ratios[path])
        rate = statistics.median(rate_ratios[path])
        print(f"{name} / echo, server CPU time per message: {cpu:.3f} (+{(cpu - 1) * 100:.1f} %)")
        print(f"{name} / echo, wall time per message:       {rate:.3f} (+{(rate - 1) * 100:.1f} %)")


if __name__ == "__main__":
    main()
