"""The WebSocket object a view receives, and how it learns that the client left.

A view must learn that its client left even when it is not receiving (sleeping,
sending in a loop, waiting on another channel): then the view's cancel scope is
cancelled and the runner reports the client's close code.  A view that *is*
receiving gets the messages that arrived before the close, then
:class:`~triows.WebSocketDisconnect`.

Two modes, chosen per connection from what the transport offers:

* **direct** (``triows.serve`` on hypercorn, the TestClient): the
  transport sets an out-of-band :class:`~triows._transport.Departure`, so
  ``receive()`` reads the transport itself: no extra task, channel or task
  switch per message;
* **pump** (the native backend, whose pump is its socket reader, and any other
  ASGI server): a receive-pump task reads the transport into a small bounded
  inbox and sets the departure when it reads the ``websocket.disconnect``
  event.  A departure queued behind more unread messages than the inbox holds
  is seen only when the view reads again, unless the transport reports it out
  of band (the native backend does, at the keepalive deadline or a failed
  write: ``Departure(pump=True)``).
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable, Sequence
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import attrs
import trio

from . import status
from ._broadcast import BATCH_EVENT, BATCH_EXTENSION, Broadcast, Prepared, SendNow
from ._codecs import DECODERS, ENCODERS, Decoder, Encoder, MessageType
from ._datastructures import URL, Headers, QueryParams
from ._exceptions import WebSocketDisconnect, disconnects_in
from ._state import (
    CONNECTED,
    CONNECTING,
    DISCONNECTED,
    REJECTED,
    ConnectionState,
    StateMachine,
)
from ._transport import Departure, departure_of
from ._types import Message, Receive, Scope, Send

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["WebSocket", "WebSocketOptions"]

# In pump mode, how many messages the pump reads ahead of the view.  Small, because
# the server already buffers, and a view that stops reading must push back.
READ_AHEAD = 4

# How long a send that found the client gone waits for the transport to report the
# client's close code, so the view (and caught_close_codes) see the real code and
# not a provisional 1006.
DEPARTURE_WAIT = 0.5

# How long a view that is not receiving when its client leaves has to come back to
# receive() before it is cancelled (see WebSocket._client_left).
DEPARTURE_GRACE = 0.05


@attrs.frozen
class WebSocketOptions:
    """A route's per-connection settings, resolved once at decoration time."""

    receive_type: MessageType = "text"
    send_type: MessageType = "text"
    auto_accept: bool = True
    caught_close_codes: Container[int] = (1000, 1001)
    decode: Decoder = attrs.field(init=False)
    encode: Encoder = attrs.field(init=False)

    @decode.default
    def _decode(self) -> Decoder:
        return DECODERS[self.receive_type]

    @encode.default
    def _encode(self) -> Encoder:
        return ENCODERS[self.send_type]


DEFAULT_OPTIONS = WebSocketOptions()


def _check_close_code(code: int, reason: str) -> None:
    if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        raise ValueError(
            f"close code {code} cannot be sent: use 1000-1003, 1007-1014, or 3000-4999 "
            "(4000-4999 for application errors)"
        )
    if len(reason.encode()) > 123:
        raise ValueError(
            f"close reason is {len(reason.encode())} bytes; a close frame allows at most 123"
        )


class _Inbox:
    """Pump mode: the bounded queue from the pump (its one sender) to the view.

    A lean memory channel: a list and directly rescheduled tasks, a few hundred
    bytes less per connection than ``trio.open_memory_channel``, and a send that
    does not yield when there is room (the pump's next transport read does).
    ``receive()`` is a full checkpoint and cancel-safe, like the channel's; after
    ``close()`` it returns what is left, then raises EndOfChannel.
    """

    __slots__ = ("_closed", "_items", "_sender", "_waiting")

    def __init__(self) -> None:
        self._items: list[Message] = []
        self._waiting: list[trio.lowlevel.Task] = []
        self._sender: trio.lowlevel.Task | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    async def send(self, item: Message) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        while len(self._items) >= READ_AHEAD:
            self._sender = trio.lowlevel.current_task()

            def abort(_: Any) -> trio.lowlevel.Abort:
                self._sender = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        self._items.append(item)
        if self._waiting:
            trio.lowlevel.reschedule(self._waiting.pop(0))

    async def receive(self) -> Message:
        await trio.lowlevel.checkpoint_if_cancelled()
        items = self._items
        if items:
            item = items.pop(0)
            self._wake_sender()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return item
        while not items:
            if self._closed:
                raise trio.EndOfChannel
            task = trio.lowlevel.current_task()
            self._waiting.append(task)

            def abort(_: Any, task: trio.lowlevel.Task = task) -> trio.lowlevel.Abort:
                self._waiting.remove(task)
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        item = items.pop(0)
        self._wake_sender()
        return item

    def _wake_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            trio.lowlevel.reschedule(sender)

    def close(self) -> None:
        self._closed = True
        waiting, self._waiting = self._waiting, []
        for task in waiting:
            trio.lowlevel.reschedule(task)


class _Rejected(Exception):
    """Ends a view that enters ``async with ws`` after ``reject()``; swallowed by the runner."""


class WebSocket:
    """One WebSocket connection, as seen by a view.

    Cancellation: every ``await`` here is a trio checkpoint.  ``receive()`` is
    cancel-safe (a cancelled receive loses no message).  A cancelled ``send()`` may
    or may not have handed its message to the server.  ``close()`` moves the state
    machine before sending, so a cancelled close still counts as a close.
    """

    __slots__ = (
        "_catching",
        "_departure",
        "_disconnect_caught",
        "_ended_by",
        "_eof",
        "_headers",
        "_inbox_send",
        "_machine",
        "_options",
        "_query",
        "_receivers",
        "_send_now_fn",
        "_source",
        "_transport_receive",
        "_transport_send",
        "_view_scope",
        "scope",
    )

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        options: WebSocketOptions = DEFAULT_OPTIONS,
    ) -> None:
        self.scope = scope
        self._transport_receive = receive
        self._transport_send = send
        offer = scope.get("extensions", {}).get(BATCH_EXTENSION)
        # The server's non-blocking write (see triows._broadcast), if it has one.
        self._send_now_fn: SendNow | None = None if offer is None else offer.get("send_now")
        self._options = options
        self._machine = StateMachine()
        departure = departure_of(scope)
        self._inbox_send: _Inbox | None = None
        self._source: Receive
        if departure is None or departure.pump:
            # Pump mode: the server cannot tell us out of band, or its receive is
            # its socket reader, which must go on while the view is busy.
            if departure is None:
                departure = Departure()
            self._inbox_send = _Inbox()
            self._source = self._inbox_send.receive
        else:
            self._source = receive
        departure.callback = self._client_left
        self._departure = departure
        # True once the disconnect event (or the end of the inbox) has been read.
        self._eof = False
        self._receivers = 0
        # >0 while a client's disconnect is silenced: auto_accept, or inside `async with`.
        self._catching = 1 if options.auto_accept else 0
        self._disconnect_caught = False
        self._ended_by: str | None = None
        self._view_scope: trio.CancelScope | None = None
        self._headers: Headers | None = None
        self._query: QueryParams | None = None

    # -- the request ---------------------------------------------------------------

    @property
    def url(self) -> URL:
        """The full URL of the connection request (``str(ws.url)``)."""
        return URL.from_scope(self.scope)

    @property
    def headers(self) -> Headers:
        """The handshake's HTTP headers: immutable and case-insensitive."""
        if self._headers is None:
            self._headers = Headers(self.scope.get("headers", ()))
        return self._headers

    @property
    def query_parameters(self) -> QueryParams:
        """The query string's parameters: an immutable mapping."""
        if self._query is None:
            self._query = QueryParams(self.scope.get("query_string", b""))
        return self._query

    @property
    def client(self) -> tuple[str, int] | None:
        """The client's ``(host, port)``, when the server knows it."""
        client = self.scope.get("client")
        return None if client is None else (str(client[0]), int(client[1]))

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order of preference."""
        return list(self.scope.get("subprotocols", ()))

    @property
    def session(self) -> Mapping[str, Any]:
        """The session from the signed session cookie: a read-only mapping.

        Raises RuntimeError unless sessions are enabled with
        ``App(session_secret=...)``.  A WebSocket cannot set cookies, so the
        session is read-only here; HTTP routes write it (``request.session``).
        """
        session = self.scope.get("session")
        if session is None:
            raise RuntimeError(
                "ws.session is not available: sessions are not enabled on this App; "
                "pass App(session_secret=...) to enable signed-cookie sessions"
            )
        return MappingProxyType(session)

    @property
    def state(self) -> ConnectionState:
        """The connection's :class:`~triows.ConnectionState`."""
        return self._machine.state

    @property
    def close_code(self) -> int | None:
        """The code the server closed with, or ``None`` if it has not closed."""
        return self._machine.close_code

    # -- handshake -------------------------------------------------------------------

    async def accept(
        self, subprotocol: str | None = None, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Accept the connection (complete the handshake).

        Raises RuntimeError if it was already accepted or is over, and
        WebSocketDisconnect if the client left before it could be accepted.
        """
        self._machine.accept()
        message = {
            "type": "websocket.accept",
            "subprotocol": subprotocol,
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
            if headers
            else [],
        }
        # _send_or_disconnect, inlined (one coroutine frame less per handshake).
        try:
            await self._transport_send(message)
        except OSError:
            await self._raise_departure()

    async def reject(
        self,
        status: int = 403,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | str = b"",
    ) -> None:
        """Refuse the handshake: the client gets an HTTP error (403 by default).

        Must be called before ``accept()``: afterwards it raises RuntimeError (with
        ``auto_accept=True`` the connection is accepted before the view runs, so pass
        ``auto_accept=False``).  A status, headers or body other than the plain 403
        need the server's ``websocket.http.response`` extension (hypercorn has it);
        without it the client gets a plain 403.  After ``reject()``, entering
        ``async with ws`` ends the view without running the block.
        """
        if not self._machine.reject():
            return
        await self._send_refusal(status, headers, body)

    async def _send_refusal(
        self, status: int, headers: Sequence[tuple[str, str]], body: bytes | str
    ) -> None:
        if isinstance(body, str):
            body = body.encode()
        plain = status == 403 and not headers and not body
        if plain or "websocket.http.response" not in self.scope.get("extensions", {}):
            message: Message = {"type": "websocket.close", "code": 1000, "reason": ""}
            await self._send_quietly(message)
            return
        raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        raw_headers.append((b"content-length", str(len(body)).encode()))
        await self._send_quietly(
            {"type": "websocket.http.response.start", "status": status, "headers": raw_headers}
        )
        await self._send_quietly({"type": "websocket.http.response.body", "body": body})

    async def close(self, code: int = status.WS_1000_NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason``.

        Before ``accept()`` this refuses the handshake (HTTP 403).  Calling it twice
        raises RuntimeError: use ``ensure_closed()`` when unsure.  If the client has
        already gone there is nothing to send and this returns at once.
        """
        _check_close_code(code, reason)
        was_connecting = self._machine.state is CONNECTING
        if self._machine.close(code):
            if was_connecting:
                await self._send_refusal(403, (), b"")
            else:
                await self._send_quietly(
                    {"type": "websocket.close", "code": code, "reason": reason}
                )

    async def ensure_closed(
        self, code: int = status.WS_1000_NORMAL_CLOSURE, reason: str = ""
    ) -> None:
        """Close the connection unless it is already over.  Idempotent.

        An earlier close keeps its code.  Before ``accept()`` this refuses the
        handshake.  Never raises because of the connection's state.
        """
        if self._machine.state in (CONNECTED, CONNECTING):
            await self.close(code, reason)

    async def __aenter__(self) -> WebSocket:
        state = self._machine.state
        if state is CONNECTING:
            await self.accept()
        elif state is not CONNECTED:
            if state is REJECTED:
                raise _Rejected
            self._machine.check_send("async with ws")
        self._catching += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._catching -= 1
        if exc is None:
            await self.ensure_closed()
            return False
        # The block's own nursery wraps the departure in an exception group.
        disconnects = disconnects_in(exc)
        caught = self._options.caught_close_codes
        return disconnects is not None and all(d.code in caught for d in disconnects)

    # -- messages --------------------------------------------------------------------

    async def receive(self) -> Any:
        """Wait for the next message, decoded as the route's ``receive_type``.

        Raises WebSocketDisconnect once the client has gone (after the messages it
        sent before closing), and a :class:`~triows.BadMessage` subclass if the
        message does not fit the type.  Cancel-safe: no message is lost.
        """
        # The per-message path, inlined (one coroutine frame, not three); any other
        # state goes through _next_message's checks.
        machine = self._machine
        if machine.state is not CONNECTED:
            return self._options.decode(await self._next_message("receive()"))
        self._receivers += 1
        try:
            event = await self._source()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            self._eof = True
            raise machine.disconnect_error() from None
        finally:
            self._receivers -= 1
        if event["type"] != "websocket.receive":
            self._input_ended(event)
        return self._options.decode(event)

    async def receive_text(self) -> str:
        """Wait for the next message as text (a binary one raises MessageTypeError)."""
        return DECODERS["text"](await self._next_message("receive_text()"))  # type: ignore[no-any-return]

    async def receive_bytes(self) -> bytes:
        """Wait for the next message as bytes (a text one raises MessageTypeError)."""
        return DECODERS["bytes"](await self._next_message("receive_bytes()"))  # type: ignore[no-any-return]

    async def receive_json(self) -> Any:
        """Wait for the next message and parse it as JSON (MessageDecodeError if invalid)."""
        return DECODERS["json"](await self._next_message("receive_json()"))

    async def receive_event(self) -> Message:
        """Wait for the next raw ASGI event.

        Returns ``{"type": "websocket.receive", "text"|"bytes": ...}`` events, and a
        ``{"type": "websocket.disconnect", "code": ..., "reason": ...}`` event once the
        client has gone (on every later call too).
        """
        machine = self._machine
        if machine.state is not CONNECTED and machine.disconnect_code is None:
            machine.check_receive("receive_event()")
        try:
            return await self._next_message("receive_event()")
        except WebSocketDisconnect as exc:
            return {"type": "websocket.disconnect", "code": exc.code, "reason": exc.reason}

    async def _next_message(self, call: str) -> Message:
        machine = self._machine
        # After the client left, messages it sent before closing are still
        # delivered; only once the disconnect itself was read does receive raise.
        if machine.state is not CONNECTED:
            if self._ended_by == "disconnect" and self._view_scope is not None:
                # Back within the grace: the view reads the departure itself.
                self._view_scope.deadline = math.inf
                self._ended_by = None
            if self._eof or machine.state is not DISCONNECTED:
                machine.check_receive(call)
        self._receivers += 1
        try:
            event = await self._source()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            self._eof = True
            raise machine.disconnect_error() from None
        finally:
            self._receivers -= 1
        if event["type"] != "websocket.receive":
            self._input_ended(event)
        return event

    def _input_ended(self, event: Message) -> NoReturn:
        """The transport reported the client's departure: record it and raise."""
        self._eof = True
        # The view is reading the departure itself: nothing to cancel.
        self._record_departure(int(event.get("code", 1005)), event.get("reason") or "")
        raise self._machine.disconnect_error()

    async def send(self, message: Any) -> None:
        """Send ``message``, encoded as the route's ``send_type``.

        Raises WebSocketDisconnect if the client has gone (a message is never
        silently dropped), RuntimeError before accept or after close, TypeError if
        the value does not fit the type.
        """
        if message.__class__ is Broadcast:
            await self._send_prepared([message.prepare(self._options.encode)], "send()")
            return
        # The per-message path, inlined (see _send_message and _send_or_disconnect).
        event = self._options.encode(message)
        if self._machine.state is not CONNECTED:
            self._machine.check_send("send()")
        if self._send_now_fn is not None and await self._write_now([Prepared(event)]):
            return
        try:
            await self._transport_send(event)
        except OSError:
            await self._raise_departure()

    async def send_many(self, messages: Iterable[Any]) -> None:
        """Send ``messages`` in order, each encoded as :meth:`send` would.

        On ``triows.serve``'s backends and the TestClient the whole batch goes out
        in one socket write, and :class:`~triows.Broadcast` items reuse their
        shared frame; elsewhere it is one ``websocket.send`` per message.  Every
        message is encoded before anything is sent, so a TypeError sends nothing.
        Raises like :meth:`send`.  If cancelled, part of the batch may have been
        sent, as a cancelled :meth:`send` may have sent part of its message.
        """
        encode = self._options.encode
        prepared = [
            item.prepare(encode) if item.__class__ is Broadcast else Prepared(encode(item))
            for item in messages
        ]
        if prepared:
            await self._send_prepared(prepared, "send_many()")
        else:
            await trio.lowlevel.checkpoint()

    async def _send_prepared(self, prepared: list[Prepared], call: str) -> None:
        if self._machine.state is not CONNECTED:
            self._machine.check_send(call)
        if self._send_now_fn is not None and await self._write_now(prepared):
            return
        try:
            if BATCH_EXTENSION in (self.scope.get("extensions") or ()):
                await self._transport_send({"type": BATCH_EVENT, "messages": prepared})
            else:
                for item in prepared:
                    await self._transport_send(item.event)
        except OSError:
            await self._raise_departure()

    async def _write_now(self, prepared: list[Prepared]) -> bool:
        """Send through the server's non-blocking write when it can take the batch now.

        A full checkpoint either way: Cancelled is raised before anything is
        written, never after.  False (nothing written, the caller sends the
        usual way) when the server is busy writing to this connection, it is
        closing, or the server cannot write directly (TLS, HTTP/2).  One task
        switch per send instead of the two of hypercorn's send lock and write.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        send_now = self._send_now_fn
        if send_now is not None and send_now(self._transport_send, prepared):
            await trio.lowlevel.cancel_shielded_checkpoint()
            return True
        return False

    def _send_now(self, message: Broadcast) -> bool:
        """Hand ``message`` to the server without yielding, if it can take it now.

        For a hub delivering to an idle subscriber (see ``send_now`` in
        ``triows._broadcast``).  False, having sent nothing, unless the view may
        send and the server offers ``send_now`` and took the whole message; the
        caller then sends it the usual way, which raises what there is to raise.
        """
        send_now = self._send_now_fn
        if send_now is None or self._machine.state is not CONNECTED:
            return False
        try:
            return send_now(self._transport_send, [message.prepare(self._options.encode)])
        except Exception:
            # Nothing was written (send_now takes all or nothing): the usual path
            # raises the error (an encoder's TypeError, say) in this view, not in
            # the publisher delivering to every subscriber.
            return False

    async def send_text(self, data: str) -> None:
        """Send a text message."""
        await self._send_message(ENCODERS["text"](data), "send_text()")

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message."""
        await self._send_message(ENCODERS["bytes"](data), "send_bytes()")

    async def send_json(self, data: Any) -> None:
        """Send ``data`` as JSON in a text message."""
        await self._send_message(ENCODERS["json"](data), "send_json()")

    async def send_event(self, event: Message) -> None:
        """Send a raw ASGI event; the state machine still tracks it.

        ``websocket.accept``, ``websocket.send``, ``websocket.close`` and the
        ``websocket.http.response.*`` denial events are accepted.
        """
        kind = event.get("type")
        if kind == "websocket.send":
            await self._send_message(event, "send_event()")
        elif kind == "websocket.accept":
            self._machine.accept()
            await self._send_or_disconnect(event)
        elif kind == "websocket.close":
            await self.close(int(event.get("code", 1000)), event.get("reason") or "")
        elif kind == "websocket.http.response.start":
            if self._machine.reject():
                await self._send_quietly(event)
        elif kind == "websocket.http.response.body":
            if self._machine.state is not REJECTED:
                raise RuntimeError(
                    "send_event(websocket.http.response.body) called in state "
                    f"{self._machine.state.value}: send websocket.http.response.start first"
                )
            await self._send_quietly(event)
        else:
            raise ValueError(
                f"send_event() got an event of type {kind!r}; a WebSocket view can send "
                "websocket.accept, websocket.send, websocket.close and "
                "websocket.http.response.start/body"
            )

    async def _send_message(self, message: Message, call: str) -> None:
        if self._machine.state is not CONNECTED:
            self._machine.check_send(call)
        if self._send_now_fn is not None and await self._write_now([Prepared(message)]):
            return
        await self._send_or_disconnect(message)

    async def _send_or_disconnect(self, message: Message) -> None:
        try:
            await self._transport_send(message)
        except OSError:
            await self._raise_departure()

    async def _raise_departure(self) -> NoReturn:
        """After a send failed with OSError: raise WebSocketDisconnect with the client's code.

        ASGI servers raise OSError (or a subclass) when the client has gone.  The
        disconnect event carrying the client's close code is usually already
        queued: let the pump read it (it cancels this view if nobody receives),
        so the code is the client's, not a provisional 1006.
        """
        await self._await_departure()
        if self._machine.disconnect_code is None:
            self._machine.client_left(1006, "")
        raise self._machine.disconnect_error() from None

    async def _await_departure(self) -> None:
        if self._machine.disconnect_code is not None:
            return
        if self._inbox_send is not None and (
            self._view_scope is None  # no pump runs for this connection
            or len(self._inbox_send) >= READ_AHEAD
        ):
            return  # the pump cannot reach the disconnect event
        with trio.move_on_after(DEPARTURE_WAIT):
            await self._departure.wait()

    async def _send_quietly(self, message: Message) -> None:
        # Closing a connection whose client already left is not an error.
        try:
            await self._transport_send(message)
        except OSError:
            if self._machine.disconnect_code is None:
                self._machine.client_left(1006, "")

    # -- iteration -------------------------------------------------------------------

    def __aiter__(self) -> WebSocket:
        return self

    # `async for message in ws` is `while True: message = await ws.receive()`: a
    # departure raises WebSocketDisconnect instead of ending the loop quietly.  An
    # alias, not a wrapper: no extra coroutine frame per message.
    __anext__ = receive

    # -- used by the runner ------------------------------------------------------------

    async def _pump(self) -> None:
        """Pump mode only: read the transport into the inbox until the client leaves."""
        receive = self._transport_receive
        inbox = self._inbox_send
        assert inbox is not None
        try:
            while True:
                event = await receive()
                kind = event["type"]
                if kind == "websocket.receive":
                    await inbox.send(event)
                elif kind == "websocket.disconnect":
                    self._departure.set(int(event.get("code", 1005)), event.get("reason") or "")
                    return
        finally:
            inbox.close()

    def _record_departure(self, code: int, reason: str) -> bool:
        """Record the client's departure; True if it ended a live connection."""
        if not self._machine.client_left(code, reason):
            return False
        self._disconnect_caught = self._catching > 0 and code in self._options.caught_close_codes
        return True

    def _client_left(self, code: int, reason: str) -> None:
        """The transport's departure notice: cancel the view if nobody is receiving."""
        # A departure is set once: drop the callback, which breaks the reference
        # cycle WebSocket -> Departure -> WebSocket (and through the transport's
        # scope), so the connection is freed by reference counting, not the GC.
        self._departure.callback = None
        if self._record_departure(code, reason) and (
            self._receivers == 0 and self._view_scope is not None
        ):
            # Nobody is receiving, so nobody would learn that the client left: cancel
            # the view, after a grace that lets a view between two receives (it was
            # sending a reply) come back and read the departure as receive() reports
            # it.  A deadline, not a task: nothing to clean up if it comes back.
            self._ended_by = "disconnect"
            scope = self._view_scope
            scope.deadline = min(scope.deadline, trio.current_time() + DEPARTURE_GRACE)

    def _cancel_for_shutdown(self) -> None:
        if self._view_scope is not None and self._ended_by is None:
            self._ended_by = "shutdown"
            self._view_scope.cancel()

    def __repr__(self) -> str:
        return f"<WebSocket {self.scope.get('path', '?')} {self._machine.state.value}>"
