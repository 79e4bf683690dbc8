"""What ``App(metrics=True)`` costs: ratios from one run of the harness.

    .venv/bin/python -m benchmarks.run --scenarios echo,fanout --servers \\
        triows-native,triows-native-metrics,triows-native-hub,triows-native-hub-metrics
    .venv/bin/python -m benchmarks.metrics_cost [benchmarks/results/latest.json]
    .venv/bin/python -m benchmarks.metrics_cost --echo [--repeats 10] [--seconds 3]

For each server with a ``-metrics`` twin measured in the same run, and each
scenario, prints two ratios paired within each repeat (median and range over
the repeats): metrics on / off in units per second, and in units per second of
the server's own CPU time (from /proc over the measured window: the fairer
number when other processes share the cores).  ``--echo`` measures instead:
the native echo server with and without metrics, alternating, the server's CPU
time per message paired per repeat.  Issue 14's budget: at most 5 % lost on
echo and fan-out.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from .native_vs_hypercorn import run_once

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def paired(on: list[float | None], off: list[float | None]) -> list[float]:
    return [a / b for a, b in zip(on, off, strict=False) if a is not None and b]


def per_cpu(data: dict[str, Any]) -> list[float | None]:
    """Units per server CPU second, per repeat."""
    return [
        None if value is None or not cpu else value / (cpu / 100)
        for value, cpu in zip(data["values"], data.get("server_cpu_pcts") or [], strict=False)
    ]


def describe(ratios: list[float]) -> str:
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"


def measure_echo(repeats: int, seconds: float, connections: int) -> None:
    """Native echo with metrics off and on, alternating; paired CPU-per-message ratios."""
    cpu_ratios: list[float] = []
    rate_ratios: list[float] = []
    for _ in range(repeats):
        off_rate, off_cpu = run_once("native", seconds, connections)
        on_rate, on_cpu = run_once("native", seconds, connections, ("--metrics",))
        print(
            f"off {off_rate:9,.0f} msg/s {off_cpu * 1e6:6.2f} us CPU/msg | "
            f"on {on_rate:9,.0f} msg/s {on_cpu * 1e6:6.2f} us CPU/msg",
            flush=True,
        )
        cpu_ratios.append(on_cpu / off_cpu)
        rate_ratios.append(on_rate / off_rate)
    print(f"metrics on / off, server CPU time per message: {describe(cpu_ratios)}")
    print(f"metrics on / off, messages per second:         {describe(rate_ratios)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS)
    parser.add_argument("--echo", action="store_true", help="measure echo CPU per message")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if args.echo:
        measure_echo(args.repeats, args.seconds, args.connections)
        return
    rows = {row["server"]: row for row in json.loads(args.results.read_text())["rows"]}
    print("| server | scenario | metrics on / off, per second | per server CPU second |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        twin = rows.get(f"{name}-metrics")
        if twin is None:
            continue
        for scenario, off in row["scenarios"].items():
            on = twin["scenarios"].get(scenario)
            if on is None:
                continue
            print(
                f"| {name} | {scenario} | {describe(paired(on['values'], off['values']))} "
                f"| {describe(paired(per_cpu(on), per_cpu(off)))} |"
            )


if __name__ == "__main__":
    main()
