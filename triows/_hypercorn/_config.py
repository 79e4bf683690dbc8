"""The hypercorn Config whose servers get triows' fixes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hypercorn.config import Config

if TYPE_CHECKING:
    from ._timers import IdleTimeouts, Keepalive

__all__ = ["TriowsConfig", "ours"]


class TriowsConfig(Config):
    """A hypercorn Config that turns on triows' fixes for the streams it serves."""

    #: The server's keepalive (pings and pong deadlines); None: hypercorn's pings.
    triows_keepalive: Keepalive | None = None
    #: The server's idle timeouts; None: hypercorn's task per connection.
    triows_idle: IdleTimeouts | None = None


def ours(stream: Any) -> bool:
    """Whether ``stream`` (or any object with a ``config``) is served by triows."""
    return isinstance(stream.config, TriowsConfig)
