"""ASGI types shared by the core and the adapters.

The core speaks ASGI events to an abstract connection: a ``receive`` callable that
returns the next event and a ``send`` callable that takes one.  Events stay plain
``dict`` objects because that is the ASGI wire format every server already builds;
converting them to classes would add an allocation per message for nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
