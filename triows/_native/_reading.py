"""Who reads a native connection's socket: the view itself, or a reader task.

On plain TCP, a view waiting in ``receive()`` with nothing in its inbox reads
the socket itself (:meth:`Reading.receive`), and so does a hub ``forward()``
waiting in ``idle()`` (:meth:`Reading.read_idle`): no reader task for an idle
connection, no task switch per message.  Somebody must still read while the
view does something else (a timer, a database), or a departure, a ping or a
close frame would go unseen: the server's one :class:`AwayViews` task looks
every ``AWAY_SWEEP`` seconds at the connections whose view left, and starts the
reader task (:meth:`Reading.read`) for each one away since before its last
look; it reads for the rest of the connection's life (under TLS from the
handshake on).  Every way, :meth:`Reading.consume` turns bytes into messages in
the inbox, the departure, and the protocol's answers (pongs, a close's echo).
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

import trio
from websockets.protocol import OPEN

from .._connection._transport import ClientGone, DepartureCallback
from .._serving._inbox import Inbox
from ._away import AWAY_SWEEP, AwayViews
from ._idle import IDLE_OFF
from ._ready import ReadyReading
from ._writer import RECV_SIZE, WRITE_HIGH_WATER, _Writer

if TYPE_CHECKING:
    from ._protocol import _ServerProtocol
    from ._server import _NativeServer

__all__ = ["AWAY_SWEEP", "AwayViews", "Reading"]  # (the first two: _away's, for _server)


class Reading(ReadyReading):
    """The read side of a native connection: the inbox, the departure, who reads."""

    __slots__ = (
        "_callback",
        "_direct",
        "_eof",
        "_gone",
        "_idle",
        "_inbox",
        "_nursery",
        "_reader_done",
        "_receiving",
        "_stopped",
        "_waiting",
        "plain",
        "protocol",
        "server",
        "sock",
        "writer",
    )

    def __init__(
        self,
        server: _NativeServer,
        sock: trio.socket.SocketType,
        protocol: _ServerProtocol,
        *,
        early: bytes,
        plain: bool,
        inbox_size: int,
    ) -> None:
        self.server = server
        self.sock = sock
        #: Plain TCP (not TLS): the raw-socket fast paths apply.
        self.plain = plain
        self.protocol = protocol
        self.writer = _Writer(sock)
        #: What the client sent after its request head: frames, parsed once accepted.
        self._early = early
        self._inbox: Inbox[str | bytes] = Inbox(inbox_size)
        self._gone: ClientGone | None = None
        self._callback: DepartureCallback | None = None
        self._nursery: trio.Nursery | None = None
        #: Whether receive() reads the socket itself (plain TCP, no reader task yet).
        self._direct = plain
        #: How many tasks are inside receive().
        self._receiving = 0
        #: The reader task's current wait, cancelled by stop_reading().
        self._waiting: trio.CancelScope | None = None
        self._reader_done: trio.Event | None = None
        self._idle_state = IDLE_OFF  # (IdleReading's)
        self._idle_task = None
        self._idle_readable = False
        self._armed = -1  # (ReadyReading's)
        self.ready = False
        self.ended = False
        self._parked = None
        self._stopped = False
        #: Whether the reader task waits (for the socket, or for room in the inbox).
        self._idle = False
        self._eof = False
        #: Whether the last read returned less than asked: the socket is empty.
        #: True at first: the handshake read everything the client had sent, and an
        #: idle connection then waits in wait_readable (fewer syscalls than recv).
        self._drained = True

    # -- receiving --------------------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next message; ClientGone once the client left and its messages are read.

        On plain TCP, with nothing in the inbox and no other task receiving, the
        view reads the socket itself, inlined here (one coroutine frame per
        waiting view, none for a reader).  Always a cancel point; a schedule
        point only when it waits (for the socket, or for the reader task): a
        message already in the inbox, or bytes already in the socket after a
        full read, are taken without a pass of the scheduler (the core bounds
        how long that goes on: ``_connection._pacing``).  Cancel-safe: Cancelled
        is raised only before a message is taken.
        """
        inbox = self._inbox
        away = self.server.away_views
        direct = self._direct and not inbox and self._receiving == 0
        self._receiving += 1
        try:
            if direct:
                if self._idle_state != IDLE_OFF:
                    self.wake()  # read_idle() reads no more: this task does
                away.away.pop(self, None)
                if self._early:
                    early, self._early = self._early, b""
                    self.consume(early)
                waited = False
                sock = self.sock
                pace = self.server.pace
                while not inbox and self._gone is None and not self._eof:
                    waited = True  # (a cancel point, just below)
                    try:
                        if not self._drained:
                            # The last read filled its buffer: more is likely there.
                            await trio.lowlevel.checkpoint_if_cancelled()
                        elif not await self.wait_ready(away.ready, sock.fileno(), pace):
                            # As in _recv(): wait for data, then read it.
                            await trio.lowlevel.wait_readable(sock)
                            pace.yielded()  # every other task ran meanwhile
                        # (fileno() again: -1, and EBADF, once closed meanwhile)
                        data = os.read(sock.fileno(), RECV_SIZE)
                    except BlockingIOError:
                        self._drained = True
                        self.ready = False
                        continue
                    except (OSError, trio.ClosedResourceError, trio.BrokenResourceError):
                        data = b""
                    self._drained = len(data) < RECV_SIZE
                    # Emptied: bytes arriving from now on are a new report (but
                    # an end already reported is not reported again).
                    self.ready = self.ended or (self.ready and not self._drained)
                    self.consume(data)
                    if self.writer.pending_bytes > WRITE_HIGH_WATER:
                        # Answers (pongs) the client does not read: read no more
                        # until they are written (the messages are in the inbox).
                        await self.writer.drain()
                if self._eof and self._gone is None:
                    self._left(1006, "")  # (the protocol reports every end; never wait)
                if inbox and waited:
                    return inbox.get_nowait()
            if inbox:
                # A message is here already: a cancel point, not a schedule point.
                await trio.lowlevel.checkpoint_if_cancelled()
                return inbox.get_nowait()
            message = await inbox.get()  # waits (it yields), then a message or EndOfChannel
            self.server.pace.yielded()  # every other task ran meanwhile
            return message
        except trio.EndOfChannel:
            raise self._departure() from None
        finally:
            self._receiving -= 1
            if self._receiving == 0 and self._direct:
                away.away[self] = away.sweep

    def consume(self, data: bytes) -> None:
        """Feed what the socket gave (``b""``: its end) to the protocol, without
        yielding: messages into the inbox (past its capacity: at most one read's
        worth), the departure, and the protocol's answers to a task of their own."""
        protocol = self.protocol
        inbox = self._inbox
        if data:
            for message in protocol.receive_frames(data):
                inbox.put_nowait(message)
        else:
            self._eof = True
            protocol.receive_eof()
        if protocol.events:
            for message in protocol.take_messages():
                inbox.put_nowait(message)
        if protocol.state is not OPEN:
            ended = protocol.departure(self._eof)
            if ended is not None:
                self._left(*ended)
        if protocol.writes and self._nursery is not None:
            self._answer(self._nursery)

    def _answer(self, nursery: trio.Nursery) -> None:
        """Write the protocol's answers (a pong, the echo of a close frame, a 1009
        close) without yielding, before anything the view sends next; a trailing
        EOF half-closes the socket once they are on the wire."""
        chunks = self.protocol.data_to_send()
        eof = chunks[-1] == b"" if chunks else False
        writer = self.writer
        writer.write_soon(b"".join(chunks), nursery)
        if eof:
            if writer.idle:
                self._half_close()
            else:
                nursery.start_soon(self._half_close_after_writes)

    async def _half_close_after_writes(self) -> None:
        try:
            await self.writer.drain()
        except ClientGone:
            self._left(1006, "")
            return
        self._half_close()

    def _half_close(self) -> None:
        with contextlib.suppress(OSError):  # a socket the peer already reset
            self.sock.shutdown(trio.socket.SHUT_WR)

    # -- the reader task ----------------------------------------------------------------

    def start_reader(self) -> None:
        """From now on a reader task reads the socket (the view is away, or TLS)."""
        self.disarm(self.server.away_views.ready)
        if self._direct:
            self._direct = False
            if self._gone is not None or self._stopped or self._nursery is None:
                return
        elif self._reader_done is not None or self._nursery is None:
            return
        self._reader_done = trio.Event()
        self._nursery.start_soon(self.read)

    def stop_reading(self) -> None:
        """The view is done: no more direct reads, and the reader stops at its next wait."""
        self._stopped = True
        self.disarm(self.server.away_views.ready)
        if self._direct:
            self._direct = False
            self.server.away_views.away.pop(self, None)
        if self._waiting is not None and self._idle:
            # Only while the reader waits: a write it has begun (a pong, the echo
            # of a close frame) is never cut, which would break a TLS stream.
            self._waiting.cancel()

    async def read(self) -> None:
        """The reader task: read until the client leaves or stop_reading()."""
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
                await self._deliver([])
                while self._gone is None and not self._eof and not self._stopped:
                    self._idle = True
                    data = await self._recv()
                    self._idle = False
                    if data is None:
                        continue  # nothing to read after all
                    parsed: list[str | bytes] = []
                    if data:
                        parsed = self.protocol.receive_frames(data)
                    else:
                        self._eof = True
                        self.protocol.receive_eof()
                    await self._deliver(parsed)
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

    async def _deliver(self, parsed: list[str | bytes]) -> None:
        """Hand what the protocol parsed (``parsed`` first) to the view; write what
        it answered."""
        protocol = self.protocol
        messages = parsed
        if protocol.events:
            messages += protocol.take_messages()
        ended = None if protocol.state is OPEN else protocol.departure(self._eof)
        if ended is not None:
            # Nothing follows the departure: the last messages go in past the
            # inbox's capacity (at most one read's worth), then the departure.
            for message in messages:
                self._inbox.put_nowait(message)
            messages = []
            self._left(*ended)
        if protocol.writes:  # pongs, the echo of a close frame, a 1009 close
            await self.flush_protocol()  # not cancelled by stop_reading (see there)
        self._idle = True
        for message in messages:
            await self._inbox.put(message)
        self._idle = False

    async def flush_protocol(self) -> None:
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

    # -- the departure ------------------------------------------------------------------

    def _left(self, code: int, reason: str) -> None:
        """The client has gone: tell the core (once) and end the inbox."""
        if self._gone is not None:
            return
        self._gone = ClientGone(code, reason)
        self.server.forget(self)  # type: ignore[arg-type]  # a NativeConnection
        self._inbox.close()
        self.resume_idle(False)  # a parked read_idle() returns (its caller sees the departure)
        self.disarm(self.server.away_views.ready)  # and so does a parked receive()
        callback, self._callback = self._callback, None
        if callback is not None:
            callback(code, reason)

    def _departure(self) -> ClientGone:
        gone = self._gone
        return ClientGone() if gone is None else ClientGone(gone.code, gone.reason)
