"""benchmarks.instructions: instructions per operation under valgrind, a smoke test.

Runs the handshake scenario with few operations (``--quick``) for the raw ASGI app
and the triows App, under a real valgrind (scripts/test installs Debian's), and
checks the counts are well formed.  Never a speed assertion: only that the App,
which does strictly more per connection than the raw app (routing, the WebSocket
object, its cancel scope), is counted as doing more.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_instructions_per_handshake_are_counted(tmp_path: Path) -> None:
    assert shutil.which("valgrind"), "valgrind is missing: run the README's test command"
    out = tmp_path / "instructions.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--quick",
        "--servers",
        "raw-asgi,triows",
        "--scenarios",
        "handshake",
        "--out",
        str(out),
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    counts = data["results"]["handshake"]
    assert data["servers"] == ["raw-asgi", "triows"]
    assert 10_000 < counts["raw-asgi"] < counts["triows"] < 10_000_000, counts
    assert "| handshake |" in done.stdout
