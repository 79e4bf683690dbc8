"""The one seam between the core and the servers: the :class:`Transport` protocol.

The core (routing, the WebSocket object, its state, the view runner) talks to a
connection only through this interface.  Two implementations exist:

* the native server's connection (``triows._native``), which owns its socket's
  reader task and writer;
* the ASGI adapter (``triows._asgi``), which serves the App under any ASGI
  server (hypercorn, the TestClient) and is the only place a receive pump lives.

Everything a transport hands the core is typed: the handshake request is a
:class:`HandshakeRequest`, a message is ``str`` (text) or ``bytes`` (binary),
outgoing messages are :class:`~triows._connection._frames.Prepared`, and the
client's departure is a :class:`ClientGone` carrying its close code and reason.
No ASGI event dict crosses this seam.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

import attrs

if TYPE_CHECKING:
    from ._frames import Prepared
    from ._pacing import Pace

__all__ = ["ClientGone", "DepartureCallback", "HandshakeRequest", "RawHeaders", "Transport"]

RawHeaders = Sequence[tuple[bytes, bytes]]
#: Called by a transport, synchronously and at most once, when the client has gone
#: (with its close code and reason; the transport ignores what it returns).
DepartureCallback = Callable[[int, str], object]


class ClientGone(OSError):
    """The client has gone: raised by a transport's ``receive`` and ``send``.

    ``code`` and ``reason`` are the client's close frame (1006 and ``""`` when
    the connection dropped without one, 1009/1007/1002 when the server failed
    it for a protocol error).  An ``OSError``, as ASGI servers raise for a send
    to a departed client.
    """

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        super().__init__()  # (the text is made by __str__, if anybody asks)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"the client has gone (close code {self.code})"


@attrs.define(slots=True, eq=False)
class HandshakeRequest:
    """The client's WebSocket handshake request, as every transport reports it.

    ``path`` is percent-decoded; ``raw_path`` and ``query_string`` are as sent.
    ``headers`` are lower-case names with their raw values, in order.
    ``subprotocols`` and ``extensions`` are the ones the client offered, in its
    order of preference.  ``state`` is a copy of the App's lifespan state for
    this connection.  :attr:`scope` is the ASGI scope the connection came with
    under an ASGI server (``scope=`` at construction), and is built from the
    request on first use elsewhere (only for code that asks for ``ws.scope`` or
    a session: never on the per-message path, nor for every connection).
    """

    path: str
    query_string: bytes = b""
    headers: RawHeaders = ()
    client: tuple[str, int] | None = None
    server: tuple[str, int] | None = None
    scheme: str = "ws"
    raw_path: bytes | None = None
    root_path: str = ""
    subprotocols: Sequence[str] = ()
    extensions: Sequence[str] = ()
    http_version: str = "1.1"
    state: MutableMapping[str, Any] = attrs.field(factory=dict)
    asgi_scope: MutableMapping[str, Any] | None = attrs.field(default=None, alias="scope")

    @property
    def scope(self) -> MutableMapping[str, Any]:
        """The ASGI scope: the server's under an ASGI server, else built on first use."""
        scope = self.asgi_scope
        if scope is None:
            scope = self.asgi_scope = self._build_scope()
        return scope

    @classmethod
    def from_target(
        cls,
        target: str,
        headers: RawHeaders,
        **fields: Any,
    ) -> HandshakeRequest:
        """A request from its request-target (``/path?query``), as a server reads it."""
        raw_path, _, query = target.partition("?")
        subprotocols: list[str] = []
        extensions: list[str] = []
        for name, value in headers:
            if name == b"sec-websocket-protocol":
                subprotocols += _tokens(value)
            elif name == b"sec-websocket-extensions":
                extensions += _tokens(value)
        return cls(
            path=unquote(raw_path),
            raw_path=raw_path.encode("latin-1"),
            query_string=query.encode("latin-1"),
            headers=headers,
            subprotocols=subprotocols,
            extensions=extensions,
            **fields,
        )

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def _build_scope(self) -> MutableMapping[str, Any]:
        return {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.http_version,
            "scheme": self.scheme,
            "path": self.path,
            "raw_path": self.raw_path,
            "query_string": self.query_string,
            "root_path": self.root_path,
            "headers": list(self.headers),
            "client": self.client,
            "server": self.server,
            "subprotocols": list(self.subprotocols),
            "extensions": {"websocket.http.response": {}},
            "state": self.state,
        }


def _tokens(value: bytes) -> list[str]:
    return [item.strip() for item in value.decode("latin-1").split(",") if item.strip()]


class Transport(Protocol):
    """One WebSocket connection as a server carries it.

    Every async method is a cancel point (``read_idle`` when it does not decline
    at once), and a schedule point (it yields) where it waits.  Where it does not
    have to wait, the native server's ``receive`` takes a message already
    buffered, its ``send`` queues behind a write under way and its ``accept``
    writes the 101 without yielding; the core bounds how long a view goes on that
    way, by the transport's ``pace`` (``_connection._pacing``).

    The core calls ``accept`` or ``refuse`` once, then ``receive``/``send``/
    ``send_now`` from any of the connection's tasks, then ``close`` (or nothing,
    when the client has gone).  ``on_departure`` is called once, before the
    handshake is answered.
    """

    @property
    def request(self) -> HandshakeRequest:
        """The handshake request (available before ``accept``)."""
        ...

    @property
    def pace(self) -> Pace:
        """The stamp the core's forced yields go by (``_connection._pacing``).

        The trio run's :class:`~triows._connection._pacing.Pace` (moved forward
        where the transport waits), or ``NEVER_DUE`` where every ``receive`` and
        ``send`` is a schedule point anyway (an ASGI server's awaitables).
        """
        ...

    async def accept(self, subprotocol: str | None, headers: RawHeaders) -> None:
        """Complete the handshake (101).  Raises ClientGone if the client left first."""
        ...

    async def refuse(self, status: int, headers: RawHeaders, body: bytes) -> None:
        """Refuse the handshake with an HTTP response.  Never raises ClientGone.

        A transport that cannot send a custom response (an ASGI server without
        the ``websocket.http.response`` extension) sends a plain 403.
        """
        ...

    async def receive(self) -> str | bytes:
        """The client's next message: ``str`` for text, ``bytes`` for binary.

        Cancel-safe: a cancelled receive loses no message.  After the client
        left, the messages it sent before closing are returned, then ClientGone
        is raised with its close code and reason, on every later call too.
        """
        ...

    async def send(self, messages: Sequence[Prepared]) -> None:
        """Write ``messages`` in order, as one write where the server can.

        Raises ClientGone if the client has gone (nothing more can be sent).
        If cancelled, part of the batch may have been written; the stream of
        frames stays well-formed.
        """
        ...

    def send_now(self, messages: Sequence[Prepared]) -> bool:
        """Write ``messages`` without yielding, or do nothing and return False.

        All or nothing: True means every byte is the transport's (written, or
        queued ahead of the next write and flushed soon); False means nothing
        was done (busy writing, closing, gone, or not supported), and the caller
        uses :meth:`send`.  Never raises for the connection's state.
        """
        ...

    async def read_idle(self) -> bool:
        """Wait, reading the client's input in the calling task, until :meth:`wake`.

        For a task with nothing to do until something outside the connection
        wakes it (a hub subscription's ``forward()``): where the server can read
        from the caller's task (the native server over plain TCP, while no other
        task reads), the connection costs no reader task.  What arrives is read
        as a reader would: messages into the inbox (until it is full, then the
        call returns), pongs and the echo of a close frame written, the
        departure reported through the callback, after which the call returns.
        A :meth:`receive` in another task takes the reading over (the call then
        returns).  True once it waited; False at once, without a checkpoint,
        where it cannot wait this way (another task reads: a reader or a
        pump, TLS, a full inbox, the client gone): the caller waits its own way.
        Cancellation: a cancelled call returns nothing lost (it reads only
        whole socket reads into the inbox).
        """
        ...

    def wake(self) -> None:
        """End a pending :meth:`read_idle` (it returns True); nothing if none is pending."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame (after accept).  Never raises ClientGone."""
        ...

    def on_departure(self, callback: DepartureCallback) -> None:
        """Register the core's departure callback (one per connection).

        The transport calls it synchronously, at most once, as soon as it knows
        the client has gone (its close frame, the end of the TCP stream, a
        failed write, a missed pong, a protocol error), even while nobody is
        receiving.  Messages already received stay readable.
        """
        ...
