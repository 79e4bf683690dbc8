"""One native WebSocket connection: a Transport on a socket.

The connection owns two things (see ``triows._connection._transport``):

* its **reader task**, started once the handshake is accepted: it reads the
  socket, feeds websockets' sans-I/O protocol, puts each complete message into
  a small bounded :class:`~triows._serving._inbox.Inbox` (a view that stops
  reading stops the reader: backpressure), writes pongs and the echo of a close
  frame, and reports the client's departure through the core's callback as
  soon as it sees it (close frame, EOF, a protocol failure);
* its **writer** (:class:`~triows._native._writer._Writer`): ``send`` frames a
  batch into one write, ``send_now`` writes it without yielding when the
  writer is idle.  A server frame is never masked, so without
  permessage-deflate one :class:`~triows._connection._frames.Prepared` frame
  serves every client; with it each connection compresses its own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import trio
from websockets.datastructures import Headers as WSHeaders
from websockets.http11 import Response as WSResponse
from websockets.protocol import OPEN

from .._connection._transport import ClientGone, DepartureCallback, HandshakeRequest, RawHeaders
from .._serving._inbox import Inbox
from .._serving._keepalive import CLOSE_BUDGET, TIMEOUT_CLOSE, TIMEOUT_DEPARTURE, PingState
from .._serving._logs import logger
from ._http import _reason
from ._protocol import _ServerProtocol
from ._tls import TLSSocket
from ._writer import RECV_SIZE, _Writer

if TYPE_CHECKING:
    from .._connection._frames import Prepared
    from ._server import _NativeServer

__all__ = ["INBOX_SIZE", "LINGER_TIMEOUT", "NativeConnection"]

#: Messages the reader may read ahead of the view.
INBOX_SIZE: Final = 8
#: How long a closed connection waits for the client's close frame / EOF.
LINGER_TIMEOUT: Final = 2.0
#: After a protocol failure, how long input must pause before the socket is closed.
LINGER_QUIET: Final = 0.05


class NativeConnection:
    """One WebSocket connection on a socket, as a Transport."""

    __slots__ = (
        "_callback",
        "_drained",
        "_early",
        "_eof",
        "_gone",
        "_idle",
        "_inbox",
        "_nursery",
        "_reader_done",
        "_refused",
        "_response",
        "_stopped",
        "_waiting",
        "ping_state",
        "plain",
        "protocol",
        "request",
        "server",
        "sock",
        "target",
        "writer",
    )

    def __init__(
        self,
        server: _NativeServer,
        sock: trio.socket.SocketType,
        protocol: _ServerProtocol,
        request: HandshakeRequest,
        response: WSResponse,
        *,
        target: str,
        early: bytes = b"",
        plain: bool = True,
    ) -> None:
        self.server = server
        self.sock = sock
        #: Plain TCP (not TLS): the raw-socket fast paths apply.
        self.plain = plain
        self.protocol = protocol
        self.request = request
        #: The request-target as sent, for the access log.
        self.target = target
        self.writer = _Writer(sock)
        #: What the client sent after its request head: frames, parsed once accepted.
        self._early = early
        self._response: WSResponse | None = response  # the 101, until answered
        self._inbox: Inbox[str | bytes] = Inbox(INBOX_SIZE)
        self._gone: ClientGone | None = None
        self._callback: DepartureCallback | None = None
        self._nursery: trio.Nursery | None = None
        #: The reader's current wait, cancelled by stop_reading().
        self._waiting: trio.CancelScope | None = None
        self._reader_done: trio.Event | None = None
        self._stopped = False
        #: Whether the reader waits (for the socket, or for room in the inbox).
        self._idle = False
        #: Keepalive bookkeeping, the server's Keepalive's (triows._serving._keepalive).
        self.ping_state = PingState()
        protocol.on_pong = self._pong
        self._eof = False
        self._refused = False
        #: Whether the last read returned less than asked: the socket is empty.
        #: True at first: the handshake read everything the client had sent, and an
        #: idle connection then waits in wait_readable (fewer syscalls than recv).
        self._drained = True

    # -- the Transport protocol ---------------------------------------------------------

    def on_departure(self, callback: DepartureCallback) -> None:
        self._callback = callback
        gone = self._gone
        if gone is not None:
            self._callback = None
            callback(gone.code, gone.reason)

    async def receive(self) -> str | bytes:
        try:
            return await self._inbox.get()
        except trio.EndOfChannel:
            raise self._departure() from None

    async def send(self, messages: Sequence[Prepared]) -> None:
        if self._gone is not None or self.protocol.state is not OPEN or self.writer.dead:
            await trio.lowlevel.checkpoint()
            raise self._departure()
        try:
            await self.writer.write(self.protocol.frames(messages))
        except ClientGone:
            self._left(1006, "")
            raise self._departure() from None

    def send_now(self, messages: Sequence[Prepared]) -> bool:
        nursery = self._nursery
        if not self.plain or nursery is None or self.protocol.state is not OPEN:
            return False
        writer = self.writer
        if not writer.idle:
            return False  # checked before framing: deflate's state must not move for nothing
        return writer.write_now(self.protocol.frames(messages), nursery)

    async def accept(self, subprotocol: str | None, headers: RawHeaders) -> None:
        response = self._response
        if response is None:
            raise RuntimeError("accept() after the handshake was answered")
        self._response = None
        if subprotocol:
            response.headers["Sec-WebSocket-Protocol"] = subprotocol
        for name, value in headers:
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
        self.protocol.send_response(response)
        await self._flush_protocol()
        if self.writer.dead:
            self._left(1006, "")
            raise self._departure()
        self.server.opened(self)
        self.server.log_access(self, 101)
        if self._nursery is not None:
            self._reader_done = trio.Event()
            self._nursery.start_soon(self._read)

    async def refuse(self, status: int, headers: RawHeaders, body: bytes) -> None:
        if self._response is None:
            raise RuntimeError("refuse() after the handshake was answered")
        self._response = None
        self._refused = True
        response_headers = WSHeaders()
        for name, value in headers:
            response_headers[name.decode("latin-1")] = value.decode("latin-1")
        if "Content-Length" not in response_headers:
            response_headers["Content-Length"] = str(len(body))
        response_headers["Connection"] = "close"
        self.protocol.send_response(WSResponse(status, _reason(status), response_headers, body))
        await self._flush_protocol()
        self.server.log_access(self, status)

    async def close(self, code: int, reason: str) -> None:
        protocol = self.protocol
        if protocol.state is OPEN and not self.writer.dead:
            protocol.send_close(code, reason)
            await self._flush_protocol()
        else:
            await trio.lowlevel.checkpoint()

    # -- the departure ------------------------------------------------------------------

    def _left(self, code: int, reason: str) -> None:
        """The client has gone: tell the core (once) and end the inbox."""
        if self._gone is not None:
            return
        self._gone = ClientGone(code, reason)
        self.server.forget(self)
        self._inbox.close()
        callback, self._callback = self._callback, None
        if callback is not None:
            callback(code, reason)

    def _departure(self) -> ClientGone:
        gone = self._gone
        return ClientGone() if gone is None else ClientGone(gone.code, gone.reason)

    # -- the reader task ----------------------------------------------------------------

    def start(self, nursery: trio.Nursery) -> None:
        """Where the reader (started on accept) and write_now()'s flushes run."""
        self._nursery = nursery

    def stop_reading(self) -> None:
        """The view is done: the reader stops at its next wait (see :meth:`finish`)."""
        self._stopped = True
        if self._waiting is not None and self._idle:
            # Only while the reader waits: a write it has begun (a pong, the echo
            # of a close frame) is never cut, which would break a TLS stream.
            self._waiting.cancel()

    async def _read(self) -> None:
        try:
            # One cancel scope for the reader's whole life (stop_reading() cancels
            # it), none per read or per message.
            with trio.CancelScope() as self._waiting:
                if self._stopped:
                    return
                # Frames that came with the handshake first.
                if self._early:
                    self.protocol.receive_data(self._early)
                    self._early = b""
                await self._deliver()
                while self._gone is None and not self._eof and not self._stopped:
                    self._idle = True
                    data = await self._recv()
                    self._idle = False
                    if data is None:
                        continue  # nothing to read after all
                    if data:
                        self.protocol.receive_frames(data)
                    else:
                        self._eof = True
                        self.protocol.receive_eof()
                    await self._deliver()
        finally:
            self._waiting = None
            self._inbox.close()
            if self._reader_done is not None:
                self._reader_done.set()

    async def _recv(self) -> bytes | None:
        """The next bytes from the socket (``b""`` at its end), None if there were none."""
        sock = self.sock
        try:
            if self._drained and self.plain:
                # The last read emptied the socket: wait for data first, then
                # read it, instead of a read that fails with EAGAIN first (one
                # syscall less per message; still one checkpoint).
                await trio.lowlevel.wait_readable(sock)
                try:
                    data = os.read(sock.fileno(), RECV_SIZE)
                except BlockingIOError:
                    return None
            else:
                data = await sock.recv(RECV_SIZE)
        except (OSError, trio.ClosedResourceError, trio.BrokenResourceError):
            data = b""
        self._drained = len(data) < RECV_SIZE
        return data

    async def _deliver(self) -> None:
        """Hand what the protocol parsed to the view; write what it answered."""
        protocol = self.protocol
        messages = protocol.take_messages()
        ended = None if protocol.state is OPEN else protocol.departure(self._eof)
        if ended is not None:
            # Nothing follows the departure: the last messages go in past the
            # inbox's capacity (at most one read's worth), then the departure.
            for message in messages:
                self._inbox.put_nowait(message)
            messages = []
            self._left(*ended)
        if protocol.writes:  # pongs, the echo of a close frame, a 1009 close
            await self._flush_protocol()  # not cancelled by stop_reading (see there)
        self._idle = True
        for message in messages:
            await self._inbox.put(message)
        self._idle = False

    async def _flush_protocol(self) -> None:
        """Write what the protocol produced; a trailing EOF half-closes the socket."""
        chunks = self.protocol.data_to_send()
        eof = chunks[-1] == b"" if chunks else False
        data = b"".join(chunks)
        try:
            if data:
                await self.writer.write(data)
            if eof and self.plain:
                # Our bytes may be queued behind another task's write (the view
                # echoing a message): half-close only once they are on the wire,
                # or the client never sees our close frame.
                await self.writer.drain()
                self.sock.shutdown(trio.socket.SHUT_WR)
        except ClientGone:
            self._left(1006, "")
        except OSError:
            pass  # shutdown() on a socket the peer already reset

    # -- keepalive and the end ----------------------------------------------------------

    def _pong(self, payload: bytes) -> None:
        if self.server.keepalive is not None:
            self.server.keepalive.pong(self, payload)

    async def ping(self, payload: bytes) -> None:
        """Send a keepalive ping (a short task of the server's Keepalive)."""
        if self.protocol.state is OPEN and not self.writer.dead:
            self.protocol.send_ping(payload)
            await self._flush_protocol()

    async def drop_silent_client(self) -> None:
        """No pong in time: tell the view 1006, send 1011 (within a budget), drop the socket."""
        logger.info("closing the connection of %s: no pong in time", self.client)
        self._left(*TIMEOUT_DEPARTURE)
        if self.protocol.state is OPEN and not self.writer.dead:
            self.protocol.fail(*TIMEOUT_CLOSE)  # behind a stuck write, it never goes out
            with trio.move_on_after(CLOSE_BUDGET):
                await self._flush_protocol()
        self.writer.dead = True
        self.stop_reading()
        if isinstance(self.sock, TLSSocket):
            await self.sock.aclose()  # as a whole (bounded): the handler's close is then a no-op
        else:
            self.sock.close()  # wakes the reader (trio notifies the socket's waiters)

    async def finish(self) -> None:
        """After the view returned: flush, then wait briefly for the client's close.

        Closing a socket with unread input resets the connection, and a reset can
        destroy the close frame the client has not read yet; so until the
        client's close frame or EOF arrives, input is read and dropped (at most
        LINGER_TIMEOUT seconds).  A refused handshake needs no wait.
        """
        self.stop_reading()
        sock = self.sock
        try:
            with trio.move_on_after(LINGER_TIMEOUT):
                if self._response is not None:
                    # The App returned without answering the handshake.
                    await self.refuse(403, (), b"")
                if self._refused or sock.fileno() == -1:
                    return
                if self._reader_done is not None:
                    await self._reader_done.wait()
                await self.writer.flush()
                await self._linger()
        except (OSError, trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def _linger(self) -> None:
        protocol = self.protocol
        while not self._eof and protocol.close_rcvd is None:
            if protocol.parser_exc is None:
                data = await self.sock.recv(RECV_SIZE)
            else:
                # We failed the connection (1009, 1007, 1002): the parser
                # discards input, so the client's close frame cannot be
                # seen; drain until the input goes quiet instead.
                data = b""
                with trio.move_on_after(LINGER_QUIET):
                    data = await self.sock.recv(RECV_SIZE)
            if not data:
                return
            protocol.receive_data(data)
            protocol.events_received()

    @property
    def client(self) -> str:
        client = self.request.client
        return "-" if client is None else f"{client[0]}:{client[1]}"
