"""``App(metrics=True)``: the core's counters as Prometheus metrics, through prometheus-client.

The core counts in plain ints (:mod:`triows._metrics._counters`, the Hub's
``hub.stats``); this module never runs per message.  When Prometheus scrapes
``GET /metrics`` the exporter adds what each int grew by since the last
scrape to prometheus-client's own metrics, then renders them.  Going through
prometheus-client's metric objects (rather than a collector that reads the
ints) is what makes several workers work: with ``PROMETHEUS_MULTIPROC_DIR``
set (``triows run --workers N`` sets it), those objects write to files in that
directory, every worker copies its counters there once a second, and a scrape
of any worker shows the sum of all of them (prometheus-client's multiprocess
mode).  The handshake histogram is observed once per handshake, since a
histogram takes single observations.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import trio

from .._connection._deflate import STATS as DEFLATE
from .._http import Request, Response
from ._counters import Counters

try:
    import prometheus_client
    from prometheus_client import multiprocess
except ImportError as exc:  # pragma: no cover - exercised by test_metrics in a subprocess
    raise ImportError(
        "App(metrics=True) needs prometheus-client, which is not installed: "
        "pip install 'triows[metrics]'"
    ) from exc

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["SYNC_INTERVAL", "PrometheusExporter"]

#: With several workers, how often each copies its counters to the shared directory.
SYNC_INTERVAL: Final = 1.0
#: The handshake histogram's buckets, in seconds.
HANDSHAKE_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: hub.stats field -> the ``policy`` label of triows_hub_dropped_total.
DROP_POLICIES: Final = {"dropped_oldest": "drop_oldest", "dropped_disconnect": "disconnect"}


class PrometheusExporter:
    """The App's metrics in one process, or in a worker of several (multiprocess mode)."""

    def __init__(self, counters: Counters, hub: Callable[[], Hub | None]) -> None:
        self.counters = counters
        self._hub = hub
        #: Set: every worker writes here and a scrape reads all of it.
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        # In multiprocess mode the metrics live in the directory's files, not in
        # a registry: unregistered objects, one scrape collecting every file.
        registry = None if self.multiprocess_dir else prometheus_client.CollectorRegistry()
        self.registry = registry
        route, by_outcome = ["route"], ["route", "outcome"]
        self.active = prometheus_client.Gauge(
            "triows_connections_active",
            "Open WebSocket connections, by route pattern.",
            route,
            registry=registry,
            multiprocess_mode="livesum",
        )
        counter = prometheus_client.Counter
        self.connections = counter(
            "triows_connections",
            "WebSocket handshakes answered, by route pattern and outcome (accepted, refused).",
            by_outcome,
            registry=registry,
        )
        self.received = counter(
            "triows_messages_received", "Messages the views received.", route, registry=registry
        )
        self.sent = counter("triows_messages_sent", "Messages sent.", route, registry=registry)
        self.bytes_received = counter(
            "triows_bytes_received",
            "Payload bytes the views received (UTF-8 for text).",
            route,
            registry=registry,
        )
        self.bytes_sent = counter(
            "triows_bytes_sent", "Payload bytes sent (UTF-8 for text).", route, registry=registry
        )
        self.close_codes = counter(
            "triows_close_codes",
            "WebSocket connections ended, by close code and by who closed first "
            "(client or server).",
            ["code", "by"],
            registry=registry,
        )
        self.handshake = prometheus_client.Histogram(
            "triows_handshake_seconds",
            "From the handshake request reaching the App to its answer (101 or a refusal).",
            route,
            buckets=HANDSHAKE_BUCKETS,
            registry=registry,
        )
        self.hub_published = counter(
            "triows_hub_published", "hub.publish() calls.", registry=registry
        )
        self.hub_delivered = counter(
            "triows_hub_delivered",
            "Messages handed to this process's subscriptions.",
            registry=registry,
        )
        self.hub_dropped = counter(
            "triows_hub_dropped",
            "Messages a subscription dropped, by overflow policy.",
            ["policy"],
            registry=registry,
        )
        self.deflate_messages = counter(
            "triows_deflate_messages",
            "Messages compressed for permessage-deflate clients (once per message and "
            "window size, however many clients receive it).",
            registry=registry,
        )
        self.deflate_bytes = counter(
            "triows_deflate_bytes",
            "Payload bytes of the compressed messages, before (input) and after (output).",
            ["stage"],
            registry=registry,
        )
        #: (metric, labels) -> the value already added to the Prometheus metric.
        self._synced: dict[tuple[int, tuple[str, ...]], int] = {}
        counters.observe_handshake = self._observe_handshake

    def _observe_handshake(self, route: str, seconds: float) -> None:
        self.handshake.labels(route).observe(seconds)

    # -- the ints, into prometheus-client ------------------------------------------------

    def _add(self, metric: prometheus_client.Counter, labels: tuple[str, ...], value: int) -> None:
        """Add what ``value`` grew by since the last sync to ``metric``'s ``labels``."""
        key = (id(metric), labels)
        child = metric.labels(*labels) if labels else metric  # the series exists from 0
        grown = value - self._synced.get(key, 0)
        if grown > 0:
            child.inc(grown)
            self._synced[key] = value

    def sync(self) -> None:
        """Copy the core's counters into the Prometheus metrics (not per message)."""
        for route, c in list(self.counters.routes.items()):
            self.active.labels(route).set(c.active)
            self._add(self.connections, (route, "accepted"), c.accepted)
            self._add(self.connections, (route, "refused"), c.refused)
            self._add(self.received, (route,), c.received)
            self._add(self.sent, (route,), c.sent)
            self._add(self.bytes_received, (route,), c.received_bytes)
            self._add(self.bytes_sent, (route,), c.sent_bytes)
        for (code, by), count in list(self.counters.close_codes.items()):
            self._add(self.close_codes, (str(code), by), count)
        self._add(self.deflate_messages, (), DEFLATE.messages)
        self._add(self.deflate_bytes, ("input",), DEFLATE.input_bytes)
        self._add(self.deflate_bytes, ("output",), DEFLATE.output_bytes)
        hub = self._hub()
        stats = None if hub is None else getattr(hub, "stats", None)
        if stats is not None:
            self._add(self.hub_published, (), stats.published)
            self._add(self.hub_delivered, (), stats.delivered)
            for field, policy in DROP_POLICIES.items():
                self._add(self.hub_dropped, (policy,), getattr(stats, field))

    def render(self) -> bytes:
        """The exposition text: this process's metrics, or every worker's."""
        self.sync()
        if self.multiprocess_dir:
            registry = prometheus_client.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return prometheus_client.generate_latest(registry)
        assert self.registry is not None
        # The App's metrics, then the process's default registry (process_*
        # metrics, and the application's own prometheus-client metrics).
        return prometheus_client.generate_latest(self.registry) + prometheus_client.generate_latest(
            prometheus_client.REGISTRY
        )

    async def endpoint(self, request: Request) -> Response:
        """The ``GET /metrics`` view."""
        return Response(self.render(), media_type=prometheus_client.CONTENT_TYPE_LATEST)

    # -- several workers -------------------------------------------------------------------

    async def run(self) -> None:
        """With several workers: sync every SYNC_INTERVAL seconds, for the other
        workers' scrapes; at the end, a last sync and this worker's gauges removed."""
        if not self.multiprocess_dir:
            return
        try:
            while True:
                self.sync()
                await trio.sleep(SYNC_INTERVAL)
        finally:
            self.sync()
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
