"""The harness's table of work per second of the server's own CPU time.

On a machine shared with other work, a server's wall-clock rate depends on how
much of its core it got; its operations per CPU second do much less.  For
every throughput scenario (echo, fan-out, handshakes) the harness records the
operations counted in the measured window over the server process's CPU time
in that window (user + system, from ``/proc/PID/stat``, 10 ms ticks: about 1 %
over a window of a second).  This table gives them as ratios, paired within
each repeat like the wall-clock ones: to the reference, and triows' rows to
the asyncio peers.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .servers import REFERENCE
from .tables import markdown_table

if TYPE_CHECKING:
    from .run import Scenario

__all__ = ["per_cpu_table"]


def per_cpu_values(row: dict[str, Any], scenario: str) -> list[float | None]:
    """Operations per server CPU second, per repeat (None: not measured)."""
    runs = row["scenarios"].get(scenario, {}).get("runs", [])
    return [None if run is None else run.get("per_cpu_second") for run in runs]


def paired_median(mine: list[float | None], theirs: list[float | None]) -> str:
    ratios = [a / b for a, b in zip(mine, theirs, strict=False) if a and b]
    if not ratios:
        return "-"
    low, median, high = min(ratios), statistics.median(ratios), max(ratios)
    return f"{median:.2f}" if low == high else f"{median:.2f} ({low:.2f}-{high:.2f})"


def per_cpu_table(
    rows: list[dict[str, Any]],
    scenarios: Sequence[Scenario],
    peers: Sequence[str],
    ours: Sequence[str],
) -> list[str]:
    """Lines of the table (none when no throughput scenario ran)."""
    timed = [s for s in scenarios if s.higher_is_better]
    by_name = {row["server"]: row for row in rows}
    if not timed or REFERENCE not in by_name:
        return []
    reference = by_name[REFERENCE]
    present_peers = [p for p in peers if p in by_name]

    def cell(row: dict[str, Any], scenario: Scenario) -> str:
        mine = per_cpu_values(row, scenario.name)
        if row["server"] == REFERENCE:
            values = [v for v in mine if v]
            return f"1.00 (about {statistics.median(values):,.0f}/CPU s)" if values else "-"
        text = paired_median(mine, per_cpu_values(reference, scenario.name))
        if row["server"] in ours and present_peers:
            against = [
                paired_median(mine, per_cpu_values(by_name[p], scenario.name)).split(" ")[0]
                for p in present_peers
            ]
            text += "; " + " / ".join(against)
        return text

    return markdown_table(
        "Per second of the server's own CPU time (operations in the measured window / "
        "the server process's CPU seconds in it; less sensitive to other work on the "
        "machine than the wall-clock rates): ratio to the reference, paired per repeat, "
        "median (min-max); for the reference, its absolute median"
        + (
            "; for triows' rows, then the ratio to "
            + " / ".join(by_name[p]["label"] for p in present_peers)
            if present_peers
            else ""
        )
        + ":",
        timed,
        [(row["label"], row) for row in rows],
        cell,
    )
