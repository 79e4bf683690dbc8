"""The ASGI edge: the App under any ASGI server, and ASGI apps under a Transport."""

from ._adapter import ASGITransport
from ._bridge import serve_asgi_websocket
from ._pumps import Pumps

__all__ = ["ASGITransport", "Pumps", "serve_asgi_websocket"]
