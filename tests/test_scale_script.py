"""benchmarks/scale.py, small: the script opens, broadcasts and closes, with no failure.

A test of the script, not a speed assertion: 500 idle connections to a real
``triows run`` process, from client processes bound to 127.0.0.x source addresses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_scale_script_opens_broadcasts_and_closes(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    command = [sys.executable, "-m", "benchmarks.scale", "--connections", "500"]
    done = subprocess.run(
        [*command, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (result,) = json.loads(out.read_text())
    assert result["opened"] == result["subscribers"] == result["received"] == 500
    assert result["closed_cleanly"] == 500 and result["failures"] == 0
    assert result["kib_per_connection"] > 0 and result["to_last_client"] > 0
    assert "| 500 | 1 | 500 |" in done.stdout
