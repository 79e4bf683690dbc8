"""The native backend: triows on trio sockets, with no ASGI server in between.

``triows.serve(app, backend="native")`` runs this instead of hypercorn.  The App is
still driven through its ASGI entry point (one ``receive``/``send`` pair per
connection), but the pair is implemented right on the socket:

* ``receive()`` *is* the socket reader.  The App's receive pump (see
  ``_websocket``) is the only task that reads a connection: each call returns a
  queued event, or reads the socket once, feeds the bytes to the sans-I/O
  protocol and returns the first event they produced.  There is no reader task,
  no queue between the socket and the pump, no cancel scope per message.
* ``send()`` serializes a frame with the protocol and writes it with
  ``socket.send``.  Writes are serialized by a flag, not a lock: the first writer
  writes, a concurrent writer (another task broadcasting, the pump answering a
  ping) appends its bytes to a pending list that the active writer flushes in the
  same ``send`` call, so frames never interleave and an uncontended send costs no
  extra scheduling.  A cancelled partial write keeps its unsent tail at the head
  of the pending list, so the byte stream stays well-formed for the next frame
  (the 1001 close at shutdown, typically).

Protocol handling is websockets' sans-I/O ``ServerProtocol`` (RFC 6455 framing,
handshake validation, C-accelerated unmasking); plain HTTP requests for the App's
HTTP routes go through h11.  Neither is hand-written here.

Fan-out seam: a server frame is never masked, so the bytes of one broadcast frame
are the same for every subscriber.  :func:`encode_frame` builds them once and
:meth:`_WebSocketConnection.send_frame` writes such bytes to one connection
through the same serialized writer (a hub can call it for every subscriber).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import unquote

import h11
import trio
from websockets.datastructures import Headers as WSHeaders
from websockets.frames import Frame, Opcode
from websockets.http11 import Request as WSRequest
from websockets.http11 import Response as WSResponse
from websockets.protocol import CLOSED, OPEN, Protocol
from websockets.server import ServerProtocol

from ._app import App
from ._exceptions import WebSocketDisconnect
from ._types import Message, Scope

__all__ = ["ClientGone", "encode_frame", "serve_native"]

logger = logging.getLogger("triows")
access_logger = logging.getLogger("triows.access")

# websockets logs "connection open/closed" at INFO for every connection; that is an
# access log, which triows controls itself (access_log=True).
_protocol_logger = logging.getLogger("triows.native.protocol")
_protocol_logger.setLevel(logging.WARNING)

#: Bytes read per ``recv`` call.
RECV_SIZE: Final = 65536
#: The largest request head (request line and headers) accepted.
MAX_HEAD_SIZE: Final = 16384
#: Pending bytes from concurrent writers past which they wait for the writer.
WRITE_HIGH_WATER: Final = 64 * 1024
#: How long a closed connection waits for the client's close frame / EOF.
LINGER_TIMEOUT: Final = 2.0
#: After a protocol failure, how long input must pause before the socket is closed.
LINGER_QUIET: Final = 0.05

_UPGRADE_WEBSOCKET = re.compile(rb"\r\nupgrade[ \t]*:[ \t]*websocket", re.IGNORECASE)
_HEAD_END = b"\r\n\r\n"

# The server's own send errors (client left, socket closed under us).
OP_TEXT: Final = Opcode.TEXT
OP_BINARY: Final = Opcode.BINARY
OP_CONT: Final = Opcode.CONT
OP_PONG: Final = Opcode.PONG

_SEND_ERRORS = (OSError, trio.ClosedResourceError, trio.BrokenResourceError)


class ClientGone(OSError):
    """Raised by ``send()`` for a message sent after the client left (ASGI: an OSError)."""


def encode_frame(data: str | bytes) -> bytes:
    """Encode one complete server-to-client message frame (text for ``str``).

    Server frames are not masked, so the result can be written unchanged to any
    number of connections with :meth:`_WebSocketConnection.send_frame`.
    """
    if isinstance(data, str):
        return Frame(OP_TEXT, data.encode()).serialize(mask=False)
    return Frame(OP_BINARY, data).serialize(mask=False)


@functools.cache
def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _plain_response(status: int, text: str) -> bytes:
    body = text.encode()
    headers = WSHeaders(
        [
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", "text/plain; charset=utf-8"),
        ]
    )
    return WSResponse(status, _reason(status), headers, body).serialize()


class _ServerProtocol(ServerProtocol):
    """websockets' protocol, but a close frame may end a fragmented message.

    RFC 6455 5.4 lets control frames (close included) arrive between the fragments
    of a message; websockets fails the connection with 1002 there, where the
    client asked for a normal close (Autobahn case 7.1.5).  The unfinished
    message is dropped and the close is answered as usual.
    """

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE:
            self.current_size = None
        super().recv_frame(frame)


# -- the socket writer ------------------------------------------------------------------


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
            raise ClientGone("the client has closed this WebSocket")
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
                    raise ClientGone("the client has closed this WebSocket")
            if not self._pending:
                return
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
            raise ClientGone("the client has closed this WebSocket") from exc

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


# -- WebSocket connections ----------------------------------------------------------------


class _WebSocketConnection:
    """One WebSocket connection: the ASGI ``receive``/``send`` pair on a socket."""

    __slots__ = (
        "_connected",
        "_disconnect",
        "_drained",
        "_eof",
        "_events",
        "_fragments",
        "_fragments_text",
        "_http_response",
        "_refused",
        "_response",
        "next_ping",
        "ping_deadline",
        "protocol",
        "request",
        "server",
        "sock",
        "writer",
    )

    def __init__(
        self,
        server: _NativeServer,
        sock: trio.socket.SocketType,
        protocol: ServerProtocol,
        request: WSRequest,
        response: WSResponse,
    ) -> None:
        self.server = server
        #: The handshake request, until the ASGI scope is built from it.
        self.request: WSRequest | None = request
        self.sock = sock
        self.protocol = protocol
        self.writer = _Writer(sock)
        self._response: WSResponse | None = response  # the 101, until accepted
        # A list, not a deque: an empty deque costs ~600 bytes per idle connection,
        # and this queue rarely holds more than a few events.
        self._events: list[Message] = []
        self._connected = False
        self._disconnect: Message | None = None
        self._fragments: list[bytes] = []
        self._fragments_text = False
        self._http_response: tuple[int, list[tuple[bytes, bytes]], list[bytes]] | None = None
        #: Keepalive bookkeeping, read by the server's keepalive loop.
        self.next_ping = math.inf
        self.ping_deadline: float | None = None
        self._eof = False
        self._refused = False
        #: Whether the last read returned less than asked: the socket is empty.
        #: True at first: the handshake read everything the client had sent, and an
        #: idle connection then waits in wait_readable (fewer frames than recv).
        self._drained = True

    # -- receive ------------------------------------------------------------------------

    async def receive(self) -> Message:
        """The next ASGI event; reads the socket when none is queued."""
        events = self._events
        if events:
            return events.pop(0)
        if not self._connected:
            self._connected = True
            return {"type": "websocket.connect"}
        protocol = self.protocol
        sock = self.sock
        while True:
            if self._disconnect is not None:
                return self._disconnect
            try:
                if self._drained:
                    # The last read emptied the socket: wait for data first, then
                    # read it, instead of a read that fails with EAGAIN first
                    # (one syscall less per message; still one checkpoint).
                    await trio.lowlevel.wait_readable(sock)
                    try:
                        data = os.read(sock.fileno(), RECV_SIZE)
                    except BlockingIOError:
                        continue
                else:
                    data = await sock.recv(RECV_SIZE)
            except (OSError, trio.ClosedResourceError):
                data = b""
            self._drained = len(data) < RECV_SIZE
            if data:
                protocol.receive_data(data)
            else:
                self._eof = True
                protocol.receive_eof()
            self._take_events()
            if protocol.writes:  # pongs, the echo of a close frame, a 1009 close
                await self._flush_protocol()
            if events:
                return events.pop(0)

    def _take_events(self) -> None:
        protocol = self.protocol
        events = self._events
        for frame in protocol.events_received():
            if not isinstance(frame, Frame):
                continue  # a second request during the handshake: nothing for the App
            opcode = frame.opcode
            if opcode is OP_TEXT or opcode is OP_BINARY:
                if not frame.fin:
                    self._fragments = [bytes(frame.data)]
                    self._fragments_text = opcode is OP_TEXT
                    continue
                data = frame.data
                is_text = opcode is OP_TEXT
            elif opcode is OP_CONT:
                self._fragments.append(bytes(frame.data))
                if not frame.fin:
                    continue
                data = b"".join(self._fragments)
                self._fragments = []
                is_text = self._fragments_text
            else:
                if opcode is OP_PONG and self.ping_deadline is not None:
                    self.ping_deadline = None
                    self.next_ping = trio.current_time() + self.server.ping_interval_or_inf
                continue
            if is_text:
                try:
                    text = bytes(data).decode()
                except UnicodeDecodeError:
                    if protocol.state is OPEN:
                        protocol.fail(1007, "invalid UTF-8 in a text message")
                    break
                events.append({"type": "websocket.receive", "text": text})
            else:
                events.append({"type": "websocket.receive", "bytes": bytes(data)})
        if protocol.state is not OPEN and self._disconnect is None:
            self._check_ended()

    def _check_ended(self) -> None:
        """Record the client's departure once the protocol says the connection ended."""
        protocol = self.protocol
        received = protocol.close_rcvd
        if received is not None:
            code, reason = received.code, received.reason
        elif protocol.parser_exc is not None or protocol.state is CLOSED:
            sent = protocol.close_sent
            if isinstance(protocol.parser_exc, EOFError) or sent is None:
                code, reason = 1006, ""
            else:
                # The server failed the connection (1009 message too big, 1002,
                # 1007): the view sees the code the client was sent.
                code, reason = sent.code, sent.reason
        else:
            return  # we sent a close frame; the client's answer is still to come
        self._disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        self._events.append(self._disconnect)

    def _client_gone(self, code: int = 1006, reason: str = "") -> None:
        if self._disconnect is None:
            self._disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self._events.append(self._disconnect)

    async def _flush_protocol(self) -> None:
        """Write what the protocol produced; a trailing EOF half-closes the socket."""
        chunks = self.protocol.data_to_send()
        eof = chunks[-1] == b"" if chunks else False
        data = b"".join(chunks)
        try:
            if data:
                await self.writer.write(data)
            if eof:
                # Our bytes may be queued behind another task's write (the view
                # echoing a message): half-close only once they are on the wire,
                # or the client never sees our close frame.
                await self.writer.drain()
                self.sock.shutdown(trio.socket.SHUT_WR)
        except ClientGone:
            self._client_gone()
        except OSError:
            pass  # shutdown() on a socket the peer already reset

    # -- send ---------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        """Carry out one ASGI event from the App."""
        kind = message["type"]
        protocol = self.protocol
        if kind == "websocket.send":
            if protocol.state is not OPEN or self.writer.dead:
                raise ClientGone("the client has closed this WebSocket")
            text = message.get("text")
            if text is not None:
                protocol.send_text(text.encode())
            else:
                protocol.send_binary(message["bytes"])
            writes = protocol.data_to_send()
            await self.writer.write(writes[0] if len(writes) == 1 else b"".join(writes))
        elif kind == "websocket.accept":
            await self._accept(message)
        elif kind == "websocket.close":
            if self._response is not None:
                await self._refuse(403, [], [b""])
            elif protocol.state is OPEN and not self.writer.dead:
                protocol.send_close(int(message.get("code", 1000)), message.get("reason") or "")
                await self._flush_protocol()
        elif kind == "websocket.http.response.start":
            if self._response is None or self._http_response is not None:
                raise RuntimeError(f"{kind} after the handshake was answered")
            self._http_response = (int(message["status"]), list(message.get("headers", [])), [])
        elif kind == "websocket.http.response.body":
            if self._http_response is None:
                raise RuntimeError(f"{kind} before websocket.http.response.start")
            status, headers, body = self._http_response
            body.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                await self._refuse(status, headers, body)
        else:
            raise ValueError(f"the native backend cannot send an ASGI {kind!r} event")

    async def send_frame(self, frame: bytes) -> None:
        """Write one already-encoded message frame (see :func:`encode_frame`).

        The fan-out seam: a broadcaster encodes once and calls this for each
        subscriber.  Raises ClientGone like ``send()``.
        """
        if self.protocol.state is not OPEN or self.writer.dead:
            raise ClientGone("the client has closed this WebSocket")
        await self.writer.write(frame)

    async def _accept(self, message: Message) -> None:
        response = self._response
        if response is None:
            raise RuntimeError("websocket.accept sent twice, or after the handshake was refused")
        self._response = None
        subprotocol = message.get("subprotocol")
        if subprotocol:
            response.headers["Sec-WebSocket-Protocol"] = subprotocol
        for name, value in message.get("headers") or ():
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
        self.protocol.send_response(response)
        await self._flush_protocol()
        if self.writer.dead:
            raise ClientGone("the client left during the handshake")
        self.server.opened(self)
        self.server.log_access(self, 101)

    async def _refuse(
        self, status: int, headers: list[tuple[bytes, bytes]], body: list[bytes]
    ) -> None:
        self._response = None
        self._http_response = None
        self._refused = True
        content = b"".join(body)
        response_headers = WSHeaders()
        for name, value in headers:
            response_headers[name.decode("latin-1")] = value.decode("latin-1")
        if "Content-Length" not in response_headers:
            response_headers["Content-Length"] = str(len(content))
        response_headers["Connection"] = "close"
        self.protocol.send_response(WSResponse(status, _reason(status), response_headers, content))
        await self._flush_protocol()
        self.server.log_access(self, status)

    # -- keepalive and the end ----------------------------------------------------------

    async def ping(self) -> None:
        """Send a keepalive ping (run as a short task by the server's keepalive loop)."""
        if self.protocol.state is OPEN and not self.writer.dead:
            self.protocol.send_ping(os.urandom(4))
            await self._flush_protocol()

    async def drop_silent_client(self) -> None:
        """No pong in time: send 1011 (best effort), then drop the connection.

        Closing the socket wakes the receive pump, which reports a disconnect
        (1006, "ping timeout"), so the view is cancelled, or its receive raises.
        """
        logger.info("triows: closing %s: no pong in time", self.client)
        if self.protocol.state is OPEN and not self.writer.dead:
            self.protocol.fail(1011, "ping timeout")
            with trio.move_on_after(1.0):
                await self._flush_protocol()
        self._client_gone(1006, "ping timeout")
        self.writer.dead = True
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()

    async def finish(self) -> None:
        """After the App returned: flush, then wait briefly for the client's close.

        Closing a socket with unread input resets the connection, and a reset can
        destroy the close frame the client has not read yet; so until the
        client's close frame or EOF arrives, input is read and dropped (at most
        LINGER_TIMEOUT seconds).  A refused handshake needs no wait.
        """
        sock = self.sock
        if sock.fileno() == -1:
            return
        protocol = self.protocol
        try:
            with trio.move_on_after(LINGER_TIMEOUT):
                if self._response is not None:
                    # The App returned without answering the handshake.
                    await self._refuse(403, [], [b""])
                if self._refused:
                    return
                await self.writer.flush()
                while not self._eof and protocol.close_rcvd is None:
                    if protocol.parser_exc is None:
                        data = await sock.recv(RECV_SIZE)
                    else:
                        # We failed the connection (1009, 1007, 1002): the parser
                        # discards input, so the client's close frame cannot be
                        # seen; drain until the input goes quiet instead.
                        data = b""
                        with trio.move_on_after(LINGER_QUIET):
                            data = await sock.recv(RECV_SIZE)
                    if not data:
                        return
                    protocol.receive_data(data)
                    protocol.events_received()
        except (OSError, trio.ClosedResourceError):
            pass

    @property
    def client(self) -> str:
        try:
            host, port = self.sock.getpeername()[:2]
        except OSError:
            return "?"
        return f"{host}:{port}"


# -- HTTP requests ------------------------------------------------------------------------


class _HTTPExchange:
    """One HTTP request/response on an h11 connection, as an ASGI receive/send pair."""

    __slots__ = ("_body_done", "_conn", "_responded", "_sock", "_started", "_status")

    def __init__(self, conn: h11.Connection, sock: trio.socket.SocketType) -> None:
        self._conn = conn
        self._sock = sock
        self._body_done = False
        self._started: h11.Response | None = None
        self._responded = trio.Event()
        self._status = 0

    async def receive(self) -> Message:
        if self._body_done:
            await self._responded.wait()
            return {"type": "http.disconnect"}
        conn = self._conn
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await self._sock.recv(RECV_SIZE)
                except (OSError, trio.ClosedResourceError):
                    data = b""
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Data):
                return {"type": "http.request", "body": bytes(event.data), "more_body": True}
            self._body_done = True
            if isinstance(event, h11.EndOfMessage):
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        conn = self._conn
        if kind == "http.response.start":
            self._status = int(message["status"])
            self._started = h11.Response(
                status_code=self._status,
                headers=list(message.get("headers", [])),
                reason=_reason(self._status).encode(),
            )
            return
        if kind != "http.response.body":
            raise ValueError(f"the native backend cannot send an ASGI {kind!r} event here")
        if self._responded.is_set():
            return
        out: list[bytes] = []
        if self._started is not None:
            out.append(conn.send(self._started) or b"")
            self._started = None
        body = bytes(message.get("body", b""))
        if body:
            out.append(conn.send(h11.Data(data=body)) or b"")
        if not message.get("more_body", False):
            out.append(conn.send(h11.EndOfMessage()) or b"")
            self._responded.set()
        await _send_all(self._sock, b"".join(out))

    @property
    def complete(self) -> bool:
        return self._responded.is_set()

    @property
    def status(self) -> int:
        return self._status


async def _send_all(sock: trio.socket.SocketType, data: bytes) -> None:
    try:
        with memoryview(data) as view:
            sent = 0
            while sent < len(data):
                sent += await sock.send(view[sent:])
    except _SEND_ERRORS as exc:
        raise ClientGone("the client has closed the connection") from exc


# -- the server ---------------------------------------------------------------------------


class _NativeServer:
    def __init__(
        self,
        app: App,
        *,
        host: str,
        max_message_size: int,
        ping_interval: float | None,
        ping_timeout: float,
        handshake_timeout: float,
        access_log: bool,
    ) -> None:
        self.app = app
        self.host = host
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.handshake_timeout = handshake_timeout
        self.access_log = access_log
        self.state: dict[str, Any] = {}
        self.port = 0
        self._live: set[_WebSocketConnection] = set()

    def log_access(self, conn: _WebSocketConnection, status: int) -> None:
        if self.access_log:
            access_logger.info("%s WebSocket %d", conn.client, status)

    # -- per connection -------------------------------------------------------------------

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one TCP connection (run by ``trio.serve_listeners``)."""
        sock = stream.socket
        try:
            head = bytearray()
            conn: _WebSocketConnection | None = None
            with trio.move_on_after(self.handshake_timeout) as waiting:
                complete = await _read_head(sock, head)
                if complete is None:
                    await _send_all(sock, _plain_response(431, "request head too large\n"))
                    return
                if not complete:
                    return  # the client left before sending a request
                end = head.find(_HEAD_END)
                if _UPGRADE_WEBSOCKET.search(head, 0, end) is not None:
                    conn = await self._handshake(sock, bytes(head))
                    if conn is None:
                        return
            if waiting.cancelled_caught:
                return  # slowloris: no complete request head in time
            if conn is None:
                await self._serve_http(sock, head)
            else:
                await self._serve_websocket(conn)
        except ClientGone:
            pass
        except Exception:
            # Never let one connection take the server down.
            logger.exception("triows: unexpected error serving a connection")
        finally:
            sock.close()

    async def _handshake(
        self, sock: trio.socket.SocketType, head: bytes
    ) -> _WebSocketConnection | None:
        protocol = _ServerProtocol(max_size=self.max_message_size, logger=_protocol_logger)
        protocol.receive_data(head)
        events = protocol.events_received()
        request = events[0] if events else None
        if not isinstance(request, WSRequest):
            # websockets already wrote 414/431 for an oversized head; 400 otherwise.
            writes = b"".join(protocol.data_to_send())
            if not writes.startswith(b"HTTP/"):
                writes = _plain_response(400, "malformed WebSocket handshake\n")
            await _send_all(sock, writes)
            return None
        response = protocol.accept(request)
        if response.status_code != 101:
            # Not a valid handshake (missing key, wrong version, not GET): websockets'
            # own 400/405/426 answer, without bothering the App.
            if [v.strip() for v in request.headers.get_all("Sec-WebSocket-Version")] not in (
                [],
                ["13"],
            ):
                # RFC 6455 4.2.2: a wrong version gets the versions this server speaks.
                headers = WSHeaders([("Sec-WebSocket-Version", "13"), ("Connection", "close")])
                headers["Content-Length"] = "0"
                response = WSResponse(426, _reason(426), headers, b"")
            protocol.send_response(response)
            await _send_all(sock, b"".join(protocol.data_to_send()))
            return None
        # Frames a client sent before our answer stay queued in the protocol.
        protocol.events[:0] = events[1:]
        if len(events) == 1 and not protocol.reader.buffer and head.endswith(_HEAD_END):
            # The parser (a generator) keeps the handshake request, headers and
            # all, in its frame for the connection's lifetime.  It consumed
            # exactly the request and waits at the start of the frame loop, so
            # restart it there with the frame parser alone.
            protocol.parser = Protocol.parse(protocol)
            next(protocol.parser)
        return _WebSocketConnection(self, sock, protocol, request, response)

    async def _serve_websocket(self, conn: _WebSocketConnection) -> None:
        scope = self._websocket_scope(conn)
        try:
            await self.app(scope, conn.receive, conn.send)
        except WebSocketDisconnect as exc:
            # A close code the route does not catch: the App re-raises it to the server.
            logger.info("triows: %s %s: %s", conn.client, scope["path"], exc)
        except Exception:
            logger.exception("triows: error in the App serving WebSocket %s", scope["path"])
        finally:
            self._live.discard(conn)
        await conn.finish()

    def opened(self, conn: _WebSocketConnection) -> None:
        """An accepted connection: from now on the keepalive loop pings it."""
        if self.ping_interval is not None:
            conn.next_ping = trio.current_time() + self.ping_interval
            self._live.add(conn)

    @property
    def ping_interval_or_inf(self) -> float:
        return math.inf if self.ping_interval is None else self.ping_interval

    async def _keepalive(self, nursery: trio.Nursery, interval: float) -> None:
        """One task for every connection's keepalive: no task or timer per connection.

        Each connection is pinged ``interval`` seconds after its last pong (or its
        accept) and dropped when the pong is ``ping_timeout`` seconds late, with a
        precision of a quarter of the shorter of the two.
        """
        timeout = self.ping_timeout
        tick = min(interval, timeout) / 4
        while True:
            await trio.sleep(tick)
            now = trio.current_time()
            for conn in list(self._live):
                deadline = conn.ping_deadline
                if deadline is not None:
                    if now >= deadline:
                        self._live.discard(conn)
                        nursery.start_soon(conn.drop_silent_client)
                elif now >= conn.next_ping:
                    conn.ping_deadline = now + timeout
                    nursery.start_soon(conn.ping)

    def _websocket_scope(self, conn: _WebSocketConnection) -> Scope:
        request = conn.request
        assert request is not None
        conn.request = None  # an idle connection keeps only what it needs
        raw_path, _, query = request.path.partition("?")
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.raw_items()
        ]
        subprotocols = [
            item.strip()
            for value in request.headers.get_all("Sec-WebSocket-Protocol")
            for item in value.split(",")
            if item.strip()
        ]
        return {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": unquote(raw_path),
            "raw_path": raw_path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": headers,
            "client": _address(conn.sock, peer=True),
            "server": _address(conn.sock, peer=False),
            "subprotocols": subprotocols,
            "extensions": {"websocket.http.response": {}},
            "state": dict(self.state),
        }

    async def _serve_http(self, sock: trio.socket.SocketType, head: bytearray) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
        conn.receive_data(bytes(head))
        while True:
            try:
                with trio.move_on_after(self.handshake_timeout) as waiting:
                    event = await _next_h11_event(conn, sock)
                if waiting.cancelled_caught or not isinstance(event, h11.Request):
                    return
            except h11.RemoteProtocolError as exc:
                with trio.move_on_after(1):
                    await _send_all(sock, _plain_response(exc.error_status_hint, f"{exc}\n"))
                return
            exchange = _HTTPExchange(conn, sock)
            scope = self._http_scope(event, sock)
            try:
                await self.app(scope, exchange.receive, exchange.send)
            except ClientGone:
                return
            except Exception:
                logger.exception("triows: error in the App serving HTTP %s", scope["path"])
                if not exchange.complete and conn.our_state is h11.SEND_RESPONSE:
                    await _send_all(sock, _plain_response(500, "internal server error\n"))
                return
            if not exchange.complete:
                return
            if self.access_log:
                access_logger.info(
                    "%s %s %s %d",
                    scope["client"],
                    event.method.decode(),
                    event.target.decode(),
                    exchange.status,
                )
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    def _http_scope(self, request: h11.Request, sock: trio.socket.SocketType) -> Scope:
        raw_path, _, query = request.target.partition(b"?")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode(),
            "method": request.method.decode(),
            "scheme": "http",
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": [(name, value) for name, value in request.headers],
            "client": _address(sock, peer=True),
            "server": _address(sock, peer=False),
            "state": dict(self.state),
        }

    # -- lifetime -------------------------------------------------------------------------

    async def run(
        self,
        port: int,
        stop: trio.Event,
        shutdown_timeout: float,
        task_status: trio.TaskStatus[int],
    ) -> None:
        async with trio.open_nursery() as lifespan_nursery:
            lifespan = _Lifespan(self.app, self.state)
            await lifespan.startup(lifespan_nursery)
            try:
                listeners = await trio.open_tcp_listeners(port, host=self.host)
                self.port = listeners[0].socket.getsockname()[1]
                async with trio.open_nursery() as connections:
                    accepting = trio.CancelScope()

                    async def accept() -> None:
                        with accepting:
                            async with trio.open_nursery() as services:
                                if self.ping_interval is not None:
                                    services.start_soon(
                                        self._keepalive, connections, self.ping_interval
                                    )
                                await trio.serve_listeners(
                                    self.handle, listeners, handler_nursery=connections
                                )

                    connections.start_soon(accept)
                    task_status.started(self.port)
                    await stop.wait()
                    # Close every WebSocket with 1001 (new ones get 503 meanwhile),
                    # then stop listening; connections still open get the rest of
                    # the budget to finish their closing handshake.
                    deadline = trio.current_time() + shutdown_timeout
                    with trio.move_on_at(deadline):
                        await self.app.close_connections(shutdown_timeout)
                    accepting.cancel()
                    connections.cancel_scope.deadline = max(deadline, trio.current_time() + 0.1)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(shutdown_timeout):
                    await lifespan.shutdown()
            lifespan_nursery.cancel_scope.cancel()


async def _read_head(sock: trio.socket.SocketType, head: bytearray) -> bool | None:
    """Read until the end of the request head: True; EOF first: False; too large: None."""
    start = 0
    while True:
        try:
            data = await sock.recv(RECV_SIZE)
        except (OSError, trio.ClosedResourceError):
            return False
        if not data:
            return False
        head += data
        if head.find(_HEAD_END, start) != -1:
            return True
        if len(head) > MAX_HEAD_SIZE:
            return None
        start = max(0, len(head) - 3)


async def _next_h11_event(conn: h11.Connection, sock: trio.socket.SocketType) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await sock.recv(RECV_SIZE)
        except (OSError, trio.ClosedResourceError):
            data = b""
        conn.receive_data(data)


def _address(sock: trio.socket.SocketType, *, peer: bool) -> tuple[str, int] | None:
    try:
        address = sock.getpeername() if peer else sock.getsockname()
    except OSError:
        return None
    return (str(address[0]), int(address[1]))


class _Lifespan:
    """Runs the App's ASGI lifespan, as an ASGI server would."""

    def __init__(self, app: App, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self._to_app, self._app_inbox = trio.open_memory_channel[Message](math.inf)
        self._app_outbox, self._from_app = trio.open_memory_channel[Message](math.inf)
        self._supported = True

    async def _run_app(self) -> None:
        scope: Scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        async with self._app_outbox:
            try:
                await self.app(scope, self._app_inbox.receive, self._app_outbox.send)
            except Exception:
                logger.exception("triows: the App's lifespan raised")

    async def _reply(self, stage: str) -> None:
        try:
            message = await self._from_app.receive()
        except trio.EndOfChannel:
            self._supported = False  # the App returned: it does not do lifespan
            return
        if message["type"] == f"{stage}.failed":
            raise RuntimeError(f"{stage} failed: {message.get('message', '')}")

    async def startup(self, nursery: trio.Nursery) -> None:
        """Run the App's startup; raises RuntimeError if it failed."""
        nursery.start_soon(self._run_app)
        await self._to_app.send({"type": "lifespan.startup"})
        await self._reply("lifespan.startup")

    async def shutdown(self) -> None:
        if not self._supported:
            return
        await self._to_app.send({"type": "lifespan.shutdown"})
        try:
            await self._reply("lifespan.shutdown")
        except RuntimeError:
            logger.exception("triows: the App's shutdown failed")


async def serve_native(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    shutdown_timeout: float = 5.0,
    max_message_size: int = 1024 * 1024,
    ping_interval: float | None = None,
    ping_timeout: float = 20.0,
    handshake_timeout: float = 10.0,
    access_log: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on trio sockets until cancelled (``triows.serve(backend="native")``).

    Runs the App's lifespan startup, then listens on ``host:port`` and passes the
    bound port to ``task_status.started()``.  Each connection is either a
    WebSocket handshake (served by the App's WebSocket routes) or plain HTTP/1.1
    (its HTTP routes, keep-alive included).  A request head must arrive within
    ``handshake_timeout`` seconds.  With ``ping_interval`` the server pings every
    client that often and drops one whose pong does not come within
    ``ping_timeout`` seconds (its view is cancelled).  Messages larger than
    ``max_message_size`` bytes close the connection with 1009.

    Cancellation is a graceful shutdown: open WebSockets are closed with 1001
    (views cancelled), new ones are refused with 503, listening stops, and within
    about ``shutdown_timeout`` seconds remaining connections are dropped and the
    App's lifespan shutdown runs.
    """
    server = _NativeServer(
        app,
        host=host,
        max_message_size=max_message_size,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        handshake_timeout=handshake_timeout,
        access_log=access_log,
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        # The server runs shielded: cancelling serve_native() must become a
        # graceful shutdown, not an abrupt cancel of every connection.
        server_scope = trio.CancelScope(shield=True)

        async def run_server(task_status: trio.TaskStatus[int]) -> None:
            with server_scope:
                await server.run(port, stop, shutdown_timeout, task_status)

        bound: int = await nursery.start(run_server)
        task_status.started(bound)
        try:
            await trio.sleep_forever()
        finally:
            stop.set()
            server_scope.deadline = trio.current_time() + 2 * shutdown_timeout + 1
