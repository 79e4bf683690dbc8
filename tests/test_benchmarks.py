"""The benchmark harness (benchmarks/): a smoke test, never a speed assertion.

Runs two tiny scenarios (echo and fan-out, ``--quick``) for every triows server,
a peer and the reference in a subprocess, as ``python -m benchmarks.run`` would,
and checks the harness produces well-formed result rows (the load generator
fails a run whose subscribers miss a delivery).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run import Measurement, Summary, paired_ratios

ROOT = Path(__file__).resolve().parent.parent
#: The reference, a peer, and every way triows serves the benchmark (the Redis one
#: starts its own redis-server).
SERVERS = (
    "raw-asgi",
    "websockets-trio",
    "triows-plain-hypercorn",
    "triows",
    "triows-native",
    "triows-native-try-send",
    "triows-hub",
    "triows-native-hub",
    "triows-native-hub-metrics",
    "triows-hub-redis",
)


def test_ratios_are_paired_within_each_repeat() -> None:
    runs = [Measurement(20.0), None, Measurement(30.0), Measurement(12.0)]
    reference = [Measurement(10.0), Measurement(10.0), None, Measurement(12.0)]
    assert paired_ratios(runs, reference) == [2.0, 1.0]
    assert Summary.of([2.0, 1.0, 4.0]) == Summary(2.0, 1.0, 4.0)
    assert Summary.of([]) is None


def test_harness_produces_a_result_row(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--quick",
        "--servers",
        ",".join(SERVERS),
        "--scenarios",
        "echo,fanout",
        "--repeats",
        "1",
        "--out",
        str(tmp_path),
        "--no-plot",
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stdout + done.stderr

    data = json.loads((tmp_path / "quick.json").read_text())
    assert data["reference"] == "raw-asgi"
    rows = {row["server"]: row for row in data["rows"]}
    assert set(rows) == set(SERVERS)
    for row in rows.values():
        for scenario in ("echo", "fanout"):
            result = row["scenarios"][scenario]
            (value,) = result["values"]
            # None: the run failed; benchmarks.run printed why.
            assert value is not None, (row["server"], scenario, done.stdout[-4000:])
            assert value > 0, (row["server"], scenario)
            assert result["value"]["median"] == value
            assert result["client_cpu_pct_max"] >= 0
            assert result["ratio"]["median"] > 0
    assert rows["raw-asgi"]["scenarios"]["echo"]["ratio"]["median"] == 1.0

    table = (tmp_path / "quick.md").read_text()
    assert "| server | echo msg/s | fan-out deliveries/s |" in table
    assert re.search(
        r"^\| raw ASGI app, hypercorn -k trio \| 1\.00 \(about \S+ msg/s\) "
        r"\| 1\.00 \(about \S+ deliveries/s\) \|$",
        table,
        re.M,
    )
    assert re.search(
        r"^\| triows on hypercorn \(triows\.serve\) \| \d+\.\d\d \| \d+\.\d\d \|$", table, re.M
    )
    # The work per server CPU second: per repeat in the JSON, and its table.
    for row in rows.values():
        (run,) = row["scenarios"]["fanout"]["runs"]
        assert run["per_cpu_second"] is None or run["per_cpu_second"] > 0
    assert "Per second of the server's own CPU time" in table
    assert re.search(r"^\| raw ASGI app, hypercorn -k trio \| (1\.00 \(about|-)", table, re.M)


async def test_publish_stall_measures_both_backends() -> None:
    # benchmarks/publish_stall.py, tiny: it runs and measures something on each backend.
    from benchmarks.publish_stall import measure

    for backend in ("hypercorn", "native"):
        stall = await measure(backend, 10)
        assert stall.subscribers == 10 and stall.publish > 0 and stall.last_client > 0


def test_paced_latency_scenarios_and_peer_table(tmp_path: Path) -> None:
    # The paced scenarios: p99 latencies (ms) at the offered rate, reported with
    # the rate, the p50, and triows' ratio to the asyncio peer.
    command = [sys.executable, "-m", "benchmarks.run", "--quick", "--repeats", "1"]
    command += ["--servers", "raw-asgi,websockets-asyncio,triows-native"]
    command += ["--scenarios", "echo-latency,fanout-latency", "--out", str(tmp_path)]
    done = subprocess.run(
        [*command, "--no-plot"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "quick.json").read_text())
    for row in data["rows"]:
        for scenario in ("echo-latency", "fanout-latency"):
            result = row["scenarios"][scenario]
            assert result["value"]["median"] > 0  # p99, ms
            assert 0 < result["p50_ms_median"] <= result["value"]["median"]
            assert result["offered_median"] > 0
    table = (tmp_path / "quick.md").read_text()
    assert re.search(
        r"^\| triows native \(backend=\"native\"\) \| \d+\.\d\d \| \d+\.\d\d \|$", table, re.M
    )
    assert re.search(
        r"^\| raw ASGI app, hypercorn -k trio \| [\d,]+/s, p50 [\d.]+ ms \|", table, re.M
    )


def test_typed_echo_reports_the_ratio() -> None:
    # benchmarks/typed_echo.py, tiny: both routes answer and the ratios are printed.
    command = [sys.executable, "-m", "benchmarks.typed_echo", "--seconds", "0.3"]
    command += ["--connections", "3", "--repeats", "1", "--rpc"]
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert re.search(r"^/typed +[\d,]+ msg/s", result.stdout, re.M)
    assert re.search(r"^typed / echo, server CPU time per message: \d+\.\d{3}", result.stdout, re.M)
    assert re.search(r"^rpc / echo, server CPU time per message: \d+\.\d{3}", result.stdout, re.M)


def test_hub_history_reports_every_scenario() -> None:
    # benchmarks/hub_history.py, tiny, with Redis: each scenario prints its line.
    command = [sys.executable, "-m", "benchmarks.hub_history", "--quick", "--redis"]
    command += ["--repeats", "1"]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    for line in (
        r"resume catch-up, 100 messages, memory: [\d.]+ ms",
        r"resume catch-up, 100 messages, redis: [\d.]+ ms",
        r"to a WebSocket client: [\d.]+ ms",
        r"presence, 50 members and watchers, .*memory: CPU [\d.]+ %",
        r"presence, 50 members and watchers, .*redis: CPU [\d.]+ %",
        r"publish to 10 subscribers, memory: .* on/off [\d.]+",
        r"publish to 10 subscribers, redis: .* on/off [\d.]+",
    ):
        assert re.search(line, result.stdout), (line, result.stdout)


def test_live_fanout_reports_both_routes() -> None:
    # benchmarks/live_fanout.py, tiny: both routes deliver everything and the ratio is printed.
    command = [sys.executable, "-m", "benchmarks.live_fanout", "--clients", "3"]
    command += ["--messages", "20", "--repeats", "1"]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert re.search(r"^  /plain +server CPU +[\d.]+ us/delivery", result.stdout, re.M)
    assert re.search(r"^  /live +server CPU +[\d.]+ us/delivery", result.stdout, re.M)
    assert re.search(r"live / plain server CPU per delivery, paired: [\d.]+x", result.stdout)


def test_compression_reports_one_compression_per_broadcast() -> None:
    # benchmarks/compression.py, tiny: every run delivers, the deflate subscribers
    # negotiate without server context takeover, and one broadcast is one compression.
    command = [sys.executable, "-m", "benchmarks.compression", "--counts", "2,5"]
    command += ["--broadcasts", "10", "--repeats", "1"]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    for count in (2, 5):
        assert re.search(
            rf"this tree: {count} deflate: [\d.]+ ms CPU per broadcast, [-\d.]+ KiB RSS per "
            r"connection, 1\.00 compressions per broadcast \(negotiated: permessage-deflate; "
            r"server_no_context_takeover",
            result.stdout,
        ), result.stdout
        assert f"this tree: {count} plain:" in result.stdout
    assert re.search(r"^5 deflate / 5 plain: [\d.]+x", result.stdout, re.M)


@pytest.mark.parametrize(
    ("scenario", "unit", "head"),
    [
        ("handshakes", "handshake", ""),
        ("handshakes", "handshake", "firefox"),
        ("echo", "message", ""),
    ],
)
def test_handshake_cpu_compares_a_revision_with_the_tree(
    scenario: str, unit: str, head: str
) -> None:
    # benchmarks/handshake_cpu.py, tiny: HEAD against this tree, one pair (handshakes
    # also with a browser's request head, written by the raw-socket client).
    command = [sys.executable, "-m", "benchmarks.handshake_cpu", "--before", "HEAD"]
    command += ["--pairs", "1", "--seconds", "0.3", "--scenario", scenario, "--head", head]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    for side in ("before", "after"):
        assert re.search(rf"^pair 0 {side} +[\d,]+/s +\d+\.\d us CPU$", result.stdout, re.M)
        assert re.search(
            rf"^median {side} +\d+\.\d us of server CPU per {unit}$", result.stdout, re.M
        )
    assert re.search(r"^after / before: \d+\.\d\d$", result.stdout, re.M)


def test_a_quick_window_lasts_until_it_has_counted_work(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that gets no CPU for the whole (0.3 s) quick window counted 0
    # (issue: a quick run under load measured 0 msg/s); the window waits for work.
    from benchmarks import loadgen

    counted = {"n": 0}

    async def late_work(p: loadgen.Params) -> dict[str, float]:
        loop = asyncio.get_running_loop()
        loop.call_later(p.duration + 0.2, counted.__setitem__, "n", 3)
        return await loadgen.Window.measure(lambda: counted["n"], p)

    quick = asyncio.run(late_work(loadgen.Params(duration=0.1, min_count=1)))
    assert quick["count"] == 3 and quick["value"] > 0
    assert quick["seconds"] >= 0.3
    # The full sizes (min_count 0): the window is the duration, work or not.
    counted["n"] = 0
    full = asyncio.run(late_work(loadgen.Params(duration=0.1)))
    assert full["count"] == 0 and full["seconds"] < 0.3
    # No work at all: a loud failure, not a 0.
    monkeypatch.setattr(loadgen, "WINDOW_TIMEOUT", 0.2)
    counted["n"] = 0
    with pytest.raises(RuntimeError, match="counted 0 operations"):
        asyncio.run(loadgen.Window.measure(lambda: 0, loadgen.Params(duration=0.1, min_count=1)))


def test_only_the_quick_sizes_wait_for_work() -> None:
    from benchmarks.run import SCENARIOS

    for scenario in SCENARIOS:
        assert scenario.full.min_count == 0, scenario.name
        expected = 1 if scenario.name in ("echo", "handshakes") else 0
        assert scenario.quick.min_count == expected, scenario.name
