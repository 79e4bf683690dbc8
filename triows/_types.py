"""ASGI's types: scopes, events, ``receive``, ``send`` and applications.

Used at the ASGI edges only: the App's ASGI entry point and lifespan, its HTTP
side, the ASGI adapter (``_asgi/``), mounted ASGI apps and the TestClient, and
``WebSocket.receive_event()``/``send_event()`` (ASGI-shaped events, built only
when a view asks for them).  The WebSocket core talks to the typed
``Transport`` (``_connection/_transport.py``) instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
