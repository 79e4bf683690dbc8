"""A short soak in CI (issue 4): scripts/soak.py with 500 cycles and 200 idle connections.

The server runs in a child process; see scripts/soak.py for the full run (10,000
cycles, 2,000 idle connections) and what is checked: no leaked task, RSS back
within 5 % of the baseline, every idle connection still served.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "soak.py"


def _soak() -> Any:
    spec = importlib.util.spec_from_file_location("soak", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("backend", ["hypercorn", "native"])
async def test_short_soak(backend: str) -> None:
    figures = await _soak().run(cycles=500, idle=200, backend=backend, log=lambda _: None)
    assert figures["failures"] == [], figures
    assert figures["idle_served"] == 200
    assert figures["leaked_tasks"] <= 0
