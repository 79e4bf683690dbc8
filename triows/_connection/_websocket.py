"""The WebSocket object a view receives: messages in, messages out, on a Transport.

Every call asks the connection's :class:`~triows._connection._state.Lifecycle`
first, then talks to the :class:`~triows._connection._transport.Transport`.
The per-message path is one state check, one transport call and one
decode/encode: no task, lock, cancel scope or ASGI event per message.

How a view learns that its client left: the transport calls the departure
callback the moment it knows (close frame, end of stream, failed write, missed
pong).  A view inside ``receive()`` gets the messages the client sent before
leaving, then :class:`~triows.WebSocketDisconnect`; a view that is not receiving
is cancelled after a short grace (see ``Lifecycle.client_left``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from time import perf_counter_ns
from typing import Any

import trio

from .._codecs import DECODERS, ENCODERS
from .._exceptions import WebSocketDisconnect
from .._limits import RATE_CLOSE_CODE, RATE_REASON
from .._metrics._counters import payload_size
from .._types import Message
from ._base import Rejected, WebSocketBase
from ._frames import Broadcast, Prepared
from ._state import CONNECTED, DISCONNECTED, Input
from ._transport import ClientGone, RawHeaders

__all__ = ["Rejected", "WebSocket"]


class WebSocket(WebSocketBase):
    """One WebSocket connection, as seen by a view.

    Cancellation: every ``await`` here is a cancel point: in a cancelled scope it
    raises Cancelled.  ``receive()`` is cancel-safe (a cancelled receive loses no
    message), and a schedule point only when it waits for a message or past the
    run's slice (below): on the native server a message already buffered is
    taken without a pass of the scheduler.  The sends (``send``, ``send_many``,
    ``send_text``, ``send_bytes``, ``send_json``, ``send_event``'s messages) raise
    Cancelled before writing anything, and are schedule points (other tasks run)
    only where the server has to wait (a full socket buffer, a busy writer past its
    bound, an ASGI server's own send) or once about a millisecond has passed since
    the send path last yielded in this trio run (``_pacing.SEND_SLICE_NS``): a loop
    of sends pays no scheduler pass per message and still lets every other task run
    about once a millisecond.  A send cancelled while it waits may or may not have
    handed its message to the server.  ``close()`` moves the state before sending,
    so a cancelled close still counts as a close.

    Its handshake, close and state (``accept``, ``reject``, ``close``, ``async with
    ws``, ``expire_at``) come from :class:`~triows._connection._base.WebSocketBase`.
    """

    __slots__ = ()

    # -- receiving -------------------------------------------------------------------

    async def receive(self) -> Any:
        """Wait for the next message, decoded as the route's ``receive_type``.

        Raises WebSocketDisconnect once the client has gone (after the messages it
        sent before closing), and a :class:`~triows.BadMessage` subclass if the
        message does not fit the type.  Cancel-safe: no message is lost.
        """
        # The per-message path, inlined (one coroutine frame less per message);
        # any other state goes through _next's checks.
        lifecycle = self.lifecycle
        if lifecycle.state is not CONNECTED:
            return self._decode(await self._next("receive()"))
        lifecycle.receivers += 1
        try:
            data = await self._transport.receive()
        except ClientGone as gone:
            if lifecycle.client_code is None:  # (else the departure callback recorded it)
                lifecycle.client_left(gone.code, gone.reason)
            raise lifecycle.input_drained() from None
        finally:
            lifecycle.receivers -= 1
        if perf_counter_ns() >= self._pace.due:
            await self._pace.yield_now()  # bounded unfairness (the message stays taken)
        counters = self._counters  # _arrived, inlined for the per-message path
        if counters is not None:
            counters.received += 1
            counters.received_bytes += (
                len(data) if data.__class__ is bytes or data.isascii() else payload_size(data)
            )
        if self._bucket is not None and not self._bucket.take():
            await self._over_rate()
        return self._decode(data)

    async def receive_text(self) -> str:
        """Wait for the next message as text (a binary one raises MessageTypeError)."""
        return DECODERS["text"](await self._next("receive_text()"))  # type: ignore[no-any-return]

    async def receive_bytes(self) -> bytes:
        """Wait for the next message as bytes (a text one raises MessageTypeError)."""
        return DECODERS["bytes"](await self._next("receive_bytes()"))  # type: ignore[no-any-return]

    async def receive_json(self) -> Any:
        """Wait for the next message and parse it as JSON (MessageDecodeError if invalid)."""
        return DECODERS["json"](await self._next("receive_json()"))

    async def receive_event(self) -> Message:
        """Wait for the next message as a raw ASGI event.

        Returns ``{"type": "websocket.receive", "text"|"bytes": ...}`` events, and a
        ``{"type": "websocket.disconnect", "code": ..., "reason": ...}`` event once the
        client has gone (on every later call too).
        """
        lifecycle = self.lifecycle
        if lifecycle.state is not CONNECTED and lifecycle.client_code is None:
            lifecycle.check_open("receive_event()", "received")
        try:
            data = await self._next("receive_event()")
        except WebSocketDisconnect as exc:
            return {"type": "websocket.disconnect", "code": exc.code, "reason": exc.reason}
        key = "text" if data.__class__ is str else "bytes"
        return {"type": "websocket.receive", key: data}

    async def _next(self, call: str) -> str | bytes:
        """The next message from the transport (the per-message path: keep it short)."""
        lifecycle = self.lifecycle
        # After the client left, the messages it sent before leaving are still
        # delivered; once the departure itself was read, receive raises.
        if lifecycle.state is not CONNECTED and (
            lifecycle.state is not DISCONNECTED or lifecycle.input is Input.DRAINED
        ):
            lifecycle.check_open(call, "received")
        lifecycle.receivers += 1
        try:
            data = await self._transport.receive()
        except ClientGone as gone:
            if lifecycle.client_code is None:  # (else the departure callback recorded it)
                lifecycle.client_left(gone.code, gone.reason)
            raise lifecycle.input_drained() from None
        finally:
            lifecycle.receivers -= 1
        if perf_counter_ns() >= self._pace.due:
            await self._pace.yield_now()
        if (self._counters is not None or self._bucket is not None) and not self._arrived(data):
            await self._over_rate()
        return data

    def _arrived(self, data: str | bytes) -> bool:
        """Count a received message; False if it is over the connection's rate."""
        counters = self._counters
        if counters is not None:
            counters.received += 1
            counters.received_bytes += (
                len(data) if data.__class__ is bytes or data.isascii() else payload_size(data)
            )
        bucket = self._bucket
        return bucket is None or bucket.take()

    async def _over_rate(self) -> None:
        """Close with 1008 and raise the departure the view sees (while still open)."""
        if self.lifecycle.limit_exceeded(RATE_CLOSE_CODE, RATE_REASON):
            await self._transport.close(RATE_CLOSE_CODE, RATE_REASON)
            raise self.lifecycle.input_drained()

    # -- sending ---------------------------------------------------------------------

    async def send(self, message: Any) -> None:
        """Send ``message``, encoded as the route's ``send_type``.

        Raises WebSocketDisconnect if the client has gone (a message is never
        silently dropped), RuntimeError before accept or after close, TypeError if
        the value does not fit the type.
        """
        if message.__class__ is Broadcast:
            prepared = message.prepare(self._encode)
        else:
            prepared = Prepared(self._encode(message))
        if self.lifecycle.state is not CONNECTED:
            self.lifecycle.check_open("send()", "sent")
        # _write, inlined for the per-message path (one coroutine frame less, and
        # under an ASGI server one frame less to resume at each of its yields).
        await trio.lowlevel.checkpoint_if_cancelled()
        batch = (prepared,)
        transport = self._transport
        if not transport.send_now(batch):
            try:
                await transport.send(batch)
            except ClientGone as gone:
                self._gone(gone)
        counters = self._counters
        if counters is not None:  # counted in line (RouteCounters: the per-message path)
            if message.__class__ is not Broadcast:
                counters.sent_settled += 1
                data = prepared.data
                counters.sent_bytes_settled += (
                    len(data) if data.__class__ is bytes or data.isascii() else prepared.size()
                )
            elif counters.shared is prepared:  # a Broadcast's run
                counters.shared_sends += 1
            else:
                counters.count_shared(prepared)
        if perf_counter_ns() >= self._pace.due:
            await self._pace.yield_now()  # bounded unfairness (the message stays written)

    async def send_many(self, messages: Iterable[Any]) -> None:
        """Send ``messages`` in order, each encoded as :meth:`send` would.

        On the native server the whole batch goes out in one socket write, and
        :class:`~triows.Broadcast` items reuse their shared frame; under an ASGI
        server (hypercorn) each message is one ``websocket.send``.  Every message is encoded before anything is sent, so
        a TypeError sends nothing.  Raises like :meth:`send`.  If cancelled, part
        of the batch may have been sent, as a cancelled :meth:`send` may have
        sent part of its message.
        """
        encode = self._encode
        prepared = [
            item.prepare(encode) if item.__class__ is Broadcast else Prepared(encode(item))
            for item in messages
        ]
        if self.lifecycle.state is not CONNECTED:
            self.lifecycle.check_open("send_many()", "sent")
        if prepared:
            await self._write(prepared)
        else:
            await trio.lowlevel.checkpoint_if_cancelled()  # nothing to write, nothing to wait for

    def try_send(self, message: Broadcast) -> bool:
        """Hand ``message`` to the server without yielding, if it can take it now.

        For a hub delivering to an idle subscriber.  False, having sent nothing,
        unless the connection is open and the server took the whole message at
        once; the caller then sends it the usual way, which raises what there is
        to raise (an encoder's TypeError in this view, not in the publisher).
        """
        if self.lifecycle.state is not CONNECTED:
            return False
        try:
            prepared = message.prepare(self._encode)
        except Exception:
            return False
        if not self._transport.send_now([prepared]):
            return False
        counters = self._counters
        if counters is not None:  # a hub's delivery: the run of a shared message, in line
            if counters.shared is prepared:
                counters.shared_sends += 1
            else:
                counters.count_shared(prepared)
        return True

    def idle(self) -> Awaitable[bool]:
        """Wait, with nothing else to do, until :meth:`wake`: for a hub forwarding here.

        On the native server over plain TCP the waiting task reads the socket
        itself meanwhile (as a view in :meth:`receive` does), so the connection
        needs no reader task: pings are answered, messages the client sends are
        kept for :meth:`receive` (until the small inbox is full: then the wait
        ends), and a departure ends the wait at once.  A :meth:`receive` in
        another task takes the reading over and ends the wait.  The wait
        returns True once it waited (look again for what there is to do, and
        call ``idle()`` again); False at once, without a checkpoint, where the
        server cannot read from this task (under an ASGI server, TLS, another
        task reading): the caller then waits its own way.  The call raises
        WebSocketDisconnect once the client has gone (as :meth:`send` would),
        RuntimeError if the connection is not open.  Cancel-safe.  (Not a
        coroutine function: no frame of its own while an idle subscriber waits.)
        """
        lifecycle = self.lifecycle
        if lifecycle.state is not CONNECTED:
            lifecycle.check_open("idle()", "received")
        return self._transport.read_idle()

    def wake(self) -> None:
        """End a pending :meth:`idle` (it returns True).  Never yields; safe from any task."""
        self._transport.wake()

    async def send_text(self, data: str) -> None:
        """Send a text message."""
        await self._send_one(ENCODERS["text"](data), "send_text()")

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message."""
        await self._send_one(ENCODERS["bytes"](data), "send_bytes()")

    async def send_json(self, data: Any) -> None:
        """Send ``data`` as JSON in a text message."""
        await self._send_one(ENCODERS["json"](data), "send_json()")

    async def send_event(self, event: Message) -> None:
        """Send a raw ASGI event; the state is still tracked.

        ``websocket.accept``, ``websocket.send``, ``websocket.close`` and
        ``websocket.http.response.start`` (with ``websocket.http.response.body``
        right after it) are accepted.
        """
        kind = event.get("type")
        if kind == "websocket.send":
            text = event.get("text")
            await self._send_one(text if text is not None else event["bytes"], "send_event()")
        elif kind == "websocket.accept":
            raw = event.get("headers") or ()
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
            await self.accept(event.get("subprotocol"), headers)
        elif kind == "websocket.close":
            await self.close(int(event.get("code", 1000)), event.get("reason") or "")
        elif kind == "websocket.http.response.start":
            self.lifecycle.move("reject")
            refusal_headers: RawHeaders = list(event.get("headers") or ())
            self._refusal = (int(event["status"]), refusal_headers)
        elif kind == "websocket.http.response.body":
            if self._refusal is None:
                raise RuntimeError(
                    "send_event(websocket.http.response.body) called in state "
                    f"{self.lifecycle.state.value}: send websocket.http.response.start first"
                )
            (status_code, raw), self._refusal = self._refusal, None
            await self._refuse(status_code, raw, bytes(event.get("body", b"")))
        else:
            raise ValueError(
                f"send_event() got an event of type {kind!r}; a WebSocket view can send "
                "websocket.accept, websocket.send, websocket.close and "
                "websocket.http.response.start/body"
            )

    async def _send_one(self, data: str | bytes, call: str) -> None:
        if self.lifecycle.state is not CONNECTED:
            self.lifecycle.check_open(call, "sent")
        await self._write([Prepared(data)])

    async def _write(self, batch: Sequence[Prepared]) -> None:
        """Write through the transport: at once if it can take the batch, else in turn.

        Always a cancel point: Cancelled is raised before anything is written,
        never after.  A schedule point only where the transport waits (a full
        socket buffer, a busy writer past its bound, an ASGI server's send), or
        once the run's send slice has passed since the last yield this path
        forced (``_pacing``): a loop of sends lets other tasks run about once a
        millisecond, and pays no scheduler pass per message.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        transport = self._transport
        if not transport.send_now(batch):
            try:
                await transport.send(batch)
            except ClientGone as gone:
                self._gone(gone)
        if self._counters is not None:
            self._counters.count_sent(batch)
        if perf_counter_ns() >= self._pace.due:
            await self._pace.yield_now()  # bounded unfairness (the batch stays written)

    # -- iteration -------------------------------------------------------------------

    def __aiter__(self) -> WebSocket:
        return self

    # `async for message in ws` is `while True: message = await ws.receive()`: a
    # departure raises WebSocketDisconnect instead of ending the loop quietly.
    __anext__ = receive

    def __repr__(self) -> str:
        return f"<WebSocket {self.path} {self.lifecycle.state.value}>"
