"""The trio live client: one connection that comes back, and what rides on it."""

from __future__ import annotations

import itertools
import json
import logging
import random
import secrets
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import attrs
import trio

from ..hub._positions import check_last
from ._dispatch import dispatch
from ._topic import LiveError, Topic

if TYPE_CHECKING:
    from trio_websocket import WebSocketConnection

__all__ = ["LiveClient", "State", "connect"]

logger = logging.getLogger("triows.client")

State = Literal["connecting", "open", "reconnecting", "closed"]

#: Close codes after which the client does not come back: the server refused it.
FINAL_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008, 1009, 1010})
#: How long closing a connection waits for the server's close frame (s).
DISCONNECT_TIMEOUT = 2.0
#: A publish or subscribe refused with "unavailable" is sent again after this (s).
UNAVAILABLE_RETRY = 1.0


def require_trio_websocket() -> Any:
    try:
        import trio_websocket
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise ImportError(
            "triows.client needs trio-websocket: pip install 'triows[client]'"
        ) from exc
    return trio_websocket


def backoff(attempt: int, first: float, most: float) -> float:
    """The wait before reconnection ``attempt`` (0-based): doubling from ``first``
    up to ``most``, half of it random so clients dropped together spread out."""
    ceiling = min(most, first * 2.0**attempt)
    return ceiling / 2 + random.random() * ceiling / 2


@attrs.define
class _Publish:
    id: str
    topic: str
    data: Any
    done: trio.Event = attrs.field(factory=trio.Event)
    position: str | None = None
    duplicate: bool = False
    error: LiveError | None = None


class LiveClient:
    """A live connection that reconnects, resumes its topics and resends its publishes.

    Made by :func:`connect`; everything it runs lives in that block's nursery.
    """

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None,
        min_delay: float,
        max_delay: float,
        connect_timeout: float,
        on_state: Callable[[State, dict[str, Any]], None] | None,
    ) -> None:
        self.url = url
        self.ssl_context = ssl_context
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.connect_timeout = connect_timeout
        self.on_state = on_state
        #: "connecting", "open", "reconnecting" or "closed".
        self.state: State = "closed"
        #: What the server's identify hook said of this client (``{key, info}`` or None).
        self.identity: dict[str, Any] | None = None
        #: How many times a connection was established (1 after the first).
        self.connections = 0
        self.topics: dict[str, Topic] = {}
        self._outbox: dict[str, _Publish] = {}
        self._ids = (f"{secrets.token_hex(9)}-{n}" for n in itertools.count(1))
        self._ws: WebSocketConnection | None = None
        self._nursery: trio.Nursery | None = None
        self._state_changed = trio.Event()
        self._final: LiveError | None = None

    # -- the application's side ----------------------------------------------------

    async def publish(self, topic: str, data: Any) -> str | None:
        """Publish ``data`` (JSON-able) to ``topic``; return its position once published.

        Queued while offline and sent once connected; resent after a reconnection
        until acknowledged (the server publishes one id once).  Raises LiveError
        if the server refuses it (``forbidden``, ``invalid_data``...).  Cancelled,
        it stops waiting: the message may or may not have been published.
        """
        entry = _Publish(next(self._ids), topic, data)
        self._outbox[entry.id] = entry
        try:
            await self._send_publish(entry)
            await entry.done.wait()
        finally:
            self._outbox.pop(entry.id, None)
        if entry.error is not None:
            raise entry.error
        return entry.position

    @asynccontextmanager
    async def subscribe(
        self,
        topic: str,
        *,
        since: str | None = None,
        last: int = 0,
        presence: bool = False,
        max_buffer: int = 1000,
    ) -> AsyncIterator[Topic]:
        """Follow ``topic`` for the block: from after ``since`` if given, else from now.

        ``last`` (without ``since``): first the topic's ``last`` newest messages
        that the server's history holds, then live ones; asked for once, at the
        first subscription (a reconnection resumes from the topic's position and
        does not replay them again).  Enters once the server confirmed the
        subscription (waiting for a connection if there is none); raises
        LiveError if it refused, ValueError at once for a negative ``last`` or
        one given with ``since``.  After every reconnection the topic resumes
        from its last position.  Leaving the block unsubscribes.
        """
        if topic in self.topics:
            raise RuntimeError(f"subscribe({topic!r}): this client follows it already")
        check_last(since, last)
        followed = self.topics[topic] = Topic(topic, since, presence, max_buffer, last)
        try:
            await self._send_subscribe(followed)
            await followed.confirmed.wait()
            if followed.error is not None:
                raise followed.error
            yield followed
        finally:
            followed.active = False
            if self.topics.get(topic) is followed:
                del self.topics[topic]
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await self._send({"type": "unsubscribe", "topic": topic})

    async def wait_state(self, state: State) -> None:
        """Return once the client is in ``state`` (for example ``"open"``)."""
        while self.state != state:
            await self._state_changed.wait()

    # -- the connection --------------------------------------------------------------

    def _set_state(self, state: State, **detail: Any) -> None:
        if state == self.state and state != "reconnecting":
            return
        self.state = state
        self._state_changed.set()
        self._state_changed = trio.Event()
        if self.on_state is not None:
            self.on_state(state, detail)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, and reconnect after every drop, until cancelled or refused for good."""
        trio_websocket = require_trio_websocket()
        task_status.started()
        try:
            await self._reconnect_forever(trio_websocket)
        finally:
            self._set_state("closed", code=1000, reason="closed by the client")

    async def _reconnect_forever(self, trio_websocket: Any) -> None:
        attempt = 0
        while True:
            self._set_state("connecting", attempt=attempt)
            code, reason = 1006, ""
            try:
                async with trio_websocket.open_websocket_url(
                    self.url,
                    self.ssl_context,
                    connect_timeout=self.connect_timeout,
                    disconnect_timeout=DISCONNECT_TIMEOUT,
                ) as ws:
                    if await self._welcomed(ws):
                        attempt = 0
                        await self._session(ws)
            except trio_websocket.ConnectionClosed as exc:
                if exc.reason is not None:
                    code, reason = exc.reason.code, exc.reason.reason or ""
            except trio_websocket.ConnectionRejected as exc:
                code, reason = 1006, f"HTTP {exc.status_code}"
                if 400 <= exc.status_code < 500 and exc.status_code not in (408, 429):
                    code = 1008
            except (trio_websocket.HandshakeError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self._ws = None
            if code in FINAL_CLOSE_CODES:
                self._set_state("closed", code=code, reason=reason)
                raise LiveError(
                    {"code": "refused", "message": f"closed with {code} {reason}".strip()}
                )
            delay = backoff(attempt, self.min_delay, self.max_delay)
            attempt += 1
            logger.debug(
                "live client: %s closed (%d %s); retry in %.2f s", self.url, code, reason, delay
            )
            self._set_state("reconnecting", code=code, reason=reason, delay=delay, attempt=attempt)
            await trio.sleep(delay)

    async def _welcomed(self, ws: WebSocketConnection) -> bool:
        """Wait for the server's ``welcome``; False (connection closed) if none comes."""
        welcome: Any = None
        with trio.move_on_after(self.connect_timeout):
            welcome = json.loads(await ws.get_message())
        if not isinstance(welcome, dict) or welcome.get("type") != "welcome":
            logger.warning("live client: %s sent no welcome frame: not a live route?", self.url)
            await ws.aclose(1002, "expected a welcome frame")
            return False
        self.identity = welcome.get("identity")
        return True

    async def _session(self, ws: WebSocketConnection) -> NoReturn:
        """One connection: resume every topic, resend the outbox, read until it drops."""
        self._ws = ws
        self.connections += 1
        self._set_state("open", identity=self.identity)
        for topic in list(self.topics.values()):
            await self._send_subscribe(topic)
        for entry in list(self._outbox.values()):
            await self._send_publish(entry)
        # The nursery holds the delayed resends; the departure is raised outside it
        # (unwrapped) for run() to read its close code.
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                closed = await self._read(ws)
            finally:
                self._nursery = None
                nursery.cancel_scope.cancel()
        raise closed

    async def _read(self, ws: WebSocketConnection) -> Exception:
        """Dispatch the server's frames until the connection closes; return its exception."""
        trio_websocket = require_trio_websocket()
        try:
            while True:
                frame = json.loads(await ws.get_message())
                await dispatch(self, frame)
        except trio_websocket.ConnectionClosed as exc:
            return exc  # type: ignore[no-any-return]

    async def _send(self, frame: dict[str, Any]) -> None:
        """Send ``frame`` if connected; if not (or if it drops meanwhile), do nothing:
        what must survive a drop is sent again at the next connection."""
        ws = self._ws
        if ws is None:
            await trio.lowlevel.checkpoint()
            return
        trio_websocket = require_trio_websocket()
        with suppress(trio_websocket.ConnectionClosed):
            await ws.send_message(json.dumps(frame, separators=(",", ":")))

    async def _send_subscribe(self, topic: Topic) -> None:
        frame: dict[str, Any] = {"type": "subscribe", "topic": topic.name, "since": topic.position}
        if topic.last and topic.position is None and not topic.confirmed.is_set():
            frame["last"] = topic.last  # the first subscription only: later ones resume
        if topic.presence:
            frame["presence"] = True
        await self._send(frame)

    async def _send_publish(self, entry: _Publish) -> None:
        await self._send(
            {"type": "publish", "topic": entry.topic, "id": entry.id, "data": entry.data}
        )

    def retry_later(self, send: Callable[[], Any]) -> None:
        """Run ``send`` after UNAVAILABLE_RETRY on this connection (for ``unavailable``)."""
        nursery = self._nursery
        if nursery is None:
            return  # no connection: the next one sends everything again

        async def later() -> None:
            await trio.sleep(UNAVAILABLE_RETRY)
            await send()

        nursery.start_soon(later)

    def acknowledged(self, frame: dict[str, Any]) -> None:
        entry = self._outbox.get(frame.get("id", ""))
        if entry is not None:
            entry.position = frame.get("position")
            entry.duplicate = bool(frame.get("duplicate"))
            entry.done.set()

    def publish_refused(self, frame: dict[str, Any]) -> None:
        entry = self._outbox.get(frame.get("id", ""))
        if entry is None:
            return
        if frame.get("code") == "unavailable":
            self.retry_later(lambda: self._send_publish(entry))
            return
        entry.error = LiveError(frame)
        entry.done.set()

    async def resubscribe(self, topic: Topic) -> None:
        await self._send_subscribe(topic)


@asynccontextmanager
async def connect(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    min_delay: float = 0.25,
    max_delay: float = 10.0,
    connect_timeout: float = 10.0,
    on_state: Callable[[State, dict[str, Any]], None] | None = None,
) -> AsyncIterator[LiveClient]:
    """Open a live client of the route at ``url`` (``ws://`` or ``wss://``) for the block.

    The connection runs in a task of the block's own nursery: it connects,
    reconnects after every drop (backoff from ``min_delay`` doubling to
    ``max_delay`` seconds, with jitter; a server's 1012 or 1001 included),
    resumes every topic from its last position and resends unacknowledged
    publishes.  Entering does not wait for the connection (see
    :meth:`LiveClient.wait_state`).  Leaving the block cancels that task and
    closes the connection.  A server refusing the client for good (close 1008,
    an HTTP 4xx at the handshake) raises LiveError out of the block.
    ``on_state(state, detail)`` is called at every change of state.
    """
    require_trio_websocket()
    client = LiveClient(
        url,
        ssl_context=ssl_context,
        min_delay=min_delay,
        max_delay=max_delay,
        connect_timeout=connect_timeout,
        on_state=on_state,
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The connection task's refusal alone: raised as itself, not in a group.
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], LiveError):
            raise group.exceptions[0] from None
        raise
