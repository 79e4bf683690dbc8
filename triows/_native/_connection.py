"""One native WebSocket connection: the ASGI receive/send pair on a socket."""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Any, Final

import trio
from websockets.datastructures import Headers as WSHeaders
from websockets.frames import Frame, Opcode
from websockets.http11 import Request as WSRequest
from websockets.http11 import Response as WSResponse
from websockets.protocol import CLOSED, OPEN
from websockets.server import ServerProtocol

from .._broadcast import BATCH_EVENT, Prepared
from .._transport import Departure
from .._types import Message
from ._http import _reason
from ._writer import (
    OP_BINARY,
    OP_CONT,
    OP_PONG,
    OP_TEXT,
    RECV_SIZE,
    ClientGone,
    _Writer,
)

logger = logging.getLogger("triows")

if TYPE_CHECKING:
    from ._server import _NativeServer


#: How long a closed connection waits for the client's close frame / EOF.
LINGER_TIMEOUT: Final = 2.0
#: After a protocol failure, how long input must pause before the socket is closed.
LINGER_QUIET: Final = 0.05


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
        "departure",
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
        #: Told out of band when the client is gone (ping deadline, failed write):
        #: the App's pump may be waiting for its view, not reading (see _transport).
        self.departure = Departure(pump=True)
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
            self.departure.set(code, reason)
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
        elif kind == BATCH_EVENT:
            if protocol.state is not OPEN or self.writer.dead:
                raise ClientGone("the client has closed this WebSocket")
            await self.writer.write(self._frames(message["messages"]))
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

    def _frames(self, messages: list[Prepared]) -> bytes:
        """The wire bytes of a batch (the connection is open)."""
        protocol = self.protocol
        if protocol.extensions:
            # permessage-deflate keeps per-connection state: frame each one here.
            for prepared in messages:
                text = prepared.event.get("text")
                if text is not None:
                    protocol.send_text(text.encode())
                else:
                    protocol.send_binary(prepared.event["bytes"])
            return b"".join(protocol.data_to_send())
        if len(messages) == 1:
            return messages[0].frame()
        return b"".join([m.frame() for m in messages])

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


def send_now(send: Any, messages: list[Prepared]) -> bool:
    """The batch extension's ``send_now`` (see ``triows._broadcast``) for native connections."""
    conn = getattr(send, "__self__", None)
    if conn.__class__ is not _WebSocketConnection or conn.protocol.state is not OPEN:
        return False
    writer = conn.writer
    nursery = conn.server.nursery
    if not writer.idle or nursery is None:
        return False  # checked before framing: deflate's state must not move for nothing
    return writer.write_now(conn._frames(messages), nursery)


#: The batch extension as the native backend offers it (shared by every connection).
SEND_NOW_OFFER: dict[str, object] = {"send_now": send_now}
