"""The ASGI adapter: one WebSocket connection of an ASGI server as a Transport.

This is the only place a receive pump lives.  ASGI reports a client's departure
as a ``websocket.disconnect`` event queued *behind* the messages the app has not
read, so somebody must keep reading while the view does something else.

While the view is reading (or sending), it calls the server's ``receive()``
itself: no task and no queue between them.  When a view has been away from the
connection for a whole tick of the App's one :class:`Pumps` task (seen away at two
looks 50 ms apart: it waits on a hub subscription, a timer, a database), that task
starts a receive pump for it in the App's nursery: :meth:`ASGITransport.pump` reads the server's events into a small
:class:`~triows._serving._inbox.Inbox` and reports the departure as soon as it
reaches that event, even while the view is busy.  A connection keeps its pump
until it ends.  A departure queued behind more unread messages than the inbox
holds is seen when the view reads again, or when a send fails.

Without the App's lifespan (no nursery to start pumps in), every connection
gets its pump at once, in a nursery of its own.

Used under ``hypercorn -k trio``, ``serve(backend="hypercorn")`` and the
TestClient.  ASGI servers frame each message themselves, so :meth:`send_now`
always declines and a batch is one ``websocket.send`` per message.  The
server's ``receive()`` must be cancel-safe (a trio memory channel's is): a view
cancelled while it waits there loses nothing.  Its ``receive()`` and ``send()``
are taken to be schedule points (hypercorn's and the TestClient's always are),
so the core forces no yields of its own here (``pace`` is ``NEVER_DUE``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import trio

from .._connection._frames import Prepared
from .._connection._pacing import NEVER_DUE, Pace
from .._connection._transport import ClientGone, DepartureCallback, HandshakeRequest, RawHeaders
from .._serving._inbox import Inbox
from .._types import Message, Receive, Scope, Send
from ._pumps import Pumps

__all__ = ["ASGITransport"]

#: After a send failed, how long to wait for the pump to read the server's
#: disconnect event (which carries the client's close code), when it can.
DEPARTURE_WAIT: Final = 0.5


def request_from_scope(scope: Scope) -> HandshakeRequest:
    """The HandshakeRequest an ASGI WebSocket scope describes (the scope's own
    objects where they fit: nothing is copied or parsed that needs no change)."""
    headers = scope.get("headers") or ()
    extensions: list[str] | tuple[()] = ()
    for name, value in headers:
        if name == b"sec-websocket-extensions":
            offered = [item.strip() for item in value.decode("latin-1").split(",")]
            extensions = [*extensions, *filter(None, offered)]
    # A server's own (host, port) tuple (hypercorn's) is kept, tested inline (no call).
    client, server = scope.get("client"), scope.get("server")
    if not (client.__class__ is tuple and len(client) == 2 and client[1].__class__ is int):
        client = _address(client)
    if not (server.__class__ is tuple and len(server) == 2 and server[1].__class__ is int):
        server = _address(server)
    return HandshakeRequest(
        path=scope["path"],
        query_string=scope.get("query_string", b""),
        headers=headers,
        client=client,
        server=server,
        scheme=scope.get("scheme") or "ws",
        raw_path=scope.get("raw_path"),
        root_path=scope.get("root_path", ""),
        subprotocols=scope.get("subprotocols") or (),
        extensions=extensions,
        http_version=scope.get("http_version", "1.1"),
        state=scope.setdefault("state", {}),
        scope=scope,
    )


def _address(address: Any) -> tuple[str, int] | None:
    """An ASGI ``client``/``server`` as ``(host, port)``: the server's own tuple when it
    is one (hypercorn's), else a new one (a list, a port given as None)."""
    if address is None:
        return None
    if address.__class__ is tuple and len(address) == 2 and address[1].__class__ is int:
        return address
    return (str(address[0]), int(address[1] or 0))


class ASGITransport:
    """A Transport over an ASGI ``(scope, receive, send)`` triple.

    With ``pumps`` (the App's), the view reads the server directly until it is
    away for a tick; without, call :meth:`pump` in a task next to the view.
    """

    __slots__ = (
        "_callback",
        "_departed",
        "_gone",
        "_inbox",
        "_pump_done",
        "_pump_scope",
        "_pumps",
        "_receive",
        "_send",
        "away_since",
        "busy",
        "listed",
        "pumped",
        "request",
    )

    #: The server's receive and send are schedule points: no forced yields here.
    pace: Final[Pace] = NEVER_DUE

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, pumps: Pumps | None = None
    ) -> None:
        self.request = request_from_scope(scope)
        self._receive = receive
        self._send = send
        self._inbox: Inbox[str | bytes] | None = None if pumps else Inbox()
        #: The client's close code and reason once it has gone.  Kept as data, not
        #: as the ClientGone raised: a raised exception holds its traceback, whose
        #: frames hold this transport (a reference cycle per connection).
        self._gone: tuple[int, str] | None = None
        self._departed: trio.Event | None = None
        self._callback: DepartureCallback | None = None
        self._pumps = pumps
        self._pump_scope: trio.CancelScope | None = None
        self._pump_done: trio.Event | None = None
        #: How many calls of the view are in the server's receive() or send() now.
        self.busy = 0
        #: Whether a pump reads the server's events (the view reads the inbox).
        self.pumped = pumps is None
        #: The :class:`Pumps` tick in which the view last left the connection.
        self.away_since = 0
        #: The Pumps whose ``away`` set holds the connection, while it does.
        self.listed: Pumps | None = None
        if pumps is not None:
            pumps.left(self)

    async def pump(self) -> None:
        """Read the server's events into the inbox until the client leaves (a task)."""
        self.pumped = True
        if self._inbox is None:
            self._inbox = Inbox()
        receive = self._receive
        inbox = self._inbox
        try:
            while True:
                event = await receive()
                kind = event["type"]
                if kind == "websocket.receive":
                    text = event.get("text")
                    await inbox.put(text if text is not None else event.get("bytes") or b"")
                elif kind == "websocket.disconnect":
                    self._left(int(event.get("code") or 1005), event.get("reason") or "")
                    return
        finally:
            inbox.close()

    def start_pump(self, nursery: trio.Nursery) -> None:
        """Start :meth:`pump` in ``nursery`` (the App's), ended by :meth:`finished`."""
        if self.pumped or self._gone is not None:
            return
        scope, done = trio.CancelScope(), trio.Event()
        try:
            nursery.start_soon(self._run_pump, scope, done)
        except RuntimeError:
            return  # the App is shutting down: its nursery takes no new task
        self.pumped = True
        self._inbox = Inbox()
        self._pump_scope, self._pump_done = scope, done

    async def _run_pump(self, scope: trio.CancelScope, done: trio.Event) -> None:
        try:
            with scope:
                await self.pump()
        finally:
            done.set()

    def finished(self) -> trio.Event | None:
        """The connection ended: cancel its pump, if it has one, and return the event
        the pump's end sets (wait for it, shielded from cancellation), else None."""
        if self.listed is not None:
            self.listed.away.discard(self)
            self.listed = None
        if self._pump_scope is None:
            return None
        self._pump_scope.cancel()
        return self._pump_done

    def _left(self, code: int, reason: str) -> None:
        if self._gone is not None:
            return
        self._gone = (code, reason)
        if self._departed is not None:
            self._departed.set()
        callback, self._callback = self._callback, None
        if callback is not None:
            callback(code, reason)

    def _returned(self) -> None:
        """A call of the view is back from the server: a listed connection records
        when; an unlisted one is listed once idle.  (``receive`` and ``send`` inline
        this: the per-message path.)"""
        self.busy -= 1
        if self.listed is not None:
            self.away_since = self.listed.generation
        elif not self.busy:
            self._back()

    def _back(self) -> None:
        """The view's last call left the server, and the connection is not listed:
        list it (unless a pump reads, or the client has gone: nothing more to read)."""
        if not self.pumped and self._gone is None and self._pumps is not None:
            self._pumps.left(self)

    # -- the Transport protocol --------------------------------------------------------

    def on_departure(self, callback: DepartureCallback) -> None:
        self._callback = callback

    async def receive(self) -> str | bytes:
        inbox = self._inbox
        if inbox is not None:
            try:
                return await inbox.get()
            except trio.EndOfChannel:
                raise self._departure() from None
        if self._gone is not None:
            raise self._departure()
        self.busy += 1  # (a busy connection stays listed: the next tick unlists it)
        try:
            while True:
                event = await self._receive()
                kind = event["type"]
                if kind == "websocket.receive":
                    text = event.get("text")
                    return text if text is not None else event.get("bytes") or b""
                if kind == "websocket.disconnect":
                    self._left(int(event.get("code") or 1005), event.get("reason") or "")
                    raise self._departure()
        finally:
            # _returned(), inlined (the per-message path: one call less).
            self.busy -= 1
            if self.listed is not None:
                self.away_since = self.listed.generation
            elif not self.busy:
                self._back()

    async def send(self, messages: Sequence[Prepared]) -> None:
        send = self._send
        self.busy += 1
        try:
            for prepared in messages:
                data = prepared.data
                if data.__class__ is str:
                    await send({"type": "websocket.send", "text": data})
                else:
                    await send({"type": "websocket.send", "bytes": data})
        except OSError:
            raise await self._after_failed_send() from None
        finally:
            # _returned(), inlined (the per-message path: one call less).
            self.busy -= 1
            if self.listed is not None:
                self.away_since = self.listed.generation
            elif not self.busy:
                self._back()

    def send_now(self, messages: Sequence[Prepared]) -> bool:
        return False

    async def read_idle(self) -> bool:
        return False  # the pump reads while the view is away (no checkpoint: see Transport)

    def wake(self) -> None:
        pass

    async def accept(self, subprotocol: str | None, headers: RawHeaders) -> None:
        event: Message = {"type": "websocket.accept", "subprotocol": subprotocol}
        if headers:
            event["headers"] = list(headers)
        self.busy += 1  # in the server (a Pumps look drops the connection meanwhile)
        try:
            await self._send(event)
        except OSError:
            raise await self._after_failed_send() from None
        finally:
            self._returned()

    async def refuse(self, status: int, headers: RawHeaders, body: bytes) -> None:
        extensions = self.request.scope.get("extensions") or {}
        plain = status == 403 and not headers and not body
        try:
            if plain or "websocket.http.response" not in extensions:
                await self._send({"type": "websocket.close", "code": 1000, "reason": ""})
                return
            raw = [*headers, (b"content-length", str(len(body)).encode())]
            await self._send(
                {"type": "websocket.http.response.start", "status": status, "headers": raw}
            )
            await self._send({"type": "websocket.http.response.body", "body": body})
        except OSError:
            self._left(1006, "")

    async def close(self, code: int, reason: str) -> None:
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except OSError:
            self._left(1006, "")

    async def _after_failed_send(self) -> ClientGone:
        """The departure, after the server refused a send (the client has gone).

        ASGI servers raise OSError for a send after the client left, usually
        before the pump has read the disconnect event that carries the client's
        close code: wait briefly for it, unless the pump cannot reach it (a
        full inbox, or no pump running).
        """
        pumps = self._pumps
        if not self.pumped and pumps is not None:
            self.start_pump(pumps.nursery)  # it reads up to the disconnect event
        inbox = self._inbox
        if self._gone is None and inbox is not None and not inbox.full:
            if self._departed is None:
                self._departed = trio.Event()
            with trio.move_on_after(DEPARTURE_WAIT):
                await self._departed.wait()
        self._left(1006, "")
        return self._departure()

    def _departure(self) -> ClientGone:
        """A new ClientGone for the departure (1006 if none is known yet)."""
        return ClientGone() if self._gone is None else ClientGone(*self._gone)
