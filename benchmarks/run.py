"""Run the benchmarks: ``.venv/bin/python -m benchmarks.run [--quick]``.

For every repeat, scenario and server (servers in a rotated order each repeat),
starts the server as its own process and drives it from a separate
load-generator process (:mod:`benchmarks.loadgen`), server and load generator
pinned to separate cores.  Prints a Markdown table (median and min-max over the
repeats, and ratios to the reference paired within each repeat) and writes it
with the raw numbers and a plot to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import queue
import resource
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import attrs

from .loadgen import Params, default_client
from .run_cpu import per_cpu_table
from .servers import REFERENCE, SERVERS, ServerSpec
from .tables import markdown_table

__all__ = ["SCENARIOS", "Scenario", "main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

STARTUP_TIMEOUT = 30.0  # a server prints its PORT line
SCENARIO_TIMEOUT = 300.0  # one load-generator run, end to end
SETTLE = 1.0  # before reading a server's RSS

Named = TypeVar("Named", ServerSpec, "Scenario")

#: The paced scenarios' offered load: echo messages per second (all connections)...
ECHO_RATE = 4000
#: ...and broadcasts per second to the fan-out's 500 subscribers.
FANOUT_RATE = 10


@attrs.frozen
class Scenario:
    name: str
    title: str  # table column
    unit: str
    higher_is_better: bool
    full: Params
    quick: Params
    #: Shown as absolute values (memory, latencies), not as ratios to the reference.
    absolute: bool = False


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "echo",
        "echo msg/s",
        "msg/s",
        True,
        full=Params(connections=50, warmup=1.0, duration=4.0),
        quick=Params(connections=5, warmup=0.1, duration=0.3, min_count=1),
    ),
    Scenario(
        "fanout",
        "fan-out deliveries/s",
        "deliveries/s",
        True,
        full=Params(connections=500, messages=400),
        quick=Params(connections=20, messages=10),
    ),
    Scenario(
        "handshakes",
        "handshakes/s",
        "handshakes/s",
        True,
        full=Params(concurrency=16, warmup=0.5, duration=3.0),
        quick=Params(concurrency=4, warmup=0.1, duration=0.3, min_count=1),
    ),
    Scenario(
        "memory",
        "memory per idle connection",
        "KiB",
        False,
        full=Params(connections=2000, concurrency=100),
        quick=Params(connections=50, concurrency=25),
        absolute=True,
    ),
    # Latency at the same offered load for every server (paced, not saturating):
    # below the slowest server's capacity, so queues do not build up.
    Scenario(
        "echo-latency",
        "echo p99 round trip, paced",
        "ms",
        False,
        full=Params(connections=50, rate=ECHO_RATE, warmup=1.0, duration=3.0),
        quick=Params(connections=5, rate=200, warmup=0.1, duration=0.5),
        absolute=True,
    ),
    Scenario(
        "fanout-latency",
        "fan-out p99 delivery, paced",
        "ms",
        False,
        # 80 broadcasts: with 30, the one slowest broadcast decided the p99.
        full=Params(connections=500, rate=FANOUT_RATE, warmup=1.0, duration=8.0),
        quick=Params(connections=20, rate=20, warmup=0.1, duration=0.5),
        absolute=True,
    ),
)


class Unavailable(Exception):
    """The server reported that it cannot run here (``UNAVAILABLE`` line)."""


@attrs.define
class Measurement:
    value: float
    client_cpu_pct: float | None = None
    server_cpu_pct: float | None = None
    #: CPU used on the server's core by anything but the server (other processes,
    #: interrupts), in % of the window: high values mean a noisy measurement.
    others_cpu_pct: float | None = None
    #: What the load generator sent per second (paced scenarios), or asked for.
    offered: float | None = None
    #: Paced scenarios: the median latency, ms.
    p50_ms: float | None = None
    #: Throughput scenarios: operations per second of the server's own CPU time.
    per_cpu_second: float | None = None


# -- processes -------------------------------------------------------------------------------


def raise_fd_limit(needed: int) -> None:
    """Raise the soft ``ulimit -n`` (inherited by the children) to serve ``needed`` sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 1024
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < want:
            print(f"warning: ulimit -n is {new}, below the {want} wanted", file=sys.stderr)


def pick_cores() -> tuple[set[int], set[int]] | None:
    """(server cores, load-generator cores), or None on a single core."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    return {cores[0]}, {cores[1]}


def pin(pid: int, cores: set[int] | None) -> None:
    """Pin every thread of ``pid`` to ``cores`` (threads started later inherit it)."""
    if cores is None:
        return
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(tid), cores)


def busy_percent(seconds: float = 1.0) -> dict[int, float]:
    """How busy each core is (all processes), sampled over ``seconds``: background load."""

    def sample() -> dict[int, tuple[int, int]]:
        times = {}
        for line in Path("/proc/stat").read_text().splitlines():
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(f) for f in fields[:8]]
                times[int(name[3:])] = (sum(ticks), ticks[3] + ticks[4])  # total, idle+iowait
        return times

    before = sample()
    time.sleep(seconds)
    after = sample()
    busy = {}
    for cpu, (total, idle) in after.items():
        total0, idle0 = before.get(cpu, (total, idle))
        if total > total0:
            busy[cpu] = 100.0 * (1 - (idle - idle0) / (total - total0))
    return busy


def core_seconds(core: int | None) -> tuple[float, float]:
    """(total, busy) seconds of ``core`` so far, from /proc/stat; zeros for None."""
    if core is None:
        return 0.0, 0.0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name == f"cpu{core}":
            ticks = [int(f) for f in fields[:8]]
            total = sum(ticks)
            clock = os.sysconf("SC_CLK_TCK")
            return total / clock, (total - ticks[3] - ticks[4]) / clock
    return 0.0, 0.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(lines: Iterable[str], pid: int) -> tuple[dict[str, Any], float]:
    """A load generator's ``RESULT`` (read from its output ``lines``) and the CPU
    seconds process ``pid`` used between its ``MARK start`` and ``MARK end`` lines."""
    start = end = 0.0
    result: dict[str, Any] = {}
    for line in lines:
        if line.startswith("MARK start"):
            start = cpu_seconds(pid)
        elif line.startswith("MARK end"):
            end = cpu_seconds(pid)
        elif line.startswith("RESULT"):
            result = json.loads(line.split(" ", 1)[1])
    if not result:
        raise RuntimeError("the load generator printed no RESULT line")
    return result, end - start


def loadgen_measured(
    scenario: str, port: int, params: str, pid: int, cwd: Path | None = None
) -> tuple[dict[str, Any], float]:
    """Run the load generator's ``scenario`` against ``port`` with ``params`` (JSON);
    its ``RESULT`` and the CPU seconds server ``pid`` used in the measured window."""
    command = [sys.executable, "-m", "benchmarks.loadgen", scenario]
    loadgen = subprocess.Popen(
        [*command, "--port", str(port), "--params", params],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    assert loadgen.stdout is not None
    try:
        return measured(loadgen.stdout, pid)
    finally:
        loadgen.wait(timeout=60)


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid``, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


class LineReader:
    """Lines of a child's stdout, read by a thread, with timeouts."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put("")  # EOF

    def next(self, deadline: float) -> str:
        try:
            return self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError("no answer from the child process in time") from None


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(text[-lines:])


@contextlib.contextmanager
def start_server(
    spec: ServerSpec, cores: set[int] | None, log: Path
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", spec.module, *spec.args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        pin(process.pid, cores)
        assert process.stdout is not None
        line = LineReader(process.stdout).next(time.monotonic() + STARTUP_TIMEOUT)
        if line.startswith("UNAVAILABLE "):
            raise Unavailable(line.removeprefix("UNAVAILABLE "))
        if not line.startswith("PORT "):
            process.wait(5)
            raise RuntimeError(f"{spec.name} did not start (stdout {line!r}):\n{tail(log)}")
        yield process, int(line.split()[1])
    finally:
        stop(process)


def run_one(
    spec: ServerSpec,
    scenario: Scenario,
    params: Params,
    client: str,
    cores: tuple[set[int], set[int]] | None,
    logs: Path,
) -> Measurement:
    """One scenario against one fresh server process."""
    server_cores, client_cores = cores if cores is not None else (None, None)
    log = logs / f"{spec.name}-{scenario.name}.log"
    with start_server(spec, server_cores, log) as (server, port):
        loadgen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.loadgen",
                scenario.name,
                "--port",
                str(port),
                "--params",
                json.dumps(attrs.asdict(params)),
                "--client",
                client,
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            pin(loadgen.pid, client_cores)
            assert loadgen.stdout is not None and loadgen.stdin is not None
            lines = LineReader(loadgen.stdout)
            deadline = time.monotonic() + SCENARIO_TIMEOUT
            core = min(server_cores) if server_cores else None
            marks: dict[str, tuple[float, float, float]] = {}
            rss: dict[str, int] = {}
            while True:
                line = lines.next(deadline)
                if not line:
                    loadgen.wait(5)
                    error = loadgen.stderr.read() if loadgen.stderr else ""
                    raise RuntimeError(
                        f"load generator failed ({scenario.name} on {spec.name}):\n"
                        f"{error[-2000:]}\nserver log:\n{tail(log)}"
                    )
                kind, _, rest = line.partition(" ")
                if kind == "MARK":
                    marks[rest] = (
                        time.perf_counter(),
                        cpu_seconds(server.pid),
                        core_seconds(core)[1],
                    )
                elif kind == "WAIT":
                    time.sleep(SETTLE)
                    rss[rest] = rss_kib(server.pid)
                    loadgen.stdin.write("go\n")
                    loadgen.stdin.flush()
                elif kind == "RESULT":
                    result: dict[str, Any] = json.loads(rest)
                    break
        finally:
            stop(loadgen)
    if scenario.name == "memory":
        return Measurement((rss["loaded"] - rss["baseline"]) / result["value"])
    server_cpu = others = per_cpu = None
    if "start" in marks and "end" in marks:
        (wall0, cpu0, busy0), (wall1, cpu1, busy1) = marks["start"], marks["end"]
        server_cpu = 100.0 * (cpu1 - cpu0) / (wall1 - wall0)
        if core is not None:
            others = max(0.0, 100.0 * (busy1 - busy0) / (wall1 - wall0) - server_cpu)
        if scenario.higher_is_better and cpu1 > cpu0 and "count" in result:
            per_cpu = result["count"] / (cpu1 - cpu0)
    return Measurement(
        result["value"],
        result["client_cpu_pct"],
        server_cpu,
        others,
        result.get("offered_per_s", result.get("offered")),
        result.get("p50_ms"),
        per_cpu,
    )


# -- statistics and reports ------------------------------------------------------------------

# results[scenario][server] = one Measurement (or None: failed) per repeat
Results = dict[str, dict[str, list[Measurement | None]]]


@attrs.frozen
class Summary:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary | None:
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values))


def values_of(runs: Sequence[Measurement | None]) -> list[float]:
    return [m.value for m in runs if m is not None]


def paired_ratios(
    runs: Sequence[Measurement | None], reference: Sequence[Measurement | None]
) -> list[float]:
    """value / reference value, for each repeat where both ran."""
    return [
        m.value / r.value
        for m, r in zip(runs, reference, strict=True)
        if m is not None and r is not None and r.value > 0
    ]


def human(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def spread(summary: Summary | None, fmt: str = "{:.2f}") -> str:
    if summary is None:
        return "-"
    median, low, high = (fmt.format(v) for v in (summary.median, summary.low, summary.high))
    return median if low == high else f"{median} ({low}-{high})"


def summarize(results: Results, servers: Sequence[ServerSpec]) -> list[dict[str, Any]]:
    """One row per server: per scenario, the value's and the paired ratio's summaries."""
    rows = []
    for spec in servers:
        row: dict[str, Any] = {"server": spec.name, "label": spec.label, "scenarios": {}}
        for scenario_name, by_server in results.items():
            runs = by_server.get(spec.name, [])
            reference = by_server.get(REFERENCE, [None] * len(runs))
            value = Summary.of(values_of(runs))
            ratio = Summary.of(paired_ratios(runs, reference))
            cpus = [
                m.client_cpu_pct for m in runs if m is not None and m.client_cpu_pct is not None
            ]
            server_cpus = [
                m.server_cpu_pct for m in runs if m is not None and m.server_cpu_pct is not None
            ]
            others = [
                m.others_cpu_pct for m in runs if m is not None and m.others_cpu_pct is not None
            ]
            offered = [m.offered for m in runs if m is not None and m.offered is not None]
            p50s = [m.p50_ms for m in runs if m is not None and m.p50_ms is not None]
            row["scenarios"][scenario_name] = {
                "values": [None if m is None else m.value for m in runs],
                # per repeat, for ratios of work per server CPU second (metrics_cost)
                "server_cpu_pcts": [None if m is None else m.server_cpu_pct for m in runs],
                "value": None if value is None else attrs.asdict(value),
                "ratio": None if ratio is None else attrs.asdict(ratio),
                "client_cpu_pct_max": max(cpus) if cpus else None,
                "server_cpu_pct_median": statistics.median(server_cpus) if server_cpus else None,
                "others_cpu_pct_max": max(others) if others else None,
                "offered_median": statistics.median(offered) if offered else None,
                "p50_ms_median": statistics.median(p50s) if p50s else None,
                "runs": [None if m is None else attrs.asdict(m) for m in runs],
            }
        rows.append(row)
    return rows


def cell_summary(data: dict[str, Any] | None) -> Summary | None:
    return None if data is None else Summary(**data)


def labelled(rows: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Each row with its label, for :func:`markdown_table`."""
    return [(row["label"], row) for row in rows]


def paced_cell(row: dict[str, Any], scenario: Scenario) -> str:
    """A paced scenario's offered load and median latency."""
    data = row["scenarios"].get(scenario.name) or {}
    offered, p50 = data.get("offered_median"), data.get("p50_ms_median")
    return "-" if offered is None or p50 is None else f"{offered:,.0f}/s, p50 {p50:.2f} ms"


def cpu_cell(row: dict[str, Any], scenario: Scenario) -> str:
    """The load generator's, the server's and the others' CPU in a scenario."""
    data = row["scenarios"].get(scenario.name) or {}
    return " / ".join(
        "-" if data.get(key) is None else f"{data[key]:.0f}%"
        for key in ("client_cpu_pct_max", "server_cpu_pct_median", "others_cpu_pct_max")
    )


def markdown(
    rows: list[dict[str, Any]],
    scenarios: Sequence[Scenario],
    header: dict[str, Any],
    unavailable: dict[str, str],
) -> str:
    ref_label = next((s.label for s in SERVERS if s.name == REFERENCE), REFERENCE)
    out = [
        "# triows benchmarks",
        "",
        f"Command: `{header['command']}`  ",
        f"Date: {header['date']}; {header['machine']}; Python {header['python']}; "
        f"client: {header['client']}; {header['repeats']} repeat(s), "
        f"servers in a rotated order each repeat; "
        + (
            "server and load generator pinned to separate cores."
            if header["pinned"]
            else "not pinned (one core)."
        ),
        "",
        f"Ratios are to the reference ({ref_label}) in the same repeat "
        "(value / reference value, paired per repeat), shown as median (min-max) over "
        "the repeats; the reference's row gives its absolute median. Memory is "
        "absolute: the server's RSS growth over the idle connections / their number; "
        "so are the paced scenarios' p99 latencies (ms, at the same offered load for "
        "every server: see the paced runs' table).",
        "",
        "| server | " + " | ".join(s.title for s in scenarios) + " |",
        "|---|" + "---|" * len(scenarios),
    ]
    for row in rows:
        cells = []
        for scenario in scenarios:
            data = row["scenarios"].get(scenario.name)
            value = cell_summary(data and data["value"])
            ratio = cell_summary(data and data["ratio"])
            if scenario.absolute:
                unit = f" {scenario.unit}"
                cells.append("-" if value is None else spread(value, "{:.1f}") + unit)
            elif row["server"] == REFERENCE and value is not None:
                cells.append(f"1.00 (about {human(value.median)} {scenario.unit})")
            else:
                cells.append(spread(ratio))
        out.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    out += [
        "",
        "Absolute values, median (min-max):",
        "",
        "| server | " + " | ".join(f"{s.title} ({s.unit})" for s in scenarios) + " |",
        "|---|" + "---|" * len(scenarios),
    ]
    for row in rows:
        cells = []
        for scenario in scenarios:
            data = row["scenarios"].get(scenario.name)
            cells.append(spread(cell_summary(data and data["value"]), "{:,.1f}"))
        out.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    out += peer_ratios(rows, scenarios)
    out += per_cpu_table(rows, scenarios, PEERS, TRIOWS_ROWS)
    paced = [s for s in scenarios if s.name.endswith("-latency")]
    if paced:
        out += markdown_table(
            "Paced runs: the offered load (what the load generator sent per second, "
            "median) and the median latency (ms, median over the repeats):",
            paced,
            labelled(rows),
            paced_cell,
        )
    timed = [s for s in scenarios if s.name != "memory"]
    if timed:
        out += markdown_table(
            "CPU during the measured windows, in % of one core: load generator (max over "
            "runs) / server (median) / anything else on the server's core (max over runs; "
            "other processes and interrupts: a high value means a noisy measurement):",
            timed,
            labelled(rows),
            cpu_cell,
        )
    if unavailable:
        out += ["", "Not run:", ""]
        out += [f"- {name}: {reason}" for name, reason in unavailable.items()]
    return "\n".join(out) + "\n"


#: triows' servers compared with these peers in the markdown's second table.
PEERS = ("websockets-asyncio", "websockets-uvloop")
TRIOWS_ROWS = ("triows-native", "triows-native-try-send", "triows-native-hub")


def peer_ratios(rows: list[dict[str, Any]], scenarios: Sequence[Scenario]) -> list[str]:
    """Lines of a table: each triows native row against each peer, paired per repeat.

    A cell is triows' value / the peer's (throughput: above 1 is better) or the
    peer's / triows' (latency and memory: above 1 is better too), median over the
    repeats where both ran.
    """
    by_name = {row["server"]: row for row in rows}
    peers = [name for name in PEERS if name in by_name]
    ours = [name for name in TRIOWS_ROWS if name in by_name]
    if not peers or not ours:
        return []

    def cell(name: str, scenario: Scenario) -> str:
        values = []
        for peer in peers:
            mine = by_name[name]["scenarios"].get(scenario.name, {}).get("values", [])
            theirs = by_name[peer]["scenarios"].get(scenario.name, {}).get("values", [])
            pairs = [(a, b) for a, b in zip(mine, theirs, strict=False) if a and b]
            ratios = [a / b if scenario.higher_is_better else b / a for a, b in pairs]
            values.append(f"{statistics.median(ratios):.2f}" if ratios else "-")
        return " / ".join(values)

    return markdown_table(
        "triows against the asyncio peers (same run, paired per repeat; above 1 means "
        "triows is better: faster, or less latency or memory), against "
        + " / ".join(by_name[p]["label"] for p in peers)
        + ":",
        scenarios,
        [(by_name[name]["label"], name) for name in ours],
        cell,
    )


def plot(rows: list[dict[str, Any]], scenarios: Sequence[Scenario], path: Path) -> bool:
    """Bar charts (median, min-max whiskers) per scenario; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return False
    figure, axes = plt.subplots(1, len(scenarios), figsize=(4.2 * len(scenarios), 3.6))
    axes_list = list(axes) if len(scenarios) > 1 else [axes]
    labels = [row["label"] for row in rows][::-1]
    for ax, scenario in zip(axes_list, scenarios, strict=True):
        key = "value" if scenario.absolute else "ratio"
        medians, errors_low, errors_high = [], [], []
        for row in rows[::-1]:
            summary = cell_summary(row["scenarios"].get(scenario.name, {}).get(key))
            medians.append(0.0 if summary is None else summary.median)
            errors_low.append(0.0 if summary is None else summary.median - summary.low)
            errors_high.append(0.0 if summary is None else summary.high - summary.median)
        ax.barh(labels, medians, xerr=[errors_low, errors_high], color="#4c72b0", capsize=3)
        if scenario.absolute:
            ax.set_title(f"{scenario.title} ({scenario.unit})\nlower is better", fontsize=9)
        else:
            ax.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
            ax.set_title(f"{scenario.title}\nratio to raw ASGI on hypercorn", fontsize=9)
        ax.tick_params(labelsize=8)
        if ax is not axes_list[0]:
            ax.set_yticklabels([])
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def versions() -> dict[str, str]:
    found = {}
    for name in (
        "triows",
        "hypercorn",
        "trio",
        "wsproto",
        "starlette",
        "quart-trio",
        "trio-websocket",
        "websockets",
        "picows",
        "uvloop",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}"


# -- main ------------------------------------------------------------------------------------


def _selected(
    parser: argparse.ArgumentParser, known: Sequence[Named], value: str | None, what: str
) -> list[Named]:
    """The items of ``known`` named in the comma-separated ``value`` (all if None)."""
    if not value:
        return list(known)
    wanted = value.split(",")
    unknown = set(wanted) - {item.name for item in known}
    if unknown:
        parser.error(f"unknown {what}: {', '.join(sorted(unknown))}")
    return [item for item in known if item.name in wanted]


def _warn_if_busy(background: dict[int, float]) -> None:
    if any(load > 10 for load in background.values()):
        print(
            "warning: the machine is busy before the run ("
            + ", ".join(f"cpu{c} {load:.0f}%" for c, load in sorted(background.items()))
            + "): results will be noisy",
            file=sys.stderr,
        )


def _measure(
    spec: ServerSpec,
    scenario: Scenario,
    params: Params,
    client: str,
    cores: tuple[set[int], set[int]] | None,
    logs: Path,
    progress: str,
    results: Results,
    unavailable: dict[str, str],
) -> None:
    """One measurement into ``results``; a server that cannot run goes to ``unavailable``."""
    try:
        measurement: Measurement | None = run_one(spec, scenario, params, client, cores, logs)
    except Unavailable as exc:
        unavailable[spec.name] = str(exc)
        print(f"{progress} {spec.name}: unavailable: {exc}", flush=True)
        return
    except Exception as exc:
        measurement = None
        print(f"{progress} {scenario.name} {spec.name}: FAILED: {exc}")
    results[scenario.name][spec.name].append(measurement)
    if measurement is not None:
        cpu = measurement.client_cpu_pct
        print(
            f"{progress} {scenario.name:<10} {spec.name:<20} "
            f"{measurement.value:>12,.1f} {scenario.unit}"
            + ("" if cpu is None else f"  (client CPU {cpu:.0f}%)"),
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test (< 60 s)")
    parser.add_argument("--repeats", type=int, help="repeats (default 3; 1 with --quick)")
    parser.add_argument(
        "--servers",
        help="comma-separated server names (default all): " + ", ".join(s.name for s in SERVERS),
    )
    parser.add_argument(
        "--scenarios",
        help="comma-separated scenarios (default all): " + ", ".join(s.name for s in SCENARIOS),
    )
    parser.add_argument("--client", choices=("picows", "websockets"), default=default_client())
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    argv_list = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv_list)

    servers = _selected(parser, SERVERS, args.servers, "server(s)")
    scenarios = _selected(parser, SCENARIOS, args.scenarios, "scenario(s)")
    repeats = args.repeats or (1 if args.quick else 3)
    stem = "quick" if args.quick else "latest"

    raise_fd_limit(max(s.full.connections for s in SCENARIOS))
    cores = pick_cores()
    if cores is not None:
        os.sched_setaffinity(0, cores[1])  # the harness stays off the server's core
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)

    background = busy_percent()
    _warn_if_busy(background)

    results: Results = {s.name: {spec.name: [] for spec in servers} for s in scenarios}
    unavailable: dict[str, str] = {}
    started = time.monotonic()
    for repeat in range(repeats):
        shift = repeat % len(servers)
        order = servers[shift:] + servers[:shift]
        for scenario in scenarios:
            params = scenario.quick if args.quick else scenario.full
            for spec in order:
                if spec.name not in unavailable:
                    progress = f"[{repeat + 1}/{repeats}]"
                    _measure(
                        spec,
                        scenario,
                        params,
                        args.client,
                        cores,
                        logs,
                        progress,
                        results,
                        unavailable,
                    )

    ran = [s for s in servers if s.name not in unavailable]
    for by_server in results.values():
        for name in unavailable:
            by_server.pop(name, None)
    rows = summarize(results, ran)
    header = {
        "command": " ".join([".venv/bin/python -m benchmarks.run", *map(shlex.quote, argv_list)]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "python": platform.python_version(),
        "client": args.client,
        "repeats": repeats,
        "pinned": cores is not None,
        "seconds": round(time.monotonic() - started, 1),
        "background_busy_pct": {f"cpu{c}": round(v) for c, v in sorted(background.items())},
        "versions": versions(),
    }
    table = markdown(rows, scenarios, header, unavailable)
    print()
    print(table)
    (args.out / f"{stem}.md").write_text(table)
    (args.out / f"{stem}.json").write_text(
        json.dumps(
            {"header": header, "rows": rows, "unavailable": unavailable, "reference": REFERENCE},
            indent=2,
        )
        + "\n"
    )
    if not args.no_plot and plot(rows, scenarios, args.out / f"{stem}.png"):
        print(f"plot: {args.out / f'{stem}.png'}")
    print(f"results: {args.out / f'{stem}.md'} ({header['seconds']} s)")
    failed = any(m is None for by in results.values() for runs in by.values() for m in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
