"""The ASGI edge: the App under any ASGI server, and ASGI apps under a Transport."""

from ._adapter import ASGITransport, Pumps
from ._bridge import serve_asgi_websocket

__all__ = ["ASGITransport", "Pumps", "serve_asgi_websocket"]
