"""What a Hub's backend provides (memory, Redis), and the engine's failure."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

import trio

if TYPE_CHECKING:
    from ._hub import Hub
    from ._presence import PresenceChanges
    from ._subscription import Subscription

__all__ = ["Backend", "HubUnavailable"]


class HubUnavailable(Exception):
    """The hub's engine (e.g. Redis) could not be reached.

    Raised by ``publish()`` (the message may or may not have been published:
    see :meth:`Hub.publish`) and by the other calls that must reach the engine.
    """


class Backend(Protocol):
    """How a Hub moves messages: in this process, or through an engine like Redis."""

    async def run(self, hub: Hub, *, task_status: trio.TaskStatus[None]) -> None:
        """Run for the hub's lifetime; call ``task_status.started()`` once usable."""

    async def publish(self, topic: str, message: Any) -> str:
        """Send ``message`` to every subscriber of ``topic`` (all processes); its position."""

    async def watch(self, topic: str) -> None:
        """A first local subscriber appeared for ``topic``."""

    async def start(self, subscription: Subscription, since: str | None, last: int) -> None:
        """Call ``subscription.begin()``: its position, and the history after
        ``since`` (or, without ``since``, the topic's ``last`` newest messages)."""

    def presence(self, topic: str, key: str, info: Any) -> AbstractAsyncContextManager[None]:
        """Hold ``key`` in ``topic`` for the block."""

    async def members(self, topic: str) -> dict[str, Any]:
        """``{key: info}`` of ``topic``, across processes."""

    def presence_changes(self, topic: str) -> AbstractAsyncContextManager[PresenceChanges]:
        """Batched changes of ``topic``'s members for the block."""

    @property
    def connected(self) -> bool:
        """Whether the engine can be reached now (see :attr:`Hub.connected`)."""
