"""``App(metrics=True)``: counters for the App's routes, and the route that serves them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._counters import Counters

if TYPE_CHECKING:
    from .._app import App

__all__ = ["serve_metrics"]


def serve_metrics(app: App, path: str) -> None:
    """Count ``app``'s WebSocket traffic and serve it as Prometheus metrics at ``path``.

    Called by ``App.__init__``, before any route exists.  Raises ImportError
    naming ``triows[metrics]`` without prometheus-client.
    """
    from ._prometheus import PrometheusExporter

    counters = app.websockets.counters = Counters()
    exporter = PrometheusExporter(counters, lambda: app.hub)
    app.route(path)(exporter.endpoint)

    @app.on_startup
    async def sync_metrics() -> None:
        app.nursery.start_soon(exporter.run)
