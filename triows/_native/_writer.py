"""Writing to a native connection's socket: frames, and one writer at a time.

Writes are serialized by a flag, not a lock: the first writer writes, a
concurrent writer (another task broadcasting, the reader answering a ping)
appends its bytes to a pending list that the active writer flushes in the same
call, so frames never interleave and an uncontended write costs no extra
scheduling.  A cancelled partial write keeps its unsent tail at the head of the
pending list, so the byte stream stays well-formed for the next frame.
"""

from __future__ import annotations

import contextlib
import os
from typing import Final

import trio
from websockets.frames import Opcode

from .._connection._transport import ClientGone

#: Bytes read per ``recv`` call.
RECV_SIZE: Final = 65536
#: Pending bytes from concurrent writers past which they wait for the writer.
WRITE_HIGH_WATER: Final = 64 * 1024

OP_TEXT: Final = Opcode.TEXT
OP_BINARY: Final = Opcode.BINARY
OP_CONT: Final = Opcode.CONT
OP_PONG: Final = Opcode.PONG

# The server's own send errors (client left, socket closed under us).
_SEND_ERRORS = (OSError, trio.ClosedResourceError, trio.BrokenResourceError)


class _Writer:
    """Serialized writes to one socket without a lock (see the module docstring)."""

    __slots__ = ("_drained", "_pending", "_pending_size", "_writing", "dead", "sock")

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self._writing = False
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._drained: trio.Event | None = None
        #: Set once a write failed: the client is gone, nothing more can be sent.
        self.dead = False

    async def write(self, data: bytes) -> None:
        """Write ``data`` after everything written before it.

        Raises ClientGone if the connection is gone.  Returns once the bytes are
        in the kernel, or, while another task is writing, once they are queued
        behind it (that task writes them); a queue past WRITE_HIGH_WATER makes
        this wait, so a slow client pushes back on every sender.
        """
        if self.dead:
            raise ClientGone()
        if self._writing:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size <= WRITE_HIGH_WATER:
                await trio.lowlevel.checkpoint_if_cancelled()
                return
            # Wait for the writer, then take over (it may have been cancelled).
            while self._writing:
                if self._drained is None:
                    self._drained = trio.Event()
                await self._drained.wait()
                if self.dead:
                    raise ClientGone()
            if not self._pending:
                return
            data = self._pop_pending()
        elif self._pending:
            # A tail left by write_now() or by a cancelled write goes out first.
            self._pending.append(data)
            data = self._pop_pending()
        self._writing = True
        try:
            await self._send_all(data)
            while self._pending:
                await self._send_all(self._pop_pending())
        finally:
            self._writing = False
            if self._drained is not None:
                self._drained.set()
                self._drained = None

    @property
    def pending_bytes(self) -> int:
        """Bytes queued behind the write under way (or left by a cancelled one)."""
        return self._pending_size

    @property
    def idle(self) -> bool:
        """Alive, with no write under way and nothing queued: :meth:`write_now` would write."""
        return not (self.dead or self._writing or self._pending)

    def write_now(self, data: bytes, nursery: trio.Nursery) -> bool:
        """Write ``data`` without yielding if no write is under way or queued.

        False, having done nothing, if one is (or the connection is dead).  True
        once the bytes are the writer's: in the kernel, or, for the tail the
        kernel did not take, queued ahead of any later write and flushed by a
        task started in ``nursery``.
        """
        if not self.idle:
            return False
        try:
            sent = os.write(self.sock.fileno(), data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False  # gone: the next ordinary write reports it
        if sent < len(data):
            self._pending.append(data[sent:])
            self._pending_size += len(data) - sent
            nursery.start_soon(self._flush_quietly)
        return True

    def write_soon(self, data: bytes, nursery: trio.Nursery) -> None:
        """Write ``data`` after everything written before it, without yielding.

        At once if the writer is idle (:meth:`write_now`); else queued behind the
        write under way (which writes it), or flushed by a task started in
        ``nursery``.  Nothing if the connection is dead.  Unbounded: the caller
        waits (:meth:`drain`) once :attr:`pending_bytes` passes WRITE_HIGH_WATER.
        """
        if self.dead or self.write_now(data, nursery):
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if not self._writing:
            nursery.start_soon(self._flush_quietly)

    async def _flush_quietly(self) -> None:
        # ClientGone: the connection's own tasks see the departure.
        with contextlib.suppress(ClientGone):
            await self.flush()

    def _pop_pending(self) -> bytes:
        pending = self._pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._pending_size = 0
        return data

    async def _send_all(self, data: bytes) -> None:
        sock = self.sock
        try:
            # A trio socket send either sends something or raises Cancelled having
            # sent nothing, so only a second call can leave a partial frame.
            sent = await sock.send(data)
            if sent < len(data):
                with memoryview(data) as view:
                    try:
                        while sent < len(data):
                            sent += await sock.send(view[sent:])
                    except trio.Cancelled:
                        # Keep the stream well-formed: the tail goes first next time.
                        self._pending.insert(0, data[sent:])
                        self._pending_size += len(data) - sent
                        raise
        except _SEND_ERRORS as exc:
            self.dead = True
            self._pending.clear()
            self._pending_size = 0
            raise ClientGone() from exc

    async def flush(self) -> None:
        """Write what concurrent writers left behind (a cancelled writer's tail)."""
        if self._pending and not self._writing and not self.dead:
            await self.write(self._pop_pending())

    async def drain(self) -> None:
        """Wait until every byte queued so far is written (or the connection died)."""
        while self._writing and not self.dead:
            if self._drained is None:
                self._drained = trio.Event()
            await self._drained.wait()
        await self.flush()


async def _send_all(sock: trio.socket.SocketType, data: bytes) -> None:
    try:
        with memoryview(data) as view:
            sent = 0
            while sent < len(data):
                sent += await sock.send(view[sent:])
    except _SEND_ERRORS as exc:
        raise ClientGone() from exc
