"""What a trio live client receives on a topic: messages, gaps, presence changes."""

from __future__ import annotations

import math
from typing import Any

import attrs
import trio

__all__ = ["Gap", "LiveError", "Message", "PresenceChange", "Topic", "TopicEvent"]


@attrs.frozen
class Message:
    """One message of ``topic``, at ``position`` (resume after it with ``since=position``)."""

    topic: str
    position: str | None
    data: Any


@attrs.frozen
class Gap:
    """Messages of ``topic`` were missed: the stream continues live after ``position``.

    ``reason``: ``"history"`` (a resume the server's history no longer covers),
    ``"overflow"`` (this client fell too far behind), ``"invalid_position"``.
    The application resyncs (reloads its state) when it sees one.
    """

    topic: str
    position: str | None
    reason: str


@attrs.frozen
class PresenceChange:
    """The member list of ``topic`` changed (the first one is the snapshot: all ``joined``)."""

    topic: str
    members: dict[str, Any]
    joined: dict[str, Any]
    left: dict[str, Any]


TopicEvent = Message | Gap | PresenceChange


class LiveError(Exception):
    """The server refused a request: ``code`` is the protocol's error code."""

    def __init__(self, frame: dict[str, Any]) -> None:
        self.code: str = str(frame.get("code"))
        self.frame = frame
        super().__init__(
            f"{frame.get('action') or 'request'} refused ({self.code}): {frame.get('message')}"
        )


class Topic:
    """A followed topic: iterate it for :class:`Message`, :class:`Gap` and
    :class:`PresenceChange` events, in order.

    Only one task should iterate it.  Its buffer holds ``max_buffer`` events; when
    it is full the client stops reading the connection (every topic waits), so a
    slow consumer slows the server's sends and, past the server's buffer, gets a
    :class:`Gap`, never a silent loss.
    """

    def __init__(
        self, name: str, since: str | None, presence: bool, max_buffer: int, last: int = 0
    ) -> None:
        self.name = name
        #: The position of the last message received: where a resume starts.
        self.position = since
        self.presence = presence
        #: How many of the topic's newest messages the first subscription asks for.
        self.last = last
        #: ``True``/``False`` after a resume (the server's ``recovered``), else None.
        self.recovered: bool | None = None
        #: Presence: ``{key: info}`` of the members (with ``presence=True``).
        self.members: dict[str, Any] = {}
        self.active = True
        #: Set at the first ``subscribed`` (or refusal) from the server.
        self.confirmed = trio.Event()
        self.error: LiveError | None = None
        self._send, self._receive = trio.open_memory_channel[TopicEvent](
            math.inf if max_buffer == 0 else max_buffer
        )

    async def put(self, event: TopicEvent) -> None:
        """Queue ``event`` for the consumer (waits while its buffer is full)."""
        if isinstance(event, Message):
            self.position = event.position
        await self._send.send(event)

    def __aiter__(self) -> Topic:
        return self

    async def __anext__(self) -> TopicEvent:
        return await self._receive.receive()

    async def receive(self) -> TopicEvent:
        """The next event (waits for it)."""
        return await self._receive.receive()

    def __repr__(self) -> str:
        return f"<Topic {self.name!r} position={self.position!r} active={self.active}>"
