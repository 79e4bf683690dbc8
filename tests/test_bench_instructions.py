"""benchmarks.instructions: instructions per operation under valgrind, a smoke test.

Runs with few operations (``--quick``) under a real valgrind (scripts/test installs
Debian's) and checks the counts are well formed.  Never a speed assertion: only
that the App, which does strictly more per connection than the raw app (routing,
the WebSocket object, its cancel scope), is counted as doing more, and that a
handshake through real hypercorn is counted with hypercorn's own work (millions of
instructions).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def instructions(tmp_path: Path, servers: str, scenario: str) -> tuple[dict[str, float], str]:
    """benchmarks.instructions --quick for ``servers`` and ``scenario``: counts and output."""
    assert shutil.which("valgrind"), "valgrind is missing: run the README's test command"
    out = tmp_path / "instructions.json"
    command = [sys.executable, "-m", "benchmarks.instructions", "--quick"]
    command += ["--servers", servers, "--scenarios", scenario, "--out", str(out)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    assert data["servers"] == servers.split(",")
    assert f"| {scenario} |" in done.stdout
    counts: dict[str, float] = data["results"][scenario]
    return counts, done.stdout


def test_instructions_per_handshake_are_counted(tmp_path: Path) -> None:
    counts, _ = instructions(tmp_path, "raw-asgi,triows", "handshake")
    assert 10_000 < counts["raw-asgi"] < counts["triows"] < 10_000_000, counts


def test_instructions_per_handshake_through_hypercorn_are_counted(tmp_path: Path) -> None:
    counts, _ = instructions(tmp_path, "raw-asgi", "hypercorn-handshake")
    assert 1_000_000 < counts["raw-asgi"] < 20_000_000, counts
