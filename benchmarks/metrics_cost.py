"""What ``App(metrics=True)`` costs: ratios from one run of the harness.

    .venv/bin/python -m benchmarks.run --scenarios echo,fanout --servers \\
        triows-native,triows-native-metrics,triows-native-hub,triows-native-hub-metrics
    .venv/bin/python -m benchmarks.metrics_cost [benchmarks/results/latest.json]

For each server with a ``-metrics`` twin measured in the same run, and each
scenario, prints two ratios paired within each repeat (median and range over
the repeats): metrics on / off in units per second, and in units per second of
the server's own CPU time (from /proc over the measured window: the fairer
number when other processes share the cores).  Issue 14's budget: at most 5 %
lost on echo and fan-out.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS)
    args = parser.parse_args()
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
