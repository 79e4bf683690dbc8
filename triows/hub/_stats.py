"""The hub's counters: plain integers, incremented on the delivery path, read at scrape time."""

from __future__ import annotations

import attrs

__all__ = ["HubStats"]


@attrs.define
class HubStats:
    """What a :class:`~triows.Hub` did since it was created, in this process.

    Every field is a plain ``int`` that only grows; the hub increments them on its
    delivery path (no lock, no allocation) and a metrics exporter reads them
    whenever it likes. With Redis, each process counts its own work:

    - ``published``: successful ``hub.publish()`` calls on this hub;
    - ``delivered``: messages handed to this process's subscriptions (one
      message reaching 3 local subscribers counts 3);
    - ``dropped_oldest``: messages discarded by ``on_overflow="drop_oldest"``;
    - ``dropped_disconnect``: messages discarded when a subscription overflowed
      under ``on_overflow="disconnect"`` (its buffered messages and the one that
      did not fit);
    - ``disconnected``: subscriptions ended by ``on_overflow="disconnect"``;
    - ``lagged``: subscriptions stopped by an overflow with history on
      (:class:`~triows.hub.Lagged`: nothing lost, the subscriber resumes).
    """

    published: int = 0
    delivered: int = 0
    dropped_oldest: int = 0
    dropped_disconnect: int = 0
    disconnected: int = 0
    lagged: int = 0

    @property
    def dropped(self) -> int:
        """Messages dropped under either overflow policy."""
        return self.dropped_oldest + self.dropped_disconnect
