"""The markdown tables of the harness's report: one shape for every table."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["markdown_table"]


def markdown_table(
    intro: str,
    scenarios: Sequence[Any],
    rows: Iterable[tuple[str, Any]],
    cell: Callable[[Any, Any], str],
) -> list[str]:
    """Lines of one table after a blank line and its ``intro``: a column per scenario
    (its ``title``), a line per ``(label, row)``, each cell ``cell(row, scenario)``."""
    out = [
        "",
        intro,
        "",
        "| server | " + " | ".join(s.title for s in scenarios) + " |",
        "|---|" + "---|" * len(scenarios),
    ]
    for label, row in rows:
        out.append(f"| {label} | " + " | ".join(cell(row, s) for s in scenarios) + " |")
    return out
