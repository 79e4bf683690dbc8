"""One live connection: its subscriptions, presence and publishes.

Tasks: the connection's view reads client frames in order (a subscribe is
confirmed before the next frame is read, so a client's publish after its
subscribe reaches its own subscription); each subscribed topic has one task
forwarding the hub's messages (and, with presence, one more for the member
list), under a cancel scope that ``unsubscribe`` cancels.  Every task is a
child of the view's nursery: when the client leaves, all of them end.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, cast

import trio

from .._exceptions import WebSocketDisconnect
from ..hub import HubUnavailable, Lagged
from ._frames import MessageFrames, gap_frame
from ._hooks import LiveAction, LiveIdentity, call_hook
from ._protocol import (
    PROTOCOL_VERSION,
    ProtocolError,
    Publish,
    Subscribe,
    Unsubscribe,
    decode,
    encode,
)

if TYPE_CHECKING:
    from .._connection._websocket import WebSocket
    from ..hub import Subscription
    from ._route import LiveRoute

__all__ = ["LiveSession"]

logger = logging.getLogger("triows")

#: The longest a client's publish may take (it is shielded from cancellation).
PUBLISH_TIMEOUT = 10.0
#: While the hub is unreachable, a topic's resume or presence is retried after
#: these delays (seconds), doubling.
RETRY_FIRST = 0.1
RETRY_MAX = 2.0


class LiveSession:
    """The server's side of one live connection (see docs/protocol.md)."""

    def __init__(self, ws: WebSocket, route: LiveRoute, identity: LiveIdentity | None) -> None:
        self.ws = ws
        self.route = route
        self.identity = identity
        self._dedup_key = "" if identity is None else identity.key
        self._topics: dict[str, trio.CancelScope] = {}

    async def run(self) -> None:
        """Serve the connection until the client leaves; every topic task ends with it."""
        identity = self.identity
        welcome: dict[str, Any] = {
            "type": "welcome",
            "protocol": PROTOCOL_VERSION,
            "identity": None if identity is None else {"key": identity.key, "info": identity.info},
        }
        await self.ws.send(encode(welcome))
        async with trio.open_nursery() as nursery:
            try:
                while True:
                    raw = await self.ws.receive()
                    try:
                        await self._handle(raw, nursery)
                    except ProtocolError as error:
                        await self.ws.send(error.frame())
            except WebSocketDisconnect:
                return  # the client left: the topic tasks are cancelled below
            finally:
                nursery.cancel_scope.cancel()

    async def _handle(self, raw: str, nursery: trio.Nursery) -> None:
        message = decode(raw)
        if isinstance(message, Publish):
            await self._publish(message)
        elif isinstance(message, Subscribe):
            await self._subscribe(message, nursery)
        else:
            await self._unsubscribe(message)

    async def _check(self, topic: str, action: LiveAction, ident: str | None = None) -> None:
        authorize = self.route.authorize
        if authorize is None:
            allowed = action != "publish"
        else:
            allowed = bool(await call_hook(authorize, self.ws, topic, action))
        if not allowed:
            raise ProtocolError(
                "forbidden",
                f"{action} refused for this topic",
                action=action,
                topic=topic,
                id=ident,
            )

    # -- publish ----------------------------------------------------------------------

    async def _publish(self, message: Publish) -> None:
        topic, ident = message.topic, message.id
        await self._check(topic, "publish", ident)
        data = await self.route.prepare(self.ws, message)
        hub = self.route.hub

        async def publish() -> str | None:
            return await hub.publish(topic, data)

        # Shielded, bounded: a draining worker cancelling this view finishes the
        # publish it began and records its id, so the client's resend elsewhere
        # is recognised.
        result: tuple[str | None, bool] | None = None
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + PUBLISH_TIMEOUT
            try:
                result = await self.route.publishes.publish_once((self._dedup_key, ident), publish)
            except HubUnavailable as exc:
                raise ProtocolError(
                    "unavailable", str(exc), action="publish", topic=topic, id=ident
                ) from None
        if result is None:
            raise ProtocolError(
                "unavailable",
                f"the publish took more than {PUBLISH_TIMEOUT} s; send it again",
                action="publish",
                topic=topic,
                id=ident,
            )
        position, duplicate = result
        ack: dict[str, Any] = {"type": "ack", "id": ident, "topic": topic, "position": position}
        if duplicate:
            ack["duplicate"] = True
        await self.ws.send(encode(ack))

    # -- subscriptions ----------------------------------------------------------------

    async def _subscribe(self, message: Subscribe, nursery: trio.Nursery) -> None:
        topic = message.topic
        if topic in self._topics:
            raise ProtocolError(
                "already_subscribed",
                "this connection follows this topic already; unsubscribe first",
                action="subscribe",
                topic=topic,
            )
        if len(self._topics) >= self.route.max_topics:
            raise ProtocolError(
                "too_many_topics",
                f"a connection follows at most {self.route.max_topics} topics",
                action="subscribe",
                topic=topic,
            )
        if message.since is not None and message.last:
            raise ProtocolError(
                "bad_message",
                "give since (resume after a position) or last (the recent messages), not both",
                action="subscribe",
                topic=topic,
            )
        await self._check(topic, "subscribe")
        if message.presence:
            await self._check(topic, "presence")
        scope = self._topics[topic] = trio.CancelScope()
        try:
            await nursery.start(self._follow, message, scope)
        except BaseException:
            if self._topics.get(topic) is scope:
                del self._topics[topic]
            raise

    async def _unsubscribe(self, message: Unsubscribe) -> None:
        scope = self._topics.pop(message.topic, None)
        if scope is None:
            raise ProtocolError(
                "not_subscribed",
                "this connection does not follow this topic",
                action="unsubscribe",
                topic=message.topic,
            )
        scope.cancel()
        await self.ws.send(encode({"type": "unsubscribed", "topic": message.topic}))

    async def _follow(
        self, message: Subscribe, scope: trio.CancelScope, task_status: trio.TaskStatus[None]
    ) -> None:
        """Forward ``message.topic`` to the client until unsubscribed or gone."""
        topic = message.topic
        try:
            with scope:
                async with AsyncExitStack() as stack:
                    sub = await self._open(stack, topic, message.since, message.last or 0)
                    recovered = None if message.since is None else sub.recovered
                    await self.ws.send(
                        encode(
                            {
                                "type": "subscribed",
                                "topic": topic,
                                "position": sub.position,
                                "recovered": recovered,
                            }
                        )
                    )
                    task_status.started()
                    async with trio.open_nursery() as nursery:
                        if message.presence:
                            nursery.start_soon(self._presence, topic)
                        await self._keep_forwarding(topic, sub)
        except WebSocketDisconnect:
            return  # the view's receive sees the departure too
        finally:
            if self._topics.get(topic) is scope:
                del self._topics[topic]

    async def _open(
        self, stack: AsyncExitStack, topic: str, since: str | None, last: int
    ) -> Subscription:
        subscribing = self.route.hub.subscribe(topic, since=since, last=last)
        try:
            return await stack.enter_async_context(subscribing)
        except ValueError as exc:
            raise ProtocolError(
                "invalid_position", str(exc), action="subscribe", topic=topic
            ) from None
        except HubUnavailable as exc:
            raise ProtocolError("unavailable", str(exc), action="subscribe", topic=topic) from None

    async def _keep_forwarding(self, topic: str, sub: Subscription) -> None:
        """Forward ``sub``; when it lags (or the hub interrupts it after a Redis
        outage), resume from where it stopped: a gap only if the history no
        longer holds what it missed.  While the hub cannot be reached, retry."""
        since = await self._forward(topic, sub)
        delay = RETRY_FIRST
        while True:
            try:
                async with self.route.hub.subscribe(topic, since=since) as sub:
                    delay = RETRY_FIRST
                    if not sub.recovered:
                        await self._gap(topic, sub.position, "overflow")
                    since = await self._forward(topic, sub)
            except HubUnavailable as exc:
                logger.debug("live: resuming %r failed (%s); retry in %.1f s", topic, exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def _forward(self, topic: str, sub: Subscription) -> str:
        """Send ``sub``'s messages until it lags; return the position to resume after.

        Through ``Subscription.forward``: what is buffered when this task wakes
        goes out as one batch, and while it waits an idle connection takes a
        message's frame straight from the publishing task (no task switch per
        subscriber where the server can write at once).  Each frame is shared by
        this route's clients.
        """
        target = MessageFrames(self.ws, topic, self.route.frame, sub)
        try:
            # forward() calls only try_send() and send_many() on its target.
            await sub.forward(cast("WebSocket", target))
        except Lagged as lagged:
            return lagged.position

    async def _gap(self, topic: str, position: str | None, reason: str) -> None:
        await self.ws.send(gap_frame(topic, position, reason))

    async def _presence(self, topic: str) -> None:
        """Hold this client's presence in ``topic`` and send the member list;
        while the hub cannot be reached (a Redis outage), retry, then send a
        fresh snapshot."""
        delay = RETRY_FIRST
        while True:
            try:
                await self._presence_once(topic)
            except HubUnavailable as exc:
                logger.debug("live: presence in %r failed (%s); retry in %.1f s", topic, exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def _presence_once(self, topic: str) -> None:
        hub: Any = self.route.hub
        async with AsyncExitStack() as stack:
            if self.identity is not None:
                await stack.enter_async_context(
                    hub.presence(topic, self.identity.key, self.identity.info)
                )
            changes = await stack.enter_async_context(hub.presence_changes(topic))
            members = await hub.members(topic)
            await self.ws.send(encode({"type": "presence", "topic": topic, "members": members}))
            async for change in changes:
                await self.ws.send(
                    encode(
                        {
                            "type": "presence_change",
                            "topic": topic,
                            "joined": change.joined,
                            "left": change.left,
                        }
                    )
                )
