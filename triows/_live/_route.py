"""``App.live_route``: the live endpoint's settings, its view, and its JS client."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from .._connection._frames import Broadcast
from .._connection._websocket import WebSocket
from .._exceptions import BadMessage
from .._http import Request, Response
from .._typed import codec_for, to_builtins
from ._dedup import PublishIds, PublishLog
from ._hooks import Authorize, BeforePublish, Identify, LiveIdentity, call_hook
from ._protocol import ProtocolError, Publish, message_frame
from ._redis_dedup import RedisPublishLog
from ._session import LiveSession

if TYPE_CHECKING:
    from .._app import App
    from ..hub import Hub

__all__ = ["CLIENT_FILE", "LiveOptions", "LiveRoute", "client_script"]

#: The JS client, shipped in the package and served next to each live route.
CLIENT_FILE = "triows-live.js"
#: How many recent message frames (any topic) the route keeps for its clients to share.
FRAME_CACHE_SIZE = 4096


@cache
def client_script() -> str:
    """The browser client's source (read once from the package)."""
    return (resources.files(__package__) / "static" / CLIENT_FILE).read_text(encoding="utf-8")


class LiveOptions(TypedDict, total=False):
    """The options of :meth:`App.live_route <triows.App.live_route>`."""

    authorize: Authorize | None
    identify: Identify | None
    max_topics: int
    message_type: Any
    before_publish: BeforePublish | None


class LiveRoute:
    """A live endpoint: topics, resume, presence and client publishes as JSON
    frames over one WebSocket (docs/protocol.md).

    Made by :meth:`App.live_route <triows.App.live_route>`, which registers the
    WebSocket route at ``path`` and the JS client at ``client_path``.  Options:

    - ``authorize(ws, topic, action)`` (sync or async; ``action`` is
      ``"subscribe"``, ``"publish"`` or ``"presence"``) returns whether the
      client may; a refusal is an ``error`` frame with code ``forbidden``.
      Without it, clients may subscribe and follow presence, not publish.
    - ``identify(ws)`` (sync or async), called before the handshake is
      accepted, returns the client's :class:`~triows.LiveIdentity` (its
      presence key and info; the scope of its publish ids), or None for an
      anonymous client, which follows presence without being listed.  It may
      refuse the connection with ``await ws.reject(403)``.
    - ``max_topics`` (default 100): topics one connection may follow.
    - ``message_type``: a typed message type (a msgspec Struct, a tagged
      union...) every client publish must fit, else ``invalid_data``; what
      is published is the checked value as plain JSON.
    - ``before_publish(ws, topic, data)`` (sync or async) returns what is
      published for a client's ``data`` (after ``message_type``): to stamp the
      sender, a time...

    A client's publish is published once per id: ids seen in the last 10
    minutes get the first publish's position back, ``duplicate: true``.  With a
    Redis hub the ids are kept in Redis, shared by every worker and host; in
    memory, at most 100,000 per process.
    Every exception of a hook is a server error: the connection closes with
    1011 (before the handshake: 500) and the error is logged.
    """

    @classmethod
    def install(
        cls, app: App, path: str, hub: Hub | None, **options: Unpack[LiveOptions]
    ) -> LiveRoute:
        """Register a live route on ``app`` (what ``App.live_route`` does)."""
        hub = app.hub if hub is None else hub
        if hub is None or hub is not app.hub:
            raise ValueError(
                "live_route() needs the App's own hub, run for the App's lifetime: "
                "App(hub=hub), then app.live_route(path, hub)"
            )
        live = cls(path, hub, **options)
        if hub.url is not None:
            # Publish ids shared by every process on this Redis (workers, hosts).
            shared = RedisPublishLog(hub.url)
            live.publishes = shared

            async def start_publish_ids() -> None:
                await app.nursery.start(shared.run)

            app.on_startup(start_publish_ids)
        app.websocket_route(path, auto_accept=False, caught_close_codes=all)(live.serve)
        app.route(live.client_path)(live.serve_client)
        return live

    def __init__(
        self,
        path: str,
        hub: Hub,
        *,
        authorize: Authorize | None = None,
        identify: Identify | None = None,
        max_topics: int = 100,
        message_type: Any = None,
        before_publish: BeforePublish | None = None,
    ) -> None:
        if max_topics < 1:
            raise ValueError(f"live_route(max_topics={max_topics}): a client needs one topic")
        #: The WebSocket path, and where its JS client is served.
        self.path = path
        self.client_path = path.rstrip("/") + "/" + CLIENT_FILE
        self.hub = hub
        self.authorize = authorize
        self.identify = identify
        self.max_topics = max_topics
        #: Client publishes must fit this type (a typed message type), if given.
        self.message_type = message_type
        self._codec = None if message_type is None else codec_for(message_type)
        self.before_publish = before_publish
        #: The recent publish ids, for deduplication: this process's, or Redis's
        #: when the hub is on Redis.
        self.publishes: PublishIds = PublishLog()
        # (topic, position) -> frame, oldest first: every subscriber in this
        # process sends one message's frame, encoded once, even when subscribers
        # are at different positions (a burst, a replay).
        self._frames: dict[tuple[str, str], tuple[Any, Broadcast]] = {}

    def frame(self, topic: str, position: str | None, value: Any) -> Broadcast:
        """The ``message`` frame of ``value`` at ``position``, shared by this route's clients.

        Cached by topic and position, checked against the value too: a position
        reused for another message (a Redis that lost its last writes on a
        restart) never gets the old message's frame.
        """
        if position is None:
            return Broadcast(message_frame(topic, position, value))
        frames = self._frames
        key = (topic, position)
        cached = frames.get(key)
        if cached is not None and (cached[0] is value or cached[0] == value):
            return cached[1]
        broadcast = Broadcast(message_frame(topic, position, value))
        frames[key] = (value, broadcast)
        if len(frames) > FRAME_CACHE_SIZE:
            del frames[next(iter(frames))]
        return broadcast

    async def prepare(self, ws: WebSocket, message: Publish) -> Any:
        """The data of a client publish as it is published: checked against
        ``message_type`` (ProtocolError ``invalid_data`` if it does not fit) and
        turned into plain JSON values, then passed through ``before_publish``."""
        data = message.data
        codec = self._codec
        if codec is not None:
            try:
                data = to_builtins(codec.convert(data))
            except BadMessage as exc:
                raise ProtocolError(
                    "invalid_data", str(exc), action="publish", topic=message.topic, id=message.id
                ) from None
        if self.before_publish is not None:
            data = await call_hook(self.before_publish, ws, message.topic, data)
        return data

    async def serve(self, ws: WebSocket, **path_parameters: str) -> None:
        """The route's view: identify the client, accept, run its session."""
        identity: LiveIdentity | None = None
        if self.identify is not None:
            identity = await call_hook(self.identify, ws)
            if identity is not None and not isinstance(identity, LiveIdentity):
                raise TypeError(
                    f"live_route(identify=...) returned {type(identity).__name__}; "
                    "return a triows.LiveIdentity(key, info) or None"
                )
        async with ws:  # accepts; a client's departure (any code) ends the view quietly
            await LiveSession(ws, self, identity).run()

    async def serve_client(self, request: Request, **path_parameters: str) -> Response:
        """The JS client, for a ``<script src=...>`` tag."""
        return Response(
            client_script(),
            headers={"cache-control": "no-cache"},
            media_type="text/javascript; charset=utf-8",
        )
