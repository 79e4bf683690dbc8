"""Server CPU per handshake on the native server: a git revision against this tree.

    .venv/bin/python -m benchmarks.handshake_cpu --before REV [--pairs 5] [--seconds 5]
        [--backend native|plain-hypercorn] [--head plain|chromium|firefox]
        [--scenario handshakes|echo|fanout] [--fanout serial|try-send]

For each pair it serves ``benchmarks.servers.triows_app`` (``--backend``: the
native server by default, or ``plain-hypercorn``: the App under hypercorn's trio
worker, as ``hypercorn -k trio`` serves it) from
``REV`` (exported with ``git archive`` into a temporary directory) and then from
this tree, each in its own process, drives it with the harness's handshake load
(``benchmarks.loadgen handshakes``: 16 concurrent clients open a connection,
close it, repeat; ``--head``: with the request head a browser sends, or the
plain one, written by a raw-socket client, ``benchmarks.raw_load.HEADS``) and reports handshakes per second and the server process's CPU
time per handshake (from /proc), which stays meaningful when other processes
share the cores.  The pairs alternate, so a change in the machine's load hits
both sides; every pair is printed, then the medians and their ratio.
``--scenario echo`` or ``fanout`` measures the server CPU per echoed message or
per fan-out delivery instead, with the harness's full sizes for that scenario
(``benchmarks.run.SCENARIOS``; ``--seconds`` sets the echo's window), and
``--fanout`` the publisher's loop (``benchmarks.servers.triows_app``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import attrs

from .raw_load import HEADS
from .run import SCENARIOS, loadgen_measured

ROOT = Path(__file__).resolve().parent.parent


def run_once(
    tree: Path,
    seconds: float,
    concurrency: int = 16,
    backend: str = "native",
    head: str = "",
    scenario: str = "handshakes",
    fanout: str = "serial",
) -> tuple[float, float]:
    """One run from ``tree``: (operations per second, server CPU seconds per operation)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    options = ["--backend", backend, "--fanout", fanout]
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.servers.triows_app", *options],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = next((int(line.split()[1]) for line in server.stdout if line.startswith("PORT")), 0)
        if not port:
            raise RuntimeError(f"{tree}: the server did not announce its port")
        full = next(known.full for known in SCENARIOS if known.name == scenario)
        sizes = attrs.evolve(full, concurrency=concurrency, warmup=0.5, duration=seconds, head=head)
        params = json.dumps(attrs.asdict(sizes))
        result, cpu = loadgen_measured(scenario, port, params, server.pid, cwd=ROOT)
        return float(result["value"]), cpu / max(float(result["count"]), 1.0)
    finally:
        server.terminate()
        server.wait(timeout=30)


def export(revision: str, into: Path) -> Path:
    """``revision`` of this repository as files in ``into`` (``git archive``)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before", required=True, help="a git revision (main, HEAD~3, ...)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--backend", choices=("native", "plain-hypercorn"), default="native")
    parser.add_argument(
        "--head",
        choices=("", *HEADS),
        default="",
        help="the request head (raw-socket client); default: the load generator's client",
    )
    parser.add_argument(
        "--scenario", choices=("handshakes", "echo", "fanout"), default="handshakes"
    )
    parser.add_argument("--fanout", choices=("serial", "try-send"), default="serial")
    args = parser.parse_args()
    unit = {"handshakes": "handshake", "echo": "message", "fanout": "delivery"}[args.scenario]
    results: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": export(args.before, Path(tmp)), "after": ROOT}
        for pair in range(args.pairs):
            for side, tree in trees.items():
                rate, cpu = run_once(
                    tree,
                    args.seconds,
                    backend=args.backend,
                    head=args.head,
                    scenario=args.scenario,
                    fanout=args.fanout,
                )
                results[side].append((rate, cpu))
                print(f"pair {pair} {side:6} {rate:8,.0f}/s  {cpu * 1e6:6.1f} us CPU", flush=True)
    medians = {side: statistics.median(cpu for _, cpu in runs) for side, runs in results.items()}
    for side, cpu in medians.items():
        print(f"median {side:6} {cpu * 1e6:6.1f} us of server CPU per {unit}")
    print(f"after / before: {medians['after'] / medians['before']:.2f}")


if __name__ == "__main__":
    main()
