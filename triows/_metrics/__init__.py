"""Metrics: plain integer counters the core keeps, and their Prometheus exporter.

``_counters`` is all the core imports: ints incremented on the connection's
paths, no prometheus-client.  ``_prometheus`` (imported only by
``App(metrics=True)``) turns them into Prometheus metrics at scrape time, in
one process or across workers (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

from ._counters import Counters, RouteCounters, payload_size

__all__ = ["Counters", "RouteCounters", "payload_size"]
