"""One native WebSocket connection: a Transport on a socket.

The connection owns two things (see ``triows._connection._transport``):

* its **read side** (:class:`~triows._native._reading.Reading`): on plain TCP
  the view's own ``receive()`` reads the socket while it waits, and a reader
  task takes over once the view stays away from ``receive()`` (from the
  handshake on under TLS); either feeds websockets' sans-I/O protocol, puts
  each complete message into a small bounded
  :class:`~triows._serving._inbox.Inbox` (a view that stops reading stops the
  reader: backpressure), writes pongs and the echo of a close frame, and
  reports the client's departure through the core's callback as soon as it
  sees it (close frame, EOF, a protocol failure);
* its **writer** (:class:`~triows._native._writer._Writer`): ``send`` frames a
  batch into one write, ``send_now`` writes it without yielding when the
  writer is idle.  A server frame is never masked, and the server compresses
  without context takeover, so one :class:`~triows._connection._frames.Prepared`
  frame serves every client (one plain, one per permessage-deflate window size).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import trio
from websockets.datastructures import Headers as WSHeaders
from websockets.datastructures import is_valid_header_value
from websockets.exceptions import InvalidHeaderValue
from websockets.http11 import Response as WSResponse
from websockets.protocol import OPEN

from .._connection._transport import ClientGone, DepartureCallback, HandshakeRequest, RawHeaders
from .._serving._date import http_date
from .._serving._keepalive import CLOSE_BUDGET, TIMEOUT_CLOSE, TIMEOUT_DEPARTURE, PingState
from .._serving._logs import logger
from ._http import _reason
from ._protocol import _ServerProtocol
from ._reading import Reading
from ._tls import TLSSocket
from ._writer import RECV_SIZE

if TYPE_CHECKING:
    from .._connection._frames import Prepared
    from .._connection._pacing import Pace
    from ._server import _NativeServer

__all__ = ["INBOX_SIZE", "LINGER_TIMEOUT", "NativeConnection"]

#: Messages the reader may read ahead of the view.
INBOX_SIZE: Final = 8
#: How long a closed connection waits for the client's close frame / EOF.
LINGER_TIMEOUT: Final = 2.0
#: After a protocol failure, how long input must pause before the socket is closed.
LINGER_QUIET: Final = 0.05


class NativeConnection(Reading):
    """One WebSocket connection on a socket, as a Transport (its read side: ``Reading``)."""

    __slots__ = ("_refused", "_response", "ping_state", "request", "target")

    def __init__(
        self,
        server: _NativeServer,
        sock: trio.socket.SocketType,
        protocol: _ServerProtocol,
        request: HandshakeRequest,
        answer: list[tuple[bytes, bytes]],
        *,
        target: str,
        early: bytes = b"",
        plain: bool = True,
    ) -> None:
        super().__init__(server, sock, protocol, early=early, plain=plain, inbox_size=INBOX_SIZE)
        self.request = request
        #: The request-target as sent, for the access log.
        self.target = target
        #: The 101's headers, until the handshake is answered.
        self._response: list[tuple[bytes, bytes]] | None = answer
        #: Keepalive bookkeeping, the server's Keepalive's (triows._serving._keepalive).
        self.ping_state = PingState()
        protocol.on_pong = self._pong
        self._refused = False

    # -- the Transport protocol ---------------------------------------------------------

    @property
    def pace(self) -> Pace:
        return self.server.pace

    def on_departure(self, callback: DepartureCallback) -> None:
        self._callback = callback
        gone = self._gone
        if gone is not None:
            self._callback = None
            callback(gone.code, gone.reason)

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
            return False
        return writer.write_now(self.protocol.frames(messages), nursery)

    async def accept(self, subprotocol: str | None, headers: RawHeaders) -> None:
        answer = self._response
        if answer is None:
            raise RuntimeError("accept() after the handshake was answered")
        self._response = None
        if subprotocol:
            _check_header("Sec-WebSocket-Protocol", subprotocol)
            answer.append((b"Sec-WebSocket-Protocol", subprotocol.encode("latin-1")))
        for name, value in headers:
            _check_header(name.decode("latin-1"), value.decode("latin-1"))
            answer.append((name, value))
        await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled view sends no 101
        self.protocol.send_101(answer)
        writer = self.writer
        if self.plain and self._nursery is not None and writer.idle:
            # Written without yielding (what the kernel does not take is flushed
            # by a task, ahead of anything sent later).
            if not writer.write_now(b"".join(self.protocol.data_to_send()), self._nursery):
                writer.dead = True  # the client is gone
        else:
            await self.flush_protocol()
        if writer.dead:
            self._left(1006, "")
            raise self._departure()
        self.server.opened(self)
        self.server.log_access(self, 101)
        if self._direct:
            # The view reads the socket itself while in receive(); a reader task
            # starts if it stays away (triows._native._reading).
            self.server.away_views.away[self] = self.server.away_views.sweep
        else:
            self.start_reader()

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
        if "Date" not in response_headers:
            response_headers["Date"] = http_date()
        self.protocol.send_response(WSResponse(status, _reason(status), response_headers, body))
        await self.flush_protocol()
        self.server.log_access(self, status)

    async def close(self, code: int, reason: str) -> None:
        protocol = self.protocol
        if protocol.state is OPEN and not self.writer.dead:
            protocol.send_close(code, reason)
            await self.flush_protocol()
        else:
            await trio.lowlevel.checkpoint()

    # -- where the reader runs ------------------------------------------------------------

    def start(self, nursery: trio.Nursery) -> None:
        """Where the reader task and write_now()'s flushes run."""
        self._nursery = nursery

    # -- keepalive and the end ----------------------------------------------------------

    def _pong(self, payload: bytes) -> None:
        if self.server.keepalive is not None:
            self.server.keepalive.pong(self, payload)

    async def ping(self, payload: bytes) -> None:
        """Send a keepalive ping (a short task of the server's Keepalive)."""
        if self.protocol.state is OPEN and not self.writer.dead:
            self.protocol.send_ping(payload)
            await self.flush_protocol()

    async def drop_silent_client(self) -> None:
        """No pong in time: tell the view 1006, send 1011 (within a budget), drop the socket."""
        logger.info("closing the connection of %s: no pong in time", self.client)
        self._left(*TIMEOUT_DEPARTURE)
        if self.protocol.state is OPEN and not self.writer.dead:
            self.protocol.fail(*TIMEOUT_CLOSE)  # behind a stuck write, it never goes out
            with trio.move_on_after(CLOSE_BUDGET):
                await self.flush_protocol()
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
        reader_done = self._reader_done
        if (
            self._response is None
            and (self._eof or self.protocol.close_rcvd is not None)
            and (reader_done is None or reader_done.is_set())
            and not self.protocol.writes
            and (self.writer.idle or self.writer.dead)
        ):
            return  # the client's close is here, ours is written: nothing to wait for
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
                if self.protocol.writes:
                    # The echo of a close frame the view itself read (its task
                    # may not have run yet).
                    await self.flush_protocol()
                await self.writer.drain()
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


def _check_header(name: str, value: str) -> None:
    """A header value the App gives for the 101, checked as websockets' Headers does."""
    if not is_valid_header_value(value):
        raise InvalidHeaderValue(name, value)
